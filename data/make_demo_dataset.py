"""Build the bundled demo detection dataset ``deimv2/assets/demo_yolo/`` (YOLO format, package data).

How to run (scikit-image is a dev-time tool only, it is NOT a dependency of deimv2):

    pip install scikit-image && python data/make_demo_dataset.py

Objects are cut out of real, public-domain / CC0 photos shipped inside the scikit-image wheel
(see data/README.md for sources and licences) and pasted, with random scale, aspect ratio, flip,
small rotation and colour jitter, onto random crops of real background photos. The boxes are the
exact bounding boxes of the pasted alpha masks. The output is deterministic for a given --seed.
"""

from __future__ import annotations

import argparse
import io
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter
from scipy import ndimage as ndi
from skimage import data as skdata
from skimage import draw, filters, segmentation

CLASS_NAMES = ["猫", "咖啡杯", "硬币", "火箭"]
SIZE = 320
OVERLAP_MAX = 0.3  # max fraction of any box covered by another


def _feather(mask: np.ndarray, radius: float = 1.5) -> np.ndarray:
    img = Image.fromarray((mask > 0).astype(np.uint8) * 255).filter(ImageFilter.GaussianBlur(radius))
    return np.asarray(img, dtype=np.float32) / 255.0


def _ellipse(h: int, w: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _templates() -> dict[int, list[tuple[np.ndarray, np.ndarray]]]:
    """Per class: a list of (RGB uint8 image, alpha float mask) cut-outs."""
    out: dict[int, list] = {0: [], 1: [], 2: [], 3: []}
    # 猫: the head of "chelsea" (elliptical cut-out).
    cat = skdata.chelsea()[0:300, 15:405]
    out[0].append((cat, _feather(_ellipse(300, 390, 165, 195, 150, 200), 3)))
    # 咖啡杯: cup + saucer of "coffee" (union of two ellipses) and the cup alone.
    cof = skdata.coffee()
    h, w = 392 - 10, 482 - 72
    m = _ellipse(h, w, 235, 206, 147, 206) | _ellipse(h, w, 120, 218, 112, 125)
    out[1].append((cof[10:392, 72:482], _feather(m, 2)))
    cup = cof[12:330, 165:425]
    m = _ellipse(318, 260, 95, 125, 88, 122) | (np.mgrid[0:318, 0:260][0] > 95) & _ellipse(318, 260, 160, 125, 160, 125)
    out[1].append((cup, _feather(m, 2)))
    # 硬币: the 24 coins of "coins", segmented with the classic sobel + watershed recipe.
    coins = skdata.coins()
    markers = np.zeros_like(coins)
    markers[coins < 30], markers[coins > 150] = 1, 2
    filled = ndi.binary_fill_holes(segmentation.watershed(filters.sobel(coins), markers) - 1)
    lab, _ = ndi.label(filled)
    for i, sl in enumerate(ndi.find_objects(lab), 1):
        ys, xs = sl
        if (ys.stop - ys.start) * (xs.stop - xs.start) < 600:
            continue
        ys, xs = slice(max(ys.start - 2, 0), ys.stop + 2), slice(max(xs.start - 2, 0), xs.stop + 2)
        rgb = np.repeat(coins[ys, xs, None], 3, axis=2)
        out[2].append((rgb, _feather(lab[ys, xs] == i, 1)))
    # 火箭: Falcon 9 of "rocket" (bright pixels) and the shuttle model beside the astronaut.
    rk = skdata.rocket()[126:356, 298:346]
    not_sky = ndi.binary_closing(rk[..., 2].astype(int) - rk[..., 0] < 30, iterations=2)
    out[3].append((rk, _feather(_largest(not_sky), 1)))
    shuttle = skdata.astronaut()[0:290, 352:472]
    out[3].append((shuttle, _feather(_shuttle_mask(shuttle.shape[:2]), 1)))
    return out


def _largest(mask: np.ndarray) -> np.ndarray:
    lab, n = ndi.label(mask)
    biggest = 1 + int(np.argmax(ndi.sum(mask, lab, range(1, n + 1))))
    return ndi.binary_fill_holes(lab == biggest)


# Outline of the shuttle model (x, y) in the crop astronaut()[0:290, 352:472], traced by hand.
_SHUTTLE = [
    (37, 38),
    (48, 12),
    (55, 0),
    (72, 0),
    (80, 12),
    (83, 40),
    (88, 38),
    (94, 50),
    (95, 190),
    (105, 215),
    (108, 230),
    (100, 245),
    (110, 285),
    (40, 289),
    (30, 245),
    (2, 230),
    (5, 212),
    (25, 195),
    (28, 110),
    (32, 80),
    (32, 50),
]


def _shuttle_mask(shape: tuple[int, int]) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    rr, cc = draw.polygon([p[1] for p in _SHUTTLE], [p[0] for p in _SHUTTLE], shape)
    m[rr, cc] = True
    return m


def _backgrounds() -> list[np.ndarray]:
    """Real photos used as backgrounds (grey textures get a colour tint at sampling time)."""
    gray = [skdata.grass(), skdata.gravel(), skdata.brick(), skdata.camera()]
    bgs = [np.repeat(g[..., None], 3, axis=2) for g in gray]
    bgs.append(skdata.hubble_deep_field())
    bgs.append(skdata.coffee()[0:150, 430:600])  # wooden table
    bgs.append(skdata.rocket()[0:120, 90:290])  # evening sky with towers
    bgs.append(skdata.astronaut()[300:512, 0:120])  # flag and suit fabric
    return bgs


def _sample_background(rng: np.random.Generator, bgs: list[np.ndarray]) -> Image.Image:
    bg = bgs[rng.integers(len(bgs))]
    h, w = bg.shape[:2]
    side = int(rng.uniform(0.45, 1.0) * min(h, w))
    y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    crop = bg[y : y + side, x : x + side].astype(np.float32)
    if np.allclose(crop[..., 0], crop[..., 1]):  # grey texture: random tint
        crop = crop * rng.uniform(0.6, 1.2, size=3)[None, None, :]
    img = Image.fromarray(np.clip(crop, 0, 255).astype(np.uint8)).resize((SIZE, SIZE), Image.BILINEAR)
    return img.transpose(Image.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else img


def _jitter_object(rng: np.random.Generator, rgb: np.ndarray, alpha: np.ndarray):
    """Random scale/aspect/flip/rotation/colour. Returns (RGB image, alpha image)."""
    img = rgb.astype(np.float32)
    img = img * rng.uniform(0.7, 1.3) + rng.uniform(-25, 25)  # brightness / contrast
    img = img * rng.uniform(0.85, 1.15, size=3)[None, None, :]  # colour cast
    grey = img.mean(axis=2, keepdims=True)
    img = grey + (img - grey) * rng.uniform(0.6, 1.4)  # saturation
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    a = Image.fromarray((alpha * 255).astype(np.uint8))
    h, w = alpha.shape
    longest = rng.uniform(22, 190) if rng.random() < 0.85 else rng.uniform(12, 30)
    aspect = np.exp(rng.uniform(-0.25, 0.25))
    scale = longest / max(h, w)
    nw, nh = max(4, round(w * scale * aspect)), max(4, round(h * scale / aspect))
    im, a = im.resize((nw, nh), Image.BILINEAR), a.resize((nw, nh), Image.BILINEAR)
    if rng.random() < 0.5:
        im, a = im.transpose(Image.FLIP_LEFT_RIGHT), a.transpose(Image.FLIP_LEFT_RIGHT)
    angle = rng.uniform(-15, 15)
    im = im.rotate(angle, Image.BILINEAR, expand=True)
    a = a.rotate(angle, Image.BILINEAR, expand=True)
    return im, a


def _mask_box(alpha: np.ndarray) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(alpha >= 128)
    if len(xs) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _covered(a: tuple, b: tuple) -> float:
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return max(inter / ((a[2] - a[0]) * (a[3] - a[1])), inter / ((b[2] - b[0]) * (b[3] - b[1])))


def make_image(rng: np.random.Generator, templates, bgs) -> tuple[Image.Image, list[tuple[int, tuple]]]:
    """One composite: a background crop from ``bgs`` with 1–6 objects of ``templates`` (class -> cut-outs)."""
    canvas = _sample_background(rng, bgs)
    objects: list[tuple[int, tuple]] = []
    for _ in range(int(rng.integers(1, 7))):
        cls = int(rng.integers(len(templates)))
        rgb, alpha = templates[cls][rng.integers(len(templates[cls]))]
        for _try in range(30):
            im, a = _jitter_object(rng, rgb, alpha)
            box = _mask_box(np.asarray(a))
            bw, bh = box[2] - box[0], box[3] - box[1]
            if bw >= SIZE or bh >= SIZE:
                continue
            x = int(rng.integers(-box[0], SIZE - box[2] + 1))
            y = int(rng.integers(-box[1], SIZE - box[3] + 1))
            placed = (box[0] + x, box[1] + y, box[2] + x, box[3] + y)
            if all(_covered(placed, o[1]) <= OVERLAP_MAX for o in objects):
                canvas.paste(im, (x, y), a)
                objects.append((cls, placed))
                break
    if rng.random() < 0.3:
        canvas = canvas.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    return canvas, objects


def build(
    out: Path,
    n_train: int,
    n_valid: int,
    seed: int,
    *,
    templates: dict | None = None,
    bgs: list[np.ndarray] | None = None,
    class_names: list[str] | None = None,
    prefix: str = "demo",
    header: str = "# DEIMv2 教程示例数据集（由 data/make_demo_dataset.py 生成）",
) -> None:
    """Write ``out/{train,valid}/{images,labels}`` and ``out/data.yaml``. ``templates``/``bgs``/``class_names``
    default to the demo's (``data/make_photo2_dataset.py`` passes its own); file names are ``<prefix>_<split>_<k>``."""
    templates = _templates() if templates is None else templates
    bgs = _backgrounds() if bgs is None else bgs
    class_names = CLASS_NAMES if class_names is None else class_names
    rng = np.random.default_rng(seed)
    if out.exists():
        shutil.rmtree(out)
    for split, n in (("train", n_train), ("valid", n_valid)):
        (out / split / "images").mkdir(parents=True)
        (out / split / "labels").mkdir(parents=True)
        for k in range(n):
            img, objects = make_image(rng, templates, bgs)
            name = f"{prefix}_{split}_{k:04d}"
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=85)
            (out / split / "images" / f"{name}.jpg").write_bytes(buf.getvalue())
            lines = [
                f"{c} {(b[0] + b[2]) / 2 / SIZE:.6f} {(b[1] + b[3]) / 2 / SIZE:.6f} "
                f"{(b[2] - b[0]) / SIZE:.6f} {(b[3] - b[1]) / SIZE:.6f}"
                for c, b in objects
            ]
            (out / split / "labels" / f"{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    names = ", ".join(f"'{n}'" for n in class_names)
    (out / "data.yaml").write_text(
        f"{header}\ntrain: train/images\nval: valid/images\n\nnc: {len(class_names)}\nnames: [{names}]\n",
        encoding="utf-8",
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "deimv2" / "assets" / "demo_yolo")
    ap.add_argument("--train", type=int, default=160)
    ap.add_argument("--valid", type=int, default=48)
    ap.add_argument("--seed", type=int, default=2025)
    args = ap.parse_args()
    build(args.out, args.train, args.valid, args.seed)
    print(f"已生成 {args.out}：train {args.train} 张，valid {args.valid} 张，类别 {CLASS_NAMES}")


if __name__ == "__main__":
    main()
