"""The training speed options (deimv2.engine.speed) keep the maths: on the golden batch (tests/helpers/golden.py: Atto
with the golden weights, two images, fixed targets, denoising seeded) each option's loss terms and gradients are
compared with eager float32, and every gradient with a float64 reference.

Gradient tolerance: on this batch the eager float32 gradient itself is ~6e-3 (relative L2 over all parameters) away
from float64 (untrained weights, train-mode BatchNorm on batch 2: the backward amplifies rounding). An exact-maths
option may change the order of floating-point sums, not the accuracy: its gradient must be as close to float64 as
eager float32's, within a factor ``GRAD_FACTOR`` (channels-last measured 1.5x), and within ``GRAD_RTOL`` of eager.
bf16 keeps 8 bits of mantissa: its loss within ``BF16_LOSS_RTOL`` (measured 4e-3) and its gradient pointing the
same way as float64's (cosine > ``BF16_GRAD_COS``; measured 0.86 on this ill-conditioned batch) -- a check that
it trains in the right direction, not that it equals float32. Resume is bit-exact in both memory orders (channels-first
here, channels-last, Atto's default, in test_resume_exact.py); see docs/training.md for the other modes.
"""

import math
import os

import pytest
import torch
from helpers.golden import GOLDEN_SIZE, fill_golden, golden_input, golden_targets
from helpers.tinydata import TINY_TRAIN
from test_resume_exact import EPOCHS, SETTINGS, Interrupt, _log, _run

from deimv2.config.loader import load_config
from deimv2.engine import speed
from deimv2.engine.api import prepare_trainer, train
from deimv2.engine.checkpoint import load_checkpoint
from deimv2.engine.speed import SpeedOptions, SpeedPlan, loader_settings
from deimv2.errors import ConfigError
from deimv2.loss import build_criterion
from deimv2.models.build import build_model

LOSS_RTOL = 1e-4
GRAD_FACTOR, GRAD_RTOL = 3.0, 2e-2
BF16_LOSS_RTOL, BF16_GRAD_COS = 1e-2, 0.7
SIZE = GOLDEN_SIZE["atto"]
QUERIES = {k: v for k, v in TINY_TRAIN.items() if "queries" in k}  # few enough for 96 px


def golden_step(options: SpeedOptions, dtype=torch.float32, autocast=None):
    """Loss terms (floats) and the flat gradient (float64) of one training forward + criterion + backward."""
    plan = SpeedPlan(options, torch.device("cpu"))
    model = build_model("atto", eval_spatial_size=[SIZE, SIZE])
    fill_golden(model)
    model = plan.prepare_model(model.to(dtype)).train()
    criterion = build_criterion(model.config).train()
    x = golden_input(SIZE, SIZE)
    images = plan.prepare_images(torch.cat([x, x.flip(-1)]).to(dtype))
    targets = [
        {k: v.to(dtype) if v.is_floating_point() else v for k, v in t.items()}
        for t in golden_targets(model.config.num_classes)
    ]
    run = plan.compile(model)
    torch.manual_seed(0)
    with autocast or plan.autocast():
        outputs = run(images, targets=targets)
    losses = criterion(outputs, targets, epoch=0, step=0, global_step=0, epoch_step=1)
    sum(losses.values()).backward()
    grads = [p.grad.double().flatten() for _, p in sorted(model.named_parameters()) if p.grad is not None]
    return {k: float(v.detach()) for k, v in losses.items()}, torch.cat(grads)


@pytest.fixture(scope="module")
def reference():
    """(eager float32 step, float64 step) on the golden batch."""
    torch.set_num_threads(1)
    return golden_step(SpeedOptions()), golden_step(SpeedOptions(), torch.float64)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def check_exact_maths(got, reference) -> None:
    (eager_l, eager_g), (_, fp64_g) = reference
    losses, grads = got
    assert sorted(losses) == sorted(eager_l)
    worst = {k: abs(losses[k] - v) / max(1.0, abs(v)) for k, v in eager_l.items()}
    assert max(worst.values()) < LOSS_RTOL, worst
    total = sum(eager_l.values())
    assert abs(sum(losses.values()) - total) / abs(total) < LOSS_RTOL
    assert rel(grads, fp64_g) <= GRAD_FACTOR * rel(eager_g, fp64_g)
    assert rel(grads, eager_g) < GRAD_RTOL


def test_channels_last_keeps_losses_and_gradients(reference):
    check_exact_maths(golden_step(SpeedOptions(channels_last=True)), reference)


def test_compiled_model_keeps_losses_and_gradients(reference):
    """Dynamo + AOTAutograd capture the whole training forward/backward (``aot_eager``: the graphs torch.compile
    builds, run without inductor's code generation; inductor itself: tests/engine/test_speed_compile.py)."""
    check_exact_maths(golden_step(SpeedOptions(compile=True, compile_backend="aot_eager")), reference)


def test_bf16_autocast_stays_close(reference):
    (eager_l, _), (_, fp64_g) = reference
    losses, grads = golden_step(SpeedOptions(), autocast=torch.autocast("cpu", dtype=torch.bfloat16))
    total = sum(eager_l.values())
    assert abs(sum(losses.values()) - total) / abs(total) < BF16_LOSS_RTOL
    assert float(grads @ fp64_g / (grads.norm() * fp64_g.norm())) > BF16_GRAD_COS
    assert rel(grads, fp64_g) > 1e-3  # it really ran in bf16


