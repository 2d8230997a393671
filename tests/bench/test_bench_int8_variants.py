"""benchmarks/int8_variants.py: its helpers by hand-worked values, and the whole pipeline for Atto on a tiny setting."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("nncf")
pytest.importorskip("openvino")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))  # int8_variants imports int8, which imports tiling
_spec = importlib.util.spec_from_file_location("bench_int8_variants", ROOT / "benchmarks" / "int8_variants.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def _finite(obj) -> bool:
    if isinstance(obj, dict):
        return all(_finite(v) for v in obj.values())
    if isinstance(obj, list):
        return all(_finite(v) for v in obj)
    return not isinstance(obj, float) or math.isfinite(obj)


@pytest.mark.parametrize("variant", ["atto", "n", "s"])
def test_train_overrides_train_every_variant_from_scratch(variant):
    from deimv2.config.loader import load_config
    from deimv2.weights.load import expected_backbone_path

    cfg = load_config(variant, bench.train_overrides(128))
    assert expected_backbone_path(cfg) is None  # no backbone file asked for: S's ViT too
    assert list(cfg.eval_spatial_size) == [128, 128]


def test_finished_needs_best_pth_and_the_same_settings(tmp_path):
    run = tmp_path / "训练 目录"
    run.mkdir()
    settings = {"epochs": 40, "size": 256, "max_iters_per_epoch": None, "recipe": "small", "seed": 0}
    assert not bench.finished(run, settings)
    (run / bench.SETTINGS).write_text(json.dumps(settings), encoding="utf-8")
    assert not bench.finished(run, settings)  # no best.pth
    (run / "best.pth").write_bytes(b"x")
    assert bench.finished(run, settings)
    assert not bench.finished(run, {**settings, "epochs": 20})
    (run / bench.SETTINGS).unlink()  # a run that never returned (interrupted)
    assert not bench.finished(run, settings)


def test_training_summary_reads_last_and_best_epoch(tmp_path):
    rows = [
        {"epoch": 0, "time_s": 10.0, "AP": 0.1, "AP50": 0.2},
        {"epoch": 1, "time_s": 12.5, "AP": 0.3, "AP50": 0.5},
        {"epoch": 2, "time_s": 11.0, "AP": 0.25, "AP50": 0.55},
    ]
    (tmp_path / "log.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    assert bench.training_summary(tmp_path) == {
        "epochs": 3,
        "train_wall_s": 33.5,
        "final_val": {"AP": 0.25, "AP50": 0.55},
        "best_val": {"epoch": 2, "AP": 0.3, "AP50": 0.5},  # counted from 1
    }


def test_check_category_ids_catches_a_shifted_mapping(tmp_path):
    ann = tmp_path / "_annotations.coco.json"
    cats = [{"id": 0, "name": "猫"}, {"id": 1, "name": "咖啡杯"}]
    ann.write_text(json.dumps({"images": [], "annotations": [], "categories": cats}), encoding="utf-8")
    bench.check_category_ids(SimpleNamespace(class_names=["猫", "咖啡杯"], category_ids=[0, 1]), ann)
    with pytest.raises(SystemExit, match="不一致"):
        bench.check_category_ids(SimpleNamespace(class_names=["猫", "咖啡杯"], category_ids=[1, 2]), ann)
    with pytest.raises(SystemExit, match="不一致"):
        bench.check_category_ids(SimpleNamespace(class_names=["咖啡杯", "猫"], category_ids=[0, 1]), ann)


def test_whole_pipeline_for_atto_writes_a_complete_json(tmp_path, monkeypatch):
    from deimv2.config.recipes import recipe_overrides

    work, out = tmp_path / "工作 目录", tmp_path / "结果" / "int8 variants.json"
    tiny = ["--epochs", "1", "--max-iters", "1", "--size", "160", "--threads", "1", "--calib-limit", "4"]
    argv = ["--variants", "atto", *tiny, "--rounds", "1", "--runs", "1", "--work", str(work), "--json", str(out)]
    # in a process of its own, as users run it: xdist workers that ran this pipeline in-process (training, NNCF,
    # OpenVINO at 1 and 2 threads) died of a segmentation fault minutes later, in unrelated tests
    script = ROOT / "benchmarks" / "int8_variants.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script), *argv], env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text(encoding="utf-8"))
    assert _finite(data)
    assert {"date", "threads", "rounds", "runs", "loadavg_start", "loadavg_end"} <= set(data["meta"])
    assert data["training"]["epochs"] == 1 and data["training"]["max_iters_per_epoch"] == 1
    n_train = len(json.loads((work / "demo" / "train" / "_annotations.coco.json").read_text("utf-8"))["images"])
    assert data["data"]["train"] == f"demo train split ({n_train} images)"

    atto = data["variants"]["atto"]
    assert atto["trained_in_this_run"] is True and atto["input"] == [160, 160]
    assert atto["backends"] == {"float32": "openvino", "int8": "openvino-int8"}
    assert atto["training"]["epochs"] == 1 and atto["training"]["best_val"]["epoch"] == 1
    assert atto["training"]["batch_size"] == recipe_overrides("small")["train_dataloader.total_batch_size"]
    assert atto["quantization"]["calibration_images"] == 4 and atto["quantization"]["wall_s"] > 0
    for name in ("float32", "int8"):
        assert 0.0 <= atto["accuracy"][name]["AP"] <= atto["accuracy"][name]["AP50"] <= 1.0
    assert atto["latency"]["image"].endswith(".jpg")
    for threads in ("threads_1", "threads_2"):
        row = atto["latency"][threads]
        assert all(row[k]["median_ms"] > 0 and len(row[k]["rounds_ms"]) == 1 for k in ("float32", "int8"))
        assert row["speedup"] == pytest.approx(row["float32"]["median_ms"] / row["int8"]["median_ms"])
    assert (work / "atto" / "best_int8.xml").is_file()

    # the same settings again: the finished run is reused, nothing is trained
    monkeypatch.setattr("deimv2.engine.api.train", lambda *a, **k: pytest.fail("trained again"))
    settings = json.loads((work / "atto" / "train" / bench.SETTINGS).read_text(encoding="utf-8"))
    assert bench.train_variant("atto", work / "demo", work / "atto" / "train", settings) is False
