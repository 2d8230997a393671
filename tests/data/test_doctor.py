"""Dataset doctor: each problem is found with the right severity; the bundled demo data is clean."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from deimv2.data.demo import demo_dataset_dir
from deimv2.data.doctor import check_dataset
from deimv2.errors import DatasetError


def _coco(root: Path, images=None, anns=None, cats=None, files=("a.jpg", "b.jpg")) -> Path:
    d = root / "train"
    d.mkdir(parents=True, exist_ok=True)
    for f in files:
        Image.new("RGB", (100, 80), (10, 20, 30)).save(d / f)
    images = (
        images
        if images is not None
        else [
            {"id": 1, "file_name": "a.jpg", "width": 100, "height": 80},
            {"id": 2, "file_name": "b.jpg", "width": 100, "height": 80},
        ]
    )
    anns = (
        anns
        if anns is not None
        else [
            {"id": 1, "image_id": 1, "category_id": 0, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [0, 0, 50, 40], "area": 2000, "iscrowd": 0},
        ]
    )
    cats = cats if cats is not None else [{"id": 0, "name": "猫"}, {"id": 1, "name": "狗"}]
    (d / "_annotations.coco.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats}, ensure_ascii=False), encoding="utf-8"
    )
    return root


def _codes(rep, level):
    return {i.code for i in rep.issues if i.level == level}


def test_clean_coco(tmp_path):
    rep = check_dataset(_coco(tmp_path / "ok 数据"), num_classes=2)
    assert rep.ok and not rep.issues and rep.format_name == "coco"
    assert rep.id_base == 0 and rep.num_classes_needed == 2
    assert rep.class_counts == {"猫": 1, "狗": 1}
    assert rep.box_sizes == {"small": 1, "medium": 1, "large": 0}  # 400 < 32² <= 2000 < 96²
    assert rep.splits["train"] == {"images": 2, "boxes": 2, "negatives": 0}
    assert "可以训练" in rep.format() and json.dumps(rep.to_dict(), ensure_ascii=False)


def test_one_based_ids_and_num_classes_too_small(tmp_path):
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "iscrowd": 0},
        {"id": 2, "image_id": 2, "category_id": 2, "bbox": [0, 0, 50, 40], "iscrowd": 0},
    ]
    rep = check_dataset(
        _coco(tmp_path, anns=anns, cats=[{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]), num_classes=1
    )
    # deimv2 maps categories to contiguous labels: 2 classes are needed whatever the id base
    assert rep.id_base == 1 and rep.num_classes_needed == 2
    assert "one_based" in _codes(rep, "info")
    assert _codes(rep, "error") == {"num_classes_small"} and not rep.ok
    assert "num_classes" in rep.format() and "device-side assert" in rep.format()
    assert check_dataset(tmp_path, num_classes=2).ok


def test_missing_and_corrupt_images(tmp_path):
    root = tmp_path
    images = [
        {"id": 1, "file_name": "a.jpg", "width": 100, "height": 80},
        {"id": 2, "file_name": "b.jpg", "width": 100, "height": 80},
        {"id": 3, "file_name": "trunc.jpg", "width": 100, "height": 80},
        {"id": 4, "file_name": "junk.jpg", "width": 100, "height": 80},
    ]
    _coco(root, images=images, files=("a.jpg",))
    Image.new("RGB", (100, 80)).save(root / "train" / "full.jpg")
    data = (root / "train" / "full.jpg").read_bytes()
    (root / "train" / "trunc.jpg").write_bytes(data[: len(data) // 2])
    (root / "train" / "junk.jpg").write_bytes(b"not an image at all")
    rep = check_dataset(root)
    errs = {i.code: i for i in rep.errors}
    assert set(errs) == {"missing_image", "corrupt_image"}
    assert errs["missing_image"].examples == ["b.jpg"]
    assert errs["corrupt_image"].count == 2
    assert any("trunc.jpg" in e for e in errs["corrupt_image"].examples)
    assert not check_dataset(root, deep=True).ok


def test_duplicate_ids_unknown_category_and_box_warnings(tmp_path):
    images = [
        {"id": 1, "file_name": "a.jpg", "width": 100, "height": 80},
        {"id": 1, "file_name": "b.jpg", "width": 100, "height": 80},
    ]
    anns = [
        {"id": 1, "image_id": 1, "category_id": 0, "bbox": [10, 10, 0, 20], "iscrowd": 0},
        {"id": 1, "image_id": 1, "category_id": 5, "bbox": [90, 70, 20, 20], "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 0, "bbox": [200, 10, 5, 5], "iscrowd": 0},
    ]
    rep = check_dataset(_coco(tmp_path, images=images, anns=anns))
    assert {"duplicate_image_id", "duplicate_ann_id", "unknown_category", "invalid_box"} <= _codes(rep, "error")
    assert {"box_clipped", "unused_category"} <= _codes(rep, "warning")
    bad = next(i for i in rep.errors if i.code == "invalid_box")
    assert bad.count == 2 and any("宽或高为 0" in e for e in bad.examples) and any("图像" in e for e in bad.examples)
    assert rep.num_classes_needed == 2  # the declared categories; id 5 is an error of its own


def test_size_mismatch_is_error(tmp_path):
    images = [
        {"id": 1, "file_name": "a.jpg", "width": 200, "height": 80},
        {"id": 2, "file_name": "b.jpg", "width": 100, "height": 80},
    ]
    assert "size_mismatch" in _codes(check_dataset(_coco(tmp_path, images=images)), "error")


def test_yolo_bad_lines(tmp_path):
    root = tmp_path / "y"
    (root / "images").mkdir(parents=True)
    for n in ("a", "b", "c"):
        Image.new("RGB", (64, 64)).save(root / "images" / f"{n}.jpg")
    (root / "labels").mkdir()
    (root / "labels" / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n1 0.5 0.5\n", encoding="utf-8")
    (root / "labels" / "b.txt").write_text("2 0.5 0.5 0.1 0.1\n0 0.95 0.5 0.2 0.2\n", encoding="utf-8")
    (root / "labels" / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n", encoding="utf-8")
    (root / "classes.txt").write_text("甲\n乙\n", encoding="utf-8")
    rep = check_dataset(root)
    assert rep.format_name == "yolo" and not rep.ok
    bad = next(i for i in rep.errors if i.code == "bad_label_line")
    assert bad.count == 2 and any("a.txt 第 2 行" in e for e in bad.examples)
    assert any("b.txt 第 1 行" in e for e in bad.examples)
    assert {"box_clipped", "orphan_label"} <= _codes(rep, "warning")
    assert rep.splits["train"]["negatives"] == 1 and rep.class_counts == {"甲": 2, "乙": 0}


def test_not_a_dataset(tmp_path):
    with pytest.raises(DatasetError):
        check_dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError):
        check_dataset(tmp_path / "empty")


def test_bundled_demo_dataset_is_clean():
    root = demo_dataset_dir()
    rep = check_dataset(root, num_classes=4)
    assert rep.ok, rep.format()
    assert rep.splits["train"]["images"] >= 150 and rep.splits["val"]["images"] >= 40
    assert len(rep.categories) >= 3 and all(c > 0 for c in rep.class_counts.values())
    assert not rep.warnings


def test_two_ids_with_one_name_are_named_and_counted_apart(tmp_path):
    """Two category ids called "猫": a warning naming both ids, and the box counts of each id kept apart."""
    rep = check_dataset(_coco(tmp_path / "同名 类别", cats=[{"id": 0, "name": "猫"}, {"id": 1, "name": "猫"}]))
    assert "duplicate_category_name" in _codes(rep, "warning") and rep.ok
    assert "猫：id 0、1" in rep.format() and "合并到一个 id" in rep.format()
    assert rep.class_counts == {"猫（id 0）": 1, "猫（id 1）": 1}
