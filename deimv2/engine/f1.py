"""F1 against the confidence threshold, per class and overall, and the threshold with the best F1.

Which ``--conf`` should ``deimv2 predict`` use? Evaluation answers it: for every threshold ``t`` on a grid,
keep the detections with ``score >= t``, count true positives (IoU >= 0.5 with an object of the same
class, each object matched once, higher scores first), false positives and missed objects, and compute
``F1 = 2TP / (2TP + FP + FN)``. The threshold with the highest overall F1 (all classes pooled) is stored
in ``eval.json`` and in the checkpoints as ``conf_threshold``; :class:`deimv2.infer.detector.Detector` uses it
when no ``conf`` is given. Explained in notebook ``06_evaluate.ipynb``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from deimv2.utils.box_ops import box_iou_np
from deimv2.utils.fonts import cjk_figure

__all__ = ["THRESHOLDS", "best_threshold", "compute_f1_curve", "match_detections", "plot_f1_curve"]

#: the confidence grid 0.01, 0.02 … 0.99
THRESHOLDS = np.round(np.arange(1, 100) / 100.0, 2)


def match_detections(
    g_boxes: np.ndarray,
    g_labels: np.ndarray,
    d_boxes: np.ndarray,
    d_scores: np.ndarray,
    d_labels: np.ndarray,
    iou_threshold: float = 0.5,
) -> np.ndarray:
    """True-positive flag per detection of one image.

    Detections are taken by decreasing score; each takes the unmatched object of its class with the
    highest IoU, if that IoU >= ``iou_threshold``. A detection's flag never depends on lower-scored ones,
    so the flags of the detections above any threshold are exactly what matching at that threshold gives.
    """
    tp = np.zeros(len(d_scores), dtype=bool)
    if len(d_scores) == 0 or len(g_labels) == 0:
        return tp
    iou = box_iou_np(d_boxes, g_boxes)
    iou[d_labels[:, None] != g_labels[None, :]] = -1.0
    used = np.zeros(len(g_labels), dtype=bool)
    for d in np.argsort(-d_scores, kind="stable"):
        cand = np.where(used, -1.0, iou[d])
        g = int(np.argmax(cand))
        if cand[g] >= iou_threshold:
            used[g] = tp[d] = True
    return tp


def best_threshold(f1: Sequence[float], thresholds: Sequence[float] = THRESHOLDS) -> tuple[float | None, float]:
    """``(threshold, F1)`` at the highest F1; for a plateau of equal values, its middle (lower middle for
    an even length) — the first plateau when there are several. ``(None, 0.0)`` when F1 is 0 everywhere."""
    f1 = np.asarray(f1, dtype=np.float64)
    top = float(f1.max()) if f1.size else 0.0
    if top <= 0:
        return None, 0.0
    first = int(np.argmax(f1 >= top - 1e-12))
    end = first
    while end + 1 < len(f1) and f1[end + 1] >= top - 1e-12:
        end += 1
    return float(thresholds[first + (end - first) // 2]), top


def _counts(scores: np.ndarray, tp: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TP and FP counts among detections with ``score >= t`` for every ``t``."""
    order = np.argsort(scores, kind="stable")
    s, flags = scores[order], tp[order]
    # suffix sums: detections at index >= k have score >= s[k]
    tp_suffix = np.concatenate([np.cumsum(flags[::-1])[::-1], [0]])
    fp_suffix = np.concatenate([np.cumsum(~flags[::-1])[::-1], [0]])
    k = np.searchsorted(s, thresholds, side="left")
    return tp_suffix[k].astype(np.int64), fp_suffix[k].astype(np.int64)


def _f1(tp: np.ndarray, fp: np.ndarray, n_gt: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    fn = n_gt - tp
    den = 2 * tp + fp + fn
    f1 = np.where(den > 0, 2 * tp / np.maximum(den, 1), 0.0)
    precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0)
    recall = np.where(n_gt > 0, tp / max(n_gt, 1), 0.0)
    return f1, precision, recall


def _scored_hits(
    gts: Mapping[int, tuple[np.ndarray, np.ndarray]],
    dets: Mapping[int, tuple[np.ndarray, np.ndarray, np.ndarray]],
    c: int,
    iou_threshold: float,
) -> tuple[list[list[np.ndarray]], list[list[np.ndarray]], np.ndarray]:
    """Per class: the detections' scores and whether each is a true positive (one array per image), and the
    number of ground-truth boxes."""
    scores_c: list[list[np.ndarray]] = [[] for _ in range(c)]
    tp_c: list[list[np.ndarray]] = [[] for _ in range(c)]
    n_gt = np.zeros(c, dtype=np.int64)
    empty = (np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64))
    for img in set(gts) | set(dets):
        g_boxes, g_labels = gts.get(img, empty[::2])
        d_boxes, d_scores, d_labels = dets.get(img, empty)
        g_labels, d_labels = np.asarray(g_labels, np.int64), np.asarray(d_labels, np.int64)
        d_scores = np.asarray(d_scores, np.float64)
        n_gt += np.bincount(g_labels, minlength=c)[:c]
        tp = match_detections(
            np.asarray(g_boxes, np.float64).reshape(-1, 4),
            g_labels,
            np.asarray(d_boxes, np.float64).reshape(-1, 4),
            d_scores,
            d_labels,
            iou_threshold,
        )
        for k in np.unique(d_labels):
            m = d_labels == k
            scores_c[k].append(d_scores[m])
            tp_c[k].append(tp[m])
    return scores_c, tp_c, n_gt


