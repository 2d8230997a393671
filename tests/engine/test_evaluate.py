"""COCO evaluator on a tiny handmade ground truth (hand-worked AP / AR / confusion matrix)."""

import contextlib
import io
import json

import numpy as np
import pytest
import torch

from deimv2.engine.evaluate import (
    STAT_NAMES,
    CocoEvaluator,
    compute_confusion_matrix,
    format_metrics_table,
    plot_confusion_matrix,
    plot_per_class_ap,
    plot_pr_curves,
    save_eval_json,
)
from deimv2.errors import ConfigError, DatasetError

# image 1: 猫 (category 3) xywh [10,10,30,30] area 900 (small), 狗 (7) [50,50,40,40] area 1600 (medium)
# image 2: 猫 [5,5,20,20] area 400 (small).  Category 9 (鸟) has no objects.
GT = {
    "images": [
        {"id": 1, "width": 100, "height": 100, "file_name": "a.jpg"},
        {"id": 2, "width": 100, "height": 100, "file_name": "b.jpg"},
    ],
    "categories": [{"id": 3, "name": "猫"}, {"id": 7, "name": "狗"}, {"id": 9, "name": "鸟"}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 10, 30, 30], "area": 900, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 7, "bbox": [50, 50, 40, 40], "area": 1600, "iscrowd": 0},
        {"id": 3, "image_id": 2, "category_id": 3, "bbox": [5, 5, 20, 20], "area": 400, "iscrowd": 0},
    ],
}
CATS = [3, 7, 9]


@pytest.fixture(scope="module")
def coco_gt():
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = json.loads(json.dumps(GT))
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def pred(boxes, labels, scores):
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "scores": torch.tensor(scores),
    }


