"""`python -m kgooglenet.prepare SRC_DIR OUT_DIR --val-split 0.2 --size 256 --center-crop`.

Turns a folder of class subfolders into sharded TFRecords (see `kgooglenet.data.prepare`).
"""

from kgooglenet.data.prepare import main

if __name__ == "__main__":
    raise SystemExit(main())
