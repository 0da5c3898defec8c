"""Evaluate a trained GoogLeNet the way the paper did: 1, 10 and 144 crops, its aux heads, and a 2-model ensemble,
printed as a Table-3-style summary, with per-class accuracy and a confusion-matrix PNG.

By default it evaluates the quickstart's best checkpoint (run `python recipes/quickstart.py` first) on the same
digits validation split (360 images), as a single model with 1 and 10 crops, with its aux heads averaged in
(weights 1/0.3/0.3), and as an ensemble with the quickstart's last checkpoint when present.

Run:
    python recipes/evaluate.py                                    # 1 and 10 crops, about 1 minute
    python recipes/evaluate.py --crops 1 10 144                   # + the paper's 144 crops, about 6 minutes
    python recipes/evaluate.py --model runs/x/model.keras --folder images/ --crops 1 10   # any trained model

Expected (2-core CPU, measured on a quickstart run): top-1 0.981 (1 crop), 0.978 with the aux heads averaged in, 0.983
for the 2-checkpoint ensemble; 10 crops score LOWER on digits (0.925 single, 0.947 with aux heads, 0.942 ensemble):
the corner crops cut strokes off these small centered digits, and 144 crops lower still (0.76, 0.82, 0.82; about 5
minutes for the three rows), unlike on ImageNet photos (see recipes/evaluate_imagenet.py). Writes
runs/evaluate/<row>/{metrics.json, per_class.csv, most_confused.csv, confusion.png} and prints a Table-3-style summary
with the cost (models x crops) of each row.
"""

from __future__ import annotations

import argparse
import os
import sys

from kgooglenet.data import DataConfig, list_image_folder
from kgooglenet.evaluate import evaluate, image_files_dataset, results_table


def quickstart_models(run_dir="runs/quickstart"):
    """The quickstart's model(s), rebuilt from its config.json: the best checkpoint, and the last one when it exists
    (a second ensemble member)."""
    from kgooglenet.train import TrainConfig
    from kgooglenet.train.loop import build_model_and_compile

    config_path = os.path.join(run_dir, "config.json")
    best = os.path.join(run_dir, "checkpoints", "best.weights.h5")
    if not (os.path.isfile(config_path) and os.path.isfile(best)):
        raise FileNotFoundError(f"no finished run in {run_dir!r} (config.json, checkpoints/best.weights.h5): run "
                                "`python recipes/quickstart.py` first, or pass --model path/to/model.keras")
    config = TrainConfig.from_json(config_path)
    models = []
    for tag in ("best", "last"):
        path = os.path.join(run_dir, "checkpoints", f"{tag}.weights.h5")
        if os.path.isfile(path):
            model = build_model_and_compile(config, num_classes=10)
            model.load_weights(path)
            models.append(model)
    return config, models


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", default=None,
                   help=".keras model(s) to evaluate; repeat for an ensemble (default: the quickstart's)")
    p.add_argument("--run-dir", default="runs/quickstart", help="quickstart run directory")
    p.add_argument("--folder", default=None, help="evaluate on a folder of class subfolders (full images)")
    p.add_argument("--crops", type=int, nargs="+", default=[1, 10], choices=[1, 10, 144])
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N images only")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out-dir", default="runs/evaluate")
    args = p.parse_args(argv)

    import keras

    data = DataConfig(source="digits", image_size=32, batch_size=args.batch_size, seed=0)
    if args.model:
        models = [keras.saving.load_model(path) for path in args.model]
    else:
        config, models = quickstart_models(args.run_dir)
        data = DataConfig(**{**vars(config.data), "batch_size": args.batch_size, "augment": None})
    class_names = None
    if args.folder:  # full-size images: the exact 10/144-crop protocol
        files, labels, class_names = list_image_folder(args.folder)
        data = image_files_dataset(files, labels)
    steps = None if args.limit is None else -(-args.limit // args.batch_size)

    rows = [("single", models[:1], None)]
    if isinstance(models[0].output, dict):
        rows.append(("single+aux", models[:1], {"main": 1.0, "aux1": 0.3, "aux2": 0.3}))
    if len(models) > 1:
        rows.append((f"ensemble of {len(models)}", models, None))
    results = []
    for crops in args.crops:
        for label, members, heads in rows:
            out = os.path.join(args.out_dir, f"{label}_x{crops}".replace(" ", "_").replace("+", "_"))
            result = evaluate(members, data, crops=crops, head_weights=heads, batch_size=args.batch_size,
                              steps=steps, class_names=class_names, name=label, output_dir=out)
            results.append(result)
            print(f"{label} x{crops}: top-1 {result.top1:.4f}, top-5 {result.top5:.4f}, {result.seconds:.0f}s -> {out}/")
    print()
    print(results_table(results))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
