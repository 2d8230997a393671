"""Tiny COCO datasets made on the fly for the tests (nothing is downloaded)."""

import json
import random
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from deimv2.models.build import build_model

COLORS = [(220, 40, 40), (40, 200, 60), (40, 80, 220)]


#: train Atto on a CPU in seconds: 96² input, 30 queries, no data-loader workers (a tiny set, from scratch)
TINY_TRAIN = {
    "HGNetv2.pretrained": False,
    "eval_spatial_size": [96, 96],
    "num_workers": 0,
    "val_dataloader.num_workers": 0,
    "val_dataloader.total_batch_size": 4,
    "DEIMTransformer.num_queries": 30,
    "PostProcessor.num_top_queries": 30,
}


def make_coco_dataset(
    root: Path,
    n_train: int = 8,
    n_val: int = 4,
    size: int = 96,
    one_based: bool = False,
    seed: int = 0,
    colors: list[tuple[int, int, int]] | None = None,
    names: list[str] | None = None,
    max_objects: int = 2,
    ellipses: bool = False,
) -> Path:
    """Coloured rectangles on grey: class = colour. Seed layout (train/, valid/ with _annotations.coco.json).

    ``colors``/``names``: other classes (``names`` may list more categories than colours are drawn, e.g. 80 like
    COCO); ``ellipses``: half the objects are ellipses; ``max_objects`` per image."""
    colors = colors or COLORS
    names = names or ["红色", "绿色", "蓝色"]
    rng = random.Random(seed)
    base = 1 if one_based else 0
    cats = [{"id": base + i, "name": n} for i, n in enumerate(names)]
    for split, n in (("train", n_train), ("valid", n_val)):
        d = root / split
        d.mkdir(parents=True, exist_ok=True)
        images, anns = [], []
        for i in range(n):
            img = Image.new("RGB", (size, size), (128, 128, 128))
            draw = ImageDraw.Draw(img)
            for _ in range(rng.randint(1, max_objects)):
                c = rng.randrange(len(colors))
                w, h = rng.randint(size // 4, size // 2), rng.randint(size // 4, size // 2)
                x, y = rng.randint(0, size - w - 1), rng.randint(0, size - h - 1)
                shape = draw.ellipse if ellipses and rng.random() < 0.5 else draw.rectangle
                shape([x, y, x + w, y + h], fill=colors[c])
                box = [x, y, w + 1, h + 1]
                anns.append(
                    {
                        "id": len(anns) + 1,
                        "image_id": i + 1,
                        "category_id": base + c,
                        "bbox": box,
                        "area": box[2] * box[3],
                        "iscrowd": 0,
                    }
                )
            name = f"图片 {i}.jpg"
            img.save(d / name, quality=95)
            images.append({"id": i + 1, "file_name": name, "width": size, "height": size})
        (d / "_annotations.coco.json").write_text(
            json.dumps({"images": images, "annotations": anns, "categories": cats}, ensure_ascii=False),
            encoding="utf-8",
        )
    return root


def calibrated_model(
    variant: str = "atto", num_classes: int = 80, seed: int = 0, size: int = 160, batch: int = 4
) -> torch.nn.Module:
    """Random ``variant`` whose BN statistics are measured on ``batch`` random images.

    With default BN statistics the random features are ~1e-4 and every query scores the same, so the
    top-k order is decided by float noise; measured statistics give distinct scores, like a trained model.
    """
    torch.manual_seed(seed)
    # below 160 px Atto's feature maps have fewer positions than its 100 queries: TINY_TRAIN's query counts
    small = {k: v for k, v in TINY_TRAIN.items() if "queries" in k} if size < 160 else {}
    model = build_model(variant, num_classes=num_classes, eval_spatial_size=[size, size], overrides=small)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None
            m.reset_running_stats()
    model.train()
    with torch.no_grad():
        model.encoder(model.backbone(torch.rand(batch, 3, size, size)))
    return model.eval()


def calibrated_atto(num_classes: int = 80, seed: int = 0, size: int = 160) -> torch.nn.Module:
    """Random Atto with measured BN statistics (see :func:`calibrated_model`)."""
    return calibrated_model("atto", num_classes, seed, size)


def make_yolo_dataset(
    root: Path, names=("螺丝", "螺母", "垫片"), n_train: int = 12, n_val: int = 6, size: int = 96, seed: int = 0
) -> Path:
    """A YOLO dataset (Roboflow layout + ``data.yaml``) of coloured rectangles, class = colour; returns the YAML."""
    rng = random.Random(seed)
    colors = [(220, 40, 40), (40, 200, 60), (40, 80, 220), (230, 200, 30), (150, 50, 200)][: len(names)]
    for split, n in (("train", n_train), ("valid", n_val)):
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "labels").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = Image.new("RGB", (size, size), (128, 128, 128))
            draw = ImageDraw.Draw(img)
            lines = []
            for k in range(rng.randint(1, 2)):
                c = (i + k) % len(names)  # every class in every split
                w, h = rng.randint(size // 4, size // 2), rng.randint(size // 4, size // 2)
                x, y = rng.randint(0, size - w - 1), rng.randint(0, size - h - 1)
                draw.rectangle([x, y, x + w, y + h], fill=colors[c])
                lines.append(f"{c} {(x + w / 2) / size:.6f} {(y + h / 2) / size:.6f} {w / size:.6f} {h / size:.6f}")
            img.save(root / split / "images" / f"零件 {i}.jpg", quality=95)
            (root / split / "labels" / f"零件 {i}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    yaml_path = root / "data.yaml"
    yaml_path.write_text(
        f"train: train/images\nval: valid/images\nnc: {len(names)}\nnames: {json.dumps(list(names), ensure_ascii=False)}\n",
        encoding="utf-8",
    )
    return yaml_path
