"""The dataset check is the loader's twin (issue 29): what ``deimv2 train`` accepts, ``deimv2 doctor`` accepts, and the
reverse; the converters run the same rules. Backslash paths, empty and crowd-only splits, a train and val that are the
same images. Same style as ``test_bad_inputs.py`` (exit status, no traceback, Chinese message naming the file or key,
nothing lost). Policies: docs/errors.md.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers.badfiles import TINY_U, edit_coco, expect_cli, save_image, snapshot, tiny_coco

_run = expect_cli


def _train(data, *extra) -> list:
    return ["train", "-c", "atto", "--data", data, *extra, "-u", *TINY_U, "epochs=1"]


def _yolo(root: Path, yaml_text: str, folders=("tr", "va")) -> Path:
    for i, folder in enumerate(folders):
        for n in ("a", "b"):
            save_image(root / "data" / "images" / folder / f"{n}{i}.jpg")
            (root / "data" / "labels" / folder).mkdir(parents=True, exist_ok=True)
            (root / "data" / "labels" / folder / f"{n}{i}.txt").write_text("0 0.5 0.5 0.3 0.3\n", encoding="utf-8")
    (root / "data.yaml").write_text(yaml_text, encoding="utf-8")
    return root


# ---------------------------------------------------------------------------------------------- 10: train = val
def test_same_images_for_train_and_val_is_one_error_everywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    src = _yolo(tmp_path / "y", "train: data/images/tr\nval: data/images/tr\nnames: [猫]\n", folders=("tr",))
    before = snapshot(tmp_path)
    needle = "train 和 val 是同一批图像"
    _run(["doctor", src], 1, needle)
    text = _run(_train(src), 2, needle)
    assert "--skip-invalid" not in text
    _run(["yolo2coco", src, tmp_path / "输出"], 2, needle, "未写出任何文件")
    assert snapshot(tmp_path) == before and not (tmp_path / "输出").exists()


def test_shared_images_rule():
    from deimv2.data.validate import shared_images_problem

    assert shared_images_problem({"train": [Path("a.jpg")], "val": [Path("b.jpg")]}) is None
    assert "有 1 张相同的图像" in shared_images_problem(
        {"train": [Path("a.jpg"), Path("c.jpg")], "val": [Path("a.jpg")]}
    )


# ---------------------------------------------------------------------------------------------- 11: backslashes
def test_backslash_paths_in_data_yaml_work_in_check_train_and_convert(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    src = _yolo(tmp_path / "y", "train: data\\images\\tr\nval: data\\images\\va\nnames: [猫]\n")
    _run(["doctor", src], 0, "可以训练")
    _run(["yolo2coco", src, tmp_path / "输出"], 0, "train: 2 张图像")
    _run(_train(src, "--output-dir", tmp_path / "运行"), 0)


def test_a_missing_data_yaml_entry_is_named(tmp_path):
    src = _yolo(tmp_path / "y", "train: data/images/tr\nval: data\\images\\没有\nnames: [猫]\n")
    for argv, code in ((["doctor", src], 2), (["yolo2coco", src, tmp_path / "输出"], 2)):
        text = _run(argv, code, "val: data\\images\\没有", "找不到")
        assert "请改成相对" not in text  # the paths are relative already


def test_coco_backslash_file_name_is_read_alike_by_check_loader_and_converter(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = tiny_coco(tmp_path / "d")
    (data / "train" / "images").mkdir()
    first = None

    def windows(d):
        nonlocal first
        first = d["images"][0]["file_name"]
        d["images"][0]["file_name"] = f"images\\{first}"

    edit_coco(data, windows)
    shutil.move(data / "train" / first, data / "train" / "images" / first)
    _run(["doctor", data], 0, "可以训练")
    _run(_train(data, "--output-dir", tmp_path / "运行"), 0)
    _run(["coco2yolo", data, tmp_path / "输出"], 0)
    assert (tmp_path / "输出" / "train" / "images" / first).is_file()


# ---------------------------------------------------------------------------------------------- 12: empty, crowd-only
def _no_boxes(d):
    d["annotations"] = []


def _all_crowd(d):
    for a in d["annotations"]:
        a["iscrowd"] = 1


@pytest.mark.parametrize(
    "split,edit,needles",
    [
        ("train", _no_boxes, ["训练集", "没有任何标注框"]),
        ("valid", _no_boxes, ["验证集", "没有任何标注框", "-1"]),
        ("train", _all_crowd, ["训练集", "iscrowd=1"]),
        ("valid", _all_crowd, ["验证集", "iscrowd=1"]),
    ],
    ids=["train-empty", "val-empty", "train-crowd-only", "val-crowd-only"],
)
def test_empty_or_crowd_only_splits_are_refused_by_check_and_loader(split, edit, needles, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = tiny_coco(tmp_path / "d")
    edit_coco(data, edit, split)
    before = snapshot(tmp_path)
    _run(["doctor", data], 1, *needles)
    _run(_train(data, "--output-dir", tmp_path / "运行"), 2, *needles)
    _run(_train(data, "--no-check", "--output-dir", tmp_path / "运行"), 2, *needles)  # the loader: same rule
    assert not list(tmp_path.rglob("*.pth"))
    after = snapshot(tmp_path)
    assert all(after.get(k) == v for k, v in before.items())


def test_some_crowd_boxes_are_counted_not_hidden(tmp_path):
    data = tiny_coco(tmp_path / "d")

    def one_crowd(d):
        d["annotations"][0]["iscrowd"] = 1

    edit_coco(data, one_crowd)
    _run(["doctor", data], 0, "1 个 iscrowd=1 的标注训练时会被忽略")


def test_converting_an_empty_split_says_it_cannot_train(tmp_path):
    data = tiny_coco(tmp_path / "d")
    edit_coco(data, _no_boxes, "valid")
    _run(["coco2yolo", data, tmp_path / "输出"], 0, "验证集", "没有任何标注框", "不能直接训练")
