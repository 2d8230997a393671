"""The web demo (``deimv2 app``) in headless Chromium: upload a demo image, see boxes, raise the confidence
slider, see fewer boxes. Runs only with ``pytest -m browser`` (see conftest.py)."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("DEIMV2_CHROMIUM", "/usr/bin/chromium"))
DEMO_IMAGE = sorted((REPO / "deimv2" / "assets" / "demo_yolo" / "valid" / "images").glob("*.jpg"))[0]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def app_url(tmp_path):
    pytest.importorskip("gradio")
    sys.path.insert(0, str(REPO / "tests"))
    from helpers.tinydata import calibrated_atto

    from deimv2.engine.checkpoint import make_checkpoint, save_checkpoint

    model = calibrated_atto(4, seed=3)  # measured BN statistics: the scores are spread like a trained model's
    ckpt = make_checkpoint(
        model=model,
        epoch=1,
        global_step=1,
        best_ap=0.0,
        config=model.config.raw,
        class_names=["猫", "咖啡杯", "硬币", "火箭"],
        category_ids=[0, 1, 2, 3],
    )
    path = save_checkpoint(ckpt, tmp_path / "网页 演示" / "best.pth")
    port = _port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    log = open(tmp_path / "app.log", "w", encoding="utf-8")  # noqa: SIM115
    cmd = [sys.executable, "-m", "deimv2", "app", "-r", str(path), "--port", str(port), "--conf", "0.0"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert proc.poll() is None, (tmp_path / "app.log").read_text(encoding="utf-8")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(1)
    else:
        pytest.fail("deimv2 app did not answer within 180 s:\n" + (tmp_path / "app.log").read_text(encoding="utf-8"))
    yield url
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def _count(page, previous: int | None = None, timeout_s: float = 120) -> int:
    """The number in "检测到 N 个目标" once it shows (and differs from ``previous``)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        m = re.search(r"检测到 (\d+) 个目标", page.locator("#deimv2-summary").inner_text())
        if m and int(m.group(1)) != previous:
            return int(m.group(1))
        time.sleep(0.5)
    raise AssertionError(f"summary did not change from {previous}: {page.locator('#deimv2-summary').inner_text()}")


def test_upload_see_boxes_raise_slider_see_fewer(app_url, tmp_path, playwright_session):
    if not CHROMIUM.exists():
        pytest.fail(f"找不到 Chromium：{CHROMIUM}。请先安装：apt-get install -y chromium fonts-noto-cjk")
    with contextlib.nullcontext(playwright_session) as p:  # the session's Playwright (conftest.py)
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.goto(app_url)
        page.locator("#deimv2-input input[type=file]").set_input_files(str(DEMO_IMAGE))
        many = _count(page)
        assert many > 0
        page.locator("#deimv2-result img").wait_for(state="visible", timeout=60_000)  # the picture with boxes
        page.screenshot(path=str(tmp_path / "boxes.png"))
        number = page.locator("#deimv2-conf input[type=number]")
        number.fill("0.3")
        number.press("Enter")
        fewer = _count(page, previous=many)
        assert fewer < many
        browser.close()
