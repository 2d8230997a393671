"""Flat-cosine learning-rate schedule (official ``lrsheduler: flatcosine``).

Explained in notebook 03_config.ipynb. The epoch milestones it reads are derived in :mod:`deimv2.config.epoch_rule`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["FlatCosineLRScheduler", "flat_cosine_lr"]


def flat_cosine_lr(
    current_iter: int,
    base_lr: float,
    min_lr: float,
    total_iter: int,
    warmup_iter: int,
    flat_iter: int,
    no_aug_iter: int,
) -> float:
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

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        lr_gamma: float,
        iter_per_epoch: int,
        total_epochs: float,
        warmup_iter: int,
        flat_epochs: float,
        no_aug_epochs: float,
    ):
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
        return [
            flat_cosine_lr(current_iter, b, m, self.total_iter, self.warmup_iter, self.flat_iter, self.no_aug_iter)
            for b, m in zip(self.base_lrs, self.min_lrs)
        ]

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
        return {
            k: getattr(self, k)
            for k in (
                "base_lrs",
                "min_lrs",
                "lr_gamma",
                "total_iter",
                "warmup_iter",
                "flat_iter",
                "no_aug_iter",
                "last_iter",
            )
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the tables and the last iteration, and set the LRs it had produced."""
        for k, v in state.items():
            setattr(self, k, list(v) if isinstance(v, (list, tuple)) else v)
        if self.last_iter >= 0:
            self.step(self.last_iter)
