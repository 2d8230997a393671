"""--data accepts YOLO: converted once into a cache keyed by a fingerprint; doctor runs; read-only data works."""

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from deimv2.data import autodata
from deimv2.data.autodata import CACHE_DIR_NAME, prepare_data
from deimv2.data.demo import demo_dataset_dir
from deimv2.errors import DatasetError

TINY = {
    "HGNetv2.pretrained": False,
    "eval_spatial_size": [64, 64],
    "batch_size": 2,
    "num_workers": 0,
    "val_dataloader.num_workers": 0,
    "val_dataloader.total_batch_size": 4,
    "DEIMTransformer.num_queries": 20,
    "PostProcessor.num_top_queries": 20,
}


def make_yolo(root: Path, n_train: int = 4, n_val: int = 2, with_val: bool = True) -> Path:
    """Roboflow-layout YOLO set: red class 0 / blue class 1 rectangles, Chinese names, data.yaml."""
    splits = (("train", n_train), ("valid", n_val)) if with_val else (("train", n_train + n_val),)
    for split, n in splits:
        (root / split / "images").mkdir(parents=True)
        (root / split / "labels").mkdir(parents=True)
        for i in range(n):
            img = Image.new("RGB", (64, 48), (128, 128, 128))
            cls = i % 2
            ImageDraw.Draw(img).rectangle([8, 8, 40, 32], fill=(220, 40, 40) if cls == 0 else (40, 40, 220))
            img.save(root / split / "images" / f"图 {i}.jpg")
            (root / split / "labels" / f"图 {i}.txt").write_text(f"{cls} 0.375 0.417 0.5 0.5\n", encoding="utf-8")
    val = "valid/images" if with_val else "train/images"
    (root / "data.yaml").write_text(
        f"train: train/images\nval: {val}\nnc: 2\nnames: ['红框', '蓝框']\n", encoding="utf-8"
    )
    if not with_val:
        (root / "data.yaml").write_text("train: train/images\nnc: 2\nnames: ['红框', '蓝框']\n", encoding="utf-8")
    return root


def _anns(folder: Path, split: str = "train") -> dict:
    return json.loads((folder / split / "_annotations.coco.json").read_text(encoding="utf-8"))


def test_coco_data_is_used_as_it_is(tiny_coco):
    prep = prepare_data(tiny_coco)
    assert prep.kind == "coco" and prep.path == tiny_coco and not prep.converted
    assert not (tiny_coco / CACHE_DIR_NAME).exists()


def test_yolo_is_converted_once_then_reused(tmp_path, capsys):
    root = make_yolo(tmp_path / "我的 数据")
    first = prepare_data(root / "data.yaml", tmp_path / "out")
    out = capsys.readouterr().out
    assert first.kind == "yolo" and first.converted
    assert first.path == root / CACHE_DIR_NAME
    assert "YOLO" in out and str(first.path) in out and "已自动转换" in out
    coco = _anns(first.path)
    assert [c["name"] for c in coco["categories"]] == ["红框", "蓝框"]
    assert len(coco["images"]) == 4 and len(_anns(first.path, "valid")["images"]) == 2
    # a 64x48 image, box cx=0.375 cy=0.417 w=0.5 h=0.5 -> x0=8, y0≈8.0, w=32, h=24
    x, y, w, h = coco["annotations"][0]["bbox"]
    assert (x, w, h) == (8.0, 32.0, 24.0) and abs(y - 8.016) < 1e-3
    stamp = (first.path / "train" / "_annotations.coco.json").stat().st_mtime_ns

    again = prepare_data(root, tmp_path / "out")  # the folder works too, and nothing is rewritten
    assert again.path == first.path and not again.converted
    assert (first.path / "train" / "_annotations.coco.json").stat().st_mtime_ns == stamp
    assert "直接使用已转换的 COCO 副本" in capsys.readouterr().out


