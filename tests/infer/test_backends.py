"""Detector backends: OpenVINO and onnxruntime give the torch path's detections; the ONNX cache; clean fallbacks."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from helpers.tinydata import TINY_TRAIN, calibrated_model, make_coco_dataset
from PIL import Image

from deimv2.cli import main as cli_main
from deimv2.config.loader import load_config
from deimv2.engine.api import train
from deimv2.errors import ConfigError, DEIMv2Error
from deimv2.infer import Detector, Prediction, backends

TINY = {
    **TINY_TRAIN,
    "batch_size": 2,
}
TOP = 10
RUNTIMES = ("onnxruntime", "openvino")


@pytest.fixture(autouse=True)
def _user_cache(tmp_path, monkeypatch):
    """Tests never write to the real user cache folder."""
    monkeypatch.setenv("DEIMV2_CACHE_DIR", str(tmp_path / "用户 缓存"))
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A checkpoint trained for a few steps on the tiny dataset, and its validation images."""
    root = tmp_path_factory.mktemp("训练 后")
    data = make_coco_dataset(root / "数据", n_train=8, n_val=4)
    out = root / "运行"
    train(
        "atto",
        data=data,
        output_dir=out,
        overrides=TINY,
        epochs=2,
        max_iters_per_epoch=3,
        progress=False,
        check_data=False,
    )
    return out / "best.pth", sorted((data / "valid").glob("*.jpg"))


def assert_same_detections(a: Prediction, b: Prediction, top: int = TOP) -> None:
    """|Δscore| < 1e-4 everywhere (both sorted), identical top-k labels, top-k boxes within 1e-3 px."""
    assert type(a) is type(b) and a.image_size == b.image_size and a.path == b.path
    assert len(a) == len(b)
    assert float((a.scores - b.scores).abs().max()) < 1e-4
    k = min(top, len(a))
    assert torch.equal(a.labels[:k], b.labels[:k]) and a.names[:k] == b.names[:k]
    assert float((a.boxes[:k] - b.boxes[:k]).abs().max()) < 1e-3 * max(1.0, max(a.image_size) / 1000)
    assert a.scores.dtype == b.scores.dtype == torch.float32 and a.labels.dtype == b.labels.dtype


def test_trained_checkpoint_auto_is_openvino_and_matches_torch(trained, capsys):
    ckpt, images = trained
    auto = Detector.from_checkpoint(ckpt, conf=0.0)  # the default backend
    torch_det = Detector.from_checkpoint(ckpt, conf=0.0, backend="torch")
    assert auto.backend.name == "openvino" and torch_det.backend.name == "torch"
    cached = list((ckpt.parent / backends.CACHE_DIRNAME).glob("best-*.onnx"))
    assert cached == [auto.backend.path]
    preds_t = torch_det.predict(images)  # one batch of 4
    for det in (auto, Detector.from_checkpoint(ckpt, conf=0.0, backend="onnxruntime")):
        assert det.backend.path == auto.backend.path  # both runtimes read the one cached export
        preds = det.predict(images)
        assert len(preds) == len(images)
        for a, b in zip(preds, preds_t):
            assert_same_detections(a, b)
            assert float(a.scores.max() - a.scores.min()) > 1e-3  # trained: scores are not all tied
        one = det(Image.open(images[0]))  # single PIL input, batch 1
        assert_same_detections(one, torch_det(Image.open(images[0])))
        three = det.predict(images[:3])  # another batch size: OpenVINO compiles a second static graph
        for a, b in zip(three, preds_t[:3]):
            assert_same_detections(a, b)
    assert sorted(auto.backend._requests) == [1, 3, 4]


def _calibrated(variant: str, size: int = 160) -> torch.nn.Module:
    """Random weights with BN statistics measured on random images (distinct scores, like trained weights)."""
    return calibrated_model(variant, num_classes=5, size=size, batch=2)


@pytest.mark.parametrize(("variant", "size"), [("atto", 160), ("n", 256), ("s", 160)])  # anchors >= queries
def test_random_weight_variants_runtimes_equal_torch(variant, size):
    model = _calibrated(variant, size)
    torch_det = Detector(model, conf=0.0, backend="torch")  # eval form
    rng = np.random.default_rng(3)
    imgs = [rng.integers(0, 256, (150, 210, 3), dtype=np.uint8), rng.integers(0, 256, (90, 60, 3), dtype=np.uint8)]
    want = torch_det.predict(imgs)
    for name in RUNTIMES:
        det = Detector(model, conf=0.0, backend=name)  # exports a deployed copy (once: the second reads the cache)
        assert det.backend.name == name and det.backend.path.parent.name == "onnx"
        for a, b in zip(det.predict(imgs), want):
            assert_same_detections(a, b)
    assert torch_det.backend.graph.model is model  # the caller's model was not folded in place


def test_in_memory_model_auto_stays_torch():
    det = Detector(_calibrated("atto", 96), conf=0.0)
    assert det.backend.name == "torch"