def compute_f1_curve(
    gts: Mapping[int, tuple[np.ndarray, np.ndarray]],
    dets: Mapping[int, tuple[np.ndarray, np.ndarray, np.ndarray]],
    num_classes: int,
    iou_threshold: float = 0.5,
    class_names: Sequence[str] | None = None,
    thresholds: Sequence[float] = THRESHOLDS,
) -> dict[str, Any]:
    """F1/precision/recall against the confidence threshold (inputs as in
    :func:`deimv2.engine.evaluate.compute_confusion_matrix`: xyxy boxes, 0-based labels).

    Returns ``thresholds``, overall ``f1``/``precision``/``recall`` (all classes pooled), ``best_conf`` and
    ``best_f1`` (see :func:`best_threshold`), ``per_class`` (``{name, num_gt, best_conf, best_f1}``) and
    ``per_class_f1`` (one curve per class), ``iou_threshold``. Plain lists, ready for JSON.
    """
    thr = np.asarray(thresholds, dtype=np.float64)
    c = int(num_classes)
    scores_c, tp_c, n_gt = _scored_hits(gts, dets, c, iou_threshold)
    names = list(class_names) if class_names is not None else [str(i) for i in range(c)]
    tot_tp = np.zeros(len(thr), np.int64)
    tot_fp = np.zeros(len(thr), np.int64)
    per_class, curves = [], []
    for k in range(c):
        s = np.concatenate(scores_c[k]) if scores_c[k] else np.zeros(0)
        t = np.concatenate(tp_c[k]) if tp_c[k] else np.zeros(0, dtype=bool)
        tp_k, fp_k = _counts(s, t, thr)
        tot_tp += tp_k
        tot_fp += fp_k
        f1_k, _, _ = _f1(tp_k, fp_k, int(n_gt[k]))
        conf_k, best_k = best_threshold(f1_k, thr)
        per_class.append({"name": names[k], "num_gt": int(n_gt[k]), "best_conf": conf_k, "best_f1": best_k})
        curves.append([round(float(v), 6) for v in f1_k])
    f1, precision, recall = _f1(tot_tp, tot_fp, int(n_gt.sum()))
    conf, best = best_threshold(f1, thr)
    return {
        "thresholds": [float(v) for v in thr],
        "f1": [round(float(v), 6) for v in f1],
        "precision": [round(float(v), 6) for v in precision],
        "recall": [round(float(v), 6) for v in recall],
        "best_conf": conf,
        "best_f1": best,
        "per_class": per_class,
        "per_class_f1": curves,
        "iou_threshold": float(iou_threshold),
    }


def plot_f1_curve(metrics: Mapping[str, Any], max_legend: int = 20):
    """F1 against the confidence threshold: one thin line per class with objects, the overall curve bold,
    and the F1-best threshold marked. ``metrics``: what evaluation returns (or ``eval.json`` loaded)."""
    curve = metrics.get("f1_curve") if "f1_curve" in metrics else metrics
    thr = np.asarray(curve["thresholds"])
    fig = cjk_figure((7, 5))
    ax = fig.subplots()
    drawn = 0
    for row, f1 in zip(curve["per_class"], curve["per_class_f1"]):
        if row["num_gt"] == 0:
            continue
        label = f"{row['name']} ({row['best_f1']:.2f} @ {row['best_conf'] or 0:.2f})" if drawn < max_legend else None
        ax.plot(thr, f1, linewidth=1.0, alpha=0.6, label=label)
        drawn += 1
    ax.plot(thr, curve["f1"], color="black", linewidth=2.5, label=f"全部类别 (F1={curve['best_f1']:.2f})")
    if curve["best_conf"] is not None:
        ax.axvline(
            curve["best_conf"], color="red", linestyle="--", linewidth=1.2, label=f"最佳阈值 {curve['best_conf']:.2f}"
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("置信度阈值 Confidence")
    ax.set_ylabel("F1")
    ax.set_title(f"F1-置信度曲线 (IoU={curve.get('iou_threshold', 0.5):.2f})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    return fig
