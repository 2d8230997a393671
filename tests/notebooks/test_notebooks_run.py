"""The notebooks as learners run them (marker ``slow_notebooks``; not part of the default ``pytest`` run).

1. Default mode (``DEIMV2_FAST=0``): every numbered notebook, in order, "Run All", from a clean folder that holds
   only the ``.ipynb`` files (the demo training included: minutes).
2. Installed, not cloned: a non-editable wheel in a fresh venv, the notebooks copied alone into an empty folder
   with a Chinese name and a space, run there (fast mode).

Run with ``pytest -m slow_notebooks tests/notebooks/test_notebooks_run.py`` (``.ci/run`` does); wall times are measured
by ``benchmarks/notebooks_run.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NB_DIR = ROOT / "notebooks"
RUNNER = Path(__file__).parents[1] / "helpers" / "nbrun.py"
pytestmark = pytest.mark.slow_notebooks


@pytest.fixture
def workdir():
    """A private temporary folder: pytest's shared basetemp may be pruned by other pytest runs during these long tests."""
    path = Path(tempfile.mkdtemp(prefix="deimv2_notebooks_"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _check(cmd, **kwargs) -> str:
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, **kwargs)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


def _copy_notebooks(dst: Path) -> list[str]:
    dst.mkdir(parents=True)
    names = sorted(p.name for p in NB_DIR.glob("[0-9][0-9]_*.ipynb"))
    for name in names:
        shutil.copy2(NB_DIR / name, dst / name)
    return names


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DEIMV2_FAST", "MPLBACKEND")}
    env.setdefault("OMP_NUM_THREADS", "2")
    env.update(extra)
    return env


def _run(python: str, folder: Path, env: dict, label: str) -> dict[str, float]:
    """Run tests/helpers/nbrun.py; its start/ok/FAILED lines are echoed as they come (seen with ``pytest -s``, as in CI)."""
    lines = []
    with subprocess.Popen(
        [python, str(RUNNER), str(folder)],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith(("start ", "ok ", "FAILED ")):
                print(f"[{label} {time.strftime('%H:%M:%S')}] {line}", end="", flush=True)
    out = "".join(lines)
    assert proc.returncode == 0, out[-12000:]
    seconds = json.loads(out.rsplit("SECONDS ", 1)[1])
    if os.environ.get("DEIMV2_NOTEBOOK_TIMES"):  # benchmarks/notebooks_run.py collects per-notebook wall times
        with open(os.environ["DEIMV2_NOTEBOOK_TIMES"], "a", encoding="utf-8") as f:
            f.write(json.dumps({"run": label, "seconds": seconds}) + "\n")
    return seconds


def _text(folder: Path, name: str) -> str:
    """All text outputs of an executed notebook."""
    out = []
    for cell in nbformat.read(folder / name, as_version=4).cells:
        for o in cell.get("outputs", []):
            assert o.output_type != "error", f"{name}: {o.get('ename')}: {o.get('evalue')}"
            out.append(
                o.get("text", "")
                + str(o.get("data", {}).get("text/plain", ""))
                + str(o.get("data", {}).get("text/markdown", ""))
            )
    return "\n".join(out)


def _check_outputs(folder: Path, names: list[str]) -> None:
    for name in names:
        _text(folder, name)  # no error outputs anywhere
    assert "IndexError" in _text(folder, "02_convert.ipynb")  # the teaching error is shown, not raised
    assert (folder / "outputs" / "04_train" / "run" / "best.pth").is_file()
    assert not (folder.parent / "outputs").exists(), "a notebook wrote outside its folder"
    train_text = _text(folder, "04_train.ipynb")
    assert "官方 COCO 权重" in train_text or "无法下载" in train_text
    for name in ("05_inference.ipynb", "06_evaluate.ipynb", "10_applications.ipynb"):  # 04 ran first: no fallback
        assert "没有找到 04_train.ipynb 训练的模型" not in _text(folder, name), name
    apps = _text(folder, "10_applications.ipynb")  # tiled inference, tracking, INT8 and the web page all ran
    assert "分块推理（tile=" in apps and "条轨迹" in apps and "openvino-int8" in apps and "网页已构建" in apps
    assert (folder / "outputs" / "10_applications" / "跟踪结果.txt").is_file()


def test_all_notebooks_run_all_in_default_mode(workdir):
    folder = workdir / "notebooks"
    names = _copy_notebooks(folder)
    seconds = _run(sys.executable, folder, _env(DEIMV2_FAST="0", PYTHONPATH=str(ROOT)), "default_mode")
    assert list(seconds) == names
    _check_outputs(folder, names)
    assert "示例数据集专用设置" in _text(folder, "04_train.ipynb")  # the demo-only settings are announced


def _venv_with_wheel(tmp_path: Path) -> Path:
    """A fresh venv holding the wheel; the dev environment's packages (torch …) reached through a .pth line."""
    wheels = tmp_path / "wheels"
    _check(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(ROOT)],
        cwd=tmp_path,
        env=_env(),
    )
    wheel = next(wheels.glob("deimv2-*.whl"))
    venv = tmp_path / "venv"
    _check([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = str(venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))
    site = _check([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip()
    # a plain path line: the dev site-packages joins sys.path after the venv's own, and its .pth files (the
    # editable install of the clone) are not processed, so the wheel's copy of deimv2 is the one imported
    Path(site, "dev_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    # --ignore-installed: the dev environment's own deimv2 (editable, or on PYTHONPATH) must not count as installed
    _check(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            python,
            "install",
            "--no-deps",
            "--ignore-installed",
            "-q",
            str(wheel),
        ],
        cwd=tmp_path,
        env=_env(),
    )
    return Path(python)


def test_notebooks_run_from_installed_wheel_in_an_empty_folder(workdir):
    python = _venv_with_wheel(workdir)
    folder = workdir / "我的 notebooks"
    names = _copy_notebooks(folder)
    probe = "import deimv2, deimv2.data.demo as d; print(deimv2.__file__); print(d.demo_dataset_dir())"
    where = _check([str(python), "-c", probe], cwd=folder, env=_env()).split("\n")
    assert all(Path(p).resolve().is_relative_to((workdir / "venv").resolve()) for p in where[:2]), where
    _run(str(python), folder, _env(DEIMV2_FAST="1"), "installed_wheel_fast_mode")
    _check_outputs(folder, names)