def test_cache_is_reused_and_rekeyed_when_anything_changes(trained, tmp_path, monkeypatch, capsys):
    ckpt, _ = trained
    copy = tmp_path / "副本 目录" / "best.pth"
    copy.parent.mkdir()
    copy.write_bytes(ckpt.read_bytes())
    first = Detector.from_checkpoint(copy, backend="onnxruntime").backend.path
    assert capsys.readouterr().out.count("导出为 ONNX") == 1
    again = Detector.from_checkpoint(copy, backend="onnxruntime").backend.path
    assert again == first and "导出为 ONNX" not in capsys.readouterr().out
    assert not list(first.parent.glob("*.tmp"))  # atomic write leaves no temp files

    real = backends._versions()
    monkeypatch.setattr(backends, "_versions", lambda: {**real, "onnxruntime": "9.9.9"})
    newer = Detector.from_checkpoint(copy, backend="onnxruntime").backend.path
    assert newer != first and newer.is_file() and not first.exists()  # stale export of this checkpoint removed
    assert "导出为 ONNX" in capsys.readouterr().out

    cfg = load_config("atto", num_classes=3)
    key = backends.cache_key("w", cfg)
    assert key == backends.cache_key("w", cfg)
    assert key != backends.cache_key("w2", cfg)
    assert key != backends.cache_key("w", cfg, opset=18)
    assert key != backends.cache_key("w", load_config("atto", num_classes=3, eval_spatial_size=[160, 160]))
    m1, m2 = _calibrated("atto", 96), _calibrated("atto", 96)
    assert backends.weights_hash(m1) == backends.weights_hash(m2)
    with torch.no_grad():
        next(m2.parameters()).add_(1e-6)
    assert backends.weights_hash(m1) != backends.weights_hash(m2)


def test_unwritable_checkpoint_folder_uses_user_cache(trained, tmp_path, monkeypatch):
    ckpt, _ = trained
    folder = tmp_path / "只读"
    folder.mkdir()
    (folder / "best.pth").write_bytes(ckpt.read_bytes())
    (folder / backends.CACHE_DIRNAME).write_text(
        "一个文件挡住了缓存目录", encoding="utf-8"
    )  # mkdir fails, even as root
    user = tmp_path / "用户 缓存 2"
    monkeypatch.setenv("DEIMV2_CACHE_DIR", str(user))
    det = Detector.from_checkpoint(folder / "best.pth")
    assert det.backend.name == "openvino" and det.backend.path.parent == user / "onnx"


def test_missing_runtimes_fall_back_in_order_then_to_torch_with_one_line(trained, monkeypatch, capsys):
    ckpt, images = trained
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    det = Detector.from_checkpoint(ckpt, conf=0.0)
    assert det.backend.name == "onnxruntime" and capsys.readouterr().out.count("\n") <= 1  # at most the export line
    with pytest.raises(DEIMv2Error, match="pip install onnx openvino"):
        Detector.from_checkpoint(ckpt, backend="openvino")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    det = Detector.from_checkpoint(ckpt, conf=0.0)
    out = capsys.readouterr().out.strip().splitlines()
    assert det.backend.name == "torch"
    assert len(out) == 1 and "openvino" in out[0] and "onnxruntime" in out[0] and "PyTorch" in out[0]
    assert len(det(images[0])) > 0
    with pytest.raises(DEIMv2Error, match="pip install onnx onnxruntime"):
        Detector.from_checkpoint(ckpt, backend="onnxruntime")


def test_runtime_that_cannot_load_gives_way_to_the_next_with_one_line(trained, monkeypatch, capsys):
    ckpt, images = trained
    Detector.from_checkpoint(ckpt)  # the export is cached: the only line below is the failure
    capsys.readouterr()

    def broken(self, path, threads=None):
        raise RuntimeError("模拟的编译失败")

    monkeypatch.setattr(backends.OpenVINOBackend, "__init__", broken)
    det = Detector.from_checkpoint(ckpt, conf=0.0)
    out = capsys.readouterr().out.strip().splitlines()
    assert det.backend.name == "onnxruntime" and len(out) == 1 and "openvino" in out[0] and "模拟的编译失败" in out[0]
    assert_same_detections(det(images[0]), Detector.from_checkpoint(ckpt, conf=0.0, backend="torch")(images[0]))


def test_export_failure_falls_back_to_torch_with_one_line(trained, tmp_path, monkeypatch, capsys):
    ckpt, images = trained
    copy = tmp_path / "导出 出错" / "best.pth"
    copy.parent.mkdir()
    copy.write_bytes(ckpt.read_bytes())

    def broken(graph, cfg, out, **kw):
        with open(out, "wb") as f:
            f.write(b"half")  # a half-written file must not become the cached model
        raise RuntimeError("模拟的导出失败")

    monkeypatch.setattr("deimv2.infer.backends.write_onnx", broken)
    det = Detector.from_checkpoint(copy, conf=0.0)
    out = [line for line in capsys.readouterr().out.splitlines() if "失败" in line]
    assert det.backend.name == "torch" and len(out) == 1 and "模拟的导出失败" in out[0]
    assert not list((copy.parent / backends.CACHE_DIRNAME).iterdir())
    assert_same_detections(det(images[0]), Detector.from_checkpoint(ckpt, conf=0.0)(images[0]))


