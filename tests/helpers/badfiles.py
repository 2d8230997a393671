"""Makers of the realistic bad (and odd-but-fine) inputs used by ``test_bad_inputs.py``. Everything is made on the fly."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
from pathlib import Path

import numpy as np
from PIL import Image

#: tiny training settings for ``deimv2 train -u ...`` (CPU, seconds)
TINY_U = [
    "HGNetv2.pretrained=false",
    "eval_spatial_size=[64,64]",
    "batch_size=4",
    "num_workers=0",
    "val_dataloader.num_workers=0",
    "val_dataloader.total_batch_size=4",
    "DEIMTransformer.num_queries=10",
    "PostProcessor.num_top_queries=10",
]


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``deimv2.cli.main(argv)`` -> (exit status, stdout, stderr)."""
    from deimv2.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def snapshot(root: Path) -> dict[str, str]:
    """relative path -> sha1 of every file under ``root`` (to prove nothing written before was lost)."""
    return {
        str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def save_image(path: Path, size=(64, 48), mode: str = "RGB", fmt: str | None = None, color=(200, 60, 60), **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color if mode == "RGB" else 0).save(path, fmt, **kw)
    return path


# ---------------------------------------------------------------------------------------------- YOLO
def yolo_flat(
    root: Path,
    labels: dict[str, str] | None = None,
    names=("猫", "狗"),
    images=("a.jpg", "b.jpg"),
    raw_label_bytes: dict[str, bytes] | None = None,
) -> Path:
    """Flat YOLO folder: ``images/`` + ``labels/`` + ``classes.txt``."""
    for name in images:
        save_image(root / "images" / name)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    for stem, text in (labels if labels is not None else {"a": "0 0.5 0.5 0.25 0.25\n"}).items():
        (root / "labels" / f"{stem}.txt").write_text(text, encoding="utf-8")
    for stem, data in (raw_label_bytes or {}).items():
        (root / "labels" / f"{stem}.txt").write_bytes(data)
    (root / "classes.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    return root


def yolo_ultralytics(root: Path, yaml_bytes: bytes, label: str = "1 0.5 0.5 0.5 0.5\n") -> Path:
    """``images/{train,val}`` + ``labels/{train,val}`` + a data.yaml given as raw bytes (any encoding)."""
    for split in ("train", "val"):
        save_image(root / "images" / split / "x.jpg")
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split / "x.txt").write_text(label, encoding="utf-8")
    (root / "data.yaml").write_bytes(yaml_bytes)
    return root


def yolo_nested(root: Path) -> Path:
    """Roboflow layout with images in sub-folders and an upper-case extension."""
    for split in ("train", "valid"):
        save_image(root / split / "images" / "子目录" / "深一层" / "P1.JPG")
        lab = root / split / "labels" / "子目录" / "深一层"
        lab.mkdir(parents=True, exist_ok=True)
        (lab / "P1.txt").write_text("0 0.5 0.5 0.5 0.5\n", encoding="utf-8")
    (root / "data.yaml").write_text("names: [零件]\nnc: 1\n", encoding="utf-8")
    return root


def coco_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------- COCO
def tiny_coco(root: Path, n_train: int = 4, n_val: int = 2) -> Path:
    from helpers.tinydata import make_coco_dataset

    return make_coco_dataset(root, n_train=n_train, n_val=n_val, size=64)


def edit_coco(root: Path, edit, split: str = "train") -> Path:
    """Apply ``edit(data)`` to ``root/split/_annotations.coco.json`` (NaN/inf written as JSON does: NaN, Infinity)."""
    path = root / split / "_annotations.coco.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def set_bbox(bbox, ann_index: int = 0):
    def edit(data):
        data["annotations"][ann_index]["bbox"] = bbox

    return edit


# ---------------------------------------------------------------------------------------------- images for predict
def odd_images(folder: Path) -> dict[str, Path]:
    """Images that must just work: EXIF-rotated, 16-bit PNG, CMYK JPEG, 1-pixel, huge."""
    folder.mkdir(parents=True, exist_ok=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° when displayed
    out = {
        "exif": save_image(folder / "旋转.jpg", size=(60, 40), exif=exif.tobytes()),
        "png16": folder / "16位.png",
        "cmyk": save_image(folder / "cmyk.jpg", size=(40, 30), mode="CMYK"),
        "one_pixel": save_image(folder / "1像素.png", size=(1, 1)),
        "huge": save_image(folder / "巨大.png", size=(6000, 4000)),
    }
    Image.fromarray(np.arange(48 * 64, dtype=np.uint16).reshape(48, 64) * 20).save(out["png16"])
    return out


def coco_of_images(root: Path, files: list[Path]) -> Path:
    """``root/train`` and ``root/valid`` COCO splits over ``files`` (sizes as displayed, one box per image)."""
    from deimv2.data.images import image_size

    for split in ("train", "valid"):
        images, anns = [], []
        for i, f in enumerate(files, 1):
            w, h = image_size(f)
            (root / split).mkdir(parents=True, exist_ok=True)
            (root / split / f.name).write_bytes(f.read_bytes())
            images.append({"id": i, "file_name": f.name, "width": w, "height": h})
            anns.append(
                {
                    "id": i,
                    "image_id": i,
                    "category_id": 0,
                    "bbox": [0, 0, max(w / 2, 0.5), max(h / 2, 0.5)],
                    "area": w * h / 4,
                    "iscrowd": 0,
                }
            )
        (root / split / "_annotations.coco.json").write_text(
            json.dumps(
                {"images": images, "annotations": anns, "categories": [{"id": 0, "name": "物体"}]}, ensure_ascii=False
            ),
            encoding="utf-8",
        )
    return root


def random_checkpoint(path: Path, variant: str = "atto", num_classes: int = 3, size: int = 160) -> Path:
    """A deimv2 training checkpoint (random weights, config and class names inside) -- no training needed."""
    import torch

    from deimv2.engine.checkpoint import make_checkpoint, save_checkpoint
    from deimv2.models.build import build_model

    torch.manual_seed(0)
    overrides = {"HGNetv2.pretrained": False}
    if size < 160:  # too few feature-map positions for the default queries: TINY_U's query counts
        overrides.update({"DEIMTransformer.num_queries": 10, "PostProcessor.num_top_queries": 10})
    model = build_model(variant, num_classes=num_classes, eval_spatial_size=[size, size], overrides=overrides)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    cfg = model.config
    ckpt = make_checkpoint(
        model=model,
        epoch=0,
        global_step=1,
        best_ap=0.0,
        config={**cfg.raw, "__name__": cfg.name},
        class_names=[f"类{i}" for i in range(num_classes)],
        category_ids=list(range(num_classes)),
        optimizer=opt,
    )
    return save_checkpoint(ckpt, path)


CHINESE = re.compile(r"[\u4e00-\u9fff]")


def expect_cli(argv: list, code: int, *needles: str, chinese_in: str = "text") -> str:
    """Run the CLI, assert the exit status, no traceback, a Chinese message on failure (in ``err`` or the whole
    ``text``), and every needle; returns stdout + stderr."""
    got, out, err = run_cli(argv)
    text = out + err
    assert got == code, f"exit {got}, expected {code}\n{text}"
    assert "Traceback" not in text and "内部错误" not in text, text
    if code:
        assert CHINESE.search(err if chinese_in == "err" else text), text
    for needle in needles:
        assert str(needle) in text, f"{needle!r} not in:\n{text}"
    return text
