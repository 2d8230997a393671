"""The web demo's request function (slider, class filter, tiling) and the page build; the page itself is tested in
a real browser by tests/browser/test_webapp_in_browser.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.tinydata import calibrated_atto
from PIL import Image

from deimv2.infer.detector import Detector

gr = pytest.importorskip("gradio")
from deimv2.apps.webapp import build_app, detect  # noqa: E402

NAMES = ["飞机", "船", "车辆"]


@pytest.fixture(scope="module")
def det():
    torch.set_num_threads(1)
    return Detector(calibrated_atto(3), class_names=NAMES, conf=0.3, max_det=50, backend="torch")


@pytest.fixture(scope="module")
def image():
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (120, 200, 3), dtype=np.uint8))


def _count(text: str) -> int:
    return int(text.split("检测到 ")[1].split(" 个目标")[0])


def test_slider_and_class_filter(det, image):
    scores = det(image, conf=0.0).scores
    mid = float(scores[len(scores) // 2])
    low_img, low = detect(det, image, 0.0, NAMES, False)
    _, high = detect(det, image, mid + 1e-6, NAMES, False)
    assert _count(low) == 50 and 0 < _count(high) < _count(low)
    assert low_img.size == image.size and low_img.tobytes() != image.tobytes()  # boxes drawn
    _, only = detect(det, image, 0.0, ["船"], False)
    assert only.startswith("检测到") and "船" in only and "飞机" not in only and "车辆" not in only
    assert detect(det, image, 0.0, [], False)[1].endswith("0 个目标。")
    assert detect(det, None, 0.5, NAMES, False) == (None, "请先上传一张图片。")


def test_tiling_checkbox(det):
    big = Image.fromarray(np.random.default_rng(1).integers(0, 256, (200, 400, 3), dtype=np.uint8))
    _, plain = detect(det, big, 0.0, NAMES, False)
    _, tiled = detect(det, big, 0.0, NAMES, True)
    assert _count(plain) == 50 and _count(tiled) == 50  # both valid; tiling runs the tiles + whole image


def test_build_app_is_a_gradio_page(det):
    app = build_app(det)
    assert isinstance(app, gr.Blocks)
    ids = {getattr(b, "elem_id", None) for b in app.blocks.values()}
    assert {"deimv2-input", "deimv2-conf", "deimv2-classes", "deimv2-tile", "deimv2-summary"} <= ids


def test_cli_lists_new_commands_and_refuses_a_missing_checkpoint(tmp_path, capsys):
    from deimv2.cli import main

    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "track" in out and "app" in out
    with pytest.raises(SystemExit):
        main(["app", "--help"])
    assert "--share" in capsys.readouterr().out
    assert main(["app", "-r", str(tmp_path / "没有 的.pth")]) == 2  # a clear error, no server started
    assert "没有 的.pth" in capsys.readouterr().err
