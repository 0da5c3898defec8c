"""`python -m kgooglenet.convert {caffe,torchvision,parity} ...`: convert ImageNet GoogLeNet weights from Caffe or
torchvision to Keras, and report their per-layer parity (see `kgooglenet.weights.cli`).

    python -m kgooglenet.convert caffe --caffemodel bvlc_googlenet.caffemodel --prototxt deploy.prototxt \
        --out W.weights.h5
    python -m kgooglenet.convert torchvision --checkpoint googlenet-1378be20.pth --out W.weights.h5
"""

from kgooglenet.weights.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
