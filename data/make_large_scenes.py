"""Large aerial-style scenes with small objects, for tiled inference (notebook 10, benchmarks/tiling.py).

Four classes drawn as simple sprites — 飞机 (a cross of fuselage and wings), 船 (a pointed hull with a white
wake), 车辆 (a small car with a dark windscreen), 建筑 (a roof with a ridge line) — 12 to 32 pixels long,
rotated at random, pasted onto a textured ground (smooth colour noise, fields and roads). Writes:

* ``scenes/`` — ``--scenes`` images of ``--size``² pixels with ``_annotations.coco.json`` (the evaluation set);
* ``tiles/train`` and ``tiles/valid`` — ``--tile``² crops of other scenes at the objects' own scale (a dataset in
  the layout ``deimv2 train --data`` reads), so a detector can be trained for small objects.

The output is the same for the same ``--seed``. Needs only numpy and Pillow.

    python data/make_large_scenes.py --out 大图数据 --size 1024 --scenes 8
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CLASS_NAMES = ["飞机", "船", "车辆", "建筑"]
SIZE_RANGE = (12, 32)  # object length in pixels


def _ground(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """Smooth colour noise (terrain), a few fields and roads, fine grain."""
    coarse = rng.uniform(0, 1, (h // 64 + 2, w // 64 + 2, 3))
    base = np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC), np.float32)
    tint = np.array([95, 110, 80], np.float32) + rng.uniform(-20, 20, 3)
    img = tint + (base - 128) * 0.25
    ground = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(ground)
    for _ in range(int(w * h / 200_000) + 2):  # fields
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        fw, fh = int(rng.integers(60, 260)), int(rng.integers(60, 260))
        col = tuple(int(c) for c in tint + rng.uniform(-35, 35, 3))
        draw.rectangle([x, y, x + fw, y + fh], fill=col)
    for _ in range(int(w * h / 500_000) + 1):  # roads
        if rng.random() < 0.5:
            y = int(rng.integers(0, h))
            draw.line([0, y, w, y + int(rng.integers(-200, 200))], fill=(120, 118, 112), width=int(rng.integers(4, 9)))
        else:
            x = int(rng.integers(0, w))
            draw.line([x, 0, x + int(rng.integers(-200, 200)), h], fill=(120, 118, 112), width=int(rng.integers(4, 9)))
    grain = rng.normal(0, 6, (h, w, 3))
    return Image.fromarray(np.clip(np.asarray(ground, np.float32) + grain, 0, 255).astype(np.uint8))


def _sprite(cls: int, length: int, rng: np.random.Generator) -> Image.Image:
    """An RGBA sprite of class ``cls``, ``length`` pixels long (drawn 4x larger, then reduced: smooth edges)."""
    s = 4
    L = length * s
    W = max(int(L * (0.9 if cls in (0, 3) else 0.45)), 2 * s)
    im = Image.new("RGBA", (L, W), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    if cls == 0:  # plane: fuselage + wings + tail, light grey
        c = tuple(int(v) for v in (rng.uniform(200, 245),) * 3) + (255,)
        d.ellipse([0, W * 0.42, L, W * 0.58], fill=c)
        d.polygon([(L * 0.35, 0), (L * 0.55, 0), (L * 0.62, W), (L * 0.42, W)], fill=c)
        d.polygon([(L * 0.02, W * 0.3), (L * 0.12, W * 0.3), (L * 0.14, W * 0.7), (L * 0.04, W * 0.7)], fill=c)
    elif cls == 1:  # ship: pointed hull in a strong colour, white wake behind
        hull = [(180, 40, 40), (40, 60, 170), (30, 30, 30), (230, 230, 230)][int(rng.integers(4))]
        d.rectangle([0, W * 0.3, L * 0.25, W * 0.7], fill=(245, 245, 245, 170))
        d.polygon([(L * 0.2, 0), (L * 0.8, 0), (L, W / 2), (L * 0.8, W), (L * 0.2, W)], fill=hull + (255,))
        d.rectangle([L * 0.4, W * 0.25, L * 0.6, W * 0.75], fill=(200, 200, 200, 255))
    elif cls == 2:  # vehicle: bright car body, dark windscreen
        body = [(200, 30, 30), (240, 200, 40), (30, 90, 200), (240, 240, 240)][int(rng.integers(4))]
        d.rounded_rectangle([0, 0, L - 1, W - 1], radius=W // 4, fill=body + (255,))
        d.rectangle([L * 0.55, W * 0.15, L * 0.75, W * 0.85], fill=(25, 25, 35, 255))
    else:  # building: square roof, ridge line, shadow side
        roof = [(150, 70, 50), (170, 170, 175), (90, 90, 100)][int(rng.integers(3))]
        d.rectangle([0, 0, L - 1, W - 1], fill=roof + (255,))
        d.rectangle([0, W * 0.8, L - 1, W - 1], fill=(40, 40, 40, 255))
        d.line([0, W * 0.4, L, W * 0.4], fill=(60, 30, 20, 255), width=2 * s)
    im = im.rotate(float(rng.uniform(0, 360)), resample=Image.BICUBIC, expand=True)
    return im.resize((max(1, im.width // s), max(1, im.height // s)), Image.LANCZOS)


def make_scene(rng: np.random.Generator, w: int, h: int, n_objects: int) -> tuple[Image.Image, list]:
    """One scene and its boxes ``[(cls, x, y, bw, bh)]`` (tight boxes of the pasted sprites, no overlaps)."""
    img = _ground(rng, w, h)
    boxes: list = []
    for _ in range(n_objects * 5):
        if len(boxes) == n_objects:
            break
        cls = int(rng.integers(len(CLASS_NAMES)))
        sp = _sprite(cls, int(rng.integers(SIZE_RANGE[0], SIZE_RANGE[1] + 1)), rng)
        x0, y0, x1, y1 = sp.getchannel("A").point(lambda a: 255 if a > 60 else 0).getbbox() or (0, 0, 1, 1)
        x, y = int(rng.integers(0, w - sp.width)), int(rng.integers(0, h - sp.height))
        box = (cls, x + x0, y + y0, x1 - x0, y1 - y0)
        if any(_overlap(box, b) for b in boxes):
            continue
        img.paste(sp, (x, y), sp)
        boxes.append(box)
    img = img.filter(ImageFilter.GaussianBlur(0.4))
    return img, boxes


def _overlap(a, b, gap: int = 3) -> bool:
    return not (
        a[1] + a[3] + gap < b[1] or b[1] + b[3] + gap < a[1] or a[2] + a[4] + gap < b[2] or b[2] + b[4] + gap < a[2]
    )


def _write(folder: Path, items: list[tuple[str, Image.Image, list]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i, (name, img, boxes) in enumerate(items, 1):
        img.save(folder / name, quality=95)
        images.append({"id": i, "file_name": name, "width": img.width, "height": img.height})
        for cls, x, y, bw, bh in boxes:
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": cls,
                    "bbox": [x, y, bw, bh],
                    "area": bw * bh,
                    "iscrowd": 0,
                }
            )
    cats = [{"id": i, "name": n} for i, n in enumerate(CLASS_NAMES)]
    ann = folder / "_annotations.coco.json"
    ann.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}, ensure_ascii=False), "utf-8")
    return ann


def _crop(img: Image.Image, boxes: list, x: int, y: int, t: int) -> tuple[Image.Image, list]:
    """A ``t``² crop and the boxes whose centre lies inside (clipped to the crop)."""
    out = []
    for cls, bx, by, bw, bh in boxes:
        cx, cy = bx + bw / 2, by + bh / 2
        if x <= cx < x + t and y <= cy < y + t:
            x1, y1 = max(bx, x), max(by, y)
            x2, y2 = min(bx + bw, x + t), min(by + bh, y + t)
            out.append((cls, x1 - x, y1 - y, x2 - x1, y2 - y1))
    return img.crop((x, y, x + t, y + t)), out


def make_dataset(
    out: str | Path,
    size: int = 1024,
    scenes: int = 8,
    tile: int = 256,
    train_scenes: int = 20,
    tiles_per_scene: int = 8,
    density: float = 80.0,
    seed: int = 0,
) -> dict:
    """Write the evaluation scenes and the tile dataset; returns their folders. ``density``: objects per 1000²."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    n = max(1, int(round(density * size * size / 1e6)))

    def scene(k):
        return make_scene(rng, size, size, int(rng.integers(n // 2, n + 1)))

    evals = [(f"scene_{k:03d}.jpg", *scene(k)) for k in range(scenes)]
    _write(out / "scenes", evals)
    train, valid = [], []
    pick = random.Random(seed)
    for k in range(train_scenes):
        img, boxes = scene(k)
        for j in range(tiles_per_scene):
            x, y = pick.randrange(0, size - tile + 1), pick.randrange(0, size - tile + 1)
            crop, b = _crop(img, boxes, x, y, tile)
            (valid if k == train_scenes - 1 else train).append((f"tile_{k:03d}_{j}.jpg", crop, b))
    _write(out / "tiles" / "train", train)
    _write(out / "tiles" / "valid", valid)
    return {"scenes": out / "scenes", "tiles": out / "tiles", "objects_per_scene": n}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="large_scenes")
    ap.add_argument("--size", type=int, default=1024, help="边长（像素）")
    ap.add_argument("--scenes", type=int, default=8, help="评估用大图数量")
    ap.add_argument("--tile", type=int, default=256, help="训练小块边长")
    ap.add_argument("--train-scenes", type=int, default=20)
    ap.add_argument("--tiles-per-scene", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    info = make_dataset(a.out, a.size, a.scenes, a.tile, a.train_scenes, a.tiles_per_scene, seed=a.seed)
    print(f"大图：{info['scenes']}；训练小块：{info['tiles']}（每张大图约 {info['objects_per_scene']} 个目标）")


if __name__ == "__main__":
    main()
