"""COCO-format detection dataset and class helpers (layouts and the JSON reader: :mod:`deimv2.data.layout`).

Labels are contiguous and 0-based: the file's own ``categories`` sorted by id get labels
0..K-1 (so 0-based and 1-based files give the same labels). ``label_to_category_id`` is a
list: ``label_to_category_id[label]`` is the file's category id (to map predictions back).
``remap_mscoco_category=True`` uses the standard 80-class COCO mapping instead (official for COCO).
Explained in notebook 02_convert.ipynb.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import torch
import torch.utils.data
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO
from torchvision import tv_tensors

from deimv2.data.images import load_image
from deimv2.data.layout import listing, read_coco_json
from deimv2.data.mscoco import MSCOCO_CATEGORY_IDS, MSCOCO_CATEGORY_NAMES
from deimv2.data.validate import bbox_problem, coco_image_path
from deimv2.errors import DatasetError
from deimv2.models.postprocess import MSCOCO_CATEGORY_TO_LABEL

__all__ = [
    "CocoDetection",
    "dataset_num_classes",
    "dataset_class_names",
    "MSCOCO_CATEGORY_IDS",
    "MSCOCO_CATEGORY_NAMES",
    "MSCOCO_CATEGORY_TO_LABEL",
]


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _category_mapping(categories, remap_mscoco_category: bool, path):
    """-> (category_id -> label dict, names by label, category ids by label)."""
    own_names = {c["id"]: str(c.get("name", c["id"])) for c in categories}
    if remap_mscoco_category:
        unknown = sorted(set(own_names) - set(MSCOCO_CATEGORY_IDS))
        if unknown:
            raise DatasetError(
                f"标注文件 {path} 含有标准 COCO 80 类之外的类别 id {unknown}，"
                "不能使用 remap_mscoco_category=True。\n修复：自定义数据集请设 remap_mscoco_category=False。"
            )
        names = [own_names.get(cid, MSCOCO_CATEGORY_NAMES[i]) for i, cid in enumerate(MSCOCO_CATEGORY_IDS)]
        return dict(MSCOCO_CATEGORY_TO_LABEL), names, list(MSCOCO_CATEGORY_IDS)
    ids = sorted(own_names)
    return {cid: i for i, cid in enumerate(ids)}, [own_names[c] for c in ids], list(ids)


def dataset_num_classes(ann_file, remap_mscoco_category: bool = False) -> int:
    """Number of classes the model needs for this annotation file."""
    return len(dataset_class_names(ann_file, remap_mscoco_category))


def dataset_class_names(ann_file, remap_mscoco_category: bool = False) -> list[str]:
    """Class names ordered by label (the file's categories sorted by id)."""
    data = read_coco_json(ann_file)
    return _category_mapping(data["categories"], remap_mscoco_category, Path(ann_file))[1]


class CocoDetection(torch.utils.data.Dataset):
    """COCO detection dataset returning ``(image, target)`` like the official one.

    target: boxes (tv_tensors.BoundingBoxes, XYXY pixels), labels (int64, 0-based), image_id [1],
    area, iscrowd, orig_size [w, h], idx [1]; masks (tv_tensors.Mask) if ``return_masks``.
    Crowd annotations (iscrowd=1) are left out of training targets (official behaviour).
    """

    def __init__(self, img_folder, ann_file, transforms=None, return_masks=False, remap_mscoco_category=False) -> None:
        super().__init__()
        self.img_folder = Path(img_folder)
        self.ann_file = Path(ann_file)
        self.transforms = transforms
        self.return_masks = return_masks
        self.remap_mscoco_category = remap_mscoco_category
        self._epoch = -1

        data = read_coco_json(self.ann_file)
        self.categories = sorted(data["categories"], key=lambda c: c["id"])
        self.category_to_label, self.category_names, self.label_to_category_id = _category_mapping(
            self.categories, remap_mscoco_category, self.ann_file
        )
        self._records = self._index(data)
        self.ids = [r["id"] for r in self._records]
        self._check_files()
        self._coco = None

    # ---------------------------------------------------------------- construction
    def _index(self, data) -> list[dict]:
        """One record per image, by image id: ``id``, ``file_name``, ``size`` and the arrays ``boxes`` (xyxy),
        ``labels`` and ``area`` (plus ``segmentation`` with ``return_masks``)."""
        records = _image_records(data["images"], self.ann_file)
        self._attach_annotations(records, data["annotations"])
        return [self._as_arrays(records.pop(image_id)) for image_id in sorted(records)]

    def _attach_annotations(self, records: dict, annotations: list) -> None:
        """Each annotation onto its image's ``anns`` as ``(x0, y0, x1, y1, label, area, segmentation)``; crowd boxes
        are only counted (``num_crowd``); unknown categories or images and invalid boxes raise, all listed."""
        bad_cat, bad_img, bad_box = {}, [], []
        self.num_crowd = 0  # iscrowd=1 boxes: ignored by training and COCO evaluation (build_data says so)
        for ann in annotations:
            rec = records.get(ann.get("image_id")) if isinstance(ann, dict) else None
            if rec is None:
                bad_img.append(
                    f"标注 id={ann.get('id') if isinstance(ann, dict) else ann}, "
                    f"image_id={ann.get('image_id') if isinstance(ann, dict) else '?'}"
                )
                continue
            cid = ann.get("category_id")
            if cid not in self.category_to_label:
                bad_cat[cid] = bad_cat.get(cid, 0) + 1
                continue
            bbox = ann.get("bbox")
            problem = bbox_problem(bbox, rec["size"])  # the one policy (deimv2.data.validate): an error
            if problem:
                bad_box.append(f"标注 id={ann.get('id')}（图片 {rec['file_name']}）：{problem}，bbox={bbox!r}")
                continue
            if ann.get("iscrowd", 0):
                self.num_crowd += 1
                continue
            x, y, w, h = (float(v) for v in bbox)
            area = ann.get("area")
            area = float(area) if isinstance(area, (int, float)) and not isinstance(area, bool) else w * h
            rec["anns"].append((x, y, x + w, y + h, self.category_to_label[cid], area, ann.get("segmentation")))
        _raise_bad_annotations(self.ann_file, sorted(self.category_to_label), bad_cat, bad_img, bad_box)

    def _as_arrays(self, rec: dict) -> dict:
        anns = rec.pop("anns")
        rec["boxes"] = np.array([a[:4] for a in anns], dtype=np.float32).reshape(-1, 4)
        rec["labels"] = np.array([a[4] for a in anns], dtype=np.int64)
        rec["area"] = np.array([a[5] for a in anns], dtype=np.float32)
        if self.return_masks:
            rec["segmentation"] = [a[6] for a in anns]
        return rec

    def _resolve(self, file_name: str) -> Path:
        return coco_image_path(self.img_folder, file_name)  # the doctor's rule too (Windows backslashes …)

    def _check_files(self) -> None:
        if not self.img_folder.is_dir():
            raise DatasetError(
                f"图片目录 {self.img_folder} 不存在（标注文件 {self.ann_file}）。\n修复：检查 img_folder 路径。"
            )
        missing = []
        for rec in self._records:
            rec["path"] = self._resolve(rec["file_name"])
            if not rec["path"].is_file():
                missing.append(str(rec["path"]))
        if missing:
            raise DatasetError(
                f"标注文件 {self.ann_file} 中有 {len(missing)} 张图片在 {self.img_folder} 下找不到：\n"
                f"{listing(missing)}\n"
                "修复：把图片放到该目录下（file_name 是相对 img_folder 的路径），"
                "或从标注文件中删除这些图片。"
            )

    # ---------------------------------------------------------------- access
    def __len__(self) -> int:
        return len(self._records)

    @property
    def num_boxes(self) -> int:
        """Boxes that training and evaluation use (iscrowd=1 ones are counted in ``num_crowd``)."""
        return sum(len(r["labels"]) for r in self._records)

    @property
    def num_classes(self) -> int:
        return len(self.category_names)

    def image_path(self, idx: int) -> Path:
        return self._records[idx]["path"]

    def load_item(self, idx: int):
        """(RGB PIL image, target) before transforms; also what Mosaic(use_cache=False) reads."""
        rec = self._records[idx]
        image = load_image(rec["path"], expected_size=rec["size"])
        w, h = image.size
        boxes = torch.from_numpy(rec["boxes"].copy())
        boxes[:, 0::2].clamp_(min=0, max=w)
        boxes[:, 1::2].clamp_(min=0, max=h)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        target = {
            "boxes": tv_tensors.BoundingBoxes(boxes[keep], format="XYXY", canvas_size=(h, w)),
            "labels": torch.from_numpy(rec["labels"])[keep],
        }
        if self.return_masks:
            segs = [s for s, k in zip(rec["segmentation"], keep.tolist()) if k]
            target["masks"] = tv_tensors.Mask(_segmentation_masks(segs, h, w, rec["path"]))
        target["image_id"] = torch.tensor([rec["id"]])
        target["area"] = torch.from_numpy(rec["area"])[keep]
        target["iscrowd"] = torch.zeros(int(keep.sum()), dtype=torch.int64)
        target["orig_size"] = torch.tensor([w, h])
        target["idx"] = torch.tensor([idx])
        return image, target

    def __getitem__(self, idx: int):
        image, target = self.load_item(idx)
        if self.transforms is not None:
            image, target, _ = self.transforms(image, target, self)
        return image, target

    def set_epoch(self, epoch: int) -> None:
        """Record the epoch and forward it to the transforms (epoch policy)."""
        self._epoch = epoch
        if hasattr(self.transforms, "set_epoch"):
            self.transforms.set_epoch(epoch)

    @property
    def epoch(self) -> int:
        if hasattr(self.transforms, "epoch"):
            return self.transforms.epoch
        return self._epoch

    @property
    def coco(self):
        """pycocotools COCO object of the annotation file (for COCO evaluation), built on first use."""
        if self._coco is None:
            with contextlib.redirect_stdout(io.StringIO()):
                self._coco = COCO(str(self.ann_file))
        return self._coco

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_coco"] = None  # rebuilt on demand; keeps worker start-up light
        return state

    def __repr__(self) -> str:
        return (
            f"CocoDetection(images={len(self)}, classes={self.num_classes}, img_folder='{self.img_folder}', "
            f"ann_file='{self.ann_file}', remap_mscoco_category={self.remap_mscoco_category})"
        )


def _image_records(images: list, path: Path) -> dict[int, dict]:
    """image id -> record (``id``, ``file_name``, ``size`` or None, empty ``anns``); a bad or repeated entry raises."""
    records = {}
    for img in images:
        if not isinstance(img, dict) or not _is_int(img.get("id")) or not isinstance(img.get("file_name"), str):
            raise DatasetError(
                f"标注文件 {path} 的图片条目 {str(img)[:200]} 缺少整数 id 或 file_name。\n"
                '修复：每张图片写成 {"id": 整数, "file_name": "xx.jpg", "width": 宽, "height": 高}。'
            )
        if img["id"] in records:
            raise DatasetError(f"标注文件 {path} 中图片 id {img['id']} 出现了多次。\n修复：每张图片的 id 必须唯一。")
        size = (img.get("width"), img.get("height"))
        size = tuple(int(v) for v in size) if all(_is_int(v) and v > 0 for v in size) else None
        records[img["id"]] = {"id": img["id"], "file_name": img["file_name"], "size": size, "anns": []}
    return records


def _raise_bad_annotations(path: Path, valid: list, bad_cat: dict, bad_img: list, bad_box: list) -> None:
    """One Chinese error for the first kind of bad annotation found (unknown category, unknown image, invalid box)."""
    if bad_cat:
        listed = ", ".join(f"{k!r}（{v} 个标注）" for k, v in bad_cat.items())
        raise DatasetError(
            f"标注文件 {path} 中有标注使用了 categories 里不存在的类别 id：{listed}。\n"
            f"categories 中的 id 为 {valid[:50]}{' ……' if len(valid) > 50 else ''}。\n"
            "修复：在 categories 中补上这些类别，或改正/删除这些标注。"
        )
    if bad_img:
        raise DatasetError(
            f"标注文件 {path} 中有标注的 image_id 在 images 里不存在：\n{listing(bad_img)}\n"
            "修复：改正这些标注的 image_id，或删除它们。"
        )
    if bad_box:
        raise DatasetError(
            f"标注文件 {path} 中有 {len(bad_box)} 个无效的框（NaN/inf、宽或高 ≤ 0、或完全在图片外），"
            f"训练没有开始：\n{listing(bad_box)}\n"
            "修复：改正或删除这些标注（deimv2 doctor 会列出全部；规则见 docs/errors.md）。"
        )


def _segmentation_masks(segs, h, w, path) -> torch.Tensor:
    masks = []
    for seg in segs:
        if not seg:
            raise DatasetError(
                f"return_masks=True，但图片 {path} 的某个标注没有 segmentation。\n"
                "修复：补全分割标注，或设 return_masks=False。"
            )
        rles = coco_mask.frPyObjects(seg, h, w)
        m = coco_mask.decode(rles)
        m = m[..., None] if m.ndim < 3 else m
        masks.append(torch.from_numpy(m).any(dim=2))
    if not masks:
        return torch.zeros((0, h, w), dtype=torch.uint8)
    return torch.stack(masks).to(torch.uint8)