def test_edited_labels_are_converted_again(tmp_path, capsys):
    root = make_yolo(tmp_path / "ds")
    first = prepare_data(root)
    label = root / "train" / "labels" / "图 0.txt"
    label.write_text("1 0.375 0.417 0.5 0.5\n", encoding="utf-8")  # same size, other class
    second = prepare_data(root)
    assert second.converted and second.fingerprint != first.fingerprint
    assert "重新转换" in capsys.readouterr().out
    ann = next(a for a in _anns(second.path)["annotations"] if a["image_id"] == 1)
    assert ann["category_id"] == 1


def test_read_only_data_goes_under_the_output_folder(tmp_path, monkeypatch):
    root = make_yolo(tmp_path / "ro")
    real = autodata.is_writable
    monkeypatch.setattr(autodata, "is_writable", lambda folder: False if Path(folder) == root else real(folder))
    prep = prepare_data(root, tmp_path / "输出")
    assert prep.path.parent == tmp_path / "输出" / "data_cache"
    assert prep.path.name.startswith("ro-") and (prep.path / "valid" / "_annotations.coco.json").is_file()
    assert not (root / CACHE_DIR_NAME).exists()
    with pytest.raises(DatasetError, match="只读"):
        prepare_data(root, None)


def test_is_writable_really_tries(tmp_path):
    assert autodata.is_writable(tmp_path)
    assert not autodata.is_writable(tmp_path / "does not exist")


def test_doctor_errors_stop_before_converting(tmp_path):
    root = make_yolo(tmp_path / "bad")
    (root / "train" / "labels" / "图 1.txt").write_text("7 0.5 0.5 0.2 0.2\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="检查没有通过"):
        prepare_data(root)
    assert not (root / CACHE_DIR_NAME).exists()


def test_without_val_split_a_fifth_is_held_out(tmp_path, capsys):
    root = make_yolo(tmp_path / "flat", n_train=8, n_val=2, with_val=False)
    prep = prepare_data(root)
    assert "自动划分出验证集" in capsys.readouterr().out
    assert len(_anns(prep.path)["images"]) == 8 and len(_anns(prep.path, "valid")["images"]) == 2


def test_missing_data_is_a_chinese_error(tmp_path):
    with pytest.raises(DatasetError, match="找不到数据集"):
        prepare_data(tmp_path / "nothing here")


def test_train_and_evaluate_accept_a_yolo_yaml(tmp_path):
    from deimv2.engine.api import evaluate, train

    root = make_yolo(tmp_path / "训练 数据")
    metrics = train(
        "atto",
        data=root / "data.yaml",
        output_dir=tmp_path / "run",
        overrides=TINY,
        epochs=1,
        max_iters_per_epoch=1,
        progress=False,
    )
    assert Path(metrics["output_dir"], "best.pth").is_file()
    ev = evaluate(None, Path(metrics["output_dir"]) / "best.pth", data=root, progress=False)
    assert ev["class_names"] == ["红框", "蓝框"]


def test_cli_trains_the_bundled_yolo_demo_from_data_yaml(tmp_path):
    """Done-when of issue 17: ``deimv2 train -c atto --data .../data.yaml`` with no explicit conversion."""
    from deimv2.cli import main

    demo = shutil.copytree(demo_dataset_dir(), tmp_path / "演示 数据")  # not the repo copy: the cache is written
    rc = main(
        [
            "train",
            "-c",
            "atto",
            "--data",
            str(demo / "data.yaml"),
            "--output-dir",
            str(tmp_path / "out"),
            "-u",
            "epoches=1",
            "eval_spatial_size=[64,64]",
            "batch_size=16",
            "HGNetv2.pretrained=False",
            "num_workers=0",
            "val_dataloader.num_workers=0",
            "DEIMTransformer.num_queries=20",
            "PostProcessor.num_top_queries=20",
        ]
    )
    assert rc == 0
    assert (tmp_path / "out" / "best.pth").is_file() and (demo / CACHE_DIR_NAME / "train").is_dir()
    log = [json.loads(x) for x in (tmp_path / "out" / "log.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(log) == 1 and log[0]["epoch"] == 0
