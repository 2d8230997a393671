"""Where one training step's time goes: ``torch.profiler`` on a DEIMv2 training step, per phase and per operator.

A step = train-mode forward with targets (denoising on) + criterion (Hungarian matcher inside) + backward +
``clip_grad_norm_`` + AdamW step + EMA update, as :class:`deimv2.engine.trainer.Trainer` runs it (fp32, eager;
``--speed`` names the options of :mod:`deimv2.engine.speed` to profile instead, e.g. ``channels_last``).
Each variant runs in a fresh subprocess pinned to ``--threads`` (default 1): ``--warmup`` steps, ``--runs`` plain
timed steps (the step time without the profiler), then ``--profiled`` steps under the profiler. The JSON records

- ``phases``: each phase's share of the profiled step (``forward``, ``criterion``, ``matcher`` (part of
  ``criterion``), ``backward``, ``clip``, ``optimizer``, ``ema``) and the share of it spent outside any operator;
- ``top_ops``: the operators with the largest self CPU time, their share of the profiled step and call counts;
- ``kinds``: self CPU time per kind of operator (convolution, batch_norm, grid_sample, matmul, ...);
- ``python_overhead_share``: the share of the profiled step spent outside every operator (Python, the
  dispatcher between operators, the scipy matcher); ``profiler_overhead`` = profiled step / plain step.

    python benchmarks/profile_step.py --variants atto s --json benchmarks/results/profile_step_cpu1.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

PHASES = ("forward", "criterion", "matcher", "backward", "clip", "optimizer", "ema")
#: operator name fragments -> kind (first match wins; checked in this order)
KINDS = (
    ("convolution", ("conv", "mkldnn_convolution")),
    ("batch_norm", ("batch_norm",)),
    ("grid_sample", ("grid_sampler",)),
    ("matmul", ("mm", "matmul", "linear", "addmm", "bmm", "baddbmm")),
    ("attention", ("attention", "softmax")),
    ("optimizer", ("_foreach", "adam", "lerp")),
    ("copy/layout", ("copy_", "contiguous", "clone", "to_copy", "cat", "stack", "index", "gather", "scatter")),
)
DEFAULT_SHAPES = {"atto": (320, 4), "s": (640, 4)}


def op_kind(name: str) -> str:
    low = name.lower()
    for kind, parts in KINDS:
        if any(p in low for p in parts):
            return kind
    return "elementwise/other"


def build_step(variant: str, size: int, batch: int, speed: Sequence[str] = (), device: str = "cpu", amp_dtype=None):
    """The model, criterion, optimizer, EMA and one fixed batch on ``device``, and ``step()`` running one training
    step (``amp_dtype``: CUDA autocast of the forward, as ``use_amp``; fp16 with a GradScaler)."""
    import torch
    from torch.profiler import record_function
    from train_step import make_batch

    from deimv2.engine.ema import ModelEMA
    from deimv2.engine.optim import build_optimizer
    from deimv2.engine.speed import SpeedOptions, SpeedPlan
    from deimv2.loss import build_criterion
    from deimv2.models.build import build_model

    torch.manual_seed(0)
    dev = torch.device(device)
    plan = SpeedPlan(SpeedOptions.from_names(speed), dev)
    model = plan.prepare_model(build_model(variant, eval_spatial_size=[size, size]).to(dev))
    cfg = model.config
    criterion = build_criterion(cfg).to(dev)
    o = cfg.optimizer
    optimizer = build_optimizer(model, o.param_groups, o.lr, o.betas, o.weight_decay)
    ema = ModelEMA(model, cfg.train.ema_decay, cfg.train.ema_warmups)
    run_model = plan.compile(model)
    matcher_forward = criterion.matcher.forward

    def timed_matcher(*a, **k):
        with record_function("matcher"):
            return matcher_forward(*a, **k)

    criterion.matcher.forward = timed_matcher
    images, targets = make_batch(size, size, batch, cfg.num_classes)
    images = plan.prepare_images(images.to(dev))
    targets = [{k: v.to(dev) for k, v in t.items()} for t in targets]
    amp = torch.autocast(dev.type, dtype=amp_dtype) if amp_dtype is not None else plan.autocast()
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    model.train()
    criterion.train()
    clip = cfg.train.clip_max_norm

    def step() -> float:
        with record_function("forward"), amp:
            outputs = run_model(images, targets=targets)
        with record_function("criterion"):
            loss = sum(criterion(outputs, targets, epoch=0, step=0, global_step=0, epoch_step=1).values())
        with record_function("backward"):
            (scaler.scale(loss) if scaler else loss).backward()
        with record_function("clip"):
            if scaler:
                scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        with record_function("optimizer"):
            if scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        with record_function("ema"):
            ema.update(model)
        return float(loss.detach())

    return step


def profile_variant(variant: str, size: int, batch: int, threads: int, warmup: int, runs: int, profiled: int,
                    speed: Sequence[str] = (), top: int = 25) -> dict:  # fmt: skip
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(threads)
    step = build_step(variant, size, batch, speed)
    for _ in range(warmup):
        step()
    plain = []
    for _ in range(runs):
        t0 = time.perf_counter()
        step()
        plain.append((time.perf_counter() - t0) * 1000)
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(profiled):
            step()
    wall_us = (time.perf_counter() - t0) * 1e6
    events = prof.key_averages()
    phases = {e.key: e for e in events if e.key in PHASES}
    ops = [e for e in events if e.key not in PHASES]
    op_self_us = sum(e.self_cpu_time_total for e in ops)
    kinds: dict[str, float] = {}
    for e in ops:
        kinds[op_kind(e.key)] = kinds.get(op_kind(e.key), 0.0) + e.self_cpu_time_total
    ops.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return {
        "variant": variant,
        "input": f"{batch}x3x{size}x{size}",
        "speed": list(speed),
        "threads": threads,
        "plain_step_ms": statistics.median(plain) if plain else None,
        "plain_times_ms": plain,
        "profiled_step_ms": wall_us / profiled / 1000,
        "profiler_overhead": (wall_us / profiled / 1000) / statistics.median(plain) if plain else None,
        "python_overhead_share": max(0.0, 1 - op_self_us / wall_us),
        "phases": {
            k: {
                "share": phases[k].cpu_time_total / wall_us,
                "outside_ops_share": phases[k].self_cpu_time_total / max(phases[k].cpu_time_total, 1e-9),
            }
            for k in PHASES
            if k in phases
        },
        "kinds": {k: v / wall_us for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])},
        "top_ops": [
            {"op": e.key, "share": e.self_cpu_time_total / wall_us, "calls_per_step": e.count / profiled}
            for e in ops[:top]
        ],
        "op_calls_per_step": sum(e.count for e in ops) / profiled,
    }


def run_side(variant: str, a: argparse.Namespace, speed: Sequence[str]) -> dict:
    size, batch = (
        a.size or DEFAULT_SHAPES.get(variant, (320, 4))[0],
        a.batch or DEFAULT_SHAPES.get(variant, (320, 4))[1],
    )
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads)}
    cmd = [sys.executable, __file__, "--worker", variant, "--threads", str(a.threads), "--size", str(size)]
    cmd += ["--batch", str(batch), "--warmup", str(a.warmup), "--runs", str(a.runs), "--profiled", str(a.profiled)]
    cmd += ["--speed", *speed] if speed else []
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, encoding="utf-8", cwd=ROOT)
    if r.returncode:
        return {"variant": variant, "speed": list(speed), "error": r.stderr[-3000:]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def print_row(r: dict) -> None:
    if "error" in r:
        print(f"{r['variant']} {r['speed']}: 失败\n{r['error']}")
        return
    ph = "  ".join(f"{k} {v['share']:.0%}" for k, v in r["phases"].items())
    print(f"{r['variant']} {r['input']} {r['speed'] or ['eager']}: {r['plain_step_ms']:.0f} ms/步（无 profiler）；{ph}")
    print(f"  算子之外（Python 等）{r['python_overhead_share']:.0%}；每步 {r['op_calls_per_step']:.0f} 次算子调用")
    for o in r["top_ops"][:8]:
        print(f"    {o['op']:<40}{o['share']:>7.1%}{o['calls_per_step']:>8.0f} 次")


def main(argv: Sequence[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description="DEIMv2 训练一步的 profiler 分解（阶段、算子、Python 开销）")
    p.add_argument("--variants", nargs="+", default=["atto", "s"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--size", type=int, default=None, help="边长（默认 atto 320、s 640，即各自的评估尺寸）")
    p.add_argument("--batch", type=int, default=None, help="batch（默认 4，与 train_step.py 相同）")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--runs", type=int, default=3, help="不开 profiler 计时的步数")
    p.add_argument("--profiled", type=int, default=2, help="在 profiler 下运行的步数")
    p.add_argument("--speed", nargs="*", default=[], help="另外再测这些 deimv2.engine.speed 选项（如 channels_last）")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--json", default=None)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        res = profile_variant(a.worker, a.size, a.batch, a.threads, a.warmup, a.runs, a.profiled, a.speed)
        print(json.dumps(res))
        return [res]
    sys.path.insert(0, str(ROOT))
    from latency import run_meta, write_results

    meta = run_meta(a.threads, a.rounds, sys.argv[1:] if argv is None else list(argv))
    configs = [()] + ([tuple(a.speed)] if a.speed else [])
    rows = []
    for i in range(a.rounds):
        for v in a.variants:
            for speed in configs if i % 2 == 0 else configs[::-1]:  # interleaved, alternating order
                rows.append({"round": i, **run_side(v, a, speed)})
                print_row(rows[-1])
    if a.json:
        write_results(a.json, meta, rows)
        print(f"结果已写入 {a.json}")
    return rows


if __name__ == "__main__":
    main()
