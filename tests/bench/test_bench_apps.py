"""The large-scene generator (data/make_large_scenes.py) and the helpers of benchmarks/tiling.py and int8.py."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(f"m_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


scenes_gen = _load(ROOT / "data" / "make_large_scenes.py")


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("大图 数据")
    scenes_gen.make_dataset(out, size=256, scenes=2, tile=128, train_scenes=2, tiles_per_scene=3, density=150, seed=1)
    return out


def test_generator_boxes_are_inside_small_and_reproducible(small_set, tmp_path):
    data = json.loads((small_set / "scenes" / "_annotations.coco.json").read_text(encoding="utf-8"))
    assert [c["name"] for c in data["categories"]] == ["飞机", "船", "车辆", "建筑"]
    assert len(data["images"]) == 2 and data["annotations"]
    for a in data["annotations"]:
        x, y, w, h = a["bbox"]
        assert 0 <= x and 0 <= y and x + w <= 256 and y + h <= 256
        assert 3 <= max(w, h) <= 46  # 12-32 px sprites, rotated (a diagonal is at most 1.42x longer)
    tiles = json.loads((small_set / "tiles" / "train" / "_annotations.coco.json").read_text(encoding="utf-8"))
    assert len(tiles["images"]) == 3 and all(im["width"] == 128 for im in tiles["images"])
    for a in tiles["annotations"]:
        x, y, w, h = a["bbox"]
        assert x + w <= 128 and y + h <= 128
    again = tmp_path / "again"
    scenes_gen.make_dataset(again, size=256, scenes=2, tile=128, train_scenes=2, tiles_per_scene=3, density=150, seed=1)
    assert (again / "scenes" / "_annotations.coco.json").read_bytes() == (
        small_set / "scenes" / "_annotations.coco.json"
    ).read_bytes()


def test_coco_scores_of_ground_truth_is_perfect(small_set):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    tiling = _load(ROOT / "benchmarks" / "tiling.py")
    ann = small_set / "scenes" / "_annotations.coco.json"
    data = json.loads(ann.read_text(encoding="utf-8"))
    rows = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
        for a in data["annotations"]
    ]
    perfect = tiling.coco_scores(ann, rows)
    assert perfect["AP"] == pytest.approx(1.0) and perfect["AP50"] == pytest.approx(1.0)
    assert perfect["APs"] == pytest.approx(1.0)  # every object is small (area < 32²)
    assert tiling.coco_scores(ann, []) == {"AP": 0.0, "AP50": 0.0, "APs": 0.0}
    half = [dict(r, bbox=[r["bbox"][0] + 200, r["bbox"][1], r["bbox"][2], r["bbox"][3]]) for r in rows[::2]]
    assert tiling.coco_scores(ann, rows[1::2] + half)["AP50"] < 0.75  # half the objects missed


def test_int8_bench_reads_epochs_from_the_run_log(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    int8 = _load(ROOT / "benchmarks" / "int8.py")
    (tmp_path / "log.jsonl").write_text('{"epoch": 0}\n{"epoch": 4, "AP": 0.1}\n', encoding="utf-8")
    assert int8.trained_epochs(tmp_path / "best.pth") == 5  # epochs 0..4 finished
    assert int8.trained_epochs(tmp_path / "没有" / "best.pth") is None


def test_tiling_bench_summarises_the_training_log(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    tiling = _load(ROOT / "benchmarks" / "tiling.py")
    rows = [{"epoch": 0, "time_s": 10.0, "AP": 0.1, "AP50": 0.2}, {"epoch": 1, "time_s": 5.5, "AP": 0.05, "AP50": 0.3}]
    (tmp_path / "log.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    got = tiling.run_log(tmp_path / "best.pth")
    assert got == {"epochs": 2, "train_wall_s": 15.5, "best_epoch": 1, "tile_val_AP": 0.1, "tile_val_AP50": 0.2}
    assert tiling.run_log(tmp_path / "没有" / "best.pth") == {}
