"""Table 3 of the paper on ImageNet: converted GoogLeNets with 1, 10 and 144 crops, alone and as an ensemble.

Needs (nothing is downloaded here): the ILSVRC2012 validation images, either prepared for TFDS
(`--tfds-dir` holding imagenet2012/<version>/, see `kgooglenet.data.sources.tfds_builder` for how to prepare it) or
as a folder of 1000 class subfolders named by WordNet id (`--folder`), and the ImageNet weights installed with
`python -m kgooglenet convert ... --install` (imagenet-torchvision: the "bn" variant, imagenet-caffe: the paper's
model with its trained aux heads). Images are used at full size, so the 10/144-crop boxes are the paper's.

Run:
    python recipes/evaluate_imagenet.py --tfds-dir ~/tensorflow_datasets --limit 2000     # a quick subset
    python recipes/evaluate_imagenet.py --folder ILSVRC2012_val/ --crops 1 10 144          # the full table

Expected on all 50,000 images (references, not measured here: no ImageNet on this machine): torchvision's weights
69.8% top-1 / 89.5% top-5 with 1 crop (torchvision's documentation); Caffe's bvlc_googlenet 68.7% / 88.9% with 1 crop
(its readme); the paper's Table 3 for its own models: top-5 error 10.07% (1 model, 1 crop), 9.15% (10 crops),
7.89% (144 crops), 6.67% (7 models, 144 crops). 144 crops take 144 forward passes per image: about 1.5 hours for
2,000 images on 2 CPU cores; the table prints the cost of each row.
"""

from __future__ import annotations

import argparse
import os
import sys

from kgooglenet.model import aux_compile_args


def imagenet_val(args):
    """An unbatched dataset of full-size (uint8 image, label) ImageNet validation pairs."""
    if args.folder:
        from kgooglenet.data import list_image_folder
        from kgooglenet.evaluate import image_files_dataset

        files, labels, names = list_image_folder(args.folder)
        if len(names) != 1000:
            raise ValueError(f"--folder: expected 1000 class subfolders (WordNet ids), found {len(names)}")
        return image_files_dataset(files, labels)
    from kgooglenet.data.sources import tfds_builder

    builder = tfds_builder("imagenet2012", os.path.expanduser(args.tfds_dir))
    return builder.as_dataset(split="validation", as_supervised=True, shuffle_files=False)


def imagenet_models(names):
    """The named weight sets among `names` (downloaded on first use; ones that cannot be had are reported): Caffe's with its trained aux heads,
    torchvision's as its main classifier only."""
    from kgooglenet import GoogLeNet, inference_model
    from kgooglenet.weights import NAMED_WEIGHTS, resolve_weights

    models = {}
    for name in names:
        spec = NAMED_WEIGHTS[name]
        try:
            meta = resolve_weights(name, spec.variant).metadata or {}
        except OSError as e:  # not installed, and its download failed (WeightsDownloadError) or was not possible
            print(f"skipping {name}: {str(e).splitlines()[0][:300]}")
            continue
        # the sidecar says whether the file holds the aux heads (trained in Caffe's, untrained in torchvision's)
        aux = bool(meta.get("aux_heads", False)) and spec.source == "caffe"
        model = GoogLeNet(spec.variant, aux_heads=bool(meta.get("aux_heads", False)), weights=name,
                          name=name.replace("-", "_"))
        models[name] = model if aux else inference_model(model)
    if not models:
        raise FileNotFoundError("no ImageNet weights installed: see `python -m kgooglenet convert --help`")
    return models


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--tfds-dir", help="TFDS data_dir with imagenet2012 prepared")
    src.add_argument("--folder", help="ILSVRC2012 validation images in 1000 WordNet-id subfolders")
    p.add_argument("--weights", nargs="+", default=["imagenet-torchvision", "imagenet-caffe"])
    p.add_argument("--crops", type=int, nargs="+", default=[1, 10, 144], choices=[1, 10, 144])
    p.add_argument("--limit", type=int, default=None, help="the first N validation images only")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--out-dir", default="runs/evaluate_imagenet")
    args = p.parse_args(argv)

    from kgooglenet.evaluate import evaluate, results_table
    from kgooglenet.predict import imagenet_class_names

    data = imagenet_val(args)
    if args.limit:
        data = data.take(args.limit)
    models = imagenet_models(args.weights)
    rows = [(name, [m], None) for name, m in models.items()]
    if "imagenet-caffe" in models:
        rows.append(("imagenet-caffe+aux", [models["imagenet-caffe"]], aux_compile_args()["loss_weights"]))
    if len(models) > 1:
        rows.append(("ensemble", list(models.values()), None))
    results = []
    for crops in args.crops:
        for label, members, heads in rows:
            out = os.path.join(args.out_dir, f"{label}_x{crops}".replace("+", "_"))
            r = evaluate(members, data, crops=crops, head_weights=heads, batch_size=args.batch_size,
                         class_names=imagenet_class_names(), name=label, output_dir=out)
            results.append(r)
            print(f"{label} x{crops}: top-1 {r.top1:.4f} top-5 {r.top5:.4f} ({r.num_examples} images, "
                  f"{r.seconds / 60:.1f} min)")
    print()
    print(results_table(results))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
