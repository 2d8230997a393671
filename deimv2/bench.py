"""Latency benchmark of the eval-mode model (``deimv2 bench``), also used by ``benchmarks/latency.py``.

Batch 1 at the variant's eval size, ``torch.inference_mode()``, warm-up runs first, then the median
of repeated runs; the thread count is stated. Explained in notebook ``01_weights.ipynb``.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable, Iterable

import torch


def time_fn(fn: Callable[[], object], runs: int = 10, warmup: int = 2, sync: Callable[[], None] | None = None) -> dict:
    """Median / min / mean milliseconds of ``fn`` over ``runs`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        if sync:
            sync()
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append((time.perf_counter() - t0) * 1000)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "mean_ms": statistics.fmean(times),
            "runs": runs}


def bench_variant(variant: str, device: str = "cpu", runs: int = 10, warmup: int = 2, deploy: bool = False,
                  with_postprocess: bool = True) -> dict:
    """Eval latency of one variant with random weights (weights do not change the compute)."""
    from .models.build import build_model, build_postprocessor

    dev = torch.device(device)
    model = build_model(variant).to(dev).eval()
    post = build_postprocessor(model.config).to(dev)
    if deploy:
        model.deploy()
        post.deploy()
    h, w = model.config.eval_spatial_size
    x = torch.rand(1, 3, h, w, device=dev)
    sizes = torch.tensor([[w, h]], device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else None

    def run():
        with torch.inference_mode():
            out = model(x)
            if with_postprocess:
                post(out, sizes)

    result = time_fn(run, runs=runs, warmup=warmup, sync=sync)
    result.update(variant=variant, input=f"{h}x{w}", device=str(dev), threads=torch.get_num_threads(),
                  deploy=deploy, params=sum(p.numel() for p in model.parameters()))
    return result


def run_latency_benchmark(variants: Iterable[str], threads: int = 2, runs: int = 10, device: str = "cpu",
                          deploy: bool = False) -> list[dict]:
    """Print and return a latency table for ``variants``."""
    torch.set_num_threads(int(threads))
    rows = []
    print(f"设备 {device}，线程数 {torch.get_num_threads()}，batch 1，预热 2 次后取 {runs} 次的中位数（随机权重）")
    print(f"{'变体':<6}{'输入':>10}{'中位数 ms':>12}{'最小 ms':>10}{'参数量':>12}")
    for v in variants:
        r = bench_variant(v, device=device, runs=runs, deploy=deploy)
        rows.append(r)
        print(f"{v:<6}{r['input']:>10}{r['median_ms']:>12.1f}{r['min_ms']:>10.1f}{r['params'] / 1e6:>11.2f}M")
    return rows
