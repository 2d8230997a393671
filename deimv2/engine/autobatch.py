"""``-u batch_size=auto``: measure the GPU memory of a few training steps and pick the largest batch that fits.

The search (:func:`search_batch_size`) is a pure function of a ``measure(batch) -> peak bytes or None (out of
memory)`` callable, so it is tested on CPU with a simulated memory function; on CUDA
:func:`cuda_peak_memory_fn` runs real forward/backward/AdamW steps on a throw-away model at the largest
multi-scale input size. :func:`resolve_auto_batch` gives the concrete ``total_batch_size`` for ``auto``;
:func:`deimv2.config.run_config.build_run_config` calls it (``choose_batch``) before the batch-size rule (LR/EMA/
warm-up scaling), which then applies to it. On CPU it says that it needs a GPU and keeps the recipe's batch.
Explained in notebook ``04_train.ipynb``.
"""

from __future__ import annotations

import copy
import gc
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch

from deimv2.config.loader import Config
from deimv2.data.collate import generate_scales
from deimv2.data.layout import read_coco_json
from deimv2.engine.dist import all_gather_object
from deimv2.engine.setup import amp_settings
from deimv2.errors import ConfigError
from deimv2.loss import build_criterion
from deimv2.models.build import build_model_from_config

__all__ = [
    "AUTO_BATCH_FRACTION",
    "AutoBatchResult",
    "cuda_peak_memory_fn",
    "resolve_auto_batch",
    "search_batch_size",
]

#: share of the GPU's total memory that the chosen batch may use at its measured peak
AUTO_BATCH_FRACTION = 0.80
#: training steps measured per batch size (the first steps allocate the AdamW moments)
MEASURE_STEPS = 3


@dataclass
class AutoBatchResult:
    batch_size: int  # largest per-step batch whose peak fits the budget
    budget_bytes: float
    measured: dict = field(default_factory=dict)  # batch -> peak bytes (None = out of memory)


def search_batch_size(
    measure: Callable[[int], float | None],
    capacity_bytes: float,
    fraction: float = AUTO_BATCH_FRACTION,
    max_batch: int = 256,
) -> AutoBatchResult:
    """Largest batch ``b <= max_batch`` with ``measure(b) <= fraction * capacity_bytes``.

    Doubles from 1 while batches fit, then bisects between the last that fit and the first that did not
    (memory grows with the batch, so at most ~2·log2(max_batch) measurements). ``measure`` returns the
    peak bytes, or None when the batch ran out of memory.
    """
    if not 0 < fraction <= 1:
        raise ConfigError(f"显存比例 fraction={fraction} 应在 (0, 1] 之间。")
    budget = float(fraction) * float(capacity_bytes)
    measured: dict[int, float | None] = {}

    def fits(b: int) -> bool:
        if b not in measured:
            measured[b] = measure(b)
        peak = measured[b]
        return peak is not None and peak <= budget

    if not fits(1):
        peak = measured[1]
        what = "显存不足（out of memory）" if peak is None else f"峰值 {peak / 2**30:.2f} GB"
        raise ConfigError(
            f"batch_size=auto：batch 1 就已超出显存预算 {budget / 2**30:.2f} GB（{what}）。"
            f"请减小输入尺寸 eval_spatial_size、打开 --use-amp，或换用更小的变体。"
        )
    lo, b = 1, 1
    while True:
        nxt = b * 2
        if nxt > max_batch:
            hi = max_batch + 1
            break
        if not fits(nxt):
            hi = nxt
            break
        lo = b = nxt
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return AutoBatchResult(lo, budget, measured)


# ---------------------------------------------------------------------- measuring on a device
def _largest_input(cfg: Config) -> tuple[int, int]:
    """The biggest image the training sees: the top multi-scale size, else ``eval_spatial_size``."""
    h, w = int(cfg.eval_spatial_size[0]), int(cfg.eval_spatial_size[1])
    base = cfg.data.collate.get("base_size")
    if cfg.data.multiscale and base:
        repeat = cfg.data.collate.get("base_size_repeat") or 1
        top = max(generate_scales(int(base), int(repeat)))
        return max(h, top), max(w, top)
    return h, w


