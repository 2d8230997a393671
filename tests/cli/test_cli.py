"""The command line: Chinese messages, no traceback for user mistakes, exit codes."""

import subprocess
import sys

import pytest

from deimv2.cli import main


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in (
        "train",
        "eval",
        "predict",
        "export",
        "demo",
        "yolo2coco",
        "coco2yolo",
        "doctor",
        "info",
        "checks",
        "bench",
    ):
        assert cmd in out


def test_no_command_prints_help(capsys):
    assert main([]) == 1
    assert "deimv2" in capsys.readouterr().out


def test_user_mistake_has_no_traceback(tmp_path, capsys):
    code = main(["info", str(tmp_path / "不存在 的文件.pth")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("错误：") and "Traceback" not in err and "不存在 的文件.pth" in err


def test_debug_shows_traceback(tmp_path, capsys):
    code = main(["--debug", "info", str(tmp_path / "missing.pth")])
    assert code == 2 and "Traceback" in capsys.readouterr().err


def test_unknown_config_name(capsys):
    code = main(["train", "-c", "no-such-variant", "--data", "."])
    err = capsys.readouterr().err
    assert code == 2 and "找不到配置" in err


def test_conflicting_num_classes_is_named(tmp_path, capsys):
    from deimv2.data.demo import prepare_demo_coco

    data = prepare_demo_coco(tmp_path / "demo coco")
    code = main(["train", "-c", "atto", "--data", str(data), "--no-check", "-u", "num_classes=7"])
    err = capsys.readouterr().err
    assert code == 2 and "num_classes=7" in err and "4" in err


def test_doctor_exit_codes(tmp_path, capsys):
    from deimv2.data.demo import demo_dataset_dir

    assert main(["doctor", str(demo_dataset_dir())]) == 0
    bad = tmp_path / "bad"
    (bad / "train").mkdir(parents=True)
    (bad / "train" / "_annotations.coco.json").write_text(
        '{"images": [{"id": 1, "file_name": "缺失.jpg", "width": 10, "height": 10}], "annotations": [],'
        ' "categories": [{"id": 0, "name": "猫"}]}',
        encoding="utf-8",
    )
    assert main(["doctor", str(bad)]) == 1
    assert "缺失.jpg" in capsys.readouterr().out
    assert main(["check", str(bad)]) == 1  # the old name of doctor still works
    assert "缺失.jpg" in capsys.readouterr().out


def test_python_dash_m_works_the_same(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "deimv2", "info", str(tmp_path / "x.pth")],
        capture_output=True,
        text=True,
        encoding="utf-8",
    )
    assert proc.returncode == 2 and "错误：" in proc.stderr and "Traceback" not in proc.stderr


def test_yolo2coco_and_back_from_the_command_line(tmp_path, capsys):
    from deimv2.data.demo import demo_dataset_dir

    coco = tmp_path / "转换 结果"
    assert main(["yolo2coco", str(demo_dataset_dir()), str(coco)]) == 0
    assert (coco / "train" / "_annotations.coco.json").is_file() and (
        coco / "valid" / "_annotations.coco.json"
    ).is_file()
    assert main(["coco2yolo", str(coco), str(tmp_path / "yolo")]) == 0
    assert (tmp_path / "yolo" / "data.yaml").is_file()
    assert main(["yolo2coco", str(demo_dataset_dir()), str(coco)]) == 2  # exists: refuses without --overwrite
    assert "错误" in capsys.readouterr().err


def test_bench_command(capsys):
    assert main(["bench", "atto", "--runs", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "atto" in out and "中位数" in out


def test_bad_argument_value_is_explained_in_chinese(capsys):
    with pytest.raises(SystemExit) as e:
        main(["predict", "-r", "x.pth", "-i", "a.jpg", "--conf", "高"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "错误：命令行参数不对" in err and "deimv2 predict -h" in err
