"""ONNX export of a small Atto (160x160): onnxruntime equals PyTorch, dynamic batch, clear errors."""

from __future__ import annotations

import sys

import numpy as np
import onnx  # in [dev] and [export]
import onnxruntime as ort
import pytest
import torch
from helpers.tinydata import calibrated_atto
from PIL import Image

from deimv2.engine.checkpoint import make_checkpoint, save_checkpoint
from deimv2.errors import DEIMv2Error
from deimv2.infer.detector import Detector
from deimv2.infer.export import check_onnx, export_onnx

SIZE = 160


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("导出 测试")
    model = calibrated_atto(5)
    ckpt = make_checkpoint(
        model=model,
        epoch=0,
        global_step=1,
        best_ap=0.0,
        config=model.config.raw,
        class_names=list("abcde"),
        category_ids=[1, 2, 3, 4, 5],
    )
    path = save_checkpoint(ckpt, tmp / "best.pth")
    onnx_path = export_onnx(checkpoint=path, output=tmp / "模型.onnx", batch_size=1)
    det = Detector.from_checkpoint(path, conf=0.0, backend="torch")  # the PyTorch graph the file is compared with
    return onnx_path, det


def _images():
    rng = np.random.default_rng(7)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in ((90, 200), (240, 120))]


def _run(onnx_path, det, images):
    x, sizes = det.preprocess(images)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return sess.run(["labels", "boxes", "scores"], {"images": x.numpy(), "orig_target_sizes": sizes.numpy()})


def test_file_inputs_and_outputs(exported):
    onnx_path, _ = exported
    model = onnx.load(str(onnx_path))
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["images", "orig_target_sizes"]
    assert [o.name for o in model.graph.output] == ["labels", "boxes", "scores"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and [d.dim_value for d in dims[1:]] == [3, SIZE, SIZE]
    assert model.opset_import[0].version == 17


def test_onnxruntime_matches_pytorch(exported):
    onnx_path, det = exported
    img = _images()[0]
    labels, boxes, scores = _run(onnx_path, det, [img])
    pred = det(img)  # same graph in PyTorch, boxes in original pixels
    top = 10
    assert labels[0, :top].tolist() == pred.labels[:top].tolist()
    assert np.abs(boxes[0, :top] - pred.boxes[:top].numpy()).max() < 1e-3
    assert np.abs(scores[0] - pred.scores.numpy()).max() < 1e-5
    assert boxes[0, :top, 0::2].max() > SIZE  # scaled to the 200 px wide original, not to the input size


def test_dynamic_batch_of_two(exported):
    onnx_path, det = exported
    images = _images()
    labels, boxes, scores = _run(onnx_path, det, images)
    assert labels.shape[0] == 2 and boxes.shape[:2] == scores.shape
    for i, img in enumerate(images):
        pred = det(img)
        assert labels[i, :10].tolist() == pred.labels[:10].tolist()
        assert np.abs(boxes[i, :10] - pred.boxes[:10].numpy()).max() < 1e-3


def test_check_onnx_reports_match(exported):
    onnx_path, det = exported
    res = check_onnx(onnx_path, graph=det.graph, cfg=det.cfg, image=_images()[1], runs=1)
    assert res["top_match"] and res["max_abs_scores"] < 1e-5
    assert res["torch_ms"] > 0 and res["onnxruntime_ms"] > 0


def test_missing_onnxruntime_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(DEIMv2Error, match=r'pip install -e "\.\[export\]"'):
        export_onnx(config="atto", output=tmp_path / "x.onnx")
