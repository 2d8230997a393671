"""Epoch milestones for a new total ``epoches``: the official "Customizing Epoch" rule (plain data, no torch).

Explained in notebook 03_config.ipynb (epoch milestones). :func:`deimv2.config.loader.load_config` calls
:func:`derive_epoch_milestones` when ``epoches``/``epochs`` is overridden.

The official README (section 3.4, "Customizing Epoch") fine-tunes DEIMv2-S for ``N = 20`` training epochs as::

    epoches = N + no_aug_epoch = 32      # no_aug_epoch stays the variant's value (S/M 12, L/X 8, Atto/Femto/Pico 32, N 12)
    flat_epoch = 4 + N // 2 = 14
    policy.epoch = [4, flat_epoch, N] = [4, 14, 20]
    mixup_epochs = [4, flat_epoch];  stop_epoch = N;  copyblend_epochs = [4, N]
    matcher_change_epoch = 18            # "~90% of (epoches - no_aug_epoch)"

Here the user gives the TOTAL ``E`` (``epoches``, what ``-u epochs=E`` sets) and the rule works back:

* ``no_aug_epoch = A`` (the variant's value) and ``N = E - A``, unless the budget is short (below);
* ``start = min(policy[0], N)`` (official 4), ``F = min(start + N // 2, N)``;
* every milestone of the recipe is carried over by what it equals in the recipe: the policy start → ``start``;
  ``policy[1]`` / ``flat_epoch`` → ``F``; ``stop_epoch`` (= ``epoches - no_aug_epoch``) → ``N``; any other value
  is scaled in proportion, ``round(N * x / N0)`` (Atto/Femto/Pico: the policy ends at 400 of 468, i.e. at
  ``round(N * 400 / 468)``); an empty range ``[a, b]`` with ``a >= b`` (the official "off" marker of MixUp and
  CopyBlend for Atto/Femto/Pico) stays as it is. So N keeps CopyBlend over the first half (``[4, F]``);
* ``flat_epoch = F``, except when the recipe's ``flat_epoch`` is beyond its own total (N: 7800, a constant LR),
  which is kept;
* ``matcher_change_epoch = max(F, floor(9 * N / 10))``: OUR choice, the README's "~90 %" rounded down (18 for
  ``N = 20``, as the README's example; 45 for ``N = 50``, as the official X config), never before the LR starts
  to decay. The official S/M/L/N configs use 100/120, 80/90, 50/60, 136/148: no single formula exists.

**Short budget** (``E < 2 * A``: the no-aug stage would be longer than the training stage): ``no_aug_epoch =
E // 2`` and ``N = E - E // 2``, i.e. the no-aug stage takes at most half the run. For S (``A = 12``): 24 epochs →
12 + 12, 13 → 7 + 6, 12 → 6 + 6, 5 → 3 + 2, 2 → 1 + 1, 1 → 1 + 0.

When ``E`` equals the recipe's own total, the recipe is returned unchanged (the official configs' values).
``epoch_rule: proportional`` selects :func:`proportional_epoch_milestones`, which scales every milestone with
``E / epoches``; the tiny training runs of notebooks 05–09 use it (:func:`deimv2.tutorial.demo.demo_overrides` without a
recipe). ``deimv2 demo`` uses the ``small`` recipe (:data:`deimv2.tutorial.demo.DEMO_RECIPE`), not this rule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = [
    "EPOCH_RULES",
    "derive_epoch_milestones",
    "describe_epoch_rule",
    "official_epoch_milestones",
    "proportional_epoch_milestones",
]

EPOCH_RULES = ("official", "proportional")


def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def _clamp(v: int, lo: int, hi: int) -> int:
    return max(lo, min(v, hi))


def _recipe_parts(recipe: Mapping[str, Any]) -> tuple[int, int, int]:
    """(E0, A0, N0) of the recipe: total, no-aug epochs, training epochs."""
    e0 = int(recipe["epoches"])
    a0 = recipe.get("no_aug_epoch")
    if a0 is None:
        stop0 = recipe.get("stop_epoch")
        a0 = e0 - int(stop0) if stop0 is not None else 0
    return e0, int(a0), e0 - int(a0)


def official_epoch_milestones(
    epochs: int, recipe: Mapping[str, Any], no_aug_epoch: int | None = None, flat_epoch: int | None = None
) -> dict[str, Any]:
    """Milestones for ``epochs`` total epochs by the official "Customizing Epoch" rule (see the module doc).

    ``recipe`` holds the config's values (keys ``epoches``, ``flat_epoch``, ``no_aug_epoch``, ``policy_epoch``,
    ``stop_epoch``, ``mixup_epochs``, ``copyblend_epochs``, ``matcher_change_epoch``; None = absent, left out).
    ``no_aug_epoch`` / ``flat_epoch`` given explicitly replace ``A`` / ``F`` of the rule (no short-budget rule
    then). The result has the same keys plus ``short_budget`` (bool).
    """
    e = int(epochs)
    if e < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    e_0, a_0, n_0 = _recipe_parts(recipe)
    if e == e_0 and no_aug_epoch is None and flat_epoch is None:
        out = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in recipe.items() if v is not None}
        out["short_budget"] = False
        return out
    short = False
    if no_aug_epoch is not None:
        a = int(no_aug_epoch)
        if not 0 <= a < e:
            raise ValueError(f"no_aug_epoch={a} must be in [0, epoches={e})")
    elif e < 2 * a_0:
        a, short = e // 2, True
    else:
        a = a_0
    n = e - a
    policy0 = recipe.get("policy_epoch")
    p_start = int(policy0[0]) if policy0 is not None else 4
    start = min(p_start, n)
    f = min(start + n // 2, n) if flat_epoch is None else _clamp(int(flat_epoch), 0, n)

    flat0 = recipe.get("flat_epoch")
    anchors: dict[int, int] = {n_0: n, p_start: start}
    if policy0 is not None:
        anchors.setdefault(int(policy0[1]), f)
    if flat0 is not None and int(flat0) < e_0:
        anchors.setdefault(int(flat0), f)

    def carry(x: int) -> int:
        return anchors[x] if x in anchors else _clamp(_round_half_up(n * x / n_0), 0, n) if n_0 > 0 else n

    out: dict[str, Any] = {"epoches": e}
    if flat0 is not None or flat_epoch is not None:
        constant_lr = flat_epoch is None and flat0 is not None and int(flat0) >= e_0
        out["flat_epoch"] = max(int(flat0), e) if constant_lr else f
    if recipe.get("no_aug_epoch") is not None or no_aug_epoch is not None:
        out["no_aug_epoch"] = a
    if policy0 is not None:
        e1 = _clamp(carry(int(policy0[1])), start, n)
        e2 = _clamp(carry(int(policy0[2])), e1, n)
        out["policy_epoch"] = [start, e1, e2]
    if recipe.get("stop_epoch") is not None:
        out["stop_epoch"] = n
    for key in ("mixup_epochs", "copyblend_epochs"):
        rng = recipe.get(key)
        if rng is None:
            continue
        lo, hi = int(rng[0]), int(rng[-1])
        if lo >= hi:
            out[key] = [lo, hi]
            continue
        a_, b_ = carry(lo), carry(hi)
        out[key] = [a_, max(a_, b_)]
    m0 = recipe.get("matcher_change_epoch")
    if m0 is not None:
        out["matcher_change_epoch"] = int(m0) if int(m0) >= e_0 else min(max(f, 9 * n // 10), n)
    out["short_budget"] = short
    return out


def proportional_epoch_milestones(epochs: int, recipe: Mapping[str, Any]) -> dict[str, Any]:
    """Every milestone scaled with ``epochs / recipe['epoches']`` (round half up).

    ``stop_epoch = clamp(r(N0 - no_aug0), 1, N - 1)`` (1 for ``N = 1``), ``no_aug_epoch = N - stop_epoch``;
    policy ``[e0, e1, e2]`` rounded then clamped in order (``e0 >= 1``, strictly increasing when
    ``stop_epoch >= 3``); a constant-LR ``flat_epoch`` (``>= N0``) unchanged, else ``clamp(r(flat0), 0, stop)``;
    ``matcher_change_epoch = clamp(r(m0), 1, stop)``; MixUp/CopyBlend ends that equal a policy/stop milestone
    follow it, other ends are scaled; empty (off) ranges are copied. Equals the recipe when ``N == N0``.
    """
    n = int(epochs)
    if n < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    n0 = int(recipe["epoches"])
    scale = n / n0

    def r(m: float) -> int:
        return _round_half_up(m * scale)

    out: dict[str, Any] = {"epoches": n}
    no_aug0, stop0 = recipe.get("no_aug_epoch"), recipe.get("stop_epoch")
    stop_ref = n0 - int(no_aug0) if no_aug0 is not None else int(stop0) if stop0 is not None else n0
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
    out["short_budget"] = False
    return out


def derive_epoch_milestones(
    epochs: int,
    recipe: Mapping[str, Any],
    rule: str = "official",
    no_aug_epoch: int | None = None,
    flat_epoch: int | None = None,
) -> dict[str, Any]:
    """Milestones for ``epochs`` by ``rule`` (``official`` default, or ``proportional``)."""
    if rule == "official":
        return official_epoch_milestones(epochs, recipe, no_aug_epoch=no_aug_epoch, flat_epoch=flat_epoch)
    if rule == "proportional":
        return proportional_epoch_milestones(epochs, recipe)
    raise ValueError(f"unknown epoch rule {rule!r}; choose one of {EPOCH_RULES}")


def describe_epoch_rule(derived: Mapping[str, Any], recipe: Mapping[str, Any], rule: str = "official") -> str:
    """One Chinese paragraph saying how ``derived`` came out of ``recipe`` (printed at training start)."""
    e = derived["epoches"]
    if rule == "proportional":
        return f"（按比例规则 epoch_rule=proportional：各轮次节点 × {e}/{recipe['epoches']}，四舍五入。）"
    e_0, a_0, _ = _recipe_parts(recipe)
    if e == e_0:
        return "（总轮数与配方相同，使用官方配置的原始轮次节点。）"
    a = derived.get("no_aug_epoch", a_0)
    n = e - a
    parts = [f"按官方 Customizing Epoch 规则：训练阶段 N = {e} − {a} = {n} 轮，之后 {a} 轮无强增强阶段"]
    if derived.get("short_budget"):
        parts.append(
            f"（总轮数 {e} < 2 × 配方的 no_aug_epoch {a_0}，预算偏短：无强增强阶段缩为 {e} // 2 = {a} 轮，最多占一半）"
        )
    f = derived.get("flat_epoch")
    if f is not None and f < e:
        parts.append(f"；flat_epoch = 4 + N // 2 = {f}（不超过 N）")
    m = derived.get("matcher_change_epoch")
    if m is not None:
        parts.append(f"；matcher_change_epoch = max(flat_epoch, ⌊0.9 × N⌋) = {m}")
    return "（" + "".join(parts) + "。）"
