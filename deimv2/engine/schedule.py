"""Flat-cosine learning-rate schedule (official ``lrsheduler: flatcosine``) and epoch-milestone derivation.

Explained in notebook 03_config.ipynb (epoch milestones).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch

__all__ = ["flat_cosine_lr", "FlatCosineLRScheduler", "derive_epoch_milestones"]


def flat_cosine_lr(current_iter: int, base_lr: float, min_lr: float, total_iter: int,
                   warmup_iter: int, flat_iter: int, no_aug_iter: int) -> float:
    """LR at ``current_iter`` (branches in the official order).

    1. ``current_iter <= warmup_iter``: ``base_lr * (current_iter / warmup_iter) ** 2``
       (with ``warmup_iter == 0`` there is no warmup; the official code divides by zero there);
    2. ``current_iter <= flat_iter``: ``base_lr`` (tested before 3, so a huge ``flat_iter`` keeps the LR constant);
    3. ``current_iter >= total_iter - no_aug_iter``: ``min_lr``;
    4. otherwise cosine from ``base_lr`` to ``min_lr`` over ``(flat_iter, total_iter - no_aug_iter)``.
    """
    if warmup_iter > 0 and current_iter <= warmup_iter:
        return base_lr * (current_iter / float(warmup_iter)) ** 2
    if current_iter <= flat_iter:
        return base_lr
    if current_iter >= total_iter - no_aug_iter:
        return min_lr
    cosine = 0.5 * (1.0 + math.cos(math.pi * (current_iter - flat_iter) / (total_iter - flat_iter - no_aug_iter)))
    return min_lr + (base_lr - min_lr) * cosine


class FlatCosineLRScheduler:
    """Per-iteration flat-cosine schedule for every param group (official argument names).

    ``base_lr`` of a group is its ``initial_lr`` (set to the group's ``lr`` when absent), ``min_lr =
    base_lr * lr_gamma``. Iteration counts are ``int(iter_per_epoch * epochs)`` as in the official code.

    Usage as in the official loop: after ``optimizer.step()`` of global iteration ``i`` call
    ``scheduler.step(i)``; the LR it sets is used by iteration ``i + 1``. (In the official run the
    very first iteration uses ``lr / 500`` left by an otherwise unused ``LinearWarmup(500)``.)

    Unlike the official class, this one has a state (the last iteration and the LR tables), so
    ``state_dict``/``load_state_dict`` make a resume exact.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, lr_gamma: float, iter_per_epoch: int,
                 total_epochs: float, warmup_iter: int, flat_epochs: float, no_aug_epochs: float):
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [float(g["initial_lr"]) for g in optimizer.param_groups]
        self.min_lrs = [lr * lr_gamma for lr in self.base_lrs]
        self.lr_gamma = float(lr_gamma)
        self.total_iter = int(iter_per_epoch * total_epochs)
        self.warmup_iter = int(warmup_iter)
        self.flat_iter = int(iter_per_epoch * flat_epochs)
        self.no_aug_iter = int(iter_per_epoch * no_aug_epochs)
        self.last_iter = -1

    def lr_at(self, current_iter: int) -> list[float]:
        """LR of every param group at ``current_iter`` (no side effects)."""
        return [flat_cosine_lr(current_iter, b, m, self.total_iter, self.warmup_iter,
                               self.flat_iter, self.no_aug_iter)
                for b, m in zip(self.base_lrs, self.min_lrs)]

    def step(self, current_iter: int, optimizer: torch.optim.Optimizer | None = None) -> torch.optim.Optimizer:
        """Set every group's ``lr`` for ``current_iter``; returns the optimizer (official signature)."""
        opt = self.optimizer if optimizer is None else optimizer
        for group, lr in zip(opt.param_groups, self.lr_at(current_iter)):
            group["lr"] = lr
        self.last_iter = int(current_iter)
        return opt

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in
                ("base_lrs", "min_lrs", "lr_gamma", "total_iter", "warmup_iter", "flat_iter",
                 "no_aug_iter", "last_iter")}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the tables and the last iteration, and set the LRs it had produced."""
        for k, v in state.items():
            setattr(self, k, list(v) if isinstance(v, (list, tuple)) else v)
        if self.last_iter >= 0:
            self.step(self.last_iter)


# --------------------------------------------------------------------------- epoch milestones
def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def _clamp(v: int, lo: int, hi: int) -> int:
    return max(lo, min(v, hi))


def derive_epoch_milestones(epochs: int, recipe: Mapping[str, Any]) -> dict[str, Any]:
    """Scale the official recipe's epoch milestones to a new total ``epochs``.

    ``recipe`` holds the official values (keys: ``epoches``, ``flat_epoch``, ``no_aug_epoch``,
    ``policy_epoch`` [e0, e1, e2], ``stop_epoch``, ``mixup_epochs`` [a, b], ``copyblend_epochs`` [a, b],
    ``matcher_change_epoch``; keys set to None are left out of the result). Returns the same keys for
    ``epochs``.

    Rule (``N = epochs``, ``N0 = recipe['epoches']``, ``r(m) = floor(m * N / N0 + 0.5)``, i.e. round half up):

    * ``stop_epoch = clamp(r(N0 - no_aug0), 1, N - 1)`` (``= 1`` for ``N = 1``) and
      ``no_aug_epoch = N - stop_epoch`` (so ``no_aug_epoch >= 1`` whenever ``N >= 2``; ``0`` for ``N = 1``).
      The official collate ``stop_epoch`` always equals ``N0 - no_aug0``.
    * policy ``[e0, e1, e2] = r(...)``, then clamped in order: if ``stop_epoch >= 3``,
      ``1 <= e0 < e1 < e2 <= stop_epoch``; otherwise ``1 <= e0 <= e1 <= e2 <= stop_epoch``
      (``e0 >= 1``: the first epoch is a warm start without the augmentation policy).
    * ``flat_epoch``: unchanged when ``flat0 >= N0`` (N's 7800: the LR stays constant); else
      ``clamp(r(flat0), 0, stop_epoch)``.
    * ``matcher_change_epoch = clamp(r(m0), 1, stop_epoch)``.
    * ``mixup_epochs`` / ``copyblend_epochs`` ``[a, b]``: an empty official range (``a >= b``, the
      official "off" marker such as ``[40000, 15000]``) is copied unchanged; otherwise each end that
      equals an official policy/stop milestone takes that milestone's derived value (so
      ``[e0, e1]`` stays ``[e0, e1]``), other ends ``clamp(r(x), 0, stop_epoch)``.

    Every derived milestone equals the official one when ``N == N0`` (given an official recipe).
    """
    n = int(epochs)
    if n < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    n0 = int(recipe["epoches"])
    scale = n / n0

    def r(m: float) -> int:
        return _round_half_up(m * scale)

    out: dict[str, Any] = {"epoches": n}
    no_aug0 = recipe.get("no_aug_epoch")
    stop0 = recipe.get("stop_epoch")
    if no_aug0 is not None:
        stop_ref = n0 - int(no_aug0)
    elif stop0 is not None:
        stop_ref = int(stop0)
    else:
        stop_ref = n0
    stop = 1 if n == 1 else _clamp(r(stop_ref), 1, n - 1)
    if no_aug0 is not None:
        out["no_aug_epoch"] = n - stop
    if stop0 is not None:
        out["stop_epoch"] = stop
    anchors: dict[int, int] = {stop_ref: stop}
    if stop0 is not None:
        anchors.setdefault(int(stop0), stop)

    policy0 = recipe.get("policy_epoch")
    if policy0 is not None:
        p0 = [int(x) for x in policy0]
        if len(p0) != 3:
            raise ValueError(f"policy_epoch must have 3 entries, got {policy0}")
        strict = 1 if stop >= 3 else 0
        e0 = _clamp(r(p0[0]), 1, stop - 2 * strict)
        e1 = _clamp(r(p0[1]), e0 + strict, stop - strict)
        e2 = _clamp(r(p0[2]), e1 + strict, stop)
        out["policy_epoch"] = [e0, e1, e2]
        for a, b in zip(p0, (e0, e1, e2)):
            anchors.setdefault(a, b)

    flat0 = recipe.get("flat_epoch")
    if flat0 is not None:
        out["flat_epoch"] = flat0 if flat0 >= n0 else _clamp(r(flat0), 0, stop)

    m0 = recipe.get("matcher_change_epoch")
    if m0 is not None:
        out["matcher_change_epoch"] = _clamp(r(m0), 1, stop)

    for key in ("mixup_epochs", "copyblend_epochs"):
        rng = recipe.get(key)
        if rng is None:
            continue
        a0, b0 = int(rng[0]), int(rng[-1])
        if a0 >= b0:
            out[key] = [a0, b0]
            continue
        a, b = (anchors[x] if x in anchors else _clamp(r(x), 0, stop) for x in (a0, b0))
        out[key] = [a, max(a, b)]
    return out
