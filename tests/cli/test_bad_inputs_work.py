"""Nothing a user types loses their work (issue 29): predict never overwrites its input, ``-r`` resumes into its own
run from ``last.pth``, conversions never write two sources to one file, options are checked at the edge.

Same style as ``test_bad_inputs.py``: real files and real commands through ``deimv2.cli.main``; each case asserts the
exit status, no traceback, a Chinese message naming the file or key, and that no file that existed before was lost.
Policies: docs/errors.md.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers.badfiles import TINY_U, expect_cli, random_checkpoint, save_image, snapshot, tiny_coco

from deimv2.engine.checkpoint import load_checkpoint, save_checkpoint


def _run(argv: list, code: int, *needles: str) -> str:
    return expect_cli(argv, code, *needles, chinese_in="err")


def _unchanged(before: dict, root: Path) -> None:
    after = snapshot(root)
    lost = {k for k, v in before.items() if after.get(k) != v}
    assert not lost, f"files changed or lost: {lost}"


def _epochs_logged(run: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (run / "log.jsonl").read_text(encoding="utf-8").splitlines()]


def _train(data: Path, *extra, epochs: int = 1) -> list:
    return ["train", "-c", "atto", "--data", data, *extra, "-u", *TINY_U, f"epochs={epochs}"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return random_checkpoint(tmp_path_factory.mktemp("ckpt") / "权重 best.pth")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(dataset, run folder) of a finished 1-epoch tiny run."""
    root = tmp_path_factory.mktemp("trained")
    data = tiny_coco(root / "数据")
    _run(_train(data, "--output-dir", root / "运行B"), 0)
    return data, root / "运行B"


def _copy_run(trained, tmp: Path, name: str = "运行B") -> Path:
    shutil.copytree(trained[1], tmp / name)
    return tmp / name


# ---------------------------------------------------------------------------------------------- 1, 8: predict
def _photos(t: Path) -> Path:
    for name in ("一.jpg", "二.png", "子/三.jpg"):
        save_image(t / "我的照片" / name)
    return t / "我的照片"


