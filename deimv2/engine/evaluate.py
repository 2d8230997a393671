"""COCO box evaluation (pycocotools) with per-class AP, PR curves, a confusion matrix, and plots.

Typical use in a validation loop::

    evaluator = CocoEvaluator(coco_gt, label_to_category_id=[1, 2, 3])
    for images, targets in loader:
        results = postprocessor(model(images), orig_sizes)          # boxes xyxy in original pixels
        evaluator.update({int(t['image_id']): r for t, r in zip(targets, results)})
    evaluator.synchronize_between_processes()                        # no-op on one GPU/CPU
    metrics = evaluator.compute()
    _log.info(format_metrics_table(metrics))
Explained in notebook 06_evaluate.ipynb.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deimv2.engine.dist import all_gather_object
from deimv2.engine.f1 import compute_f1_curve
from deimv2.errors import ConfigError, DatasetError
from deimv2.utils.box_ops import box_iou_np
from deimv2.utils.fonts import cjk_figure

_log = logging.getLogger(__name__)

__all__ = [
    "check_class_names",
    "STAT_NAMES",
    "CocoEvaluator",
    "box_iou_np",
    "compute_confusion_matrix",
    "format_metrics_table",
    "save_eval_json",
    "plot_pr_curves",
    "plot_confusion_matrix",
    "plot_per_class_ap",
]

#: names of ``COCOeval.stats`` in order
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
_STAT_DESC = (
    "IoU=0.50:0.95  全部尺寸  maxDets=100",
    "IoU=0.50  全部尺寸  maxDets=100",
    "IoU=0.75  全部尺寸  maxDets=100",
    "IoU=0.50:0.95  小目标  maxDets=100",
    "IoU=0.50:0.95  中目标  maxDets=100",
    "IoU=0.50:0.95  大目标  maxDets=100",
    "IoU=0.50:0.95  全部尺寸  maxDets=1",
    "IoU=0.50:0.95  全部尺寸  maxDets=10",
    "IoU=0.50:0.95  全部尺寸  maxDets=100",
    "IoU=0.50:0.95  小目标  maxDets=100",
    "IoU=0.50:0.95  中目标  maxDets=100",
    "IoU=0.50:0.95  大目标  maxDets=100",
)
BACKGROUND = "背景"


def _np(x: Any, dtype) -> np.ndarray:
    if torch.is_tensor(x):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def compute_confusion_matrix(
    gts: Mapping[int, tuple[np.ndarray, np.ndarray]],
    dets: Mapping[int, tuple[np.ndarray, np.ndarray, np.ndarray]],
    num_classes: int,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.45,
) -> np.ndarray:
    """Detection confusion matrix, shape ``(C+1, C+1)``, int64.

    Rows = true class, columns = predicted class; index ``C`` is background: row ``C`` counts false
    positives (a detection that matches no object), column ``C`` counts missed objects.
    ``gts[img] = (boxes xyxy, labels)``, ``dets[img] = (boxes xyxy, scores, labels)``. Detections with
    ``score > score_threshold`` are kept. Per image, pairs (object, detection) with IoU >= ``iou_threshold``
    (any classes) are matched greedily by decreasing IoU, each object and detection at most once.
    """
    c = int(num_classes)
    cm = np.zeros((c + 1, c + 1), dtype=np.int64)
    for img in set(gts) | set(dets):
        g_boxes, g_labels = gts.get(img, (np.zeros((0, 4)), np.zeros(0, dtype=np.int64)))
        d_boxes, d_scores, d_labels = dets.get(img, (np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64)))
        keep = d_scores > score_threshold
        d_boxes, d_labels = d_boxes[keep], d_labels[keep]
        g_used = np.zeros(len(g_labels), dtype=bool)
        d_used = np.zeros(len(d_labels), dtype=bool)
        iou = box_iou_np(g_boxes, d_boxes)
        gi, di = np.nonzero(iou >= iou_threshold)
        for k in np.argsort(-iou[gi, di], kind="stable"):
            g, d = gi[k], di[k]
            if not g_used[g] and not d_used[d]:
                g_used[g] = d_used[d] = True
                cm[g_labels[g], d_labels[d]] += 1
        np.add.at(cm, (g_labels[~g_used], c), 1)
        np.add.at(cm, (c, d_labels[~d_used]), 1)
    return cm


class CocoEvaluator:
    """Accumulates post-processed predictions and evaluates them with pycocotools ``COCOeval``.

    Args:
        coco_gt: a ``pycocotools.coco.COCO`` of the validation annotations.
        label_to_category_id: ``label_to_category_id[i]`` is the dataset category id of model label ``i``.
        class_names: names per label (default: the category names in ``coco_gt``).
    """

    def __init__(self, coco_gt, label_to_category_id: Sequence[int], class_names: Sequence[str] | None = None):
        self.coco_gt = coco_gt
        self.label_to_category_id = [int(c) for c in label_to_category_id]
        missing = [c for c in self.label_to_category_id if c not in coco_gt.cats]
        if missing:
            raise ConfigError(
                f"类别映射 label_to_category_id 中的类别 id {missing} 不在标注文件的 categories 里。"
                "请确认训练和验证使用同一套类别（同一份 categories 列表）。"
            )
        self.category_to_label = {c: i for i, c in enumerate(self.label_to_category_id)}
        if class_names is None:
            class_names = [str(coco_gt.cats[c].get("name", c)) for c in self.label_to_category_id]
        if len(class_names) != len(self.label_to_category_id):
            raise ConfigError(
                f"class_names 有 {len(class_names)} 个，但类别映射有 {len(self.label_to_category_id)} 个，两者必须一致。"
            )
        self.class_names = [str(n) for n in class_names]
        self.reset()

    @property
    def num_classes(self) -> int:
        return len(self.label_to_category_id)

    def reset(self) -> None:
        self._dets: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def update(self, predictions: Mapping[int, Mapping[str, Any]]) -> None:
        """Add ``{image_id: {'labels', 'boxes' (xyxy pixels), 'scores'}}`` (tensors or arrays)."""
        for img_id, p in predictions.items():
            img_id = int(img_id)
            if img_id not in self.coco_gt.imgs:
                raise DatasetError(
                    f"预测结果中的 image_id={img_id} 不在验证集标注文件里。请检查数据集的 image_id 是否与标注一致。"
                )
            boxes = _np(p["boxes"], np.float64).reshape(-1, 4)
            scores = _np(p["scores"], np.float64).reshape(-1)
            labels = _np(p["labels"], np.int64).reshape(-1)
            if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
                raise ConfigError(
                    f"模型输出了类别编号 {int(labels.max())}，但数据集只有 {self.num_classes} 个类别。"
                    "请把模型的 num_classes 设为数据集的类别数。"
                )
            self._dets[img_id] = (boxes, scores, labels)

    def synchronize_between_processes(self) -> None:
        """Merge the predictions of all processes (each rank then holds all of them)."""
        merged: dict[int, tuple] = {}
        for part in all_gather_object(self._dets):
            merged.update(part)
        self._dets = merged

    # ------------------------------------------------------------------ evaluation
    def _coco_dt(self):
        from pycocotools.coco import COCO

        anns, ann_id = [], 1
        for img_id, (boxes, scores, labels) in self._dets.items():
            for (x1, y1, x2, y2), s, lab in zip(boxes.tolist(), scores.tolist(), labels.tolist()):
                w, h = x2 - x1, y2 - y1
                anns.append(
                    {
                        "id": ann_id,
                        "image_id": img_id,
                        "category_id": self.label_to_category_id[lab],
                        "bbox": [x1, y1, w, h],
                        "area": w * h,
                        "score": s,
                        "iscrowd": 0,
                    }
                )
                ann_id += 1
        dt = COCO()
        dt.dataset = {
            "images": list(self.coco_gt.dataset.get("images", [])),
            "categories": list(self.coco_gt.dataset.get("categories", [])),
            "annotations": anns,
        }
        with contextlib.redirect_stdout(io.StringIO()):
            dt.createIndex()
        return dt

    def _gts(self, img_ids: Sequence[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        out = {}
        for img_id in img_ids:
            boxes, labels = [], []
            for ann in self.coco_gt.imgToAnns.get(img_id, []):
                if ann.get("iscrowd", 0):
                    continue
                cat = ann["category_id"]
                if cat not in self.category_to_label:
                    raise ConfigError(
                        f"标注中的类别 id {cat}（image_id={img_id}）不在类别映射 label_to_category_id 中。"
                    )
                x, y, w, h = ann["bbox"]
                boxes.append([x, y, x + w, y + h])
                labels.append(self.category_to_label[cat])
            out[img_id] = (np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.asarray(labels, dtype=np.int64))
        return out

    def _per_class(self, ev, gts: Mapping[int, tuple[np.ndarray, np.ndarray]]) -> tuple[list[dict], list[list[float]]]:
        """Per class: ``{name, category_id, num_gt, AP, AP50}`` and the precision curve at IoU 0.5 (area all,
        maxDets 100; -1 where the class has no objects), from an evaluated ``COCOeval``."""
        prec = ev.eval["precision"]  # [T, R, K, A, M]
        k_of = {c: k for k, c in enumerate(ev.params.catIds)}
        counts = np.bincount(
            np.concatenate([lab for _, lab in gts.values()] or [np.zeros(0, np.int64)]), minlength=self.num_classes
        )
        per_class, curves = [], []
        for label, (cat, name) in enumerate(zip(self.label_to_category_id, self.class_names)):
            p_all = prec[:, :, k_of[cat], 0, -1]
            p50 = prec[0, :, k_of[cat], 0, -1]
            per_class.append(
                {
                    "name": name,
                    "category_id": cat,
                    "num_gt": int(counts[label]),
                    "AP": float(p_all[p_all > -1].mean()) if (p_all > -1).any() else -1.0,
                    "AP50": float(p50[p50 > -1].mean()) if (p50 > -1).any() else -1.0,
                }
            )
            curves.append([float(v) for v in p50])
        return per_class, curves

    def compute(self, score_threshold: float = 0.45, iou_threshold: float = 0.5) -> dict[str, Any]:
        """Run COCOeval on the images seen so far and return the metrics dict.

        Keys: the 12 ``STAT_NAMES`` (floats; -1 where COCO has nothing to measure), ``stats`` (the same
        12 as a list), ``per_class`` (list of ``{name, category_id, num_gt, AP, AP50}``), ``pr_curves``
        (``{'iou': 0.5, 'recall': [101], 'precision': [[101] per class]}``, area all, maxDets 100;
        -1 for a class without objects), ``f1_curve`` (see :func:`deimv2.engine.f1.compute_f1_curve`) with
        ``best_conf``/``best_f1`` (the F1-best confidence threshold), ``confusion_matrix`` (see :func:`compute_confusion_matrix`,
        as a list of lists), ``class_names``, ``num_images``, ``score_threshold``, ``iou_threshold``.
        """
        from pycocotools.cocoeval import COCOeval

        img_ids = sorted(self._dets) if self._dets else sorted(self.coco_gt.getImgIds())
        cats = sorted(set(self.label_to_category_id))
        ev = COCOeval(self.coco_gt, self._coco_dt(), iouType="bbox")
        ev.params.imgIds = img_ids
        ev.params.catIds = cats
        with contextlib.redirect_stdout(io.StringIO()):
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        stats = [float(v) for v in ev.stats]
        metrics: dict[str, Any] = dict(zip(STAT_NAMES, stats))
        metrics["stats"] = stats

        gts = self._gts(img_ids)
        per_class, curves = self._per_class(ev, gts)
        metrics["per_class"] = per_class
        metrics["pr_curves"] = {
            "iou": float(ev.params.iouThrs[0]),
            "recall": [float(v) for v in ev.params.recThrs],
            "precision": curves,
        }
        cm = compute_confusion_matrix(gts, self._dets, self.num_classes, iou_threshold, score_threshold)
        metrics["confusion_matrix"] = cm.tolist()
        f1 = compute_f1_curve(gts, self._dets, self.num_classes, iou_threshold, class_names=self.class_names)
        metrics["f1_curve"] = f1
        metrics["best_conf"], metrics["best_f1"] = f1["best_conf"], f1["best_f1"]
        metrics["class_names"] = list(self.class_names)
        metrics["num_images"] = len(img_ids)
        metrics["score_threshold"] = float(score_threshold)
        metrics["iou_threshold"] = float(iou_threshold)
        return metrics


# ---------------------------------------------------------------------- text / json
def format_metrics_table(metrics: Mapping[str, Any], per_class: bool = True) -> str:
    """A plain-text table (Chinese headers) of the 12 COCO numbers, then the per-class AP."""
    lines = [f"{'指标':<8}{'数值':>8}   说明", "-" * 52]
    for key, desc in zip(STAT_NAMES, _STAT_DESC):
        lines.append(f"{key:<10}{metrics[key]:>8.4f}   {desc}")
    if metrics.get("best_conf") is not None:
        lines.append(
            f"F1 最高的置信度阈值：{metrics['best_conf']:.2f}（F1={metrics['best_f1']:.4f}，推理时不给 --conf 就用它）"
        )
    rows = metrics.get("per_class") or []
    if per_class and rows:
        width = max(8, *(len(r["name"]) for r in rows)) + 2
        lines += ["", f"{'类别':<{width - 2}}{'类别id':>8}{'目标数':>8}{'AP':>9}{'AP50':>9}", "-" * (width + 34)]
        for r in rows:
            lines.append(
                f"{r['name']:<{width}}{r['category_id']:>8}{r.get('num_gt', 0):>9}{r['AP']:>9.4f}{r['AP50']:>9.4f}"
            )
    return "\n".join(lines)


def _to_builtin(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _to_builtin(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_builtin(v) for v in obj]
    if torch.is_tensor(obj):
        return obj.tolist()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def save_eval_json(metrics: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write the metrics dict as UTF-8 JSON (Chinese kept readable)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_to_builtin(metrics), ensure_ascii=False, indent=2), encoding="utf-8")
    return path


# ---------------------------------------------------------------------- plots
def plot_pr_curves(metrics: Mapping[str, Any], max_legend: int = 20):
    """Precision-recall curve of every class with objects (IoU 0.5), legend ``name (AP50)``."""
    pr = metrics["pr_curves"]
    recall = np.asarray(pr["recall"])
    fig = cjk_figure((7, 5.5))
    ax = fig.subplots()
    drawn = 0
    for row, curve in zip(metrics["per_class"], pr["precision"]):
        curve = np.asarray(curve)
        if (curve < 0).all():
            continue
        label = f"{row['name']} ({row['AP50']:.3f})" if drawn < max_legend else None
        ax.plot(recall, np.clip(curve, 0, None), linewidth=1.2, label=label)
        drawn += 1
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("召回率 Recall")
    ax.set_ylabel("精确率 Precision")
    ax.set_title(f"各类别 PR 曲线 (IoU={pr.get('iou', 0.5):.2f})，mAP50 = {metrics['AP50']:.3f}")
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=8, loc="lower left")
    return fig


def plot_confusion_matrix(cm, names: Sequence[str], normalize: bool = False):
    """Heat map of :func:`compute_confusion_matrix` (``names`` without or with the background entry)."""
    cm = np.asarray(cm, dtype=np.float64)
    labels = list(names) + ([BACKGROUND] if len(names) == cm.shape[0] - 1 else [])
    if len(labels) != cm.shape[0]:
        raise ValueError(f"names has {len(names)} entries for a {cm.shape[0]}x{cm.shape[1]} matrix")
    shown = cm / np.clip(cm.sum(1, keepdims=True), 1, None) if normalize else cm
    n = len(labels)
    size = min(4 + 0.45 * n, 20)
    fig = cjk_figure((size + 1, size))
    ax = fig.subplots()
    im = ax.imshow(shown, cmap="Blues")
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_xticks(range(n), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    ax.set_xlabel("预测类别")
    ax.set_ylabel("真实类别")
    ax.set_title("混淆矩阵（按行归一化）" if normalize else "混淆矩阵（数量）")
    if n <= 30:
        top = shown.max() if shown.size else 0
        for i in range(n):
            for j in range(n):
                if cm[i, j] > 0:
                    text = f"{shown[i, j]:.2f}" if normalize else f"{int(cm[i, j])}"
                    ax.text(
                        j,
                        i,
                        text,
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if shown[i, j] > 0.5 * top else "black",
                    )
    return fig


def plot_per_class_ap(metrics: Mapping[str, Any]):
    """Horizontal bars of AP and AP50 per class (classes without objects are left out)."""
    rows = [r for r in metrics["per_class"] if r["AP"] >= 0]
    names = [r["name"] for r in rows]
    y = np.arange(len(rows))
    fig = cjk_figure((7, max(2.5, 0.35 * len(rows) + 1.5)))
    ax = fig.subplots()
    ax.barh(y - 0.2, [r["AP50"] for r in rows], height=0.4, label="AP50")
    ax.barh(y + 0.2, [r["AP"] for r in rows], height=0.4, label="AP (0.50:0.95)")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("AP")
    ax.set_title(f"各类别 AP（mAP = {metrics['AP']:.3f}）")
    ax.legend(loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    return fig


# ---------------------------------------------------------------------- checkpoint vs dataset
def check_class_names(checkpoint, saved: Sequence[str] | None, data, names: Sequence[str]) -> str | None:
    """Compare the class names saved in ``checkpoint`` with the dataset's ``names`` (index = label) before an
    evaluation. Another count or the same names in another order raise (the mAP would pair the wrong classes);
    other names return a Chinese warning (a renamed dataset is possible); None when they agree or nothing is saved."""
    if not saved:
        return None
    saved, names = [str(n) for n in saved], [str(n) for n in names]
    if saved == names:
        return None
    both = f"权重 {checkpoint} 的类别：{'、'.join(saved[:20])}；数据集 {data} 的类别：{'、'.join(names[:20])}"
    if len(saved) != len(names):
        raise DatasetError(
            f"类别数不一致：{len(saved)} 类的权重不能在 {len(names)} 类的数据集上评估（{both}）。"
            "修复：用训练这个权重时的数据集评估；要在新数据集上使用，请先用 -t 微调。"
        )
    if sorted(saved) == sorted(names):
        raise DatasetError(
            f"类别相同但顺序不同，按编号评估会把类别配错，mAP 没有意义（{both}）。"
            "修复：把数据集 categories 的 id 顺序改成与训练时一致，或用训练时的数据集评估。"
        )
    return (
        f"警告：类别名不同，按编号 0..{len(names) - 1} 一一对应评估（{both}）。"
        "如果不是同一套类别（只是改了名字），这个 mAP 没有意义。"
    )
