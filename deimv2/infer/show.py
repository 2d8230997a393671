"""Notebook helper: a grid of a detector's predictions (solid) next to the ground truth (dashed) of a COCO json.

Explained in notebook ``06_evaluate.ipynb``.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from deimv2.data.layout import read_coco_json
from deimv2.errors import DatasetError
from deimv2.infer.draw import show_grid

__all__ = ["show_predictions"]


def show_predictions(
    detector,
    ann_file: str | Path,
    img_folder: str | Path | None = None,
    images: Iterable[str] | None = None,
    num_images: int = 8,
    ncols: int = 4,
    conf: float | None = None,
    seed: int = 0,
):
    """Grid figure: predictions (solid) vs ground truth (dashed) for images of a COCO json.

    ``images``: file names as in the json; default ``num_images`` random ones (fixed ``seed``).
    ``img_folder`` defaults to the json's folder. Labels of GT follow the detector's category ids.
    """
    ann_file = Path(ann_file)
    data = read_coco_json(ann_file)
    folder = Path(img_folder) if img_folder is not None else ann_file.parent
    by_name = {im["file_name"]: im for im in data["images"]}
    if images is None:
        names = sorted(by_name)
        names = random.Random(seed).sample(names, min(num_images, len(names)))
    else:
        names = list(images)
        missing = [n for n in names if n not in by_name]
        if missing:
            raise DatasetError(f"这些图片不在标注文件 {ann_file} 中：{missing[:5]}。请使用 JSON 里 file_name 的写法。")
    cat_to_label = {c: i for i, c in enumerate(detector.category_ids)}
    unknown = sorted({c["id"] for c in data["categories"]} - set(cat_to_label))
    if unknown:  # the detector's ids do not describe this file: fall back to its own sorted ids
        cat_to_label = {c: i for i, c in enumerate(sorted(c["id"] for c in data["categories"]))}
    anns: dict[int, list] = {}
    for a in data["annotations"]:
        anns.setdefault(a["image_id"], []).append(a)
    preds = detector.predict([folder / n for n in names], conf=conf)
    gts = []
    for n in names:
        rows = [a for a in anns.get(by_name[n]["id"], []) if a["category_id"] in cat_to_label]
        boxes = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in rows)]
        gts.append(
            {
                "boxes": np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
                "labels": np.asarray([cat_to_label[a["category_id"]] for a in rows], dtype=np.int64),
            }
        )
    pred_dicts = [{"boxes": p.boxes, "labels": p.labels, "scores": p.scores} for p in preds]
    return show_grid(
        [p.image for p in preds],
        pred_dicts,
        gts,
        names=detector.class_names,
        ncols=ncols,
        score_threshold=0.0,
        titles=[Path(n).name for n in names],
    )