@pytest.mark.parametrize(
    "make",
    [
        lambda t: (_photos(t), _photos(t)),  # -o = -i (a folder)
        lambda t: (_photos(t) / "一.jpg", t / "我的照片" / "一.jpg"),  # -o = -i (one image)
        lambda t: (_photos(t) / "子" / "三.jpg", t / "我的照片" / "子"),  # -o = the image's own folder
        lambda t: (_photos(t), t / "我的照片" / "."),  # the same folder, spelled otherwise
    ],
    ids=["folder", "image", "image-into-its-folder", "folder-dot"],
)
def test_predict_refuses_to_overwrite_its_input(make, ckpt, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    src, dst = make(tmp_path)
    before = snapshot(tmp_path)
    _run(["predict", "-r", ckpt, "-i", src, "-o", dst], 2, "覆盖", "我的照片", "-o")
    _unchanged(before, tmp_path)
    assert snapshot(tmp_path).keys() == before.keys()  # nothing written either


def test_predict_twice_into_a_subfolder_skips_its_own_outputs(ckpt, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    src = _photos(tmp_path)
    argv = ["predict", "-r", ckpt, "-i", src, "-o", src / "结果", "--conf", "0"]
    _run(argv, 0, "已处理 3 张图片")
    before = snapshot(tmp_path)
    _run(argv, 0, "已处理 3 张图片", "跳过", "3 张")
    assert not (src / "结果" / "结果").exists()
    assert sorted(p.relative_to(src / "结果").as_posix() for p in (src / "结果").rglob("*.*")) == [
        "一.jpg",
        "二.png",
        "子/三.jpg",
    ]
    originals = {k: v for k, v in before.items() if not k.startswith("我的照片/结果")}
    _unchanged(originals, tmp_path)


# ---------------------------------------------------------------------------------------------- 2, 3, 9: resume
def test_resume_from_a_folder_takes_last_pth(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = _copy_run(trained, tmp_path)
    best = load_checkpoint(run / "best.pth")  # an older best.pth: resuming from it would retrain epoch 1
    best["epoch"] = -1
    save_checkpoint(best, run / "best.pth")
    text = _run(_train(trained[0], "-r", run, epochs=2), 0, "last.pth", "第 2 轮开始")
    assert _epochs_logged(run) == [0, 1]
    assert "第 1 轮开始" not in text and load_checkpoint(run / "last.pth")["epoch"] == 1


def test_resume_writes_into_its_own_run_not_the_default_folder(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = _copy_run(trained, tmp_path)
    other = tmp_path / "outputs" / "deimv2"  # the default output folder holds another run
    shutil.copytree(trained[1], other)
    before = snapshot(other)
    text = _run(_train(trained[0], "-r", run / "last.pth", epochs=2), 0)
    _unchanged(before, other)
    assert snapshot(other).keys() == before.keys()
    assert _epochs_logged(run) == [0, 1]
    assert f"权重：{(run / 'best.pth').resolve()}" in text or f"最后一轮的权重：{(run / 'last.pth').resolve()}" in text


def test_resume_into_another_runs_folder_goes_beside_it(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = _copy_run(trained, tmp_path)
    other = _copy_run(trained, tmp_path, "别的运行")
    before = snapshot(tmp_path)
    _run(_train(trained[0], "-r", run / "last.pth", "--output-dir", other, epochs=2), 0, "别的运行-2")
    _unchanged(before, tmp_path)
    assert _epochs_logged(tmp_path / "别的运行-2") == [1]


@pytest.mark.parametrize("target", ["folder", "last.pth", "best.pth"])
def test_resuming_a_finished_run_says_so_and_how_to_train_more(target, trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = _copy_run(trained, tmp_path)
    before = snapshot(tmp_path)
    arg = run if target == "folder" else run / target
    text = _run(_train(trained[0], "-r", arg), 2, "已经完成", "共 1 轮", "-u epochs=N", "-t", "运行B")
    assert "第 2 轮开始" not in text and "训练完成" not in text
    _unchanged(before, tmp_path)


def test_finish_line_names_only_files_that_exist(tmp_path):
    from deimv2.engine.run_files import finish_line

    assert "best.pth" not in finish_line(tmp_path, -1.0, -1).split("。")[-2]
    (tmp_path / "last.pth").write_bytes(b"x")
    line = finish_line(tmp_path, -1.0, -1)
    assert "没有写出 best.pth" in line and str((tmp_path / "last.pth").resolve()) in line
    (tmp_path / "best.pth").write_bytes(b"x")
    assert (
        finish_line(tmp_path, 0.5, 2)
        == f"训练完成。最佳 AP=0.5000（第 3 轮），权重：{(tmp_path / 'best.pth').resolve()}"
    )


# ---------------------------------------------------------------------------------------------- 4: conversions
def _same_stem_coco(root: Path) -> Path:
    """x.jpg (3 boxes) and x.png (4 boxes) in one split; valid: one image with 1 box."""
    for split, files in (("train", [("x.jpg", 3), ("x.png", 4), ("子/x.jpg", 2)]), ("valid", [("y.jpg", 1)])):
        images, anns = [], []
        for i, (name, n) in enumerate(files, 1):
            save_image(root / split / name, size=(64, 48))
            images.append({"id": i, "file_name": name, "width": 64, "height": 48})
            anns += [
                {"id": len(anns) + 1, "image_id": i, "category_id": 0, "bbox": [k, k, 10, 8], "area": 80, "iscrowd": 0}
                for k in range(n)
            ]
        cats = [{"id": 0, "name": "物体"}]
        (root / split / "_annotations.coco.json").write_text(
            json.dumps({"images": images, "annotations": anns, "categories": cats}, ensure_ascii=False), "utf-8"
        )
    return root


def test_coco2yolo_never_writes_two_images_to_one_label(tmp_path):
    src = _same_stem_coco(tmp_path / "数据")
    before = snapshot(src)
    text = _run(["coco2yolo", src, tmp_path / "输出"], 0, "9 个框", "改名为")
    labels = sorted((tmp_path / "输出" / "train" / "labels").glob("*.txt"))
    images = sorted((tmp_path / "输出" / "train" / "images").iterdir())
    on_disk = sum(len(p.read_text(encoding="utf-8").splitlines()) for p in labels)
    assert on_disk == 9 and len(labels) == len(images) == 3, text
    assert {p.stem for p in labels} == {p.stem for p in images}
    _unchanged(before, src)


# ---------------------------------------------------------------------------------------------- 5, 6: overrides
def test_repeated_update_flags_all_count(tmp_path):
    _run(["train", "-c", "atto", "--data", tmp_path / "无数据", "-u", "epochs=0", "-u", "lr=1"], 2, "epochs", "≥ 1")
    _run(["train", "-c", "atto", "--data", tmp_path / "无数据", "-u", "lr=1", "-u", "epochs=0"], 2, "epochs", "≥ 1")


@pytest.mark.parametrize("value", ["1e-3", "5E-4", "+1.5e+2", ".5e1"])
def test_scientific_notation_is_a_number(value, tmp_path):
    from deimv2.config.loader import parse_overrides

    assert isinstance(parse_overrides([f"lr={value}"])["lr"], float)
    text = _run(["train", "-c", "atto", "--data", tmp_path / "无数据", "-u", f"lr={value}"], 2, "无数据")
    assert "文字" not in text and "字符串" not in text
    _run(["train", "-c", "atto", "--data", tmp_path / "无数据", "-u", f"lr=-{value.lstrip('+')}"], 2, "lr")


def test_quoted_number_stays_text():
    from deimv2.config.loader import parse_overrides

    assert parse_overrides(["a='1e-3'", "b=[1e-3, x]"]) == {"a": "1e-3", "b": [0.001, "x"]}


# ---------------------------------------------------------------------------------------------- 7: predict options
@pytest.mark.parametrize(
    "flags,needles",
    [
        (["--conf", "1.5"], ["--conf=1.5", "0 到 1"]),
        (["--conf", "50"], ["--conf=50", "0.5"]),
        (["--conf", "-0.1"], ["--conf=-0.1", "0 到 1"]),
        (["--conf", "nan"], ["--conf=nan", "0 到 1"]),
        (["--max-det", "-5"], ["--max-det=-5", "≥ 1"]),
        (["--max-det", "0"], ["--max-det=0", "≥ 1"]),
    ],
)
def test_predict_options_out_of_range(flags, needles, ckpt, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    img = save_image(tmp_path / "a.jpg")
    before = snapshot(tmp_path)
    _run(["predict", "-r", ckpt, "-i", img, "-o", tmp_path / "出", *flags], 2, *needles)
    _unchanged(before, tmp_path)
    assert not (tmp_path / "出").exists()  # refused before anything was made


def test_detector_checks_the_same_options(ckpt):
    from deimv2.errors import ConfigError
    from deimv2.infer.detector import Detector

    with pytest.raises(ConfigError, match="conf=50"):
        Detector.from_checkpoint(ckpt, conf=50, backend="torch")
    with pytest.raises(ConfigError, match="max_det=-5"):
        Detector.from_checkpoint(ckpt, max_det=-5, backend="torch")
    det = Detector.from_checkpoint(ckpt, conf=0.0, max_det=2, backend="torch")
    assert len(det.predict(torch.rand(3, 64, 64))) <= 2
    with pytest.raises(ConfigError, match="conf=1.01"):
        det.predict(torch.rand(3, 64, 64), conf=1.01)
    with pytest.raises(ConfigError, match="max_det=0"):
        det.predict(torch.rand(3, 64, 64), max_det=0)
