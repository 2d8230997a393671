"""The VRAM guide: docs/training.md's table is what benchmarks/vram.py makes from the measured JSON; the rule by hand."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location("bench_vram", ROOT / "benchmarks" / "vram.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


vram = _load()
GIB = 2**30


def _fake(static_gib, per_image_gib, recipe_batch=32, size=640):
    fit = {"per_image": int(per_image_gib * GIB), "intercept": 0, "from": "batch 1, 2"}
    return {
        "train_size": size,
        "params": int(static_gib * GIB / 16),
        "static_bytes": int(static_gib * GIB),
        "recipe_batch": recipe_batch,
        "fit": {"fp32": fit, "amp": fit},
    }


def test_training_doc_table_is_generated_from_the_json():
    data = json.loads((ROOT / "benchmarks" / "results" / "vram_cpu.json").read_text(encoding="utf-8"))
    assert set(data["variants"]) == set(vram.VARIANTS)
    for v in data["variants"].values():
        assert v["act_bytes"]["fp32"]["1"] > v["act_bytes"]["amp"]["1"] > 0
    page = (ROOT / "docs" / "training.md").read_text(encoding="utf-8")
    assert vram.readme_block(page) == vram.guide_markdown(data)
    assert vram.START not in (ROOT / "README.md").read_text(encoding="utf-8")  # one home: docs/training.md


def test_recommendation_hand_worked():
    # peak(b) = (static + b * per_image) * (1 + MARGIN); MARGIN = 0.5 -> (1 + b) * 1.5 GiB here
    assert vram.MARGIN == 0.5 and vram.MIN_MICRO_BATCH == 4
    small = _fake(1, 1)
    assert vram.peak_gb(small, 4, amp=True) == pytest.approx(7.5)
    assert vram.max_micro_batch(small, 8, amp=True) == 4  # (1 + 4) * 1.5 = 7.5 <= 8 < (1 + 8) * 1.5
    assert vram.max_micro_batch(small, 4, amp=True) == 1  # (1 + 2) * 1.5 = 4.5 > 4
    big = _fake(2, 2)
    data = {"variants": {"atto": small, "x": big}}
    r = vram.recommend(data, 8)  # x: (2 + 4 * 2) * 1.5 = 15 > 8 -> atto
    assert (r["variant"], r["micro_batch"], r["accumulate"]) == ("atto", 4, 8)
    r = vram.recommend(data, 16)  # x at micro 4: 15 <= 16
    assert (r["variant"], r["micro_batch"], r["accumulate"], r["peak_gb"]) == ("x", 4, 8, 15.0)
    assert vram.recommend(data, 4) is None


def test_replace_block_keeps_the_rest():
    text = f"前面\n{vram.START}\n旧表\n{vram.END}\n后面"
    out = vram.replace_block(text, "新表")
    assert out == f"前面\n{vram.START}\n新表\n{vram.END}\n后面" and vram.readme_block(out) == "新表"
    with pytest.raises(ValueError):
        vram.replace_block("没有标记", "x")
