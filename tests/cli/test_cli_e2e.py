"""The command line end to end through ``deimv2.cli.main()``: the success paths a user runs.

One tiny training run (Atto, 96², 8 images) feeds every later command: resume, tune, test-only, eval
without ``-c``, predict on a folder with full-width commas in ``--classes``, export, info, checks.
"""

import json
import re

import pytest
import torch
from helpers.tinydata import make_coco_dataset

from deimv2.cli import main
from deimv2.engine.checkpoint import load_checkpoint

TINY = [
    "HGNetv2.pretrained=false",
    "eval_spatial_size=[96,96]",
    "batch_size=2",
    "num_workers=0",
    "val_dataloader.num_workers=0",
    "val_dataloader.total_batch_size=4",
    "DEIMTransformer.num_queries=30",
    "PostProcessor.num_top_queries=30",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """``deimv2 train -c atto --seed 3`` for one epoch; returns (data dir, output dir)."""
    root = tmp_path_factory.mktemp("命令行")
    data = make_coco_dataset(root / "数据 集")
    out = root / "训练 输出"
    code = main(
        [
            "train",
            "-c",
            "atto",
            "--data",
            str(data),
            "--seed",
            "3",
            "--output-dir",
            str(out),
            "-u",
            *TINY,
            "epochs=2",
            "flat_epoch=1",
            "no_aug_epoch=0",
        ]
    )
    assert code == 0
    return data, out


def _log_epochs(out):
    return [json.loads(line)["epoch"] for line in (out / "log.jsonl").read_text(encoding="utf-8").splitlines()]


def test_train_writes_a_seeded_run(run):
    data, out = run
    ckpt = load_checkpoint(out / "last.pth")
    assert ckpt["config"]["seed"] == 3 and ckpt["epoch"] == 1 and ckpt["class_names"] == ["红色", "绿色", "蓝色"]
    assert _log_epochs(out) == [0, 1] and (out / "best.pth").is_file() and (out / "config.yaml").is_file()


def test_train_resume_continues_into_a_longer_schedule(run, tmp_path):
    data, out = run
    import shutil

    dst = tmp_path / "继续"
    shutil.copytree(out, dst)
    code = main(
        [
            "train",
            "-c",
            "atto",
            "--data",
            str(data),
            "-r",
            str(dst / "last.pth"),
            "--output-dir",
            str(dst),
            "-u",
            *TINY,
            "epochs=3",
            "flat_epoch=1",
            "no_aug_epoch=0",
        ]
    )
    assert code == 0
    assert _log_epochs(dst) == [0, 1, 2] and load_checkpoint(dst / "last.pth")["epoch"] == 2


def test_train_tune_loads_every_tensor_of_a_same_class_checkpoint(run, tmp_path, capsys):
    data, out = run
    dst = tmp_path / "微调"
    code = main(
        [
            "train",
            "-c",
            "atto",
            "--data",
            str(data),
            "-t",
            str(out / "best.pth"),
            "--output-dir",
            str(dst),
            "--no-check",
            "-u",
            *TINY,
            "epochs=1",
        ]
    )
    assert code == 0 and load_checkpoint(dst / "last.pth")["epoch"] == 0
    report = next(line for line in capsys.readouterr().out.splitlines() if "加载了" in line)
    n = int(re.search(r"加载了 (\d+) 个张量", report).group(1))
    assert n == len(load_checkpoint(out / "best.pth")["ema"]["module"]) and "跳过" not in report


def test_train_test_only_and_eval_without_config(run, tmp_path, capsys):
    data, out = run
    dst = tmp_path / "只评估"
    code = main(
        [
            "train",
            "-c",
            "atto",
            "--data",
            str(data),
            "--test-only",
            "-r",
            str(out / "best.pth"),
            "--output-dir",
            str(dst),
            "-u",
            *TINY,
        ]
    )
    assert code == 0
    test_only = json.loads((dst / "eval.json").read_text(encoding="utf-8"))
    dst2 = tmp_path / "eval 无 -c"
    assert main(["eval", "-r", str(out / "best.pth"), "--data", str(data), "--output-dir", str(dst2)]) == 0
    evaluated = json.loads((dst2 / "eval.json").read_text(encoding="utf-8"))
    assert "AP" in capsys.readouterr().out
    key = next(k for k in ("AP", "metrics") if k in evaluated)
    assert evaluated[key] == test_only[key]  # same weights, same data, same numbers


def test_predict_folder_with_full_width_commas(run, tmp_path, capsys):
    data, out = run
    dst = tmp_path / "推理 结果"
    code = main(
        [
            "predict",
            "-r",
            str(out / "best.pth"),
            "-i",
            str(data / "valid"),
            "-o",
            str(dst),
            "--classes",
            "红，绿 ， 蓝",
            "--conf",
            "0",
            "--max-det",
            "5",
            "--save-json",
        ]
    )
    assert code == 0
    images = sorted(p.name for p in (data / "valid").glob("*.jpg"))
    assert sorted(p.name for p in dst.glob("*.jpg")) == images
    rows = json.loads((dst / "predictions.json").read_text(encoding="utf-8"))
    assert len(rows) == 5 * len(images)
    assert {r["category_name"] for r in rows} <= {"红", "绿", "蓝"} and {r["file_name"] for r in rows} == set(images)
    assert all(r["score"] >= 0 for r in rows)


def test_predict_conf_filters(run, tmp_path):
    data, out = run
    dst = tmp_path / "高阈值"
    assert (
        main(
            [
                "predict",
                "-r",
                str(out / "best.pth"),
                "-i",
                str(data / "valid"),
                "-o",
                str(dst),
                "--conf",
                "1",  # the top of the range: no score of the tiny model reaches it
                "--save-json",
            ]
        )
        == 0
    )
    assert json.loads((dst / "predictions.json").read_text(encoding="utf-8")) == []


def test_export_onnx_and_check(run, tmp_path):
    data, out = run
    onnx_path = tmp_path / "模型 导出" / "atto.onnx"
    assert main(["export", "-r", str(out / "best.pth"), "-o", str(onnx_path), "--check"]) == 0
    assert onnx_path.is_file() and onnx_path.stat().st_size > 100_000


def test_info_on_ours_and_official_format(run, tmp_path, capsys):
    data, out = run
    assert main(["info", str(out / "best.pth")]) == 0
    text = capsys.readouterr().out
    assert "完整检测器" in text and "atto" in text.lower() and "红色" in text
    ours = load_checkpoint(out / "best.pth")
    official = tmp_path / "官方 格式.pth"  # the official layout: model + ema{module, updates}, nothing else
    torch.save({"model": ours["model"], "ema": {"module": ours["ema"]["module"], "updates": 10}}, official)
    assert main(["info", str(official)]) == 0
    text = capsys.readouterr().out
    assert "完整检测器" in text and "类别数：3" in text


def test_checks_command(capsys):
    assert main(["checks"]) == 0
    out = capsys.readouterr().out
    assert "torch" in out.lower() and str(torch.__version__).split("+")[0] in out
