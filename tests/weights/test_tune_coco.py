"""``train(..., tune="coco")`` / ``deimv2 train -t coco`` and the effective optimizer of notebook 04's fine-tune path.

The official checkpoint comes from a local ``file://`` hub built here (tests/weights/test_hub.py); nothing is downloaded.
"""

from __future__ import annotations

import pytest
import torch
from test_hub import _fake_hub

import deimv2.weights.hub as hub
from deimv2.config.loader import load_config
from deimv2.engine import api
from deimv2.engine.trainer import Trainer
from deimv2.tutorial.notebook import scale_lrs, train_settings

TINY = {
    "eval_spatial_size": [64, 64],
    "HGNetv2.pretrained": False,
    "num_workers": 0,
    "DEIMTransformer.num_queries": 20,
    "PostProcessor.num_top_queries": 20,
}


@pytest.fixture
def captured(monkeypatch):
    """Replace ``Trainer.fit``: record the optimizer's groups (lr, and whether all params are the backbone's)."""
    seen = {}

    def fit(self, callback=None):
        names = {id(p): n for n, p in self.model.named_parameters()}
        seen["groups"] = [
            (g["lr"], all(names[id(p)].startswith("backbone.") for p in g["params"]))
            for g in self.optimizer.param_groups
            if g["params"]
        ]
        seen["trainer"] = self
        return {}

    monkeypatch.setattr(Trainer, "fit", fit)
    return seen


def _ratio_kept(groups, head_lr):
    for lr, is_backbone in groups:
        assert lr == pytest.approx(head_lr * (0.5 if is_backbone else 1.0)), groups
    assert any(b for _, b in groups) and any(not b for _, b in groups)


def test_coco_downloads_the_official_checkpoint_and_fine_tunes(tiny_coco, tmp_path, monkeypatch, captured, capsys):
    monkeypatch.setattr(hub, "HF_BASE", _fake_hub(tmp_path / "hub"))
    monkeypatch.setenv("DEIMV2_CKPTS", str(tmp_path / "权重 ckpts"))
    api.train(
        "atto", data=tiny_coco, tune="coco", epochs=2, output_dir=tmp_path / "run", progress=False, overrides=TINY
    )
    out = capsys.readouterr().out
    folder = hub.official_checkpoint_dir("atto", tmp_path / "权重 ckpts")
    assert (folder / "model.safetensors").is_file()
    assert "无法下载" not in out and "跳过" in out  # the fine-tune report: the 80-class heads are skipped
    assert "微调（-t）" in out  # the recipe saw a fine-tune (auto -> official, LRs not rescaled)
    cfg = load_config("atto")
    _ratio_kept(captured["groups"], cfg.optimizer.lr)


def test_coco_offline_says_one_line_and_trains_from_scratch(tiny_coco, tmp_path, monkeypatch, captured, capsys):
    monkeypatch.setenv("DEIMV2_CKPTS", str(tmp_path / "ckpts"))
    assert hub.offline()  # tests/conftest.py sets HF_HUB_OFFLINE=1
    # the backbone file the config asks for is missing too: "from scratch" means from random weights, no error
    overrides = {k: v for k, v in TINY.items() if k != "HGNetv2.pretrained"}
    api.train(
        "atto", data=tiny_coco, tune="coco", epochs=2, output_dir=tmp_path / "run", progress=False, overrides=overrides
    )
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if "官方 COCO 权重" in ln]
    assert len(lines) == 1 and "无法下载 DEIMv2-ATTO" in lines[0] and "从头训练" in lines[0], lines
    assert "骨干网络从随机初始化开始训练" in out
    assert "从头训练，训练集" in out  # the recipe saw a run from scratch


def test_cli_tune_coco(tiny_coco, tmp_path, monkeypatch, captured, capsys):
    from deimv2.cli import main

    monkeypatch.setattr(hub, "HF_BASE", _fake_hub(tmp_path / "hub"))
    monkeypatch.setenv("DEIMV2_CKPTS", str(tmp_path / "ckpts"))
    main(
        ["train", "-c", "atto", "--data", str(tiny_coco), "-t", "coco", "--output-dir", str(tmp_path / "run")]
        + ["-u", "eval_spatial_size=[64,64]", "HGNetv2.pretrained=False", "num_workers=0", "epochs=2"]
        + ["-u", "DEIMTransformer.num_queries=20", "PostProcessor.num_top_queries=20"]
    )
    assert (hub.official_checkpoint_dir("atto", tmp_path / "ckpts") / "config.json").is_file()
    assert "无法下载" not in capsys.readouterr().out


def test_coco_needs_a_known_variant(tmp_path):
    from deimv2.errors import ConfigError
    from deimv2.weights.hub import coco_target

    assert coco_target(load_config("atto"), "my.pth", print) == ("my.pth", False)  # not "coco": untouched
    raw = load_config("atto").to_dict()
    raw["HGNetv2"]["name"] = "B9"  # no official variant has this backbone
    with pytest.raises(ConfigError, match="官方变体"):
        coco_target(load_config(raw), "coco", print)


@pytest.mark.parametrize("demo", [True, False], ids=["demo", "own_data"])
def test_notebook_04_fine_tune_keeps_the_recipe_lr_ratio(demo, tiny_coco, tmp_path, monkeypatch, captured):
    """04's fine-tune path: 03's saved config with a non-default LR factor, TUNE="coco", the notebook's settings."""
    monkeypatch.setattr(hub, "HF_BASE", _fake_hub(tmp_path / "hub"))
    monkeypatch.setenv("DEIMV2_CKPTS", str(tmp_path / "ckpts"))
    monkeypatch.setenv("DEIMV2_FAST", "0")
    factor = 0.5
    saved = tmp_path / "03_config" / "config.yaml"
    from deimv2.config.loader import save_config

    save_config(scale_lrs(load_config("atto", batch_size=8, accumulate=2), factor), saved)
    extra = train_settings("demo" if demo else tiny_coco)
    extra.setdefault("overrides", {}).update(
        {
            "eval_spatial_size": [64, 64],
            "num_workers": 0,
            "DEIMTransformer.num_queries": 20,
            "PostProcessor.num_top_queries": 20,
        }
    )
    api.train(saved, data=tiny_coco, tune="coco", epochs=2, output_dir=tmp_path / "run", progress=False, **extra)
    head_lr = load_config("atto").optimizer.lr * factor
    _ratio_kept(captured["groups"], head_lr)
    t = captured["trainer"]
    assert t.cfg.train.scale_lr is False  # the recipe (auto, fine-tune): LRs are not rescaled for the batch
    assert isinstance(t.model, torch.nn.Module)


def test_scale_lrs_multiplies_every_learning_rate():
    cfg = load_config("atto")
    scaled = scale_lrs(cfg, 3.0)
    assert scaled.optimizer.lr == pytest.approx(3 * cfg.optimizer.lr)
    before = [g.get("lr") for g in cfg.optimizer.param_groups]
    after = [g.get("lr") for g in scaled.optimizer.param_groups]
    assert after == [None if b is None else pytest.approx(3 * b) for b in before]
