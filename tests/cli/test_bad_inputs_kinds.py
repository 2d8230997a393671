"""The kept-back kinds of issue 29, each with several cases of our own: a file where a folder is expected and the
reverse, a data.yaml wherever a dataset is asked for, inconsistent ids or names, checkpoints of other formats given
to ``-r``, device strings in the styles of other tools. Same style as ``test_bad_inputs.py``. Policies: docs/errors.md.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from helpers.badfiles import TINY_U, edit_coco, expect_cli, random_checkpoint, save_image, snapshot, tiny_coco

_run = expect_cli


def _train(data, *extra) -> list:
    return ["train", "-c", "atto", "--data", data, *extra, "-u", *TINY_U, "epochs=1"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return random_checkpoint(tmp_path_factory.mktemp("ckpt") / "运行" / "best.pth")


def _yolo_two_yamls(root: Path) -> Path:
    for split in ("tr", "va"):
        save_image(root / "images" / split / f"{split}.jpg")
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split / f"{split}.txt").write_text("0 0.5 0.5 0.4 0.4\n", encoding="utf-8")
    for name, cls in (("猫.yaml", "猫"), ("狗.yaml", "狗")):
        (root / name).write_text(f"train: images/tr\nval: images/va\nnames: [{cls}]\n", encoding="utf-8")
    return root


# ---------------------------------------------------------------------------------------------- file <-> folder
@pytest.mark.parametrize(
    "make,code,needles",
    [
        (lambda t, c: _train(save_image(t / "图.jpg")), 2, ["图.jpg", "--data"]),
        (lambda t, c: ["doctor", save_image(t / "图.jpg")], 2, ["图.jpg"]),
        (lambda t, c: ["yolo2coco", save_image(t / "图.jpg"), t / "输出"], 2, ["图.jpg", "是一个文件"]),
        (lambda t, c: ["predict", "-r", save_image(t / "图.jpg"), "-i", t / "图.jpg"], 2, ["图.jpg"]),
        (lambda t, c: ["predict", "-r", c, "-i", tiny_coco(t / "d") / "train" / "_annotations.coco.json"], 2, ["json"]),
        (lambda t, c: ["info", (t / "空文件夹").mkdir() or t / "空文件夹"], 2, ["空文件夹", "best.pth"]),
        (
            lambda t, c: ["train", "-c", "atto", "--data", t / "d", "-r", (t / "空").mkdir() or t / "空"],
            2,
            ["last.pth"],
        ),
    ],
    ids=[
        "train-data-image",
        "check-image",
        "yolo2coco-image",
        "predict-r-image",
        "predict-i-json",
        "info-empty-dir",
        "resume-dir-without-last",
    ],
)
def test_file_where_a_folder_is_expected_and_the_reverse(make, code, needles, ckpt, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = make(tmp_path, ckpt)
    before = snapshot(tmp_path)
    _run(argv, code, *needles)
    assert snapshot(tmp_path) == before


def test_a_run_folder_works_as_a_checkpoint(ckpt, tmp_path, monkeypatch):
    from deimv2.infer.detector import Detector

    monkeypatch.chdir(tmp_path)
    img = save_image(tmp_path / "图.jpg")
    _run(["predict", "-r", ckpt.parent, "-i", img, "-o", tmp_path / "出"], 0, "已处理 1 张图片")
    _run(["info", ckpt.parent], 0, "完整检测器")
    assert Detector.from_checkpoint(ckpt.parent, backend="torch").num_classes == 3
    _run(["export", "-r", ckpt.parent, "-o", tmp_path / "导出"], 0, "已导出 ONNX")
    assert (tmp_path / "导出").is_dir() and list((tmp_path / "导出").glob("*.onnx"))


# ---------------------------------------------------------------------------------------------- data.yaml anywhere
def test_one_named_data_yaml_among_several(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    src = _yolo_two_yamls(tmp_path / "y")
    _run(["doctor", src], 2, "猫.yaml", "狗.yaml", "直接给出其中一个")
    _run(["doctor", src / "狗.yaml"], 0, "0=狗")
    _run(["yolo2coco", src / "猫.yaml", tmp_path / "输出"], 0, "0=猫")
    _run(_train(src / "狗.yaml", "--output-dir", tmp_path / "运行"), 0, "狗")
    _run(_train(src, "--output-dir", tmp_path / "运行"), 2, "直接给出其中一个")


def test_a_coco_json_as_the_dataset(tmp_path):
    data = tiny_coco(tmp_path / "d")
    _run(["doctor", data / "train" / "_annotations.coco.json"], 0, "可以训练")
    _run(["coco2yolo", data / "valid" / "_annotations.coco.json", tmp_path / "输出"], 0, "valid")
    _run(_train(data / "train" / "_annotations.coco.json"), 2, "没有验证集")  # said plainly, not "是 JSON 文件"


# ---------------------------------------------------------------------------------------------- ids and names
def _rename_val_category(d):
    d["categories"][0]["name"] = "别的名字"


def _extra_val_category(d):
    d["categories"].append({"id": 99, "name": "多出来的"})


def _unknown_category(d):
    d["annotations"][0]["category_id"] = 42


@pytest.mark.parametrize(
    "split,edit,check_code,needles",
    [
        ("valid", _rename_val_category, 1, ["别的名字"]),
        ("valid", _extra_val_category, 1, ["categories 不一致"]),
        ("train", _unknown_category, 1, ["42"]),
    ],
    ids=["names-disagree", "ids-disagree", "unknown-category-id"],
)
def test_inconsistent_ids_or_names_are_caught_by_check_train_and_convert(split, edit, check_code, needles, tmp_path):
    data = tiny_coco(tmp_path / "d")
    edit_coco(data, edit, split)
    before = snapshot(tmp_path)
    _run(["doctor", data], check_code, *needles)
    _run(_train(data, "--output-dir", tmp_path / "运行"), 2, *needles)
    _run(_train(data, "--no-check", "--output-dir", tmp_path / "运行"), 2)
    assert not list(tmp_path.rglob("*.pth")) and all(snapshot(tmp_path).get(k) == v for k, v in before.items())


def test_coco2yolo_refuses_names_that_disagree(tmp_path):
    data = tiny_coco(tmp_path / "d")
    edit_coco(data, _rename_val_category, "valid")
    _run(["coco2yolo", data, tmp_path / "输出"], 2, "别的名字")
    assert not (tmp_path / "输出").exists()


# ---------------------------------------------------------------------------------------------- other formats to -r
def _weights_only(t: Path) -> Path:
    from deimv2.engine.checkpoint import load_checkpoint

    path = t / "官方.pth"
    torch.save({"model": load_checkpoint(random_checkpoint(t / "x.pth", size=64))["model"]}, path)
    return path


@pytest.mark.parametrize(
    "make,needles",
    [
        (lambda t: t / "模型.onnx", ["模型.onnx", "ONNX"]),
        (lambda t: t / "config.yaml", ["config.yaml", "配置文件", "-c"]),
        (lambda t: t / "model.pdparams", ["model.pdparams", "PaddlePaddle"]),
        (lambda t: t / "m.engine", ["m.engine", "TensorRT"]),
        (lambda t: t / "权重.safetensors", ["权重.safetensors", "-t"]),
        (_weights_only, ["官方.pth", "-t"]),
    ],
    ids=["onnx", "yaml", "paddle", "tensorrt", "safetensors", "weights-only"],
)
def test_checkpoints_of_other_formats_given_to_resume(make, needles, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = tiny_coco(tmp_path / "d")
    path = make(tmp_path)
    if not path.exists():
        path.write_bytes(b"not really weights")
    before = snapshot(tmp_path)
    _run(_train(data, "--no-check", "-r", path), 2, *needles)
    assert snapshot(tmp_path) == before


def test_other_formats_are_named_by_predict_and_eval(tmp_path):
    onnx = tmp_path / "模型.onnx"
    onnx.write_bytes(b"onnx")
    img = save_image(tmp_path / "a.jpg")
    _run(["predict", "-r", onnx, "-i", img, "-o", tmp_path / "出"], 2, "ONNX", "模型.onnx")
    _run(["eval", "--data", tiny_coco(tmp_path / "d"), "-r", onnx], 2, "ONNX")
    _run(["info", onnx], 2, "ONNX")


# ---------------------------------------------------------------------------------------------- devices
@pytest.mark.parametrize(
    "text,expected",
    [
        ("cpu", "cpu"),
        (" CPU ", "cpu"),
        ("cuda", "cuda"),
        ("0", "cuda:0"),
        ("cuda:1", "cuda:1"),
        ("gpu:2", "cuda:2"),
        ("GPU", "cuda"),
        ("cuda：0", "cuda:0"),
        ("auto", None),
        (None, None),
        (3, "cuda:3"),
    ],
)
def test_device_styles_are_understood(text, expected):
    from deimv2.utils.inputs import parse_device

    assert parse_device(text) == expected


@pytest.mark.parametrize(
    "device,needles",
    [
        ("显卡", ["显卡", "cuda:N"]),
        ("cuda:x", ["cuda:x", "cuda:N"]),
        ("device=0", ["device=0", "cuda:N"]),
        ("0,1", ["0,1", "torchrun", "-d 0"]),
        ("-1", ["-1", "cuda:N"]),
    ],
)
def test_bad_device_strings_say_what_is_expected(device, needles, ckpt, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    img = save_image(tmp_path / "a.jpg")
    before = snapshot(tmp_path)
    _run(["predict", "-r", ckpt, "-i", img, "-o", tmp_path / "出", "-d", device], 2, *needles)
    _run(
        ["train", "-c", "atto", "--data", tiny_coco(tmp_path / "d"), "--no-check", "-d", device, "-u", *TINY_U],
        2,
        *needles,
    )
    assert all(snapshot(tmp_path).get(k) == v for k, v in before.items())
    assert not (tmp_path / "出").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "0", "gpu:1"])
def test_a_gpu_asked_for_on_a_machine_without_one(device, ckpt, tmp_path):
    img = save_image(tmp_path / "a.jpg")
    _run(
        ["predict", "-r", ckpt, "-i", img, "-o", tmp_path / "出", "-d", device],
        2,
        device,
        "没有可用的 CUDA GPU",
        "-d cpu",
    )


def test_resume_folder_copy_keeps_the_run_whole(tmp_path):
    """A finished run copied elsewhere is still refused as finished (nothing of the copy is rewritten)."""
    data = tiny_coco(tmp_path / "d")
    _run(_train(data, "--output-dir", tmp_path / "运行"), 0)
    shutil.copytree(tmp_path / "运行", tmp_path / "副本")
    before = snapshot(tmp_path / "副本")
    _run(_train(data, "-r", tmp_path / "副本"), 2, "已经完成")
    assert snapshot(tmp_path / "副本") == before
