"""Fixtures of the browser test: a JupyterLab server on 127.0.0.1 and Debian's Chromium driven by Playwright.

These tests run only when selected explicitly with ``pytest -m browser`` (plain ``pytest`` deselects them).
They need ``/usr/bin/chromium`` (Debian: ``apt-get install -y chromium fonts-noto-cjk``) and the ``playwright``
pip package; ``playwright install`` is never needed because the system browser is used.
The kernels run in fast mode (``DEIMV2_FAST=1``); default mode is covered by the slow nbval test.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("DEIMV2_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SERVER_START_TIMEOUT_S = 180
APP_READY_TIMEOUT_S = 240

# JupyterLab settings for a quiet, deterministic page: every cell stays in the DOM (so that checks and
# screenshots see all outputs), no news/update requests, no extension manager (no network), and the widget
# state saved into the notebook (so that the test can tell a closed widget from one that was not drawn).
LAB_SETTINGS = {
    "@jupyter-widgets/jupyterlab-manager/plugin.jupyterlab-settings": {"saveState": True},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/extensionmanager-extension/plugin.jupyterlab-settings": {"enabled": False},
}


def pytest_collection_modifyitems(config, items):
    """Keep browser tests out of a run unless ``-m`` names the ``browser`` marker."""
    if "browser" in (config.option.markexpr or ""):
        return
    keep = [item for item in items if item.get_closest_marker("browser") is None]
    dropped = [item for item in items if item.get_closest_marker("browser") is not None]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabServer:
    """A JupyterLab server process serving ``root`` on 127.0.0.1 with a random token."""

    def __init__(self, root: Path, state: Path, env: dict[str, str]):
        self.root, self.state = root, state
        self.port, self.token = _free_port(), secrets.token_hex(16)
        self.base_url = f"http://127.0.0.1:{self.port}"
        settings_dir = state / "lab-settings"
        for rel, value in LAB_SETTINGS.items():
            path = settings_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(value), encoding="utf-8")
        self.log_path = state / "jupyterlab.log"
        cmd = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={root}",
            "--LabApp.expose_app_in_browser=True",
            f"--LabApp.user_settings_dir={settings_dir}",
            f"--LabApp.workspaces_dir={state / 'workspaces'}",
            "--LabApp.news_url=",
            "--ServerApp.terminals_enabled=False",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers run as root
            cmd.append("--allow-root")
        self._log = open(self.log_path, "w", encoding="utf-8")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            cmd, cwd=root, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def log_tail(self, n: int = 60) -> str:
        self._log.flush()
        lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(lines[-n:])

    def wait_ready(self, timeout: float = SERVER_START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        url = f"{self.base_url}/api/status?token={self.token}"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with code {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(1)
        raise TimeoutError(f"JupyterLab did not answer {url} within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:  # the server shuts its kernels down on SIGTERM/SIGINT; kill the group if it hangs
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=30)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=30)
        self._log.close()


@pytest.fixture(scope="session")
def browser_outputs() -> Path:
    """``outputs/browser/`` in the repo (git-ignored): screenshots and ``report.json`` for a person to look at."""
    out = REPO / "outputs" / "browser"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    return out


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    """JupyterLab serving a temporary copy of ``notebooks/*.ipynb`` (as ``<tmp>/notebooks/``), kernels in fast mode."""
    if not CHROMIUM.is_file():
        pytest.fail(
            f"找不到 Chromium：{CHROMIUM}。请先安装：apt-get install -y chromium fonts-noto-cjk"
            "（或用环境变量 DEIMV2_CHROMIUM 指定浏览器路径）。"
        )
    root = tmp_path_factory.mktemp("浏览器 测试")  # a Chinese path with a space, as learners have
    (root / "notebooks").mkdir()
    for nb in sorted((REPO / "notebooks").glob("*.ipynb")):
        shutil.copy2(nb, root / "notebooks" / nb.name)
    state = tmp_path_factory.mktemp("lab state")
    env = {
        **os.environ,
        "DEIMV2_FAST": "1",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        "JUPYTER_CONFIG_DIR": str(state / "config"),
        "JUPYTER_RUNTIME_DIR": str(state / "runtime"),
        "IPYTHONDIR": str(state / "ipython"),
        "MPLCONFIGDIR": str(state / "matplotlib"),
    }
    env.pop("MPLBACKEND", None)
    server = LabServer(root, state, env)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def playwright_session():
    """One Playwright (sync API) for the whole session: a second ``sync_playwright()`` inside it is refused."""
    try:
        from playwright import sync_api
    except ImportError:
        pytest.fail(
            '浏览器测试需要 playwright 包：pip install -e ".[dev]"（只用系统的 Chromium，不必运行 playwright install）。'
        )
    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def page(lab, tmp_path_factory, playwright_session):
    """A headless Chromium page (fresh profile) with JupyterLab loaded and ``window.jupyterapp`` started."""
    profile = tmp_path_factory.mktemp("chromium profile")
    with contextlib.nullcontext(playwright_session) as p:
        context = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 900},
            locale="zh-CN",
            timeout=120_000,
        )
        try:
            pg = context.pages[0] if context.pages else context.new_page()
            pg.set_default_timeout(120_000)
            pg.goto(
                f"{lab.base_url}/lab?reset&token={lab.token}",
                wait_until="domcontentloaded",
                timeout=APP_READY_TIMEOUT_S * 1000,
            )
            try:
                pg.wait_for_function(
                    "() => window.jupyterapp && window.jupyterapp.started !== undefined",
                    timeout=APP_READY_TIMEOUT_S * 1000,
                )
                pg.evaluate("() => window.jupyterapp.started.then(() => window.jupyterapp.restored)")
            except Exception as e:
                raise RuntimeError(
                    f"JupyterLab 页面在 {APP_READY_TIMEOUT_S} 秒内没有启动：{e}\n服务器日志：\n{lab.log_tail()}"
                ) from e
            yield pg
        finally:
            context.close()
