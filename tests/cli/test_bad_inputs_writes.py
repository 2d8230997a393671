"""Issue 29, the rest: an exported ONNX given as a checkpoint (used by predict / Detector, named elsewhere), no writing
command overwrites an input or another run's files (export, eval, demo), checkpoint/dataset class names that
disagree, keyword arguments given as strings, torchrun device lists. Same style as ``test_bad_inputs.py``: exit
status, no traceback, a Chinese message naming the file or key, nothing lost. Policies: docs/errors.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers.badfiles import TINY_U, edit_coco, expect_cli, random_checkpoint, save_image, snapshot, tiny_coco

from deimv2.errors import ConfigError, WeightsError

_run = expect_cli
_EVAL_U = ["-u", "val_dataloader.num_workers=0", "val_dataloader.total_batch_size=2"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path]:
    """(checkpoint, its ONNX export by ``deimv2 export``)."""
    root = tmp_path_factory.mktemp("onnx")
    ckpt = random_checkpoint(root / "运行" / "best.pth")
    _run(["export", "-r", ckpt, "-o", root / "导出 模型.onnx"], 0, "已导出 ONNX")
    return ckpt, root / "导出 模型.onnx"


def _unchanged(before: dict, root: Path) -> None:
    after = snapshot(root)
    assert not {k for k, v in before.items() if after.get(k) != v}


# ---------------------------------------------------------------------------------------------- an exported ONNX
def test_an_exported_onnx_runs_in_predict_and_detector(exported, tmp_path):
    from deimv2.infer.detector import Detector

    ckpt, onnx = exported
    img = save_image(tmp_path / "图.jpg", size=(100, 80))
    _run(["predict", "-r", onnx, "-i", img, "-o", tmp_path / "出", "--conf", "0"], 0, "已处理 1 张图片", "3 类")
    assert (tmp_path / "出" / "图.jpg").is_file()
    from_onnx = Detector.from_checkpoint(onnx, conf=0.0, backend="onnxruntime")
    from_pth = Detector.from_checkpoint(ckpt, conf=0.0, backend="onnxruntime")
    assert from_onnx.class_names == from_pth.class_names == ["类0", "类1", "类2"]
    assert from_onnx.size_hw == from_pth.size_hw == (160, 160)
    a, b = from_onnx(img), from_pth(img)  # the same graph, the same runtime: the same detections
    assert torch.equal(a.labels, b.labels) and torch.allclose(a.scores, b.scores, atol=1e-6)
    assert torch.allclose(a.boxes, b.boxes, atol=1e-3)


@pytest.mark.parametrize(
    "argv",
    [
        lambda d, o: ["train", "-c", "atto", "--data", d, "--no-check", "-r", o, "-u", *TINY_U],
        lambda d, o: ["train", "-c", "atto", "--data", d, "--no-check", "-t", o, "-u", *TINY_U],
        lambda d, o: ["eval", "--data", d, "-r", o],
        lambda d, o: ["export", "-r", o, "-o", o.parent / "再导出.onnx"],
    ],
    ids=["train-r", "train-t", "eval", "export"],
)
def test_an_exported_onnx_is_named_where_a_pth_is_needed(argv, exported, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = tiny_coco(tmp_path / "d")
    before, before_onnx = snapshot(tmp_path), snapshot(exported[1].parent)
    _run(argv(data, exported[1]), 2, "导出 模型.onnx", "ONNX", ".pth", "deimv2 predict -r")
    _unchanged(before, tmp_path)
    assert snapshot(exported[1].parent) == before_onnx


def test_an_onnx_that_cannot_be_used_says_why(exported, tmp_path):
    from deimv2.infer.detector import Detector
    from deimv2.infer.graph import build_graph, write_onnx
    from deimv2.models.build import build_model

    img = save_image(tmp_path / "a.jpg")
    model = build_model("atto", num_classes=2, eval_spatial_size=[160, 160], overrides={"HGNetv2.pretrained": False})
    foreign = tmp_path / "别的工具.onnx"
    write_onnx(build_graph(model, model.config, deploy=True), model.config, foreign)  # no deimv2 metadata
    _run(["predict", "-r", foreign, "-i", img, "-o", tmp_path / "出"], 2, "别的工具.onnx", "deimv2 export", ".pth")
    with pytest.raises(WeightsError, match="别的工具.onnx"):
        Detector.from_checkpoint(foreign)
    onnx = exported[1]
    _run(
        ["predict", "-r", onnx, "-i", img, "-o", tmp_path / "出", "--backend", "torch"], 2, "导出 模型.onnx", "PyTorch"
    )
    _run(["predict", "-c", "atto", "-r", onnx, "-i", img, "-o", tmp_path / "出"], 2, "导出 模型.onnx", "-c")
    assert not [p for p in (tmp_path / "出").rglob("*") if p.is_file()]  # nothing written


# ---------------------------------------------------------------------------------------------- writing commands
def test_export_never_overwrites_another_file(exported, tmp_path):
    ckpt, _ = exported
    other = random_checkpoint(tmp_path / "另一次" / "best.pth", num_classes=2)
    mine = tmp_path / "我的.onnx"
    mine.write_bytes(b"my own file")
    target = tmp_path / "模型.onnx"
    _run(["export", "-r", ckpt, "-o", target], 0, "已导出 ONNX")  # the first export
    _run(["export", "-r", ckpt, "-o", target], 0, "已导出 ONNX")  # re-exporting the same weights replaces it
    before = snapshot(tmp_path)
    _run(["export", "-r", other, "-o", target], 2, "模型.onnx", "已存在", "-o")  # another run's weights
    _run(["export", "-r", ckpt, "-o", mine], 2, "我的.onnx", "已存在")  # a file of the user's
    _run(["export", "-c", "atto", "-o", target], 2, "模型.onnx", "已存在")  # random weights
    _unchanged(before, tmp_path)
    assert snapshot(tmp_path).keys() == before.keys()


def test_eval_never_overwrites_the_runs_eval_json(tmp_path):
    data = tiny_coco(tmp_path / "d")
    ckpt = random_checkpoint(tmp_path / "运行" / "best.pth")
    (tmp_path / "运行" / "eval.json").write_text('{"AP": 0.5}', encoding="utf-8")  # the training's own record
    before = snapshot(tmp_path)
    _run(["eval", "--data", data, "-r", ckpt, *_EVAL_U], 0, "eval-2.json")
    _run(["eval", "--data", data, "-r", ckpt.parent, *_EVAL_U], 0, "eval-3.json")
    _unchanged(before, tmp_path)
    assert "AP" in json.loads((tmp_path / "运行" / "eval-3.json").read_text(encoding="utf-8"))


def test_demo_twice_keeps_the_first_demos_files(tmp_path, monkeypatch):
    monkeypatch.setenv("DEIMV2_FAST", "1")
    out = tmp_path / "演示"
    _run(["demo", "--output-dir", out, "--epochs", "1"], 0, "完成")
    before = snapshot(out)
    text = _run(["demo", "--output-dir", out, "--epochs", "1"], 0, "完成")
    _unchanged(before, out)
    assert len(list((out / "predictions-2").glob("*.jpg"))) == 8 and (out / "train-2" / "best.pth").is_file()
    assert str((out / "predictions-2").resolve()) in text and "train-2" in text


# ---------------------------------------------------------------------------------------------- ids and names
def _names(*names):
    def edit(d):
        d["categories"] = [{"id": i, "name": n} for i, n in enumerate(names)]

    return edit


@pytest.mark.parametrize(
    "names,nc,code,needles",
    [
        (("绿色", "红色", "蓝色"), 3, 2, ["顺序不同", "类0"]),  # the checkpoint's names, another order
        (None, 2, 2, ["类别数不一致", "类1", "蓝色", "-t"]),  # a 2-class checkpoint, a 3-class dataset
        (None, 3, 0, ["警告：类别名不同", "红色", "类0"]),  # renamed: evaluated with a warning
    ],
    ids=["order", "count", "renamed"],
)
def test_eval_compares_the_checkpoints_class_names_with_the_datasets(names, nc, code, needles, tmp_path):
    data = tiny_coco(tmp_path / "d")
    ckpt = random_checkpoint(tmp_path / "运行" / "best.pth", num_classes=nc)
    if names is not None:
        ours = dict(zip(("红色", "绿色", "蓝色"), ("类0", "类1", "类2")))
        for split in ("train", "valid"):
            edit_coco(data, _names(*(ours[n] for n in names)), split)
    before = snapshot(tmp_path)
    _run(["eval", "--data", data, "-r", ckpt, *_EVAL_U], code, "best.pth", *needles)
    if code:
        _unchanged(before, tmp_path)
        assert snapshot(tmp_path).keys() == before.keys()


def test_coco2yolo_names_a_category_id_used_twice_in_one_file(tmp_path):
    data = tiny_coco(tmp_path / "d")
    for split in ("train", "valid"):
        edit_coco(data, lambda d: d["categories"].append({"id": 0, "name": "重复"}), split)
    _run(["coco2yolo", data, tmp_path / "输出"], 2, "_annotations.coco.json", "id 0 出现了多次", "重复")
    assert not (tmp_path / "输出").exists()


# ---------------------------------------------------------------------------------------------- strings as kwargs
def test_keyword_arguments_given_as_strings_read_like_update_flags(tmp_path):
    from deimv2.config.loader import load_config, parse_overrides
    from deimv2.engine.api import train

    assert parse_overrides({"lr": "1e-3", "epochs": "12", "name": "'1e-3'"}) == {
        "lr": 1e-3,
        "epochs": 12,
        "name": "1e-3",
    }
    assert parse_overrides({"lr": "1e-3"}) == parse_overrides(["lr=1e-3"])
    cfg = load_config("atto", lr="1e-3", epochs="12")
    assert cfg.optimizer.lr == pytest.approx(1e-3) and cfg.schedule.epochs == 12
    with pytest.raises(ConfigError, match="lr"):
        load_config("atto", lr="很小")
    with pytest.raises(Exception, match="无数据") as e:  # the dataset is the first problem, not the "1e-3" text
        train("atto", data=tmp_path / "无数据", lr="1e-3")
    assert "文字" not in str(e.value)


def test_detector_options_given_as_strings(exported):
    from deimv2.infer.detector import Detector

    det = Detector.from_checkpoint(exported[0], conf="0.5", max_det="7", backend="torch")
    assert det.conf == 0.5 and det.max_det == 7
    with pytest.raises(ConfigError, match="conf='高'"):
        Detector.from_checkpoint(exported[0], conf="高", backend="torch")
    with pytest.raises(ConfigError, match="0.5"):
        Detector.from_checkpoint(exported[0], conf="50", backend="torch")


# ---------------------------------------------------------------------------------------------- torchrun devices
@pytest.fixture
def four_gpus(monkeypatch):
    """A machine with 4 CUDA GPUs, as torch sees it, under ``torchrun --nproc_per_node=2``."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    for key, value in {"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(key, value)
    return monkeypatch