def test_cpu_amp_needs_native_bf16(monkeypatch):
    monkeypatch.setattr(speed, "cpu_bf16_supported", lambda: False)
    with pytest.raises(ConfigError, match="cpu_amp"):
        SpeedPlan(SpeedOptions(cpu_amp=True), torch.device("cpu"))
    assert not SpeedPlan(SpeedOptions(cpu_amp=True), torch.device("cuda")).cpu_amp  # CUDA: use_amp's business


def test_speed_options_from_names_and_config():
    assert SpeedOptions.from_names(["channels_last", "compile"]) == SpeedOptions(channels_last=True, compile=True)
    with pytest.raises(ConfigError, match="channels_last"):
        SpeedOptions.from_names(["fast"])
    cfg = load_config("atto", {"channels_last": True, "cpu_amp": True})
    assert SpeedOptions.from_config(cfg.train) == SpeedOptions(channels_last=True, cpu_amp=True)
    assert SpeedOptions.from_config(load_config("s").train) == SpeedOptions()  # all off by default
    with pytest.raises(ConfigError, match="compile"):
        load_config("atto", {"compile": "yes please"})


def test_loader_settings_by_free_cores(monkeypatch):
    monkeypatch.setattr(speed, "free_cores", lambda: 2)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert loader_settings(4, cpu) == (2, False)  # the official 4 on a 2-core laptop
    assert loader_settings(0, cpu) == (0, False)
    assert loader_settings(4, cuda) == (2, True)  # pinned memory for a GPU
    assert loader_settings(4, cuda, processes=2) == (1, True)  # two processes share the cores
    monkeypatch.setattr(speed, "free_cores", lambda: 16)
    assert loader_settings(4, cuda, processes=8) == (2, True)


def test_compile_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv(speed.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "缓存目录"))
    path = speed.enable_compile_cache()
    assert path == tmp_path / "缓存目录" / "deimv2" / "inductor" and path.is_dir()
    assert os.environ[speed.CACHE_ENV] == str(path)
    monkeypatch.setenv(speed.CACHE_ENV, str(tmp_path / "mine"))  # the user's own setting wins
    assert speed.compile_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv(speed.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "张 三"))  # inductor's C++ command line breaks on a space
    monkeypatch.setattr(speed.tempfile, "gettempdir", lambda: str(tmp_path / "临时"))
    assert speed.compile_cache_dir() == tmp_path / "临时" / "deimv2-inductor"


def test_trainer_applies_the_options(tiny_coco, tmp_path):
    t = prepare_trainer(
        "atto",
        data=tiny_coco,
        output_dir=tmp_path / "out",
        overrides={"HGNetv2.pretrained": False, "eval_spatial_size": [96, 96], "batch_size": 2, **QUERIES},
        epochs=1,
        progress=False,
        channels_last=True,
        compile=True,
    )
    conv = next(m for m in t.model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    ema_conv = dict(t.ema.module.named_modules())[next(n for n, m in t.model.named_modules() if m is conv)]
    assert ema_conv.weight.is_contiguous(memory_format=torch.channels_last)  # the EMA copy is made after
    assert t.train_model is not t.model and t.train_model._orig_mod is t.model  # compiled wrapper, same weights
    assert t.speed.prepare_images(torch.zeros(1, 3, 8, 8)).is_contiguous(memory_format=torch.channels_last)


def test_channels_first_resume_is_bit_exact(tiny_coco, tmp_path):
    """tests/engine/test_resume_exact.py's run (augmentations, workers, denoising, EMA restart) in channels-first
    memory order; that test runs Atto's default, channels-last."""
    straight, split = tmp_path / "一次 跑完", tmp_path / "中断 后继续"
    _run(tiny_coco, straight, channels_last=False)

    def stop_half_way(record):
        if record["epoch"] == EPOCHS // 2 - 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        _run(tiny_coco, split, callback=stop_half_way, channels_last=False)
    _run(tiny_coco, split, resume=split / "last.pth", channels_last=False)
    a, b = load_checkpoint(straight / "last.pth"), load_checkpoint(split / "last.pth")
    assert all(torch.equal(v, b["model"][k]) for k, v in a["model"].items())
    assert all(torch.equal(v, b["ema"]["module"][k]) for k, v in a["ema"]["module"].items())
    assert _log(straight / "log.jsonl") == _log(split / "log.jsonl")


def test_cpu_amp_training_runs(tiny_coco, tmp_path, monkeypatch):
    """bf16 autocast through the trainer (forced on where the CPU lacks native bf16: autocast still works there)."""
    monkeypatch.setattr(speed, "cpu_bf16_supported", lambda: True)
    out = tmp_path / "bf16"
    metrics = train(
        "atto",
        data=tiny_coco,
        output_dir=out,
        overrides=SETTINGS,
        epochs=1,
        max_iters_per_epoch=2,
        progress=False,
        check_data=False,
        cpu_amp=True,
        channels_last=True,
    )
    row = _log(out / "log.jsonl")[0]
    assert math.isfinite(row["train_loss"]) and "AP" in metrics
    assert load_checkpoint(out / "last.pth")["config"]["cpu_amp"] is True
