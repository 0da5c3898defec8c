"""`python -m kgooglenet convert`: convert Caffe / torchvision GoogLeNet weights, and report their parity.

Commands:
    python -m kgooglenet convert caffe --caffemodel bvlc_googlenet.caffemodel [--prototxt deploy.prototxt] \\
        (--out W.weights.h5 | --install)
    python -m kgooglenet convert torchvision --checkpoint googlenet-1378be20.pth (--out W.weights.h5 | --install)
    python -m kgooglenet convert parity caffe --weights W.weights.h5 --caffemodel M.caffemodel \\
        --prototxt deploy.prototxt [--train-val train_val.prototxt] [--images a.jpg b.jpg] [--size 224 224]
    python -m kgooglenet convert parity torchvision --weights W.weights.h5 --checkpoint M.pth [--images ...]

`--install` puts the result in $KERAS_HOME/kgooglenet/ as weights="imagenet-caffe" / "imagenet-torchvision" after
checking the original file's published checksum. Parity uses scikit-learn's two sample photos unless --images is given.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

_AUX = {"auto": "auto", "yes": True, "no": False}


def _add_output(parser):
    parser.add_argument("--out", help="the .weights.h5 file to write (a .weights.json sidecar is written beside it)")
    parser.add_argument("--install", action="store_true", help="install as the named ImageNet set in the cache")
    parser.add_argument(
        "--allow-unverified", action="store_true", help="with --install: accept a file whose checksum differs"
    )
    parser.add_argument("--aux-heads", choices=sorted(_AUX), default="auto", help="convert the aux heads")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kgooglenet convert", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    caffe = commands.add_parser("caffe", help="convert a BVLC GoogLeNet .caffemodel (variant 'paper')")
    caffe.add_argument("--caffemodel", required=True, help="bvlc_googlenet.caffemodel")
    caffe.add_argument("--prototxt", help="deploy.prototxt, to check the caffemodel and the architecture against")
    _add_output(caffe)

    tv = commands.add_parser("torchvision", help="convert a torchvision GoogLeNet state dict (variant 'bn')")
    tv.add_argument("--checkpoint", required=True, help="googlenet-1378be20.pth or another GoogLeNet state dict")
    tv.add_argument(
        "--no-transform-input",
        dest="transform_input",
        action="store_false",
        help="the torch model was built with transform_input=False (bind 'imagenet' preprocessing)",
    )
    _add_output(tv)

    parity = commands.add_parser("parity", help="per-layer max |difference| against the source framework")
    refs = parity.add_subparsers(dest="reference", required=True)
    pc = refs.add_parser("caffe", help="against OpenCV's Caffe importer")
    pc.add_argument("--caffemodel", required=True)
    pc.add_argument("--prototxt", required=True, help="deploy.prototxt")
    pc.add_argument("--train-val", help="train_val.prototxt: adds the aux heads to the reference net")
    pt = refs.add_parser("torchvision", help="against torchvision.models.googlenet")
    pt.add_argument("--checkpoint", required=True)
    pt.add_argument("--no-transform-input", dest="transform_input", action="store_false")
    for p in (pc, pt):
        p.add_argument("--weights", required=True, help="the converted .weights.h5")
        p.add_argument("--images", nargs="+", help="image files (default: scikit-learn's two sample photos)")
        p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=(224, 224), help="input size")
        p.add_argument("--tolerance", type=float, default=1e-4, help="max relative difference that passes")
    return parser


def _convert(args) -> int:
    aux = _AUX[args.aux_heads]
    if args.out is None and not args.install:
        raise ValueError("give --out PATH.weights.h5 and/or --install")
    if args.command == "caffe":
        from kgooglenet.weights.caffe import convert_caffe

        result = convert_caffe(
            args.caffemodel, args.out, args.prototxt, aux, install=args.install, allow_unverified=args.allow_unverified
        )
    else:
        from kgooglenet.weights.torchvision import convert_torchvision

        result = convert_torchvision(
            args.checkpoint,
            args.out,
            aux,
            transform_input=args.transform_input,
            install=args.install,
            allow_unverified=args.allow_unverified,
        )
    meta = result.metadata
    print(f"wrote {result.weights_path}")
    print(f"      {result.sidecar_path}")
    print(
        f"variant={meta['variant']!r} preprocessing={meta['preprocessing_name']!r} aux_heads={meta['aux_heads']} "
        f"num_classes={meta['num_classes']} source_sha256={meta['source_sha256']}"
    )
    if result.installed_as:
        print(f"installed: GoogLeNet(variant={meta['variant']!r}, weights={result.installed_as!r})")
    return 0


def _parity(args) -> int:
    from kgooglenet.model import GoogLeNet
    from kgooglenet.weights import cache, parity

    record = cache.read_sidecar(args.weights) or {}
    variant = record.get("variant", "paper" if args.reference == "caffe" else "bn")
    size = tuple(args.size)
    images = parity.load_images(args.images, size) if args.images else parity.sample_images(size)
    aux = bool(record.get("aux_heads", False))
    if aux and variant == "paper":
        from kgooglenet import specs

        aux = specs.aux_pooled_size(variant, *size) == specs.AUX_POOLED_SIZE  # what the aux FC weights flatten
    if args.reference == "caffe":
        prototxt = args.prototxt
        with tempfile.TemporaryDirectory() as tmp:
            if args.train_val and aux:
                from kgooglenet.weights import caffe, caffe_proto

                net = caffe.aux_deploy_net(caffe.read_prototxt(args.prototxt), caffe.read_prototxt(args.train_val))
                prototxt = os.path.join(tmp, "deploy_with_aux.prototxt")
                with open(prototxt, "w") as f:
                    f.write(caffe_proto.to_prototxt(net))
            else:
                aux = False
            model = GoogLeNet(
                variant, aux_heads=aux, weights=args.weights, input_shape=(*size, 3), classifier_activation=None
            )
            report = parity.parity_report(model, parity.CaffeReference(prototxt, args.caffemodel), images)
    else:
        model = GoogLeNet(
            variant, aux_heads=aux, weights=args.weights, input_shape=(*size, 3), classifier_activation=None
        )
        reference = parity.TorchvisionReference(args.checkpoint, args.transform_input)
        report = parity.parity_report(model, reference, images)
    ok = report.max_relative <= args.tolerance and all(r.top5_match is not False for r in report.rows)
    print(f"max relative difference {report.max_relative:.2e} (tolerance {args.tolerance:g}): {'OK' if ok else 'FAIL'}")
    return 0 if ok else 1


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "parity":
            return _parity(args)
        return _convert(args)
    except (FileNotFoundError, ValueError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


__all__ = ["build_parser", "main"]