def test_bad_backend_names_and_devices():
    model = _calibrated("atto", 96)
    with pytest.raises(ConfigError, match="未知的推理后端"):
        Detector(model, backend="tensorrt")
    det = Detector(model, backend="torch")
    for name in RUNTIMES:
        with pytest.raises(ConfigError, match=f"{name} 后端只用于 CPU"):
            backends.make_backend(name, det.graph, det.cfg, torch.device("cuda"))
    assert backends.make_backend("auto", det.graph, det.cfg, torch.device("cuda"), source="x.pth").name == "torch"


def test_session_turns_spinning_off_and_uses_torch_threads(trained):
    ckpt, _ = trained
    path = Detector.from_checkpoint(ckpt).backend.path
    torch.set_num_threads(2)
    try:
        opts = backends.ort_session(path).get_session_options()
    finally:
        torch.set_num_threads(1)
    assert opts.intra_op_num_threads == 2
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_openvino_runs_float32_with_torch_threads(trained):
    """OpenVINO's CPU default on AMX/AVX-512-BF16 machines is bfloat16: it must be switched off (exact results)."""
    ckpt, _ = trained
    path = Detector.from_checkpoint(ckpt).backend.path
    torch.set_num_threads(2)
    try:
        b = backends.OpenVINOBackend(path)
    finally:
        torch.set_num_threads(1)
    compiled = b._requests[1].get_compiled_model()
    assert compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f32"
    assert int(compiled.get_property("INFERENCE_NUM_THREADS")) == 2 == b.threads


def test_cli_predict_backend_flag(trained, tmp_path, capsys):
    ckpt, images = trained
    for name in ("torch", *RUNTIMES):
        assert (
            cli_main(
                [
                    "predict",
                    "-r",
                    str(ckpt),
                    "-i",
                    str(images[0]),
                    "-o",
                    str(tmp_path / name),
                    "--backend",
                    name,
                    "--conf",
                    "0",
                ]
            )
            == 0
        )
        assert f"推理后端 {name}" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli_main(["predict", "-r", str(ckpt), "-i", str(images[0]), "--backend", "tensorrt"])


def test_predict_latency_script_writes_tables_and_json(tmp_path, capsys):
    """benchmarks/predict_latency.py (= deimv2 bench) without the official code: atto, 1 round, 1 run."""
    import importlib.util
    import json
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "predict_latency.py"
    spec = importlib.util.spec_from_file_location("predict_latency", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "结果" / "latency.json"
    result = mod.main(
        ["--variants", "atto", "--rounds", "1", "--runs", "1", "--warmup", "0", "--threads", "1", "--json", str(out)]
    )
    saved = json.loads(out.read_text(encoding="utf-8"))
    assert saved == json.loads(json.dumps(result))
    assert {"date", "threads", "rounds", "runs", "loadavg_start", "loadavg_end", "cpu_count"} <= set(saved["meta"])
    row = saved["variants"]["atto"]
    assert row["default_backend"] == "openvino" and row["input"] == "320x320"
    for k in ("eager_ms", "deploy_ms", "onnxruntime_ms", "openvino_ms", "file_to_boxes_ms", "file_to_boxes_torch_ms"):
        assert row[k] > 0, k
    assert "official_eager_ms" not in row and row["identical_detections"] is True
    assert row["gflop"] > 0.1 and row["sgemm_gflops"] > 1
    assert row["detections"]["vs_torch"]["top_k"] == 10
    text = capsys.readouterr().out
    assert "文件→检测框（Detector 默认后端）" in text and "检测结果与PyTorch一致" in text


def test_cli_bench_on_a_checkpoint(trained, tmp_path, capsys):
    ckpt, images = trained
    out = tmp_path / "bench.json"
    assert (
        cli_main(
            [
                "bench",
                "-r",
                str(ckpt),
                "--image",
                str(images[0]),
                "--rounds",
                "1",
                "--runs",
                "1",
                "--threads",
                "1",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    import json

    row = json.loads(out.read_text(encoding="utf-8"))["variants"]["best"]
    assert row["input"] == "96x96" and row["default_backend"] == "openvino" and row["identical_detections"]
    assert "文件→检测框" in capsys.readouterr().out


def test_auto_order_per_family():
    for v, want in (("atto", ("openvino", "onnxruntime")), ("n", ("openvino", "onnxruntime")), ("s", ("openvino",))):
        assert backends.auto_order(load_config(v)) == want, v
    assert backends.auto_order(load_config("x")) == ("openvino",)
    s_cfg = load_config("s", num_classes=3)
    # an in-memory model, or no runtime for the family installed: torch
    assert backends.make_backend("auto", torch.nn.Identity(), s_cfg, torch.device("cpu")).name == "torch"