def test_perfect_predictions(coco_gt):
    ev = CocoEvaluator(coco_gt, CATS)
    ev.update({1: pred([[10, 10, 40, 40], [50, 50, 90, 90]], [0, 1], [0.9, 0.8])})
    ev.update({2: pred([[5, 5, 25, 25]], [0], [0.95])})
    m = ev.compute()
    for k in ("AP", "AP50", "AP75", "APs", "APm", "AR1", "AR10", "AR100", "ARs", "ARm"):
        assert m[k] == pytest.approx(1.0), k
    assert m["APl"] == -1 and m["ARl"] == -1  # no large object: COCO reports -1
    assert m["stats"] == [m[k] for k in STAT_NAMES]
    assert [(r["name"], r["category_id"], r["num_gt"], r["AP"], r["AP50"]) for r in m["per_class"]] == [
        ("猫", 3, 2, pytest.approx(1.0), pytest.approx(1.0)),
        ("狗", 7, 1, pytest.approx(1.0), pytest.approx(1.0)),
        ("鸟", 9, 0, -1.0, -1.0),
    ]
    assert len(m["pr_curves"]["recall"]) == 101 and m["pr_curves"]["iou"] == 0.5
    assert m["pr_curves"]["precision"][0] == pytest.approx([1.0] * 101)
    assert m["confusion_matrix"] == [[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert m["num_images"] == 2


def test_one_missed_object(coco_gt):
    ev = CocoEvaluator(coco_gt, CATS)
    ev.update({1: pred([[10, 10, 40, 40], [50, 50, 90, 90]], [0, 1], [0.9, 0.8]), 2: pred([], [], [])})
    m = ev.compute()
    # 猫: 1 of 2 found with precision 1 -> recall 0.5: the 51 recall thresholds 0.00..0.50 have precision 1
    cat_ap = 51 / 101
    assert m["per_class"][0]["AP"] == pytest.approx(cat_ap) and m["per_class"][0]["AP50"] == pytest.approx(cat_ap)
    assert m["AP"] == pytest.approx((cat_ap + 1.0) / 2)  # 0.7524752...
    assert m["AR100"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["APs"] == pytest.approx(cat_ap)  # both small objects are cats
    assert m["ARs"] == pytest.approx(0.5)
    assert m["APm"] == pytest.approx(1.0)
    curve = m["pr_curves"]["precision"][0]
    assert curve[:51] == pytest.approx([1.0] * 51) and curve[51:] == [0.0] * 50


def test_confusion_matrix_hand_counted(coco_gt):
    ev = CocoEvaluator(coco_gt, CATS)
    ev.update(
        {
            # cat predicted as dog (IoU 1), dog correct, one false-positive "cat" far away, one low-score box (ignored)
            1: pred(
                [[10, 10, 40, 40], [50, 50, 90, 90], [0, 80, 10, 90], [60, 0, 70, 10]],
                [1, 1, 0, 2],
                [0.8, 0.9, 0.9, 0.3],
            ),
            2: pred([], [], []),  # cat missed
        }
    )
    m = ev.compute(score_threshold=0.45)
    # rows: true 猫, 狗, 鸟, 背景 ; columns: predicted 猫, 狗, 鸟, 背景
    assert m["confusion_matrix"] == [
        [0, 1, 0, 1],  # 猫: one labelled 狗, one missed
        [0, 1, 0, 0],  # 狗: correct
        [0, 0, 0, 0],
        [1, 0, 0, 0],  # background predicted as 猫 (false positive)
    ]
    # lowering the threshold adds the low-score 鸟 box as a false positive
    assert ev.compute(score_threshold=0.2)["confusion_matrix"][3] == [1, 0, 1, 0]


def test_confusion_matrix_greedy_unique_matching():
    gts = {1: (np.array([[0, 0, 10, 10.0]]), np.array([0]))}
    # two detections on one object: the higher IoU one matches, the other is a false positive
    dets = {1: (np.array([[0, 0, 10, 9.0], [0, 0, 10, 10.0]]), np.array([0.9, 0.6]), np.array([1, 0]))}
    cm = compute_confusion_matrix(gts, dets, num_classes=2, iou_threshold=0.5, score_threshold=0.5)
    assert cm.tolist() == [[1, 0, 0], [0, 0, 0], [0, 1, 0]]


def test_empty_predictions(coco_gt):
    ev = CocoEvaluator(coco_gt, CATS)
    m = ev.compute()  # nothing at all: evaluated on every GT image
    assert m["AP"] == 0.0 and m["AR100"] == 0.0 and m["num_images"] == 2
    ev.update({1: pred([], [], []), 2: pred([], [], [])})
    m = ev.compute()
    assert m["AP"] == 0.0 and m["APl"] == -1
    assert m["confusion_matrix"][0][3] == 2 and m["confusion_matrix"][1][3] == 1
    ev.reset()
    assert ev.compute()["AP"] == 0.0


def test_bad_inputs(coco_gt):
    with pytest.raises(ConfigError, match="categories"):
        CocoEvaluator(coco_gt, [3, 42])
    ev = CocoEvaluator(coco_gt, CATS)
    with pytest.raises(ConfigError, match="num_classes"):
        ev.update({1: pred([[0, 0, 1, 1]], [3], [0.9])})
    with pytest.raises(DatasetError, match="image_id=5"):
        ev.update({5: pred([], [], [])})
    partial = CocoEvaluator(coco_gt, [3, 9])  # the GT has category 7 too: never dropped silently
    partial.update({1: pred([], [], [])})
    with pytest.raises(ConfigError, match="类别映射"):
        partial.compute()


def test_table_json_and_plots(coco_gt, tmp_path):
    ev = CocoEvaluator(coco_gt, CATS)
    ev.update({1: pred([[10, 10, 40, 40], [50, 50, 90, 90]], [0, 1], [0.9, 0.8]), 2: pred([], [], [])})
    m = ev.compute()
    table = format_metrics_table(m)
    assert "指标" in table and "猫" in table and f"{m['AP']:.4f}" in table
    assert all(any(line.startswith(k + " ") for line in table.splitlines()) for k in STAT_NAMES)
    path = save_eval_json(m, tmp_path / "评估 结果" / "eval.json")
    text = path.read_text(encoding="utf-8")
    assert "猫" in text and json.loads(text)["AP"] == pytest.approx(m["AP"])
    for fig in (
        plot_pr_curves(m),
        plot_confusion_matrix(m["confusion_matrix"], m["class_names"]),
        plot_confusion_matrix(m["confusion_matrix"], m["class_names"], normalize=True),
        plot_per_class_ap(m),
    ):
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=40)
        assert buf.getvalue()[:4] == b"\x89PNG"
    assert len(plot_per_class_ap(m).axes[0].patches) == 4  # 鸟 (no objects) left out: 2 classes x 2 bars
