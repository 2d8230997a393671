"""Runtime helpers every layer uses: the device, the notebooks' fast mode, timing a function.

Explained in notebook ``00_environment.ipynb`` (device) and ``01_weights.ipynb`` (timing).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import torch

from deimv2.errors import ConfigError
from deimv2.utils.inputs import parse_device


def fast_mode() -> bool:
    """``DEIMV2_FAST=1`` shrinks every long step (CI, nbval, a first try on a laptop)."""
    return os.environ.get("DEIMV2_FAST", "0").strip().lower() not in ("", "0", "false", "no")


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` -> CUDA if available, else CPU. A requested but missing CUDA is a clear error."""
    if isinstance(device, torch.device):
        dev = device
    else:
        text = parse_device(device)  # cpu, cuda, cuda:N, N, 0,1, gpu:N … (deimv2.utils.inputs)
        if text is None:
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        dev = torch.device(text)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"指定了设备 {device}，但这台机器上没有可用的 CUDA GPU。请去掉 -d/--device 或改用 -d cpu。")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(
            f"指定了设备 {device}，但这台机器只有 {torch.cuda.device_count()} 块 GPU（编号 0–"
            f"{torch.cuda.device_count() - 1}）。请改用存在的编号，或 -d cpu。"
        )
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ConfigError(f"指定了设备 {device}，但 MPS 不可用。请改用 -d cpu。")
    return dev


def time_fn(
    fn: Callable[[], object],
    runs: int = 10,
    warmup: int = 2,
    sync: Callable[[], None] | None = None,
    keep_times: bool = False,
) -> dict:
    """Median / min / mean milliseconds of ``fn`` over ``runs`` after ``warmup`` calls (+ all ``times``)."""
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
    return {
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "mean_ms": statistics.fmean(times),
        "runs": runs,
        **({"times": times} if keep_times else {}),
    }
