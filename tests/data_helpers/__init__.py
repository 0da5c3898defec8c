"""Small image folders for the data tests (made with Pillow, a few KB each)."""

from __future__ import annotations

import os

import numpy as np

# files each make_messy_folder class gets besides its good JPEGs, with whether they are convertible
SPECIAL = {
    "cls_a": [("gray.jpg", True), ("cmyk.jpg", True), ("rgba.png", True), ("truncated.jpg", False)],
    "cls_b": [("plain.png", True), ("palette.gif", True), ("bitmap.bmp", True), ("text.jpg", False),
              ("notes.txt", False)],
    "cls_c": [("la.png", True)],
}


def _pattern(rng, label: int, size=(48, 64)) -> np.ndarray:
    """A class-dependent image: class colour + noise, so classes are learnable."""
    h, w = size
    base = np.zeros((h, w, 3), np.float32)
    base[..., label % 3] = 200
    base[: h // 2, :, (label + 1) % 3] = 120
    return np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def make_image_folder(root, classes: int = 3, per_class: int = 6, size=(48, 64), seed: int = 0, fmt: str = "JPEG"):
    """Folder of `classes` subfolders (cls_a, cls_b, ...) with `per_class` good images each; returns root."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in range(classes):
        d = os.path.join(root, f"cls_{chr(ord('a') + c)}")
        os.makedirs(d, exist_ok=True)
        for i in range(per_class):
            ext = "jpg" if fmt == "JPEG" else fmt.lower()
            Image.fromarray(_pattern(rng, c, size)).save(os.path.join(d, f"img{i:03d}.{ext}"), format=fmt, quality=90)
    return str(root)


def add_special_files(root, seed: int = 1) -> dict[str, list[tuple[str, bool]]]:
    """Add grayscale / CMYK / RGBA / PNG / GIF / BMP / LA images, a truncated JPEG, a text file named
    .jpg and a .txt file to the classes of a make_image_folder folder; returns SPECIAL."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for cls, items in SPECIAL.items():
        d = os.path.join(root, cls)
        label = ord(cls[-1]) - ord("a")
        img = Image.fromarray(_pattern(rng, label))
        for name, _ in items:
            p = os.path.join(d, name)
            if name == "gray.jpg":
                img.convert("L").save(p)
            elif name == "cmyk.jpg":
                img.convert("CMYK").save(p)
            elif name == "rgba.png":
                rgba = img.convert("RGBA")
                a = np.asarray(rgba).copy()
                a[:10, :, 3] = 0
                Image.fromarray(a, "RGBA").save(p)
            elif name == "truncated.jpg":
                img.save(p + ".full", format="JPEG")
                data = open(p + ".full", "rb").read()
                os.remove(p + ".full")
                with open(p, "wb") as f:
                    f.write(data[: len(data) // 2])
            elif name == "plain.png":
                img.save(p)
            elif name == "palette.gif":
                img.convert("P").save(p)
            elif name == "bitmap.bmp":
                img.save(p)
            elif name == "la.png":
                img.convert("LA").save(p)
            else:
                with open(p, "w") as f:
                    f.write("this is not an image\n")
    return SPECIAL
