"""Runs that go wrong: two runs into one folder at once, Ctrl-C, kill -9 and a full disk during a checkpoint save.

Each goes through ``deimv2.cli.main`` (``kill -9`` through a real subprocess) with a tiny CPU training; each asserts
the exit status, a Chinese message without traceback, and that the last good checkpoint survives and resumes.
"""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers.badfiles import TINY_U, run_cli, tiny_coco

from deimv2.engine.checkpoint import load_checkpoint


def _train(data: Path, out: Path, epochs: int, *extra) -> list:
    return ["train", "-c", "atto", "--data", data, "--output-dir", out, *extra, "-u", *TINY_U, f"epochs={epochs}"]


def _sha(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def _epochs_logged(out: Path) -> list[int]:
    import json

    return [json.loads(line)["epoch"] for line in (out / "log.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return tiny_coco(tmp_path_factory.mktemp("runs") / "数据 集")


@pytest.fixture(scope="module")
def run_beside_a_live_one(data, tmp_path_factory):
    """Another run holds ``训练`` (claimed, no checkpoint yet) while ours starts into the same folder."""
    root = tmp_path_factory.mktemp("two")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        (root / "训练").mkdir()
        (root / "训练" / ".deimv2-run").write_text(str(other.pid), encoding="utf-8")
        code, out, err = run_cli(_train(data, root / "训练", 1))
    finally:
        other.kill()
        other.wait()
    return root, code, out + err


def test_two_runs_into_one_folder_at_once(run_beside_a_live_one):
    root, code, text = run_beside_a_live_one
    assert code == 0, text
    assert (root / "训练-2" / "last.pth").is_file() and (root / "训练-2" / "best.pth").is_file()
    assert sorted(p.name for p in (root / "训练").iterdir()) == [".deimv2-run"]  # the other run's folder untouched
    assert "训练-2" in text and "Traceback" not in text


def test_ctrl_c_then_resume(data, tmp_path, monkeypatch):
    from deimv2.engine.trainer import Trainer

    original = Trainer.train_one_epoch

    def interrupted(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch)

    monkeypatch.setattr(Trainer, "train_one_epoch", interrupted)
    out = tmp_path / "中断 的训练"
    code, _, err = run_cli(_train(data, out, 2))
    assert code == 130 and "已中断" in err and "-r" in err and "Traceback" not in err
    assert load_checkpoint(out / "last.pth")["epoch"] == 0 and _epochs_logged(out) == [0]

    monkeypatch.setattr(Trainer, "train_one_epoch", original)
    code, text, err = run_cli(_train(data, out, 2, "-r", out / "last.pth"))
    assert code == 0, err
    assert "从" in text and "第 2 轮开始" in text  # 1-based: epoch 1 was done
    assert load_checkpoint(out / "last.pth")["epoch"] == 1 and _epochs_logged(out) == [0, 1]


def test_disk_full_during_checkpoint_save_keeps_the_good_one(run_beside_a_live_one, tmp_path, monkeypatch):
    import shutil

    good = tmp_path / "run"
    shutil.copytree(run_beside_a_live_one[0] / "训练-2", good)
    before = {n: _sha(good / n) for n in ("last.pth", "best.pth")}
    real_save = torch.save

    def full_disk(obj, f, *a, **k):
        if hasattr(f, "write"):
            f.write(b"PK\x03\x04 half a checkpoint")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", full_disk)
    data = Path(load_checkpoint(good / "last.pth")["config"]["train_dataloader"]["dataset"]["img_folder"]).parent
    code, _, err = run_cli(_train(data, good, 2, "-r", good / "last.pth"))
    assert code == 2, err
    assert "磁盘空间已满" in err and str(good / "last.pth") in err and "完好无损" in err and "Traceback" not in err
    assert {n: _sha(good / n) for n in before} == before
    assert not [p.name for p in good.iterdir() if ".tmp" in p.name]
    assert load_checkpoint(good / "last.pth")["epoch"] == 0


def test_kill_9_then_resume(data, tmp_path):
    out = tmp_path / "被杀 的训练"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    argv = [sys.executable, "-m", "deimv2", *map(str, _train(data, out, 2))]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 300
        while not (out / "last.pth").is_file() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        assert (out / "last.pth").is_file(), "the training never wrote last.pth"
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    ckpt = load_checkpoint(out / "last.pth")  # whole, never half-written
    code, _, err = run_cli(_train(data, out, 2, "-r", out / "last.pth"))
    assert code == 0, err
    assert load_checkpoint(out / "last.pth")["epoch"] == 1 >= ckpt["epoch"]
    assert _epochs_logged(out)[-1] == 1
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]  # a temp file of the killed save is gone


def test_a_claim_left_by_a_dead_run_is_taken_over(tmp_path):
    from deimv2.engine.run_files import fresh_output_dir
    from deimv2.utils.outputs import RUN_MARKER

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / RUN_MARKER).write_text(str(dead.pid), encoding="utf-8")
    assert fresh_output_dir(tmp_path / "run") == tmp_path / "run"  # nobody is using it: no run-2
    assert (tmp_path / "run" / RUN_MARKER).read_text(encoding="utf-8") == str(os.getpid())
    assert fresh_output_dir(tmp_path / "run") == tmp_path / "run"  # our own claim is ours
