"""What a :class:`~deimv2.infer.detector.Detector` returns: one :class:`Prediction` per image, with boxes in
pixels of the original image, and its conversions (drawn image, COCO rows, ``supervision.Detections``, dict).

Explained in notebook ``05_inference.ipynb``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from deimv2.data.images import load_image
from deimv2.infer.draw import draw_detections
from deimv2.infer.interop import to_detections


@dataclass
class Prediction:
    """Detections of one image, in original-image pixels, sorted by score (highest first)."""

    boxes: torch.Tensor  # (N, 4) xyxy float
    scores: torch.Tensor  # (N,)
    labels: torch.Tensor  # (N,) 0-based class index
    names: list  # N class names
    category_ids: list  # N category ids (the dataset's own ids when known)
    image_size: tuple  # (w, h)
    path: str | None = None
    image: Image.Image | None = field(default=None, repr=False)
    class_names: list | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.scores)

    def plot(self, image: Any = None, **kwargs: Any) -> Image.Image:
        """The image with boxes and "名称 0.87" labels (see :func:`deimv2.infer.draw.draw_detections`)."""
        if image is None:
            image = self.image
        if image is None and self.path is not None:
            image = load_image(self.path)
        if image is None:
            raise ValueError("这个 Prediction 没有保存原图，请把图片作为参数传入：pred.plot(image)。")
        names = self.class_names or {int(lab): n for lab, n in zip(self.labels.tolist(), self.names)}
        return draw_detections(image, self.boxes, self.labels, self.scores, names=names, **kwargs)

    def to_coco(self, image_id: int | str = 0) -> list[dict]:
        """COCO result dicts: ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` (+ ``category_name``)."""
        out = []
        for (x1, y1, x2, y2), s, cid, name in zip(
            self.boxes.tolist(), self.scores.tolist(), self.category_ids, self.names
        ):
            out.append(
                {
                    "image_id": image_id,
                    "category_id": int(cid),
                    "category_name": name,
                    "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                    "score": round(float(s), 5),
                }
            )
        return out

    def to_supervision(self) -> Any:
        """``supervision.Detections`` (xyxy, confidence, class_id, ``data["class_name"]``); needs the ``apps`` extra."""
        return to_detections(self.boxes, self.scores, self.labels, self.names)

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "image_size": list(self.image_size),
            "boxes": self.boxes.tolist(),
            "scores": self.scores.tolist(),
            "labels": self.labels.tolist(),
            "names": list(self.names),
            "category_ids": list(self.category_ids),
        }
