"""Image-folder preparer: sharded TFRecords + categories.csv + train/val listings + rgb_stats.json."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """Command line entry point of `python -m kgooglenet.prepare`."""
    raise NotImplementedError
