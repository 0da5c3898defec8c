"""Export a GoogLeNet for serving: a TF Serving SavedModel (float-image and encoded-bytes signatures, aux heads
dropped, preprocessing inside), plus `.keras`, TFLite and ONNX files, each checked against the Keras model.

Which model: --model a .keras file, or --weights (a .weights.h5 file or a named ImageNet set such as
imagenet-torchvision) with --variant/--num-classes/--width, or by default the quickstart's best checkpoint
(runs/quickstart), or, when there is none, a randomly initialized GoogLeNet("bn") (only to show the layout).

Run:
    python recipes/export_savedmodel.py
    python recipes/export_savedmodel.py --weights imagenet-torchvision --name googlenet_imagenet --dtype bfloat16
    python recipes/export_savedmodel.py --onnx-nchw      # model.onnx takes NCHW, like torchvision's exports
    python recipes/export_savedmodel.py --int8           # + model_int8.onnx calibrated on the run's data
    saved_model_cli show --dir saved_models/googlenet_digits/1 --all

Fastest on a CPU (benchmarks/infer.py): in float32, model.onnx with --onnx-nchw in ONNX Runtime (1.00-1.01x ONNX
Runtime on torchvision's own export); with AVX512-BF16 or AMX, the --dtype bfloat16 SavedModel (1.64-1.68x).

Expected (about 1 minute): saved_models/<name>/<version>/ (the next free version) with saved_model.pb and
kgooglenet_export.json, saved_models/<name>/exports/{model.keras, model.tflite, model.onnx (if tf2onnx is
installed)}, then a prediction through the "serving_bytes" signature of a JPEG made here, loaded with
tf.saved_model.load (no kgooglenet code involved), and the same top class as the Keras model.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np


def load_source_model(args):
    """(model, class_names, name) from the command line (see the module docstring)."""
    import keras

    from kgooglenet import GoogLeNet
    from kgooglenet.predict import load_model, read_class_names

    names = read_class_names(args.classes) if args.classes else None
    if args.model:
        return keras.saving.load_model(args.model), names, args.name or "googlenet"
    if args.weights:
        model = load_model(args.weights, args.variant, args.num_classes or (len(names) if names else None),
                           args.width)
        return model, names, args.name or f"googlenet_{args.variant}"
    config_path = os.path.join(args.run_dir, "config.json")
    best = os.path.join(args.run_dir, "checkpoints", "best.weights.h5")
    if os.path.isfile(config_path) and os.path.isfile(best):
        from kgooglenet.train import TrainConfig
        from kgooglenet.train.loop import build_model_and_compile

        model = build_model_and_compile(TrainConfig.from_json(config_path), num_classes=10)
        model.load_weights(best)
        return model, names or [str(i) for i in range(10)], args.name or "googlenet_digits"
    print(f"no --model/--weights and no quickstart run in {args.run_dir!r}: exporting a RANDOMLY initialized "
          "GoogLeNet('bn') to show the layout (its predictions mean nothing)")
    return GoogLeNet("bn"), names, args.name or "googlenet_bn_random"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="a .keras model")
    p.add_argument("--weights", default=None, help="a .weights.h5 file or a named set (imagenet-torchvision, ...)")
    p.add_argument("--variant", default="bn", choices=["bn", "paper", "cifar"])
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--classes", default=None, help="categories.csv (class_name,class_id) for the top-k names")
    p.add_argument("--run-dir", default="runs/quickstart")
    p.add_argument("--export-dir", default="saved_models")
    p.add_argument("--name", default=None, help="saved_models/<name>/<version>/")
    p.add_argument("--version", type=int, default=None, help="default: the next free integer")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--no-extras", action="store_true", help="SavedModel only (no .keras/TFLite/ONNX)")
    p.add_argument("--onnx-nchw", action="store_true",
                   help="model.onnx takes (B, 3, S, S) images (still RGB in [0, 255]): no input transpose in the runtime")
    p.add_argument("--int8", nargs="?", const="", default=None, metavar="CALIBRATION_FOLDER",
                   help="also exports/model_int8.onnx, calibrated on a folder of class subfolders, else on the "
                   "--run-dir run's data")
    args = p.parse_args(argv)

    import tensorflow as tf

    from kgooglenet.export import export_keras, export_onnx, export_savedmodel, export_tflite

    model, class_names, name = load_source_model(args)
    path = export_savedmodel(model, args.export_dir, name=name, version=args.version, class_names=class_names,
                             top_k=args.top_k, dtype=args.dtype)
    print(f"SavedModel: {path} (verified against the Keras model)")
    files = {}
    if not args.no_extras:
        extras = os.path.join(args.export_dir, name, "exports")
        files["keras"] = export_keras(model, os.path.join(extras, "model.keras"))
        files["tflite"] = export_tflite(model, os.path.join(extras, "model.tflite"))
        try:
            files["onnx"] = export_onnx(model, os.path.join(extras, "model.onnx"), channels_first=args.onnx_nchw)
        except ImportError as e:
            print(f"ONNX: skipped ({e})")
        for kind, f in files.items():
            print(f"{kind:7s} {f} (verified against the Keras model)")
    if args.int8 is not None:  # prints its self-check (top-1 agreement with float32 on held-out images)
        from kgooglenet.quantize import export_int8_for_recipe

        files["int8"] = export_int8_for_recipe(model, os.path.join(args.export_dir, name, "exports"), args.int8,
                                               args.run_dir)

    # Serve one JPEG through the bytes signature, the way a TF-only client would.
    size = model.inputs[0].shape[1] or 224
    yy, xx = np.mgrid[0 : size + 40, 0 : size + 80]
    photo = np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1).astype(np.uint8)
    jpeg = tf.io.encode_jpeg(photo).numpy()
    served = tf.saved_model.load(path).signatures["serving_bytes"](image_bytes=tf.constant([jpeg]))
    names = [n.decode() for n in served["top_k_names"].numpy()[0]]
    scores = served["top_k_scores"].numpy()[0]
    print("serving_bytes on a generated JPEG:", ", ".join(f"{n} {s:.3f}" for n, s in zip(names, scores)))
    print(f"inspect it with: saved_model_cli show --dir {path} --all")
    return {"saved_model": path, **files, "top": names}


if __name__ == "__main__":
    main(sys.argv[1:])
