"""benchmarks/epoch_cost.py: the summary arithmetic by hand, and a two-step Atto epoch that really runs."""

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "epoch_cost.py"
spec = importlib.util.spec_from_file_location("bench_epoch_cost", BENCH)
epoch_cost = importlib.util.module_from_spec(spec)
spec.loader.exec_module(epoch_cost)


def _atto(data, fwd, eval_s=1.0):
    parts = {"data": data, "forward": fwd, "criterion": 1.0, "backward": 4.0, "step": 1.0, "eval": eval_s}
    return {"images": 160, "parts_s": parts}


def test_summary_medians_shares_and_ratio():
    yolo = lambda f: {"images": 160, "parts_s": {"forward": f, "backward": 3.0, "step": 1.0}}  # noqa: E731
    rounds = [
        {
            "atto_b8": _atto(2.0, 2.0),
            "atto_b8_cf": _atto(2.0, 6.0),
            "atto_b16": _atto(1.0, 2.0),
            "yolo11n_b16": yolo(4.0),
        },
        {
            "atto_b8": _atto(4.0, 6.0),
            "atto_b8_cf": _atto(2.0, 6.0),
            "atto_b16": _atto(1.0, 2.0),
            "yolo11n_b16": yolo(4.0),
        },
        {
            "atto_b8": _atto(3.0, 4.0),
            "atto_b8_cf": _atto(2.0, 6.0),
            "atto_b16": _atto(1.0, 2.0),
            "yolo11n_b16": yolo(12.0),
        },
    ]
    s = epoch_cost.summarize(rounds)
    a8 = s["atto_b8"]
    assert a8["median_parts_s"] == {
        "data": 3.0,
        "forward": 4.0,
        "criterion": 1.0,
        "backward": 4.0,
        "step": 1.0,
        "eval": 1.0,
    }
    assert a8["train_compute_s"] == 10.0  # forward + criterion + backward + step, not data or eval
    assert a8["train_compute_ms_per_image"] == 62.5  # 10 s / 160 images
    assert s["yolo11n_b16"]["train_compute_s"] == 8.0  # median forward 4 + backward 3 + step 1
    assert a8["train_compute_vs_yolo11n"] == 1.25
    assert a8["epoch_s"] == 14.0 and a8["share"]["data"] == pytest.approx(3 / 14, abs=1e-3)
    assert s["atto_b16"]["train_compute_vs_yolo11n"] == 1.0
    assert s["atto_b8_cf"]["train_compute_vs_yolo11n"] == 1.5  # forward 6 + 1 + 4 + 1 = 12 s against 8 s


def test_atto_epoch_times_every_part(monkeypatch, tmp_path):
    import torch

    monkeypatch.setattr(epoch_cost.tempfile, "mkdtemp", lambda prefix="": str(tmp_path))
    threads = torch.get_num_threads()
    try:
        r = epoch_cost.atto_epoch(batch=8, threads=1, max_steps=2)
    finally:
        torch.set_num_threads(threads)  # the worker pins its own process; give the test process its threads back
    assert r["steps"] == 2 and r["images"] == 16
    assert set(r["parts_s"]) == {"data", "forward", "criterion", "backward", "step", "eval"}
    assert all(v > 0 for v in r["parts_s"].values())
