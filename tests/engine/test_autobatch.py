"""batch_size=auto: the search with a simulated memory function, the CPU fallback, the step runner."""

import pytest
import torch

from deimv2.config.loader import load_config
from deimv2.engine.api import prepare_trainer
from deimv2.engine.autobatch import (
    AUTO_BATCH_FRACTION,
    resolve_auto_batch,
    search_batch_size,
    train_steps,
)
from deimv2.errors import ConfigError

GB = 2**30


def simulated(static_gb, per_image_gb, oom_gb=None):
    """Peak = static + batch × per image; None (out of memory) above ``oom_gb``. Records what was asked."""
    calls = []

    def measure(b):
        calls.append(b)
        peak = (static_gb + b * per_image_gb) * GB
        return None if oom_gb is not None and peak > oom_gb * GB else peak

    return measure, calls


def test_largest_fitting_batch_by_hand():
    # budget 0.8 × 10 GB = 8 GB; 1 + 0.3 b <= 8  ->  b <= 23.33  ->  23
    measure, calls = simulated(1.0, 0.3)
    res = search_batch_size(measure, 10 * GB)
    assert res.batch_size == 23 and res.budget_bytes == pytest.approx(8 * GB)
    assert calls[:6] == [1, 2, 4, 8, 16, 32]  # doubling, then bisection between 16 and 32
    assert len(calls) == len(set(calls)) <= 10
    assert res.measured[32] > res.budget_bytes >= res.measured[23]


def test_out_of_memory_counts_as_not_fitting():
    # budget 8 GB would allow 23, but the device runs out at 5 GB: 1 + 0.3 b <= 5 -> 13
    measure, _ = simulated(1.0, 0.3, oom_gb=5.0)
    res = search_batch_size(measure, 10 * GB)
    assert res.batch_size == 13 and res.measured[16] is None


def test_cap_and_fraction():
    measure, _ = simulated(0.1, 0.001)
    assert search_batch_size(measure, 10 * GB, max_batch=40).batch_size == 40
    measure, _ = simulated(1.0, 0.5)
    assert search_batch_size(measure, 10 * GB, fraction=0.5).batch_size == 8  # 1 + 0.5 b <= 5
    with pytest.raises(ConfigError):
        search_batch_size(measure, 10 * GB, fraction=1.5)


def test_batch_one_too_big_is_a_chinese_error():
    measure, _ = simulated(9.0, 1.0)
    with pytest.raises(ConfigError, match="batch 1 就已超出"):
        search_batch_size(measure, 10 * GB)


def test_auto_in_a_yaml_is_explained():
    with pytest.raises(ConfigError, match="batch_size=auto"):
        load_config("atto", {"train_dataloader.total_batch_size": "auto"})


def test_resolve_with_a_simulated_gpu_sets_the_total_batch(capsys):
    cfg = load_config("atto", ["accumulate=2"])
    measure, _ = simulated(1.0, 0.3)
    total = resolve_auto_batch(cfg, torch.device("cpu"), measure=measure, capacity_bytes=10 * GB)
    assert total == 23 * 2  # per-step batch × accumulate (× 1 GPU)
    said = capsys.readouterr().out
    assert f"{AUTO_BATCH_FRACTION:.0%}" in said and "选定每卡每步 batch 23" in said


def test_on_cpu_auto_keeps_the_recipe_batch_and_says_why(tiny_coco, tmp_path, capsys):
    recipe = load_config("atto").data.batch_size
    t = prepare_trainer(
        "atto",
        data=tiny_coco,
        output_dir=tmp_path / "o",
        device="cpu",
        progress=False,
        overrides=[
            "batch_size=auto",
            "HGNetv2.pretrained=False",
            "eval_spatial_size=[64,64]",
            "DEIMTransformer.num_queries=20",
            "PostProcessor.num_top_queries=20",
        ],
    )
    assert t.cfg.data.batch_size == recipe
    assert "需要 CUDA GPU" in capsys.readouterr().out


def test_the_measured_steps_run_and_change_the_weights():
    from deimv2.loss import build_criterion
    from deimv2.models.build import build_model_from_config

    cfg = load_config(
        "atto",
        {
            "HGNetv2.pretrained": False,
            "eval_spatial_size": [64, 64],
            "DEIMTransformer.num_queries": 20,
            "num_classes": 3,
        },
    )
    model, crit = build_model_from_config(cfg), build_criterion(cfg)
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    train_steps(model, crit, opt, 2, (64, 64), 3, torch.device("cpu"), steps=1)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
