"""Export a trained GoogLeNet for serving: a TF Serving SavedModel (float-image and encoded-bytes signatures, aux
heads dropped, preprocessing inside), plus `.keras`, TFLite and ONNX files, each checked against the Keras model.

Which model: --model (also spelled --run-dir or --weights) takes a training run directory or its .keras file (the
class names and the trained input size come with it: nothing else to pass), or a named ImageNet weight set such as
imagenet-torchvision. Default: the quickstart's run, runs/quickstart.

Run:
    python recipes/quickstart.py && python recipes/export_savedmodel.py       # saved_models/quickstart/1/
    python recipes/export_savedmodel.py --model runs/flowers --dtype bfloat16
    python recipes/export_savedmodel.py --weights imagenet-torchvision --name googlenet_imagenet
    python recipes/export_savedmodel.py --onnx-nchw      # model.onnx takes NCHW, like torchvision's exports
    python recipes/export_savedmodel.py --int8           # + model_int8.onnx calibrated on the run's data
    saved_model_cli show --dir saved_models/quickstart/1 --all

Fastest on a CPU (benchmarks/infer.py): in float32, model.onnx with --onnx-nchw in ONNX Runtime (1.00-1.01x ONNX
Runtime on torchvision's own export); with AVX512-BF16 or AMX, the --dtype bfloat16 SavedModel (1.64-1.68x).

Expected (about 1 minute): saved_models/<name>/<version>/ (the next free version; <name> defaults to the run
directory's name) with saved_model.pb and kgooglenet_export.json (the run's class names and trained size),
saved_models/<name>/exports/{model.keras (self-describing), model.tflite (any batch), model.onnx (ONNX Runtime and
OpenCV's DNN, any batch)}, then a prediction through the "serving_bytes" signature of a JPEG made here, loaded with
tf.saved_model.load (no kgooglenet code involved). Every file appears whole or not at all (written aside, verified,
renamed into place).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", "--run-dir", "--weights", dest="model", default="runs/quickstart",
                   metavar="RUN_DIR_OR_FILE",
                   help="a training run directory, a .keras model file, or a named ImageNet weight set "
                   "(imagenet-torchvision, imagenet-caffe) or converted .weights.h5 (default: runs/quickstart)")
    p.add_argument("--export-dir", default="saved_models")
    p.add_argument("--name", default=None, help="saved_models/<name>/<version>/ (default: the run directory's name)")
    p.add_argument("--version", type=int, default=None, help="default: the next free integer")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--no-extras", action="store_true", help="SavedModel only (no .keras/TFLite/ONNX)")
    p.add_argument("--onnx-nchw", action="store_true",
                   help="model.onnx takes (B, 3, S, S) images (still RGB in [0, 255]): no input transpose in the runtime")
    p.add_argument("--int8", nargs="?", const="", default=None, metavar="CALIBRATION_FOLDER",
                   help="also exports/model_int8.onnx, calibrated on a folder of class subfolders, else on the "
                   "--model run's data")
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)

    import tensorflow as tf

    from kgooglenet.export import export_keras, export_name, export_onnx, export_savedmodel, export_tflite, load_source

    try:
        model, info = load_source(args.model)
    except (OSError, ValueError) as e:  # a missing or odd input: one line, no traceback
        parser.error(f"--model: {e}")
    name = args.name or export_name(args.model)
    path = export_savedmodel(model, args.export_dir, name=name, version=args.version, top_k=args.top_k,
                             dtype=args.dtype, info=info)
    print(f"SavedModel: {path} ({len(info.class_names)} classes, {info.image_size}px; verified against the Keras model)")
    files = {}
    if not args.no_extras:
        extras = os.path.join(args.export_dir, name, "exports")
        files["keras"] = export_keras(model, os.path.join(extras, "model.keras"), info=info)
        files["tflite"] = export_tflite(model, os.path.join(extras, "model.tflite"), info=info)
        try:
            files["onnx"] = export_onnx(model, os.path.join(extras, "model.onnx"), channels_first=args.onnx_nchw,
                                        info=info)
        except ImportError as e:
            print(f"ONNX: skipped ({e})")
        for kind, f in files.items():
            print(f"{kind:7s} {f} (verified against the Keras model)")
    if args.int8 is not None:  # prints its self-check (top-1 agreement with float32 on held-out images)
        from kgooglenet.quantize import export_int8_for_recipe

        files["int8"] = export_int8_for_recipe(model, os.path.join(args.export_dir, name, "exports"), args.int8,
                                               args.model)

    # Serve one JPEG through the bytes signature, the way a TF-only client would.
    size = info.image_size or model.inputs[0].shape[1] or 224
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
