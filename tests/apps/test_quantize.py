"""INT8: deimv2 export --int8 --calib (NNCF PTQ on the OpenVINO model), the INT8 backend and its load message."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("nncf")
pytest.importorskip("openvino")
from deimv2.apps.quantize import calibration_images, default_int8_path, int8_detector  # noqa: E402
from deimv2.cli import main  # noqa: E402
from deimv2.errors import DatasetError  # noqa: E402


def _images(folder, n):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (60 + i, 80, 3), dtype=np.uint8)).save(folder / f"图 {i}.jpg")
    return folder


def test_calibration_images_spread_and_errors(tmp_path):
    root = tmp_path / "数据 集"
    _images(root / "train", 10)
    _images(root / "valid", 3)
    picked = calibration_images(root, limit=4)  # the train/ subfolder, every 2nd image
    assert [p.name for p in picked] == ["图 0.jpg", "图 2.jpg", "图 4.jpg", "图 6.jpg"]
    with pytest.raises(DatasetError, match="不存在"):
        calibration_images(tmp_path / "没有")
    (tmp_path / "空").mkdir()
    with pytest.raises(DatasetError, match="没有图片"):
        calibration_images(tmp_path / "空")


@pytest.fixture(scope="module")
def int8_files(tmp_path_factory):
    from helpers.badfiles import random_checkpoint

    t = tmp_path_factory.mktemp("int8 模型")
    ckpt = random_checkpoint(t / "best.pth")
    calib = _images(t / "校准 图片", 6)
    # the CLI in a process of its own (tests/bench/test_bench_int8_variants.py says why)
    argv = [sys.executable, "-m", "deimv2", "export", "-r", str(ckpt), "--int8", "--calib", str(calib)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "INT8" in proc.stdout + proc.stderr
    return ckpt, calib


def test_export_int8_writes_a_quantized_model(int8_files):
    import openvino as ov

    ckpt, _ = int8_files
    xml = default_int8_path(ckpt)
    assert xml.name == "best_int8.xml" and xml.is_file() and xml.with_suffix(".bin").is_file()
    ops = {op.get_type_name() for op in ov.Core().read_model(str(xml)).get_ops()}
    assert "FakeQuantize" in ops  # NNCF inserted the INT8 quantize/dequantize pairs


def test_int8_backend_says_so_every_load_and_predicts(int8_files, capsys, monkeypatch):
    ckpt, calib = int8_files
    seen = []
    monkeypatch.setattr(logging.getLogger("deimv2.apps.quantize"), "warning", lambda msg, *a: seen.append(msg % a))
    det = int8_detector(ckpt, conf=0.0, max_det=5)
    int8_detector(ckpt, conf=0.0)
    assert len(seen) == 2 and all("INT8" in m and "best_int8.xml" in m for m in seen)  # logged on every load
    assert det.backend.name == "openvino-int8"
    pred = det(next(calib.iterdir()))
    assert len(pred) == 5 and pred.names[0].startswith("类")


def test_int8_needs_calib_and_model(tmp_path, int8_files, capsys):
    ckpt, _ = int8_files
    assert main(["export", "-r", str(ckpt), "--int8"]) == 2
    assert "--calib" in capsys.readouterr().err
    with pytest.raises(DatasetError, match="export"):
        int8_detector(ckpt, model=tmp_path / "没有.xml")
