"""Dataset layouts: the dataset check (doctor) and the trainer accept and reject exactly the same layouts.

Every accepted layout and several wrong ones are built in a folder whose name is Chinese with a space. For each,
``find_dataset`` (what the trainer's ``read_dataset`` calls), ``check_dataset`` (what ``train()`` runs first)
and ``prepare_data`` (how ``--data`` decides COCO vs YOLO) must agree: same splits, same folders, or all reject.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from deimv2.config.run_config import build_run_config
from deimv2.data.autodata import prepare_data
from deimv2.data.dataset import CocoDetection
from deimv2.data.doctor import check_dataset
from deimv2.data.layout import SplitFiles, find_dataset, read_coco_json, split_alias
from deimv2.engine.setup import read_dataset
from deimv2.errors import DatasetError

ROOT = "我的 数据集"


def _split(ann_file: Path, img_folder: Path, names=("图 1.jpg", "图 2.png")) -> None:
    """One COCO split: ``names`` written as 32x24 images into ``img_folder``, annotations into ``ann_file``."""
    img_folder.mkdir(parents=True, exist_ok=True)
    ann_file.parent.mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i, name in enumerate(names, 1):
        Image.new("RGB", (32, 24), (30 * i, 90, 150)).save(img_folder / name)
        images.append({"id": i, "file_name": name, "width": 32, "height": 24})
        anns.append({"id": i, "image_id": i, "category_id": 0, "bbox": [4, 4, 10, 8], "area": 80, "iscrowd": 0})
    data = {"images": images, "annotations": anns, "categories": [{"id": 0, "name": "猫"}]}
    ann_file.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def _roboflow(r: Path):
    _split(r / "train" / "_annotations.coco.json", r / "train")
    _split(r / "valid" / "_annotations.coco.json", r / "valid")
    return {"train": ("train", "train/_annotations.coco.json"), "val": ("valid", "valid/_annotations.coco.json")}


def _roboflow_val_test(r: Path):
    _split(r / "train" / "_annotations.coco.json", r / "train")
    _split(r / "val" / "_annotations.coco.json", r / "val")
    _split(r / "test" / "_annotations.coco.json", r / "test")
    return {
        "train": ("train", "train/_annotations.coco.json"),
        "val": ("val", "val/_annotations.coco.json"),
        "test": ("test", "test/_annotations.coco.json"),
    }


def _any_json_name(r: Path):  # train/foo.json: the folder's only json
    _split(r / "train" / "标注.json", r / "train")
    _split(r / "Valid" / "labels.json", r / "Valid")
    return {"train": ("train", "train/标注.json"), "val": ("Valid", "Valid/labels.json")}


def _year_folders(r: Path):
    _split(r / "train2017" / "_annotations.coco.json", r / "train2017")
    _split(r / "val2017" / "_annotations.coco.json", r / "val2017")
    return {
        "train": ("train2017", "train2017/_annotations.coco.json"),
        "val": ("val2017", "val2017/_annotations.coco.json"),
    }


def _json_beside_images_folder(r: Path):
    _split(r / "train" / "_annotations.coco.json", r / "train" / "images")
    _split(r / "validation" / "_annotations.coco.json", r / "validation")
    return {
        "train": ("train/images", "train/_annotations.coco.json"),
        "val": ("validation", "validation/_annotations.coco.json"),
    }


def _coco_classic(r: Path):
    _split(r / "annotations" / "instances_train2017.json", r / "train2017")
    _split(r / "annotations" / "instances_val2017.json", r / "val2017")
    (r / "annotations" / "captions_train2017.json").write_text("{}", encoding="utf-8")  # not a split: ignored
    return {
        "train": ("train2017", "annotations/instances_train2017.json"),
        "val": ("val2017", "annotations/instances_val2017.json"),
    }


def _coco_images_subfolders(r: Path):
    _split(r / "annotations" / "instances_train.json", r / "images" / "train")
    _split(r / "annotations" / "instances_val.json", r / "images" / "val")
    return {
        "train": ("images/train", "annotations/instances_train.json"),
        "val": ("images/val", "annotations/instances_val.json"),
    }


def _coco_one_images_folder(r: Path):
    _split(r / "annotations" / "train.json", r / "images", names=("甲.jpg", "乙.jpg"))
    _split(r / "annotations" / "val.json", r / "images", names=("丙.jpg",))
    return {"train": ("images", "annotations/train.json"), "val": ("images", "annotations/val.json")}


def _single_folder(r: Path):
    _split(r / "_annotations.coco.json", r)
    return {"train": (".", "_annotations.coco.json")}


ACCEPTED = {
    "roboflow": _roboflow,
    "roboflow-val-test": _roboflow_val_test,
    "any-json-name": _any_json_name,
    "year-folders": _year_folders,
    "json-beside-images-folder": _json_beside_images_folder,
    "coco-classic": _coco_classic,
    "coco-images-subfolders": _coco_images_subfolders,
    "coco-one-images-folder": _coco_one_images_folder,
    "single-folder": _single_folder,
}


def _empty(r: Path):
    r.mkdir(parents=True)


def _images_only(r: Path):
    (r / "train").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(r / "train" / "a.jpg")


def _two_jsons_in_train(r: Path):
    _split(r / "train" / "a.json", r / "train")
    _split(r / "train" / "b.json", r / "train")


def _val_and_valid(r: Path):
    _roboflow(r)
    _split(r / "val" / "_annotations.coco.json", r / "val")


def _classic_without_images(r: Path):
    _split(r / "annotations" / "instances_train.json", r / "elsewhere")


def _one_level_too_deep(r: Path):
    _roboflow(r / "数据")


def _json_not_named_as_split(r: Path):
    _split(r / "annotations" / "my_labels.json", r / "train")


REJECTED = {
    "empty": (_empty, "没有找到 COCO"),
    "images-only": (_images_only, "没有找到 COCO"),
    "two-jsons-in-train": (_two_jsons_in_train, "多个 JSON"),
    "val-and-valid": (_val_and_valid, "无法确定用哪个"),
    "classic-without-images": (_classic_without_images, "没有找到它的图片目录"),
    "one-level-too-deep": (_one_level_too_deep, "没有找到 COCO"),
    "json-not-named-as-split": (_json_not_named_as_split, "没有找到 COCO"),
}


@pytest.mark.parametrize("name", ACCEPTED)
def test_check_and_trainer_accept_the_same_layout(name, tmp_path):
    root = tmp_path / ROOT
    want = {s: SplitFiles((root / f).resolve(), (root / a).resolve()) for s, (f, a) in ACCEPTED[name](root).items()}

    found = find_dataset(root)  # the trainer's finder
    assert list(found) == list(want)  # canonical names, in train/val/test order
    assert {s: SplitFiles(f.resolve(), a.resolve()) for s, (f, a) in found.items()} == want

    report = check_dataset(root, num_classes=1)  # what train() runs first
    assert report.format_name == "coco" and report.ok, report.format()
    assert list(report.splits) == list(want)
    for split, files in found.items():  # the doctor read the same images the trainer will read
        n = len(read_coco_json(files.ann_file)["images"])
        assert report.splits[split]["images"] == n == len(CocoDetection(*files))

    assert prepare_data(root, check=False, verbose=False).kind == "coco"  # --data takes it as COCO, unconverted
    if {"train", "val"} <= set(found):
        raw = build_run_config("atto", dataset=read_dataset(root)).cfg.to_dict()
        assert Path(raw["train_dataloader"]["dataset"]["ann_file"]) == found["train"].ann_file
        assert Path(raw["val_dataloader"]["dataset"]["img_folder"]) == found["val"].img_folder


@pytest.mark.parametrize("name", REJECTED)
def test_check_and_trainer_reject_the_same_layout(name, tmp_path):
    make, needle = REJECTED[name]
    root = tmp_path / ROOT
    make(root)
    with pytest.raises(DatasetError, match=needle) as by_finder:
        find_dataset(root)
    with pytest.raises(DatasetError) as by_check:
        check_dataset(root, num_classes=1)
    assert needle in str(by_check.value)
    assert str(root) in str(by_finder.value) and str(root) in str(by_check.value)  # names the folder
    assert "修复" in str(by_finder.value)  # and the fix


def test_missing_folder_and_json_file_path(tmp_path):
    for check in (find_dataset, check_dataset):
        with pytest.raises(DatasetError, match="没有 这个"):
            check(tmp_path / "没有 这个")
    root = tmp_path / ROOT
    _roboflow(root)
    ann = root / "valid" / "_annotations.coco.json"
    assert find_dataset(ann) == {"val": SplitFiles(root / "valid", ann)}  # a json file: its folder names the split
    report = check_dataset(ann)
    assert report.ok and list(report.splits) == ["val"]
    (tmp_path / "空").mkdir()
    assert find_dataset(tmp_path / "空", required=False) == {}  # what the doctor asks before it tries YOLO


def test_trainer_needs_a_train_split(tmp_path):
    root = tmp_path / ROOT
    _split(root / "valid" / "_annotations.coco.json", root / "valid")
    assert list(find_dataset(root)) == ["val"]
    with pytest.raises(DatasetError, match="没有训练集"):
        read_dataset(root)


@pytest.mark.parametrize(
    "name, split",
    [
        ("train", "train"),
        ("Training", "train"),
        ("train2017", "train"),
        ("val", "val"),
        ("valid", "val"),
        ("VALIDATION", "val"),
        ("instances_val2017", "val"),
        ("test", "test"),
        ("testing", "test"),
        ("images", None),
        ("trains", None),
        ("my_val", None),
    ],
)
def test_split_alias(name, split):
    assert split_alias(name) == split


def test_read_coco_json_checks_categories_only_when_asked(tmp_path):
    path = tmp_path / "无类别.json"
    path.write_text(json.dumps({"images": []}), encoding="utf-8")
    assert read_coco_json(path, check_categories=False) == {"images": [], "annotations": [], "categories": []}
    with pytest.raises(DatasetError, match="categories"):
        read_coco_json(path)
    path.write_bytes(b'\xef\xbb\xbf{"images": [], "categories": [{"id": 1}, {"id": 1}]}')  # BOM is fine
    with pytest.raises(DatasetError, match="出现了多次"):
        read_coco_json(path)
    path.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(DatasetError, match="顶层不是 JSON 对象"):
        read_coco_json(path, check_categories=False)


def test_yolo_folder_with_a_stray_json_is_yolo_for_both(tmp_path):
    """Label Studio's YOLO export has ``notes.json`` beside ``images/``, ``labels/`` and ``classes.txt``."""
    root = tmp_path / ROOT
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    Image.new("RGB", (32, 24)).save(root / "images" / "a.jpg")
    (root / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n", encoding="utf-8")
    (root / "classes.txt").write_text("猫\n", encoding="utf-8")
    (root / "notes.json").write_text(json.dumps({"categories": [{"id": 0, "name": "猫"}]}), encoding="utf-8")
    assert find_dataset(root, required=False) == {}
    assert check_dataset(root).format_name == "yolo"
    assert prepare_data(root, fallback=tmp_path / "out", verbose=False).kind == "yolo"
