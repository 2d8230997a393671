"""F1 against confidence, against hand-worked counts; the F1-best threshold reaches eval.json and checkpoints."""

import numpy as np
import pytest

from deimv2.engine.f1 import (
    THRESHOLDS,
    best_threshold,
    compute_f1_curve,
    match_detections,
    plot_f1_curve,
)

B = np.array


def _example():
    """One image. Class 0: objects g1, g2; detections A 0.9 on g1, B 0.6 on nothing, C 0.3 on g2.
    Class 1: object g3; detections D 0.8 on g3, E 0.5 also on g3 (a duplicate, so a false positive)."""
    g_boxes = B([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], dtype=float)
    g_labels = B([0, 0, 1])
    d_boxes = B([[0, 0, 10, 10], [60, 60, 70, 70], [20, 20, 30, 31], [40, 40, 50, 50], [41, 40, 50, 50]], dtype=float)
    d_scores = B([0.9, 0.6, 0.3, 0.8, 0.5])
    d_labels = B([0, 0, 0, 1, 1])
    return {1: (g_boxes, g_labels)}, {1: (d_boxes, d_scores, d_labels)}


def _at(curve, t):
    return curve[int(np.argmin(np.abs(THRESHOLDS - t)))]


def test_matching_flags_by_hand():
    gts, dets = _example()
    tp = match_detections(*gts[1], *dets[1])
    assert tp.tolist() == [True, False, True, True, False]


def test_overall_and_per_class_f1_by_hand():
    gts, dets = _example()
    r = compute_f1_curve(gts, dets, 2, class_names=["甲", "乙"])
    f1 = r["f1"]
    # t <= 0.3: TP 3 FP 2 FN 0 -> 6/8; (0.3, 0.5]: TP 2 FP 2 FN 1 -> 4/7; (0.5, 0.6]: TP 2 FP 1 FN 1 -> 4/6
    # (0.6, 0.8]: TP 2 FP 0 FN 1 -> 4/5; (0.8, 0.9]: TP 1 FN 2 -> 2/4; above 0.9: 0
    for t, want in (
        (0.2, 6 / 8),
        (0.3, 6 / 8),
        (0.4, 4 / 7),
        (0.55, 4 / 6),
        (0.7, 0.8),
        (0.8, 0.8),
        (0.85, 0.5),
        (0.95, 0),
    ):
        assert _at(f1, t) == pytest.approx(want, abs=1e-6), t
    assert _at(r["precision"], 0.7) == pytest.approx(1.0) and _at(r["recall"], 0.7) == pytest.approx(2 / 3, abs=1e-6)
    # best overall F1 0.8 on the plateau 0.61 … 0.80 (20 points) -> its lower middle 0.70
    assert r["best_conf"] == pytest.approx(0.70) and r["best_f1"] == pytest.approx(0.8)
    a, b = r["per_class"]
    # class 0: t <= 0.3: 2TP 1FP -> 0.8 (best; plateau 0.01 … 0.30 -> 0.15); (0.3, 0.6]: 1/2; (0.6, 0.9]: 2/3
    assert (a["name"], a["num_gt"], a["best_f1"], a["best_conf"]) == ("甲", 2, pytest.approx(0.8), pytest.approx(0.15))
    assert _at(r["per_class_f1"][0], 0.5) == pytest.approx(0.5) and _at(r["per_class_f1"][0], 0.7) == pytest.approx(
        2 / 3, abs=1e-6
    )
    # class 1: (0.5, 0.8]: F1 1.0 (plateau 0.51 … 0.80 -> 0.65); t <= 0.5: 2/3
    assert b["best_f1"] == pytest.approx(1.0) and b["best_conf"] == pytest.approx(0.65)
    assert _at(r["per_class_f1"][1], 0.5) == pytest.approx(2 / 3, abs=1e-6)


def test_wrong_class_is_a_false_positive_and_a_miss():
    gts = {1: (B([[0, 0, 10, 10]], dtype=float), B([0]))}
    dets = {1: (B([[0, 0, 10, 10]], dtype=float), B([0.9]), B([1]))}
    r = compute_f1_curve(gts, dets, 2)
    assert max(r["f1"]) == 0 and r["best_conf"] is None


def test_best_threshold_rules():
    assert best_threshold([0.1, 0.5, 0.5, 0.5, 0.2], [0.1, 0.2, 0.3, 0.4, 0.5]) == (0.3, 0.5)
    assert best_threshold([0.5, 0.5, 0.1, 0.5], [0.1, 0.2, 0.3, 0.4]) == (0.1, 0.5)  # first plateau, lower middle
    assert best_threshold([0.0, 0.0], [0.1, 0.2]) == (None, 0.0)


def test_plot_f1_curve_draws_every_class_and_the_best():
    gts, dets = _example()
    r = compute_f1_curve(gts, dets, 2, class_names=["甲", "乙"])
    fig = plot_f1_curve({"f1_curve": r})
    ax = fig.axes[0]
    assert len(ax.lines) == 4  # two classes, overall, the marker line
    assert ax.lines[-1].get_xdata()[0] == pytest.approx(0.70)


def test_evaluator_puts_the_curve_and_best_threshold_in_eval_json(tmp_path):
    import contextlib
    import io
    import json

    import torch
    from pycocotools.coco import COCO

    from deimv2.engine.evaluate import (
        CocoEvaluator,
        format_metrics_table,
        save_eval_json,
    )

    gts, dets = _example()
    (gb, gl), (db, ds, dl) = gts[1], dets[1]
    gt = {
        "images": [{"id": 1, "width": 100, "height": 100, "file_name": "a.jpg"}],
        "categories": [{"id": 0, "name": "甲"}, {"id": 1, "name": "乙"}],
        "annotations": [
            {
                "id": i + 1,
                "image_id": 1,
                "category_id": int(c),
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "area": (x1 - x0) * (y1 - y0),
                "iscrowd": 0,
            }
            for i, ((x0, y0, x1, y1), c) in enumerate(zip(gb.tolist(), gl.tolist()))
        ],
    }
    coco = COCO()
    coco.dataset = gt
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    ev = CocoEvaluator(coco, [0, 1])
    ev.update({1: {"boxes": torch.tensor(db), "scores": torch.tensor(ds), "labels": torch.tensor(dl)}})
    m = ev.compute()
    assert m["best_conf"] == pytest.approx(0.70) and m["best_f1"] == pytest.approx(0.8)
    assert "0.70" in format_metrics_table(m)
    saved = json.loads(save_eval_json(m, tmp_path / "eval.json").read_text(encoding="utf-8"))
    assert saved["best_conf"] == pytest.approx(0.70) and len(saved["f1_curve"]["f1"]) == len(THRESHOLDS)
