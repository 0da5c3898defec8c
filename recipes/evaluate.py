"""Evaluate a trained GoogLeNet the way the paper did: 1, 10 and 144 crops, its aux heads, and ensembles, printed as
a Table-3-style summary, with per-class accuracy (CSV and bars PNG) and a confusion-matrix PNG.

Takes run directories or `.keras` model files only (`kgooglenet.saving`: class names and input size come from the
file). The data is the validation split the run trained with (its config.json), a prepared dataset's val split
(`--prepared`), or every image of a folder of class subfolders (`--folder`, full-size images: the exact 10/144-crop
protocol). Images that cannot be decoded are counted and listed, never silently dropped.

Run:
    python recipes/evaluate.py                                               # the quickstart run, 1 and 10 crops
    python recipes/evaluate.py --crops 1 10 144                              # + the paper's 144 crops
    python recipes/evaluate.py --model runs/flowers --prepared prepared/flowers --crops 1 10
    python recipes/evaluate.py --model runs/a --model runs/b --folder images/   # a 2-model ensemble on a folder

Expected (2-core CPU, measured on a quickstart run's best checkpoint before run directories kept model.keras): top-1
0.981 with 1 crop, 0.978 with the aux heads averaged in; 10 crops score LOWER on digits (0.925 single, 0.947 with aux
heads): the corner crops cut strokes off these small centered digits, and 144 crops lower still (0.76, 0.82), unlike
on ImageNet photos (see recipes/evaluate_imagenet.py). Writes runs/evaluate/<row>/{metrics.json, per_class.csv,
per_class.png, most_confused.csv, confusion.png} and prints the summary with the cost (models x crops) of each row.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from kgooglenet.evaluate import evaluate, results_table
from kgooglenet.model import aux_compile_args

AUX_WEIGHTS = aux_compile_args()["loss_weights"]  # the paper's: main 1, each aux head 0.3


def run_data(run_dir: str, batch_size: int):
    """The DataConfig a run directory trained with (its config.json), without augmentation."""
    from kgooglenet.train import TrainConfig

    path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{run_dir!r} has no config.json to take the validation data from: pass --prepared "
                                "DIR (a prepared dataset's val split) or --folder DIR (every image of a folder)")
    data = TrainConfig.from_json(path).data
    return dataclasses.replace(data, batch_size=batch_size, augment=None)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", default=None,
                   help="run directory or .keras file; repeat for an ensemble (default: runs/quickstart)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--prepared", default=None, help="the val split of a directory made by `kgooglenet prepare`")
    src.add_argument("--folder", default=None, help="every image of a folder of class subfolders (full images)")
    p.add_argument("--crops", type=int, nargs="+", default=[1, 10], choices=[1, 10, 144])
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N images only")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out-dir", default="runs/evaluate")
    args = p.parse_args(argv)

    from kgooglenet.model import has_aux_heads
    from kgooglenet.saving import load_model, model_info

    paths = args.model or ["runs/quickstart"]
    models = [load_model(path) for path in paths]
    class_names = list(model_info(paths[0]).class_names)
    data = args.prepared or args.folder or run_data(paths[0], args.batch_size)
    steps = None if args.limit is None else -(-args.limit // args.batch_size)

    rows = [("single", models[:1], None)]
    if has_aux_heads(models[0]):
        rows.append(("single+aux", models[:1], AUX_WEIGHTS))
    if len(models) > 1:
        rows.append((f"ensemble of {len(models)}", models, None))
    results = []
    for crops in args.crops:
        for label, members, heads in rows:
            out = os.path.join(args.out_dir, f"{label}_x{crops}".replace(" ", "_").replace("+", "_"))
            result = evaluate(members, data, crops=crops, head_weights=heads, batch_size=args.batch_size,
                              steps=steps, class_names=class_names, name=label, output_dir=out)
            results.append(result)
            topk = f", top-{result.top_k} {result.top5:.4f}" if result.top5 is not None else ""
            print(f"{label} x{crops}: top-1 {result.top1:.4f}{topk} on {result.num_examples} images, "
                  f"{result.seconds:.0f}s -> {out}/")
    bad = results[0].undecodable
    if bad:
        print(f"{len(bad)} image(s) could not be decoded and were not counted (listed in metrics.json): "
              + ", ".join(bad[:10]) + (" ..." if len(bad) > 10 else ""))
    print()
    print(results_table(results))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
