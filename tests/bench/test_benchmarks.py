"""Smoke tests of benchmarks/latency.py and benchmarks/train_step.py without the official code (atto, 1 run);
the second benchmark dataset's generator (data/make_photo2_dataset.py)."""

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks"
PHOTO2 = BENCH_DIR.parent / "data" / "make_photo2_dataset.py"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


latency = _load("latency")
train_step = _load("train_step")


def test_speedup_pct_hand_values():
    assert latency.speedup_pct(40.0, 50.0) == pytest.approx(25.0)
    assert latency.speedup_pct(50.0, 40.0) == pytest.approx(-20.0)


def test_max_abs_diff_nested_and_shape_mismatch():
    a = [torch.tensor([1.0, 2.0]), (torch.tensor([[0.5]]),)]
    b = [torch.tensor([1.0, 2.25]), (torch.tensor([[0.0]]),)]
    assert latency.max_abs_diff(a, b) == pytest.approx(0.5)
    assert latency.max_abs_diff(torch.zeros(2), torch.zeros(3)) == math.inf
    assert latency.max_abs_diff([torch.zeros(1)], [torch.zeros(1)] * 2) == math.inf


def test_fill_nan_bias_masks_q_k_v_pattern():
    m = nn.Module()
    m.attn = nn.Module()
    m.attn.register_buffer("bias_mask", torch.full((6,), float("nan")))
    m.register_buffer("bias_mask", torch.ones(3))  # finite: left alone
    assert latency.fill_nan_bias_masks(m) == 1
    assert m.attn.bias_mask.tolist() == [1.0, 1.0, 0.0, 0.0, 1.0, 1.0]
    assert latency.fill_nan_bias_masks(m) == 0


def test_load_official_missing_dir_says_how_to_get_it(tmp_path):
    with pytest.raises(SystemExit, match="Intellindust-AI-Lab/DEIMv2"):
        latency.load_official(tmp_path / "没有 官方代码", "atto")


def test_run_worker_reports_failure(tmp_path):
    bad = tmp_path / "坏 脚本.py"
    bad.write_text("import sys\nprint('oops', file=sys.stderr)\nsys.exit(3)\n", encoding="utf-8")
    res = latency.run_worker(bad, ["ours", "atto"], timeout=60)
    assert "退出码 3" in res["error"] and "oops" in res["error"]


def test_ours_latency_atto_one_run():
    r = latency.ours_latency("atto", runs=1, warmup=0, threads=1)
    assert r["input"] == "320x320" and r["runs"] == 1 and r["median_ms"] > 0


def test_latency_main_without_official_writes_json(tmp_path):
    out = tmp_path / "结果 latency.json"
    summary = latency.main(["--variants", "atto", "--runs", "1", "--warmup", "0", "--threads", "1", "--json", str(out)])
    saved = json.loads(out.read_text(encoding="utf-8"))
    assert saved["rows"] == summary
    meta = saved["meta"]
    assert meta["threads"] == 1 and meta["rounds"] == 1 and meta["date"][:2] == "20"
    assert len(meta["loadavg_start"]) == 3 and len(meta["loadavg_end"]) == 3
    row = saved["rows"][0]
    assert row["variant"] == "atto" and row["ours_ms"] > 0
    assert row["official_ms"] is None and row["official_runs"] == []
    assert row["max_abs_diff_fp32"] is None and row["max_abs_diff_fp64"] is None and row["fidelity_ok"] is None


def test_make_batch_deterministic_three_to_five_boxes():
    images, targets = train_step.make_batch(32, 48, seed=1)
    images2, targets2 = train_step.make_batch(32, 48, seed=1)
    assert images.shape == (4, 3, 32, 48) and torch.equal(images, images2)
    for t, t2 in zip(targets, targets2):
        assert 3 <= len(t["labels"]) <= 5 and t["labels"].dtype == torch.int64
        assert torch.equal(t["boxes"], t2["boxes"])
        cxcy, wh = t["boxes"][:, :2], t["boxes"][:, 2:]
        assert (cxcy - wh / 2 >= 0).all() and (cxcy + wh / 2 <= 1).all()


def test_ours_train_step_atto_one_run():
    r = train_step.ours_train_step("atto", runs=1, warmup=0, threads=1)
    assert r["input"] == "4x3x320x320" and r["median_ms"] > 0
    assert math.isfinite(r["first_loss"]) and all(3 <= n <= 5 for n in r["boxes"])


def test_demo_run_script_records_what_the_demo_wrote(tmp_path):
    out = tmp_path / "结果 demo.json"
    result = _load("demo_run").main(["--fast", "--threads", "1", "--json", str(out)])
    saved = json.loads(out.read_text(encoding="utf-8"))
    assert saved["fast"] is True and saved["schedule"]["epochs"] == 2 and saved["recipe"] == "small"
    assert [c["epoch"] for c in saved["curve"]] == [1, 2]
    assert 0.0 <= saved["final"]["AP50"] <= 1.0 and saved["final"] == result["final"]
    assert saved["meta"]["threads"] == 1 and saved["wall_s"] > 0
    assert "mAP@0.5" in saved["stdout_tail"]
    # the figures the demo itself printed last (its evaluation of best.pth), not training's last epoch
    printed = saved["stdout_tail"].split("最终 mAP@0.5:0.95 = ")[1]
    assert printed.startswith(f"{saved['final']['AP']:.3f}，mAP@0.5 = {saved['final']['AP50']:.3f}")


def _generator_python() -> str:
    """$DEIMV2_GEN_PYTHON, else this Python: it must import the generator's tools (scikit-image, ultralytics for
    its shipped photos), which are not dependencies of deimv2 — hence the ``datagen`` marker."""
    py = os.environ.get("DEIMV2_GEN_PYTHON") or sys.executable
    check = subprocess.run([py, "-c", "import skimage, ultralytics"], capture_output=True, text=True)
    if check.returncode != 0:
        pytest.fail(
            f"{py} 不能导入 scikit-image / ultralytics：请设置 DEIMV2_GEN_PYTHON 为装了它们的 Python，例如 "
            "python3 -m venv gen-venv && gen-venv/bin/pip install scikit-image ultralytics"
        )
    return py


@pytest.mark.datagen
def test_photo2_generator_writes_a_deterministic_two_class_yolo_dataset(tmp_path):
    from deimv2.data.doctor import check_dataset

    py = _generator_python()

    def gen(out: Path, seed: int) -> Path:
        args = ["--out", str(out), "--train", "4", "--valid", "2", "--seed", str(seed)]
        r = subprocess.run([py, str(PHOTO2), *args], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        return out

    a, b, c = gen(tmp_path / "第二 数据集 a", 7), gen(tmp_path / "b", 7), gen(tmp_path / "c", 8)
    rep = check_dataset(a, num_classes=2)
    assert rep.ok and not rep.warnings, rep.format()
    assert rep.format_name == "yolo" and rep.categories == {0: "摩托车", 1: "人"} and rep.num_classes_needed == 2
    assert rep.splits["train"]["images"] == 4 and rep.splits["val"]["images"] == 2
    assert rep.splits["train"]["negatives"] == rep.splits["val"]["negatives"] == 0
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 2 * 6 + 1 and all(f.name.startswith("photo2_") for f in files if f.suffix != ".yaml")
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)  # same seed: byte-identical
    assert any((a / f).read_bytes() != (c / f).read_bytes() for f in files if f.suffix == ".jpg")  # another seed
