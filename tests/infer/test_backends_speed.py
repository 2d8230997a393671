"""The torch backend's channels-last deploy graph gives the eager model's detections; the ``auto`` table and the
channels-last families agree with the measurements in benchmarks/results/; preprocessing is exact."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.tinydata import calibrated_model
from PIL import Image
from test_backends import assert_same_detections

from deimv2.config.loader import load_config
from deimv2.infer import backends
from deimv2.infer.detector import Detector

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


@pytest.fixture(autouse=True)
def _one_thread(tmp_path, monkeypatch):
    monkeypatch.setenv("DEIMV2_CACHE_DIR", str(tmp_path / "用户 缓存"))
    torch.set_num_threads(1)


def _images():
    rng = np.random.default_rng(5)
    return [rng.integers(0, 256, (150, 210, 3), dtype=np.uint8), rng.integers(0, 256, (90, 60, 3), dtype=np.uint8)]


@pytest.mark.parametrize(("variant", "size"), [("atto", 160), ("n", 256), ("s", 160)])
def test_torch_deploy_path_equals_eager(variant, size):
    """Deploy form (BN folded, channels-last for HGNetv2 on CPU) vs the untouched eval model."""
    model = calibrated_model(variant, num_classes=5, size=size, batch=2)
    ref = Detector(model, conf=0.0, backend="torch")  # eval form: weights never converted
    ref.backend.memory_format = torch.contiguous_format  # the plain NCHW reference
    hgnet = backends.family(model.config) == "hgnetv2"
    eager = Detector(model, conf=0.0, backend="torch")
    assert eager.backend.channels_last is hgnet  # channels-last input only
    assert all(p.is_contiguous() for p in model.parameters())
    fast = Detector(copy.deepcopy(model), conf=0.0, deploy=True, backend="torch")  # what from_checkpoint builds
    assert fast.backend.channels_last is hgnet
    convs = [m.weight for m in fast.graph.modules() if isinstance(m, torch.nn.Conv2d)]
    convs = [w for w in convs if w.shape[1] > 1 and w.shape[2] > 1]  # 1x1 / depthwise kernels: either format
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) is hgnet for w in convs)
    want = ref.predict(_images())
    for det in (fast, eager):
        for a, b in zip(det.predict(_images()), want):
            assert_same_detections(a, b)


def test_channels_last_only_on_cpu_weights_only_in_deploy_form():
    model = calibrated_model("atto", num_classes=3, size=96, batch=2)
    det = Detector(model, backend="torch")
    b = backends.torch_backend(det.graph, det.cfg, torch.device("cpu"), deployed=False)
    assert b.channels_last and all(p.is_contiguous() for p in model.parameters())  # input only
    assert not backends.torch_backend(det.graph, det.cfg, torch.device("cuda"), deployed=True).channels_last
    s_cfg = load_config("s", num_classes=3)
    assert not backends.torch_backend(torch.nn.Identity(), s_cfg, torch.device("cpu"), deployed=True).channels_last


def test_preprocess_is_exact():
    det = Detector(calibrated_model("atto", num_classes=3, size=96, batch=2), backend="torch")
    ims = [Image.fromarray(a) for a in _images()]
    x, sizes = det.preprocess(ims)
    assert x.dtype == torch.float32 and x.shape == (2, 3, 96, 96)
    for i, im in enumerate(ims):
        want = torch.from_numpy(np.array(im.resize((96, 96), Image.BILINEAR))).permute(2, 0, 1).float() / 255.0
        assert torch.equal(x[i], want)
    assert sizes.tolist() == [[210, 150], [60, 90]]


def test_openvino_gets_the_resized_pixels_and_divides_inside(monkeypatch, tmp_path):
    """OpenVINO reads uint8 [B,H,W,3] (its compiled pre-processing converts, divides by 255 and transposes)."""
    monkeypatch.setenv("DEIMV2_CACHE_DIR", str(tmp_path / "缓存"))
    det = Detector(calibrated_model("atto", num_classes=3, size=160, batch=2), backend="openvino")  # anchors >= queries
    ims = [Image.fromarray(a) for a in _images()]
    pixels, sizes = det.preprocess(ims)
    assert pixels.dtype == torch.uint8 and pixels.shape == (2, 160, 160, 3)
    for i, im in enumerate(ims):
        assert torch.equal(pixels[i], torch.from_numpy(np.array(im.resize((160, 160), Image.BILINEAR))))
    assert sizes.tolist() == [[210, 150], [60, 90]]
    with pytest.raises(ValueError, match="uint8"):
        det.backend(pixels.permute(0, 3, 1, 2).float() / 255.0, sizes)  # the torch form is refused, not misread


def _results(name: str) -> dict:
    return json.loads((RESULTS / name).read_text(encoding="utf-8"))


def _clearly(a: float, b: float, margin: float = 0.05) -> bool | None:
    """True when ``a`` is clearly faster than ``b``, False when clearly slower, None within ±5 % (parity)."""
    return True if a < (1 - margin) * b else False if a > (1 + margin) * b else None


@pytest.mark.parametrize("name", ["predict_backends_cpu2.json", "predict_backends_cpu2_t2.json"])
def test_auto_table_is_what_measured_faster(name):
    """AUTO_CPU lists, per family, the runtimes auto tries in order; the recorded benchmarks must not contradict it:
    a runtime clearly faster than PyTorch deploy is listed, one clearly slower is not, and no listed runtime is
    clearly slower than the one listed after it."""
    rows = _results(name)["variants"]
    assert {"atto", "n", "s"} <= set(rows)
    for v, row in rows.items():
        fam = backends.family(load_config(v))
        order = backends.AUTO_CPU[fam]
        for rt in ("onnxruntime", "openvino"):
            faster = _clearly(row[f"{rt}_over_deploy"], 1.0)
            if faster is not None:
                assert (rt in order) is faster, (v, rt, row[f"{rt}_over_deploy"])
        for first, then in zip(order, order[1:]):
            assert _clearly(row[f"{first}_ms"], row[f"{then}_ms"]) is not False, (v, first, then)
        assert row["default_backend"] == order[0] and row["identical_detections"]
        assert row["torch_channels_last"] is (fam in backends.CHANNELS_LAST_CPU)


@pytest.mark.parametrize("name", ["torch_speedups_cpu2.json"])
def test_channels_last_families_are_those_measured_faster(name):
    rows = _results(name)["variants"]
    assert {"atto", "n", "s"} <= set(rows)
    for v, row in rows.items():
        if backends.family(load_config(v)) in backends.CHANNELS_LAST_CPU:  # input and deploy weights converted
            pairs = (("deploy_channels_last", "deploy"), ("eval_channels_last_input", "eval_inference_mode"))
            for fast, base in pairs:
                assert _clearly(row[f"{fast}_ms"], row[f"{base}_ms"]) is True, (v, fast)
        else:  # weights left as they are: converting them must not be clearly faster
            assert _clearly(row["deploy_channels_last_ms"], row["deploy_ms"]) is not True, v


def test_model_train_after_detector_is_undone_for_torch_only():
    """``_run`` puts the graph back in eval mode only when needed (walking every module costs ms per call)."""
    model = calibrated_model("atto", num_classes=3, size=160, batch=2)
    det = Detector(model, conf=0.0, backend="torch")
    before = det(_images()[0])
    model.train()
    after = det(_images()[0])
    assert not model.training and not any(m.training for m in det.graph.modules())
    assert_same_detections(before, after)


@pytest.mark.parametrize(("act", "scale", "folded"), [("relu", 1.7, True), ("relu", -0.8, False), ("silu", 1.7, False)])
def test_hgnetv2_deploy_folds_bn_and_positive_lab_scale(act, scale, folded):
    from deimv2.models import hgnetv2

    torch.manual_seed(0)
    block = hgnetv2.ConvBNAct(6, 8, 3, 1, use_lab=True, act=act)
    bn = block.bn
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5), bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5), bn.bias.uniform_(-0.2, 0.2)
        block.lab.scale.fill_(scale), block.lab.bias.fill_(0.3)
    block.eval()
    x = torch.randn(2, 6, 11, 13)
    with torch.no_grad():
        want = block(x)
        block.convert_to_deploy()
        block.convert_to_deploy()  # second call: no-op
        got = block(x)
    assert isinstance(block.bn, torch.nn.Identity) and block.conv.bias is not None
    assert isinstance(block.lab, hgnetv2.LearnableAffineBlock) is not folded
    assert float((got - want).abs().max()) < 1e-5


def test_deploy_graph_of_hgnetv2_has_no_backbone_bn():
    from deimv2.models import hgnetv2

    det = Detector(calibrated_model("atto", num_classes=3, size=96, batch=2), deploy=True, backend="torch")
    backbone = det.graph.model.backbone
    assert not [m for m in backbone.modules() if isinstance(m, (hgnetv2.FrozenBatchNorm2d, torch.nn.BatchNorm2d))]
    assert not [m for m in backbone.modules() if isinstance(m, hgnetv2.LearnableAffineBlock)]  # init scale 1 > 0