@pytest.mark.parametrize("rank", [0, 1])
@pytest.mark.parametrize(
    "device,gpus", [("2,3", (2, 3)), ("cuda", (0, 1)), (None, (0, 1)), ("0,1", (0, 1)), ("cuda:3,1", (3, 1))]
)
def test_rank_i_uses_the_ith_listed_gpu(device, gpus, rank, four_gpus):
    from deimv2.engine.setup import process_device

    four_gpus.setenv("RANK", str(rank))
    four_gpus.setenv("LOCAL_RANK", str(rank))
    assert process_device(device) == torch.device("cuda", gpus[rank])


def test_the_chosen_gpu_is_the_one_the_process_group_uses(four_gpus):
    from deimv2.engine import dist
    from deimv2.engine.setup import process_device

    chosen = []
    four_gpus.setenv("LOCAL_RANK", "1")
    four_gpus.setenv("MASTER_ADDR", "127.0.0.1")
    four_gpus.setenv("MASTER_PORT", "29500")
    four_gpus.setattr(torch.cuda, "set_device", chosen.append)
    four_gpus.setattr(dist.td, "init_process_group", lambda **kw: None)
    four_gpus.setattr(dist, "is_dist", lambda: False)
    assert dist.init_distributed(device=process_device("2,3"))
    assert chosen == [torch.device("cuda", 3)]


