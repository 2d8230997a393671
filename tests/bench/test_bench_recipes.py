"""benchmarks/recipes.py without training: YOLO-style predictions scored by pycocotools, trial names, load samples."""

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "recipes.py"
spec = importlib.util.spec_from_file_location("bench_recipes", BENCH)
recipes = importlib.util.module_from_spec(spec)
spec.loader.exec_module(recipes)


def _gt(path: Path) -> Path:
    gt = {
        "images": [{"id": 7, "file_name": "a.jpg", "width": 100, "height": 100}],
        "categories": [{"id": 0, "name": "猫"}, {"id": 1, "name": "硬币"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 1, "bbox": [10, 20, 30, 40], "area": 1200, "iscrowd": 0}
        ],
    }
    path.write_text(json.dumps(gt), encoding="utf-8")
    return path


def test_coco_scores_of_yolo_predictions(tmp_path):
    ann = _gt(tmp_path / "gt.json")
    # class index 1 -> category id 1; the box [x1, y1, x2, y2] = [10, 20, 40, 60] is the ground truth exactly
    perfect = [{"file": "a.jpg", "dets": [[10, 20, 40, 60, 0.9, 1]]}]
    assert recipes.coco_scores(ann, perfect) == {"AP": 1.0, "AP50": 1.0}
    wrong_class = [{"file": "a.jpg", "dets": [[10, 20, 40, 60, 0.9, 0]]}]
    assert recipes.coco_scores(ann, wrong_class) == {"AP": 0.0, "AP50": 0.0}
    # IoU = 0.6 (box shifted by 10 of 40 px in height: 30/50): counts at 0.5, not at 0.75 and above
    shifted = [{"file": "a.jpg", "dets": [[10, 30, 40, 70, 0.9, 1]]}]
    s = recipes.coco_scores(ann, shifted)
    assert s["AP50"] == 1.0 and 0.0 < s["AP"] < 0.5
    assert recipes.coco_scores(ann, [{"file": "a.jpg", "dets": []}]) == {"AP": 0.0, "AP50": 0.0}


def test_every_trial_is_complete_and_unknown_names_fail():
    for name, t in recipes.TRIALS.items():
        assert t["kind"] in ("deimv2", "yolo") and t["epochs"] >= 1, name
        if t["kind"] == "deimv2":
            assert t["recipe"] in (None, "small") and isinstance(t["update"], dict), name
    with pytest.raises(SystemExit, match="未知的 trial"):
        recipes.main(["no_such_trial"])


def test_load_sampler_records_loadavg():
    with recipes.LoadSampler(every=60) as load:
        pass
    assert len(load.samples) == 1 and len(load.samples[0]) == 4


def test_photo2_splits_record_the_generating_commands(tmp_path):
    work = recipes.ROOT / "outputs" / "recipes" / "data"
    s = recipes.splits("photo2", {"yolo": work / "photo2_yolo", "test_yolo": work / "photo2_heldout_seed1234_yolo"})
    assert s["train"].endswith(
        "python data/make_photo2_dataset.py --out outputs/recipes/data/photo2_yolo --train 160 --valid 48 --seed 2025"
    )
    assert (
        "photo2_heldout_seed1234_yolo --train 1 --valid 96 --seed 1234" in s["test"] and "never tuned on" in s["test"]
    )
    demo = recipes.splits("demo", {})  # the text of the demo trials' JSONs, unchanged
    assert demo["test"] == "held-out: data/make_demo_dataset.py --seed 1234 --valid 96, never tuned on"
    (tmp_path / "data.yaml").write_text(
        "# 注释\ntrain: train/images\n\nnc: 2\nnames: ['摩托车', '人']\n", encoding="utf-8"
    )
    assert recipes.yaml_names(tmp_path) == ["摩托车", "人"]
    with pytest.raises(SystemExit):
        recipes.main(["small_e40", "--dataset", "no_such_set"])
