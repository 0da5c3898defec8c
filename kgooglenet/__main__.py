"""The `kgooglenet COMMAND ...` console script (pyproject's [project.scripts]; `python -m kgooglenet COMMAND ...` is the
same): summary here; convert, prepare, predict and average-checkpoints dispatch to the modules that own them."""

from __future__ import annotations

import argparse
import importlib
import sys

# Commands that live in their own module, each with a main(argv) of its own.
_DELEGATED = {
    "convert": "kgooglenet.weights.cli",
    "prepare": "kgooglenet.data.prepare",
    "predict": "kgooglenet.predict",
    "average-checkpoints": "kgooglenet.train.averaging",
}


def summary_main(argv=None) -> int:
    from kgooglenet import specs
    from kgooglenet.model import GoogLeNet
    from kgooglenet.summary import format_table

    parser = argparse.ArgumentParser(
        prog="kgooglenet summary", description="Print the paper's Table 1 for a GoogLeNet variant."
    )
    parser.add_argument("--variant", default="paper", choices=sorted(specs.VARIANTS))
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--aux-heads", action="store_true", help="include the two auxiliary classifiers")
    parser.add_argument("--input-size", type=int, nargs="+", help="H [W]; default: the variant's size")
    parser.add_argument("--width", type=float, default=1.0, help="channel multiplier")
    args = parser.parse_args(argv)
    input_shape = None
    if args.input_size:
        h, w = (args.input_size * 2)[:2]
        input_shape = (h, w, 3)
    model = GoogLeNet(
        args.variant, num_classes=args.num_classes, aux_heads=args.aux_heads, input_shape=input_shape, width=args.width
    )
    print(format_table(model))
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = ["summary", *_DELEGATED]
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: kgooglenet {{{','.join(commands)}}} ...\n")
        print("  summary   the paper's Table 1 (layers, sizes, params, multiply-adds) for a variant")
        print("  convert   convert Caffe / torchvision ImageNet weights to a Keras .weights.h5")
        print("  prepare   image folder -> sharded TFRecords + stats")
        print("  predict   top-k classes for image files: predict --model RUN_DIR_OR_FILE IMAGE_OR_DIR...")
        print("  average-checkpoints   average the weights of a run's last N epochs")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "summary":
        return summary_main(rest)
    if command in _DELEGATED:
        module = importlib.import_module(_DELEGATED[command])
        return module.main(rest) or 0
    print(f"kgooglenet: unknown command {command!r}; expected one of {commands}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