def train_steps(
    model: torch.nn.Module,
    criterion: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: int,
    size: tuple[int, int],
    num_classes: int,
    device: torch.device,
    steps: int,
    amp_dtype: torch.dtype | None = None,
) -> None:
    """``steps`` forward + loss + backward + optimizer steps on random images with 3 boxes each."""
    model.train()
    criterion.train()
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x = torch.rand(batch, 3, *size, generator=gen).to(device)
        targets = []
        for _ in range(batch):
            cxcy = torch.rand(3, 2, generator=gen) * 0.6 + 0.2
            wh = torch.rand(3, 2, generator=gen) * 0.3 + 0.05
            targets.append(
                {
                    "labels": torch.randint(0, num_classes, (3,), generator=gen).to(device),
                    "boxes": torch.cat([cxcy, wh], 1).to(device),
                }
            )
        ctx = torch.autocast(device_type=device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
        with ctx:
            out = model(x, targets=targets)
        loss = sum(criterion(out, targets, epoch=0).values())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def cuda_peak_memory_fn(cfg: Config, device: torch.device, steps: int = MEASURE_STEPS) -> Callable[[int], float | None]:
    """``measure(batch)``: peak reserved CUDA bytes of ``steps`` training steps (model, EMA copy, AdamW,
    activations at the largest input), or None on out-of-memory. Uses a throw-away model."""
    amp, amp_dtype, _ = amp_settings(cfg.train.use_amp, device, cfg.train.amp_dtype)
    size = _largest_input(cfg)

    def measure(batch: int) -> float | None:
        model = criterion = ema = opt = None
        try:
            gc.collect()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            model = build_model_from_config(cfg).to(device)
            ema = copy.deepcopy(model) if cfg.train.use_ema else None
            criterion = build_criterion(cfg).to(device)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-8)
            train_steps(model, criterion, opt, batch, size, cfg.num_classes, device, steps, amp_dtype if amp else None)
            torch.cuda.synchronize(device)
            return float(torch.cuda.max_memory_reserved(device))
        except torch.cuda.OutOfMemoryError:
            return None
        finally:
            del model, criterion, ema, opt
            gc.collect()
            torch.cuda.empty_cache()

    return measure


def resolve_auto_batch(
    cfg: Config,
    device: torch.device,
    world_size: int = 1,
    say: Callable[[str], None] = print,
    measure: Callable[[int], float | None] | None = None,
    capacity_bytes: float | None = None,
) -> int:
    """The ``total_batch_size`` for ``batch_size=auto``: the measured per-step batch × GPUs × ``accumulate``.

    On a non-CUDA device (and no ``measure`` given) the recipe's batch stays, with a Chinese note.
    """
    recipe = cfg.data.batch_size
    if measure is None and device.type != "cuda":
        say(f"batch_size=auto 需要 CUDA GPU 来实测显存；当前设备是 {device}，所以使用配方里的 batch size {recipe}。")
        return recipe
    if measure is None:
        measure = cuda_peak_memory_fn(cfg, device)
    if capacity_bytes is None:
        capacity_bytes = float(torch.cuda.get_device_properties(device).total_memory)
    acc = cfg.train.accumulate
    n_train = _train_images(cfg)
    max_batch = max(1, min(256, n_train // (2 * world_size * acc))) if n_train else 256
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # the real run's RNG stays
        res = search_batch_size(measure, capacity_bytes, AUTO_BATCH_FRACTION, max_batch)
    chosen = res.batch_size
    if world_size > 1:  # every GPU must use the same batch: the smallest that all of them fit
        chosen = min(all_gather_object(chosen))
    total = chosen * world_size * acc
    shown = "，".join(
        f"{b}: {'显存不足' if p is None else f'{p / 2**30:.2f} GB'}" for b, p in sorted(res.measured.items())
    )
    capped = f"（训练集只有 {n_train} 张图，上限 {max_batch}）" if n_train and max_batch < 256 else ""
    say(
        f"自动 batch size：显存预算 = {AUTO_BATCH_FRACTION:.0%} × {capacity_bytes / 2**30:.1f} GB = "
        f"{res.budget_bytes / 2**30:.1f} GB；实测每步峰值（batch: 显存）{shown}。选定每卡每步 batch {chosen}{capped}，"
        f"总 batch = {chosen} × {world_size} 卡 × 累积 {acc} = {total}（配方是 {recipe}）。"
    )
    return int(total)


def _train_images(cfg: Config) -> int:
    if not cfg.data.train_ann_file:
        return 0
    try:
        return len(read_coco_json(cfg.data.train_ann_file).get("images", []))
    except Exception:  # noqa: BLE001 - the count only caps the search; the loader reports bad files
        return 0