@pytest.mark.parametrize(
    "device,needles",
    [
        ("1", ["设备 1", "同一块 GPU", "-d 0,1"]),
        ("2,3,1", ["2,3,1", "3 块 GPU", "2 个进程"]),
        ("3,3", ["3,3", "重复"]),
        ("3,5", ["3,5", "只有 4 块 GPU"]),
    ],
)
def test_device_lists_that_do_not_fit_the_processes_are_refused(device, needles, four_gpus):
    from deimv2.engine.setup import process_device

    four_gpus.setenv("LOCAL_RANK", "1")
    with pytest.raises(ConfigError) as e:
        process_device(device)
    assert all(n in str(e.value) for n in needles), str(e.value)


def test_export_metadata_names_no_folder_of_the_user(tmp_path):
    """The ONNX metadata identifies its checkpoint by file name and a hash, never by the user's folders."""
    from deimv2.infer.export import _checkpoint_id

    ckpt = tmp_path / "我的 训练" / "best.pth"
    got = _checkpoint_id(ckpt)
    assert got.startswith("best.pth#") and len(got) == len("best.pth#") + 16
    assert str(tmp_path) not in got and "我的" not in got
    assert got == _checkpoint_id(ckpt) and got != _checkpoint_id(tmp_path / "其他" / "best.pth")


def test_bench_json_never_replaces_another_file(tmp_path, monkeypatch):
    """deimv2 bench --json: refused before measuring when the file is not an earlier bench result."""
    import subprocess

    mine = tmp_path / "我的 数据.json"
    mine.write_text('{"images": []}', encoding="utf-8")
    ran = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: ran.append(a))  # no measuring may start
    _run(["bench", "atto", "--json", mine], 2, mine, "不是 deimv2 bench 的结果文件")
    assert not ran and mine.read_text(encoding="utf-8") == '{"images": []}'
