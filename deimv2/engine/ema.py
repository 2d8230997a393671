"""Exponential moving average (EMA) of a model's weights, as used by DEIMv2 training.

The EMA copy is updated after every optimizer step:
``ema = d * ema + (1 - d) * model`` with ``d = decay * (1 - exp(-updates / warmups))``,
applied to every floating-point entry of the state_dict (parameters *and* buffers such as BN
running statistics). Integer buffers (``num_batches_tracked``) keep the value they had when copied.
"""

from __future__ import annotations

import math
from copy import deepcopy

import torch
from torch import nn

from deimv2.engine.dist import unwrap

__all__ = ["ModelEMA"]


class ModelEMA:
    """EMA of ``model`` (DDP/compiled wrappers are unwrapped first).

    Args:
        model: the model being trained.
        decay: target decay (official 0.9999).
        warmups: ramp length in updates; 0 disables the ramp (``d = decay``).
        start: number of ``update`` calls to skip before the EMA starts averaging.

    ``state_dict()`` is ``{'module': ..., 'updates': int}`` (the official format, so official checkpoints
    load with :meth:`load_state_dict`). ``decay`` is not stored: it comes from the config (and
    :meth:`restart` in the no-aug stage).
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, warmups: int = 1000, start: int = 0):
        self.module = deepcopy(unwrap(model)).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = float(decay)
        self.warmups = int(warmups)
        self.start = int(start)
        self.before_start = 0
        self.updates = 0

    def current_decay(self, updates: int | None = None) -> float:
        """The factor ``d`` used at update number ``updates`` (default: the last one)."""
        n = self.updates if updates is None else updates
        if self.warmups == 0:
            return self.decay
        return self.decay * (1.0 - math.exp(-n / self.warmups))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One EMA step from the current weights of ``model``."""
        if self.before_start < self.start:
            self.before_start += 1
            return
        self.updates += 1
        d = self.current_decay()
        src = unwrap(model).state_dict()
        # A tensor listed under several keys (``decoder.up`` / ``decoder.decoder.up``, a shared box head) is
        # updated once per key in sequence, as the official per-key loop does. One foreach call must not hold
        # it twice: that would give d^2 * e + 2 (1 - d) * m, which drifts away from m (up to 2 m early on).
        rounds: list[tuple[list, list]] = []
        seen: dict[tuple, int] = {}
        for k, v in self.module.state_dict().items():
            if v.dtype.is_floating_point:
                key = (v.data_ptr(), v.shape, v.stride())
                n = seen[key] = seen.get(key, -1) + 1
                if n == len(rounds):
                    rounds.append(([], []))
                rounds[n][0].append(v)
                rounds[n][1].append(src[k].detach())
        for ema_t, src_t in rounds:
            torch._foreach_mul_(ema_t, d)
            torch._foreach_add_(ema_t, src_t, alpha=1.0 - d)

    def restart(self, decay: float) -> None:
        """Set a new target decay (start of the no-aug stage, ``ema_restart_decay``).

        ``updates`` is kept, so the ramp is not replayed. Note: the official solver assigns
        ``ema.decay`` too, but its ``decay_fn`` closes over the constructor value, so there the
        assignment has no effect on the averaging; here it does.
        """
        self.decay = float(decay)

    def to(self, *args, **kwargs) -> ModelEMA:
        self.module = self.module.to(*args, **kwargs)
        return self

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        self.module.load_state_dict(state["module"], strict=strict)
        if "updates" in state:
            self.updates = int(state["updates"])

    def __repr__(self) -> str:
        return f"ModelEMA(decay={self.decay}, warmups={self.warmups}, updates={self.updates})"
