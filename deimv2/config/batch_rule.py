"""The official batch-size rule ("3.2 Customizing Batch Size"): LRs, EMA and warm-ups follow the effective batch.

Explained in notebook 03_config.ipynb (batch size). A recipe's learning rates, EMA decay and warm-ups are tuned
for its total batch ``reference_batch_size`` (S: 32, Atto: 128). When a run's effective batch ``B`` (micro-batch
per step × ``accumulate`` × GPUs, i.e. ``total_batch_size``) differs, with ``k = B / reference_batch_size``:

* every learning rate × k (linear scaling law): the backbone groups AND the head's ``optimizer.lr``. The official
  README doubles the backbone LRs for S at batch 64 and writes "linear scaling law if needed" beside the head's
  5e-4; we scale the head too so that head : backbone keeps the recipe's ratio (20 : 1 for S) — scaling only
  the backbone at the seed's batch 4 would make the head relatively 8× faster than in the tuned recipe.
  Keep the head's LR with an explicit ``-u lr=…``;
* ``ema.decay = 1 - (1 - decay) × k`` (and the same for ``ema_restart_decay`` of the no-aug stage), so the EMA
  averages over the same number of IMAGES;
* ``ema.warmups`` and ``warmup_iter`` (LR warm-up) ÷ k, rounded: they count optimizer steps, and a step sees
  k times the images.

Official example (S, 32 → 64, k = 2): backbone 2.5e-5 → 5e-5, EMA 0.9999 → 0.9998, EMA warm-ups 1000 → 500,
LR warm-up 500 → 250 (the README's ``warmup_duration``; our flat-cosine ``warmup_iter`` 2000 → 1000).
The seed's batch 4 (k = 1/8): backbone 3.125e-6, head 6.25e-5, EMA 0.9999875, EMA warm-ups 8000, warm-up 16000.

``accumulate`` that keeps ``total_batch_size`` at the recipe's value needs no scaling (k = 1): the recommended
path on a small GPU (``-u accumulate=8`` for S on one 4-image micro-batch). What still differs: BatchNorm
statistics come from the micro-batch (the DINOv3 ViT uses LayerNorm; the encoder's and HGNetv2's BatchNorms see
the micro-batch).

``scale_lr_rule: sqrt`` (our addition, not official) uses ``f = sqrt(k)`` in place of ``k`` everywhere above; it is
one of the three choices compared in docs/training.md (linear, square root, none).

Values given explicitly by the user are kept; ``scale_lr: false`` (``-u scale_lr=false``) turns the rule off.
After scaling, ``reference_batch_size`` is set to ``B``: the saved ``config.yaml`` is then a recipe for ``B``
and loading it again scales nothing twice. :func:`apply_batch_rule` is pure;
:func:`deimv2.config.run_config.build_run_config` calls it once, with the batch the run will really use (also one
chosen automatically).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

from deimv2.config.loader import Config, config_from_dict
from deimv2.config.sections import get_dotted, set_dotted
from deimv2.errors import ConfigError

__all__ = ["SCALE_RULES", "BatchScaling", "apply_batch_rule", "format_batch_scaling", "batch_scaling_line"]

#: how ``scale_lr`` scales: ``linear`` (the official rule, factor k) or ``sqrt`` (factor sqrt(k))
SCALE_RULES = ("linear", "sqrt")


@dataclass(frozen=True)
class BatchScaling:
    """What :func:`apply_batch_rule` did. ``rows``: (config key, Chinese label, before, after, kept explicitly)."""

    effective_batch: int
    reference_batch: int
    enabled: bool = True
    rule: str = "linear"
    rows: tuple[tuple[str, str, float, float, bool], ...] = ()

    @property
    def k(self) -> float:
        return self.effective_batch / self.reference_batch

    @property
    def factor(self) -> float:
        """What the LRs are multiplied by: ``k`` (linear) or ``sqrt(k)``."""
        return math.sqrt(self.k) if self.rule == "sqrt" else self.k

    @property
    def applied(self) -> bool:
        return self.enabled and self.effective_batch != self.reference_batch


def _clean(x: float) -> float:
    """Round away float noise (0.9997999999999999 -> 0.9998) keeping 12 significant digits."""
    return float(f"{x:.12g}")


def _is_explicit(key: str, explicit: set[str]) -> bool:
    """``key`` or one of its parents was set by the user (``ema`` covers ``ema.decay``)."""
    parts = key.split(".")
    return any(".".join(parts[:i]) in explicit for i in range(1, len(parts) + 1))


def apply_batch_rule(cfg: Config, effective_batch: int, explicit: Iterable[str] = ()) -> tuple[Config, BatchScaling]:
    """Return ``cfg`` scaled for ``effective_batch`` by the official batch-size rule, and what changed.

    ``explicit``: dotted keys the user set (aliases expanded, e.g. ``optimizer.lr``); those keep their values.
    The input ``cfg`` is not modified.
    """
    raw = cfg.raw
    b = int(effective_batch)
    ref = cfg.train.reference_batch_size or cfg.data.batch_size
    rule = str(cfg.train.scale_lr_rule)
    if rule not in SCALE_RULES:
        raise ConfigError(
            f"scale_lr_rule={rule!r} 无效。可选：linear（官方 batch 规则，按 k 缩放）或 sqrt（按 k 的平方根缩放）。"
            f"例如：-u scale_lr_rule=sqrt"
        )
    report = BatchScaling(effective_batch=b, reference_batch=int(ref), enabled=cfg.train.scale_lr, rule=rule)
    if not report.applied:
        return cfg, report
    k = report.factor
    explicit = set(explicit)
    new = copy.deepcopy(raw)
    rows: list[tuple[str, str, float, float, bool]] = []

    def scale(key: str, label: str, fn) -> None:
        before = get_dotted(new, key)
        if before is None:
            return
        keep = _is_explicit(key, explicit)
        after = before if keep else fn(float(before))
        if not keep:
            set_dotted(new, key, after)
        rows.append((key, label, float(before), float(after), keep))

    for i, group in enumerate(new.get("optimizer", {}).get("params") or []):
        if isinstance(group, dict) and "lr" in group:
            keep = _is_explicit("optimizer.params", explicit)
            before = float(group["lr"])
            after = before if keep else _clean(before * k)
            group["lr"] = after
            pattern = str(group.get("params", ""))
            what = "骨干 backbone" if ("backbone" in pattern or "dinov3" in pattern) else "参数组"
            rows.append((f"optimizer.params[{i}].lr", f"学习率 optimizer.params[{i}]（{what}）", before, after, keep))
    scale("optimizer.lr", "学习率 optimizer.lr（其余参数：编码器、解码器）", lambda x: _clean(x * k))
    scale("ema.decay", "EMA decay", lambda x: _clean(max(0.0, 1.0 - (1.0 - x) * k)))
    scale(
        "train_dataloader.collate_fn.ema_restart_decay",
        "无增强阶段重启 EMA 的 decay",
        lambda x: _clean(max(0.0, 1.0 - (1.0 - x) * k)),
    )
    scale("ema.warmups", "EMA 预热步数 ema.warmups", lambda x: max(0, round(x / k)))
    scale("warmup_iter", "学习率预热步数 warmup_iter", lambda x: max(0, round(x / k)))
    new["reference_batch_size"] = b
    return config_from_dict(new, cfg.name, milestone_note=cfg.milestone_note), replace(report, rows=tuple(rows))


def format_batch_scaling(report: BatchScaling) -> str:
    """Chinese before/after table printed at training start."""
    b, ref = report.effective_batch, report.reference_batch
    if b == ref:
        return f"有效 batch {b} 与配方的 batch 相同，学习率、EMA 和预热保持配方的值。"
    if not report.enabled:
        return (
            f"有效 batch {b} ≠ 配方的 batch {ref}，但 scale_lr=false：学习率、EMA 和预热保持配方的值"
            f"（官方规则会把它们按 k = {b}/{ref} 缩放）。"
        )
    if report.rule == "sqrt":
        how = f"按平方根缩放（scale_lr_rule=sqrt），f = √k = {report.factor:.6g}。学习率 × f，EMA decay = 1 − (1 − decay) × f，预热步数 ÷ f"
    else:
        how = "学习率 × k，EMA decay = 1 − (1 − decay) × k，预热步数 ÷ k"
    head = (
        f"batch size 规则（官方 Customizing Batch Size）：有效 batch {b} ≠ 配方的 batch {ref}，k = {b}/{ref} = "
        f"{report.k:g}。{how}（关闭：-u scale_lr=false；想保持配方的 batch 就用 accumulate）："
    )
    lines = [head]
    for _key, label, before, after, keep in report.rows:
        note = "（你显式设置的值，保持不变）" if keep else ""
        lines.append(f"  {label}：{before:.10g} → {after:.10g}{note}")
    return "\n".join(lines)


def batch_scaling_line(report: BatchScaling, table_file: str | None = None) -> str:
    """One Chinese line for the start of training: which rule was applied and why (the table goes to a file)."""
    if not report.applied:
        return format_batch_scaling(report)
    where = f"；前后对照表见 {table_file}" if table_file else ""
    return (
        f"batch size 规则（官方 Customizing Batch Size）：有效 batch {report.effective_batch} ≠ 配方的 batch "
        f"{report.reference_batch}，学习率、EMA 和预热按 "
        f"{'√k = ' + format(report.factor, '.4g') if report.rule == 'sqrt' else 'k = ' + format(report.k, 'g')} 缩放"
        f"（recipe=official 或 scale_lr=true；"
        f"关闭：-u scale_lr=false）{where}。"
    )
