"""supervision interop: Prediction.to_supervision(), Detector.detections() and the missing-extra error."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from helpers.tinydata import calibrated_atto

from deimv2.errors import DEIMv2Error
from deimv2.infer import Detector, Prediction

sv = pytest.importorskip("supervision")  # in [dev] and [apps]; skipped only where the extra is not installed


def _pred() -> Prediction:
    return Prediction(
        boxes=torch.tensor([[10.0, 20.0, 30.0, 60.0], [0.5, 1.5, 2.5, 3.5]]),
        scores=torch.tensor([0.9, 0.25]),
        labels=torch.tensor([2, 0]),
        names=["车辆", "飞机"],
        category_ids=[7, 5],
        image_size=(64, 64),
        class_names=["飞机", "船", "车辆"],
    )


def test_to_supervision_fields():
    d = _pred().to_supervision()
    assert isinstance(d, sv.Detections) and len(d) == 2
    np.testing.assert_array_equal(d.xyxy, [[10, 20, 30, 60], [0.5, 1.5, 2.5, 3.5]])
    np.testing.assert_allclose(d.confidence, [0.9, 0.25])
    assert d.class_id.tolist() == [2, 0]
    assert d.data["class_name"].tolist() == ["车辆", "飞机"]
    assert d.area.tolist() == [800.0, 4.0]  # (30-10)*(60-20), 2*2: the boxes are xyxy


def test_empty_prediction_to_supervision():
    p = _pred()
    empty = Prediction(p.boxes[:0], p.scores[:0], p.labels[:0], [], [], (8, 8))
    d = empty.to_supervision()
    assert len(d) == 0 and d.xyxy.shape == (0, 4)


def test_detector_detections_match_predict():
    torch.set_num_threads(1)
    det = Detector(calibrated_atto(3), class_names=["飞机", "船", "车辆"], conf=0.0, max_det=5)
    img = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    pred, d = det(img), det.detections(img)
    assert d.class_id.tolist() == pred.labels.tolist()
    assert d.data["class_name"].tolist() == pred.names
    np.testing.assert_allclose(d.xyxy, pred.boxes.numpy(), atol=1e-4)
    many = det.detections([img, img])
    assert isinstance(many, list) and len(many) == 2


def test_missing_extra_names_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "supervision", None)  # import fails as if not installed
    with pytest.raises(DEIMv2Error, match=r'pip install "deimv2\[apps\]"'):
        _pred().to_supervision()
