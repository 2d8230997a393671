"""A battery of real mistakes, each a real file or command through ``deimv2.cli.main``.

Every case asserts the exit status, that no traceback reaches the user, that the message is Chinese and names the
file / key / annotation, and that nothing that existed before the command was lost or half-written. Some inputs are
odd but fine (BOM, CRLF, GBK, names as a dict, upper-case extensions, CMYK, EXIF …): those must just work.
Policies: docs/errors.md. Runs (Ctrl-C, kill -9, two runs at once, disk full) are in test_bad_runs.py.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers.badfiles import (
    coco_json,
    coco_of_images,
    edit_coco,
    odd_images,
    random_checkpoint,
    run_cli,
    save_image,
    set_bbox,
    snapshot,
    tiny_coco,
    yolo_flat,
    yolo_nested,
    yolo_ultralytics,
)

CHINESE = re.compile(r"[\u4e00-\u9fff]")


@dataclass
class Case:
    id: str
    make: Callable[[Path], list]  # builds the inputs under tmp, returns argv
    code: int  # expected exit status
    needles: Callable[[Path], list] = lambda t: []  # strings the output must contain
    check: Callable[[Path, str], None] | None = None  # more assertions on the results (tmp, stdout+stderr)
    extra: dict = field(default_factory=dict)


def _train(data, *u, extra=()):
    return ["train", "-c", "atto", "--data", data, *extra, "-u", *u]


# ---------------------------------------------------------------------------------------------- overrides
# --data points nowhere: the override must be refused BEFORE the dataset is even looked at
OVERRIDES = [
    Case(
        "unknown-keys",
        lambda t: _train(t / "无数据", "epocs=2", "batchsize=4"),
        2,
        lambda t: ["epocs", "batchsize", "epoches", "batch_size", "未知的配置键"],
    ),
    Case(
        "unknown-dotted-key",
        lambda t: _train(t / "无数据", "train_dataloader.total_batchsize=4"),
        2,
        lambda t: ["train_dataloader.total_batchsize", "train_dataloader.total_batch_size"],
    ),
    Case("wrong-type", lambda t: _train(t / "无数据", "epochs=十"), 2, lambda t: ["epochs", "十", "整数"]),
    Case("float-epochs", lambda t: _train(t / "无数据", "epochs=2.5"), 2, lambda t: ["epochs", "2.5", "整数"]),
    Case("epochs-zero", lambda t: _train(t / "无数据", "epochs=0"), 2, lambda t: ["epochs", "≥ 1"]),
    Case("batch-negative", lambda t: _train(t / "无数据", "batch_size=-4"), 2, lambda t: ["batch_size", "-4"]),
    Case(
        "size-not-32",
        lambda t: _train(t / "无数据", "eval_spatial_size=[100,100]"),
        2,
        lambda t: ["eval_spatial_size", "32"],
    ),
    Case("size-not-list", lambda t: _train(t / "无数据", "eval_spatial_size=640"), 2, lambda t: ["eval_spatial_size"]),
    Case(
        "no-aug-beyond-epochs",
        lambda t: _train(t / "无数据", "epochs=10", "no_aug_epoch=12"),
        2,
        lambda t: ["no_aug_epoch=12", "epoches=10"],
    ),
    Case(
        "milestones-conflict",
        lambda t: _train(t / "无数据", "no_aug_epoch=2", "train_dataloader.collate_fn.stop_epoch=5"),
        2,
        lambda t: ["stop_epoch=5", "no_aug_epoch"],
    ),
    Case(
        "policy-reversed",
        lambda t: _train(t / "无数据", "train_dataloader.dataset.transforms.policy.epoch=[9,4,12]"),
        2,
        lambda t: ["policy_epoch", "[9, 4, 12]"],
    ),
]


# ---------------------------------------------------------------------------------------------- YOLO folders
def _yolo2coco(src, dst, *extra):
    return ["yolo2coco", src, dst, *extra]


def _converted(t: Path, split: str = "train") -> dict:
    return coco_json(t / "输出" / split / "_annotations.coco.json")


def _expect_boxes(n: int, split: str = "train"):
    def check(t, out):
        assert len(_converted(t, split)["annotations"]) == n

    return check


def _previous_output(t: Path) -> Path:
    """A good earlier conversion in the output folder: a failing --overwrite must leave it as it was."""
    good = yolo_flat(t / "旧的 数据")
    code, _, _ = run_cli(["yolo2coco", good, t / "输出"])
    assert code == 0
    return t / "输出"


YOLO = [
    Case(
        "pixel-coordinates",
        lambda t: _yolo2coco(yolo_flat(t / "y", {"a": "0 160 120 40 50\n"}), t / "输出"),
        2,
        lambda t: ["a.txt", "第 1 行", "[0, 1]", "像素"],
    ),
    Case(
        "pixel-coordinates-keeps-old-output",
        lambda t: (
            _previous_output(t),
            _yolo2coco(yolo_flat(t / "y", {"a": "0 0.5 0.5 0.2 0.2\n1 320 240 64 48\n"}), t / "输出", "--overwrite"),
        )[1],
        2,
        lambda t: ["a.txt", "第 2 行", "未写出任何文件"],
    ),
    Case(
        "negative-class",
        lambda t: _yolo2coco(yolo_flat(t / "y", {"a": "-1 0.5 0.5 0.2 0.2\n"}), t / "输出"),
        2,
        lambda t: ["a.txt", "第 1 行", "-1"],
    ),
    Case(
        "non-integer-class",
        lambda t: _yolo2coco(yolo_flat(t / "y", {"a": "1.5 0.5 0.5 0.2 0.2\n"}), t / "输出"),
        2,
        lambda t: ["a.txt", "第 1 行", "不是整数"],
    ),
    Case(
        "extra-columns",
        lambda t: _yolo2coco(yolo_flat(t / "y", {"a": "0 0.5 0.5 0.2 0.2 0.9\n"}), t / "输出"),
        2,
        lambda t: ["a.txt", "第 1 行", "字段个数为 6"],
    ),
    Case(
        "zero-width-line",
        lambda t: _yolo2coco(yolo_flat(t / "y", {"a": "0 0.5 0.5 0 0.2\n"}), t / "输出"),
        2,
        lambda t: ["a.txt", "第 1 行", "为 0"],
    ),
    Case(
        "empty-lines-bom-crlf",
        lambda t: _yolo2coco(
            yolo_flat(
                t / "y",
                {},
                raw_label_bytes={"a": "\ufeff0 0.5 0.5 0.2 0.2\r\n\r\n   \r\n1 0.25 0.25 0.1 0.1\r\n".encode()},
            ),
            t / "输出",
        ),
        0,
        check=_expect_boxes(2),
    ),
    Case(
        "gbk-data-yaml",
        lambda t: _yolo2coco(yolo_ultralytics(t / "y", "names: [猫, 狗]\n".encode("gbk")), t / "输出"),
        0,
        check=lambda t, out: [c["name"] for c in _converted(t)["categories"]] == ["猫", "狗"] or pytest.fail(out),
    ),
    Case(
        "utf16-data-yaml",
        lambda t: _yolo2coco(yolo_ultralytics(t / "y", "names: [猫, 狗]\n".encode("utf-16")), t / "输出"),
        0,
        check=lambda t, out: [c["name"] for c in _converted(t)["categories"]] == ["猫", "狗"] or pytest.fail(out),
    ),
    Case(
        "names-dict",
        lambda t: _yolo2coco(yolo_ultralytics(t / "y", "names:\n  0: 猫\n  1: 狗\n".encode()), t / "输出"),
        0,
        check=lambda t, out: _converted(t, "valid")["annotations"][0]["category_id"] == 1 or pytest.fail(out),
    ),
    Case(
        "names-list-wrong-nc",
        lambda t: _yolo2coco(yolo_ultralytics(t / "y", b"nc: 3\nnames: [a, b]\n"), t / "输出"),
        2,
        lambda t: ["data.yaml", "nc=3"],
    ),
    Case("classes-txt-only", lambda t: _yolo2coco(yolo_flat(t / "y"), t / "输出"), 0, check=_expect_boxes(1)),
    Case(
        "labels-without-images",
        lambda t: _yolo2coco(
            yolo_flat(t / "y", {"a": "0 0.5 0.5 0.2 0.2\n", "孤儿": "0 0.5 0.5 0.2 0.2\n"}), t / "输出"
        ),
        0,
        lambda t: ["孤儿.txt", "没有对应的图像"],
        check=_expect_boxes(1),
    ),
    Case(
        "duplicate-stems",
        lambda t: _yolo2coco(yolo_flat(t / "y", images=("a.jpg", "a.png")), t / "输出"),
        2,
        lambda t: ["a.txt", "a.jpg", "a.png", "同名不同扩展名"],
    ),
    Case("upper-case-and-nested", lambda t: _yolo2coco(yolo_nested(t / "y"), t / "输出"), 0, check=_expect_boxes(1)),
    Case(
        "doctor-pixel-coordinates",
        lambda t: ["doctor", yolo_flat(t / "y", {"a": "0 0.5 0.5 0.2 0.2\n0 320 200 60 40\n"})],
        1,
        lambda t: ["a.txt 第 2 行", "[0, 1]"],
    ),
]


# ---------------------------------------------------------------------------------------------- COCO files
BAD_BOXES = {
    "nan": [float("nan"), 1, 5, 5],
    "inf": [1, 1, math.inf, 5],
    "negative": [10, 10, -5, 8],
    "zero": [10, 10, 0, 8],
    "outside": [500, 500, 10, 10],
}


def _coco_case(kind, edit, needles_check, needles_train):
    """The same bad COCO file through the doctor and through training without the doctor: both refuse."""

    def make_check(t):
        edit_coco(tiny_coco(t / "数据 集"), edit)
        return ["doctor", t / "数据 集"]

    def make_train(t):
        edit_coco(tiny_coco(t / "数据 集"), edit)
        return _train(t / "数据 集", "HGNetv2.pretrained=false", extra=["--no-check"])

    return [
        Case(f"check-{kind}", make_check, 1, lambda t: needles_check),
        Case(f"train-no-check-{kind}", make_train, 2, lambda t: needles_train),
    ]


COCO = [
    c
    for kind, box in BAD_BOXES.items()
    for c in _coco_case(f"box-{kind}", set_bbox(box), ["ann id=1", "_annotations.coco.json"], ["标注 id=1", "无效的框"])
]
COCO += _coco_case(
    "string-image-id",
    lambda d: [im.update(id=str(im["id"])) for im in d["images"]] and None,
    ["图像 id 必须是整数", "'1'"],
    ["整数 id", "_annotations.coco.json"],
)
COCO += _coco_case(
    "duplicate-image-id",
    lambda d: d["images"][1].update(id=d["images"][0]["id"]),
    ["重复的图像 id", "id=1"],
    ["图片 id 1 出现了多次"],
)
COCO += [
    Case(
        "missing-images-key",
        lambda t: (edit_coco(tiny_coco(t / "d"), lambda d: d.pop("images")), ["doctor", t / "d"])[1],
        1,
        lambda t: ["_annotations.coco.json", "images"],
    ),
    Case(
        "zero-byte-image",
        lambda t: (tiny_coco(t / "d"), (t / "d" / "train" / "图片 0.jpg").write_bytes(b""), ["doctor", t / "d"])[2],
        1,
        lambda t: ["图片 0.jpg", "损坏"],
    ),
    Case(
        "train-missing-categories",
        lambda t: (
            edit_coco(tiny_coco(t / "d"), lambda d: d.pop("categories")),
            _train(t / "d", "HGNetv2.pretrained=false", extra=["--no-check"]),
        )[1],
        2,
        lambda t: ["categories", "_annotations.coco.json"],
    ),
    Case(
        "check-odd-images-are-fine",
        lambda t: ["doctor", coco_of_images(t / "d", list(odd_images(t / "图").values())), "--deep"],
        0,
        lambda t: ["可以训练", "5 张图像"],
    ),
    Case(
        "coco2yolo-skip-invalid-lists-it",
        lambda t: (
            edit_coco(tiny_coco(t / "d"), set_bbox(BAD_BOXES["negative"])),
            ["coco2yolo", t / "d", t / "yolo", "--skip-invalid"],
        )[1],
        0,
        lambda t: ["跳过了 1 处", "标注 id 1", "负数"],
        check=lambda t, out: (t / "yolo" / "data.yaml").is_file() or pytest.fail(out),
    ),
    Case(
        "coco2yolo-nan-box",
        lambda t: (edit_coco(tiny_coco(t / "d"), set_bbox(BAD_BOXES["nan"])), ["coco2yolo", t / "d", t / "yolo"])[1],
        2,
        lambda t: ["标注 id 1", "NaN"],
    ),
]


# ---------------------------------------------------------------------------------------------- predict / checkpoints
@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return random_checkpoint(tmp_path_factory.mktemp("ckpt") / "权重 best.pth")


def _predict_folder(t, ckpt, broken: dict[str, bytes]):
    folder = t / "图片 夹"
    save_image(folder / "好的.jpg")
    save_image(folder / "子" / "也好.png")
    for name, data in broken.items():
        (folder / name).write_bytes(data)
    return ["predict", "-r", ckpt, "-i", folder, "-o", t / "结果"]


def _predict_outputs(t):
    return sorted(str(p.relative_to(t / "结果")) for p in (t / "结果").rglob("*") if p.is_file())


def _truncated(t, ckpt):
    data = Path(ckpt).read_bytes()
    (t / "截断.pth").write_bytes(data[: len(data) // 3])
    return t / "截断.pth"


def _hf_folder(t, real: bool = True):
    """A Hugging Face hub folder holding only ``model.safetensors`` (its config.json was not downloaded)."""
    import torch
    from safetensors.torch import save_file

    from deimv2.models.build import build_model
    from deimv2.weights.keys import to_transformers_port

    (t / "hf").mkdir()
    sd = (
        to_transformers_port(build_model("atto", overrides={"HGNetv2.pretrained": False}).state_dict(), "atto")
        if real
        else {"backbone.x": torch.zeros(2)}
    )
    save_file({k: v.contiguous() for k, v in sd.items()}, str(t / "hf" / "model.safetensors"))
    return t / "hf"


PREDICT = [
    Case(
        "predict-skips-corrupt",
        lambda t, c: _predict_folder(t, c, {"坏.jpg": b"\xff\xd8 not a jpeg", "空.png": b""}),
        0,
        lambda t: ["坏.jpg", "空.png", "已跳过"],
        check=lambda t, out: (
            _predict_outputs(t) == ["好的.jpg", "子/也好.png"] or pytest.fail(str(_predict_outputs(t)))
        ),
    ),
    Case(
        "predict-all-corrupt",
        lambda t, c: [
            "predict",
            "-r",
            c,
            "-i",
            (t / "坏").mkdir() or (t / "坏" / "x.jpg").write_bytes(b"x") and t / "坏",
            "-o",
            t / "结果",
        ],
        2,
        lambda t: ["x.jpg", "都无法读取"],
    ),
    Case(
        "predict-odd-images-work",
        lambda t, c: ["predict", "-r", c, "-i", odd_images(t / "奇怪")["exif"].parent, "-o", t / "结果"],
        0,
        check=lambda t, out: (
            (
                len(_predict_outputs(t)) == 5
                and __import__("PIL.Image").Image.open(t / "结果" / "旋转.jpg").size == (40, 60)
            )
            or pytest.fail(str(_predict_outputs(t)))
        ),
    ),
    Case(
        "truncated-checkpoint",
        lambda t, c: ["predict", "-r", _truncated(t, c), "-i", save_image(t / "a.jpg")],
        2,
        lambda t: ["截断.pth"],
    ),
    Case(
        "directory-as-checkpoint",
        lambda t, c: ["info", (t / "空文件夹").mkdir() or t / "空文件夹"],
        2,
        lambda t: ["空文件夹"],
    ),
    Case(
        "hf-folder-without-config-works",
        lambda t, c: ["predict", "-r", _hf_folder(t), "-i", save_image(t / "a.jpg"), "-o", t / "结果"],
        0,
        check=lambda t, out: _predict_outputs(t) == ["a.jpg"] or pytest.fail(out),
    ),
    Case(
        "hf-folder-not-deimv2",
        lambda t, c: ["predict", "-r", _hf_folder(t, real=False), "-i", save_image(t / "a.jpg")],
        2,
        lambda t: ["hf", "不是 DEIMv2"],
    ),
    Case(
        "resume-other-num-classes",
        lambda t, c: _train(
            tiny_coco(t / "d"),
            "HGNetv2.pretrained=false",
            "eval_spatial_size=[64,64]",
            "DEIMTransformer.num_queries=10",
            "PostProcessor.num_top_queries=10",
            extra=["--no-check", "-r", random_checkpoint(t / "五类.pth", num_classes=5, size=64)],
        ),
        2,
        lambda t: ["五类.pth", "5 类", "3 类", "-t"],
    ),
    Case(
        "resume-other-variant",
        lambda t, c: _train(
            tiny_coco(t / "d"),
            "HGNetv2.pretrained=false",
            "eval_spatial_size=[64,64]",
            "DEIMTransformer.num_queries=10",
            "PostProcessor.num_top_queries=10",
            extra=["--no-check", "-r", random_checkpoint(t / "femto.pth", variant="femto", size=64)],
        ),
        2,
        lambda t: ["femto.pth", "FEMTO", "ATTO"],
    ),
]


# ---------------------------------------------------------------------------------------------- outputs
def _a_file(t: Path) -> Path:
    (t / "普通文件").write_text("我是文件", encoding="utf-8")
    return t / "普通文件"


OUTPUTS = [
    Case(
        "yolo2coco-under-a-file",
        lambda t, c: _yolo2coco(yolo_flat(t / "y"), _a_file(t) / "输出"),
        2,
        lambda t: ["普通文件", "不是文件夹"],
    ),
    Case(
        "coco2yolo-onto-a-file",
        lambda t, c: ["coco2yolo", tiny_coco(t / "d"), _a_file(t)],
        2,
        lambda t: ["普通文件", "是一个已存在的文件"],
    ),
    Case(
        "train-output-in-proc",
        lambda t, c: _train(
            tiny_coco(t / "d"), "HGNetv2.pretrained=false", extra=["--output-dir", "/proc/deimv2 输出"]
        ),
        2,
        lambda t: ["/proc/deimv2 输出", "无法创建或写入"],
    ),
    Case(
        "train-output-is-a-file",
        lambda t, c: _train(tiny_coco(t / "d"), "HGNetv2.pretrained=false", extra=["--output-dir", _a_file(t)]),
        2,
        lambda t: ["普通文件", "不是文件夹"],
        check=lambda t, out: not (t / "普通文件-2").exists() or pytest.fail(out),
    ),
    Case(
        "eval-output-under-a-file",
        lambda t, c: ["eval", "-c", "atto", "--data", tiny_coco(t / "d"), "-r", c, "--output-dir", _a_file(t) / "评估"],
        2,
        lambda t: ["普通文件", "不是文件夹"],
    ),
    Case(
        "predict-output-is-a-file",
        lambda t, c: ["predict", "-r", c, "-i", save_image(t / "a.jpg"), "-o", _a_file(t)],
        2,
        lambda t: ["普通文件", "不是文件夹"],
    ),
    Case(
        "export-output-under-a-file",
        lambda t, c: ["export", "-r", c, "-o", _a_file(t) / "m.onnx"],
        2,
        lambda t: ["普通文件", "不是文件夹"],
    ),
    Case(
        "demo-output-under-a-file",
        lambda t, c: ["demo", "--output-dir", _a_file(t) / "demo"],
        2,
        lambda t: ["普通文件", "不是文件夹"],
    ),
]

NEEDS_CKPT = {c.id for c in PREDICT + OUTPUTS}
ALL = OVERRIDES + YOLO + COCO + PREDICT + OUTPUTS


def test_battery_is_big_enough():
    assert len(ALL) >= 30 and len({c.id for c in ALL}) == len(ALL)


@pytest.mark.parametrize("case", ALL, ids=[c.id for c in ALL])
def test_bad_input(case: Case, tmp_path, request, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.chdir(tmp_path)
    argv = case.make(tmp_path, request.getfixturevalue("ckpt")) if case.id in NEEDS_CKPT else case.make(tmp_path)
    before = snapshot(tmp_path)
    code, out, err = run_cli(argv)
    text = out + err
    assert code == case.code, f"exit {code}, expected {case.code}\n{text}"
    assert "Traceback" not in text and "内部错误" not in text, text
    if code:
        assert CHINESE.search(text), text
    for needle in case.needles(tmp_path):
        assert needle in text, f"{needle!r} not in:\n{text}"
    after = snapshot(tmp_path)
    lost = {k for k, v in before.items() if after.get(k) != v}
    assert not lost, f"files changed or lost: {lost}"
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name], "half-written temp files left behind"
    if case.check is not None:
        case.check(tmp_path, text)


def test_os_errors_are_explained_without_a_path_too():
    import errno
    import os

    from deimv2.utils.outputs import explain_os_error

    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert "磁盘空间已满" in explain_os_error(full) and "未知" not in explain_os_error(full)
    named = PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/某处/文件夹")
    assert explain_os_error(named).startswith("无法创建或写入文件 /某处/文件夹：没有写入权限")


def test_output_piped_into_head_is_not_an_error(monkeypatch):
    from deimv2 import cli

    def broken(a):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setitem(cli.COMMANDS, "checks", broken)
    code, _, err = run_cli(["checks"])
    assert code == 0 and err == ""
