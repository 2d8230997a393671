"""AdamW parameter groups chosen by regular expressions over parameter names (official ``optimizer.params``).

Each group dict in the config has ``params`` (a regex) plus overrides such as ``lr`` / ``weight_decay``::

    optimizer:
      params:
        - {params: '^(?=.*backbone)(?!.*norm|bn).*$', lr: 0.001}
        - {params: '^(?=.*backbone)(?=.*norm|bn).*$', lr: 0.001, weight_decay: 0.}
        - {params: '^(?=.*(?:encoder|decoder))(?=.*(?:norm|bn)).*$', weight_decay: 0.}

A parameter (``requires_grad`` only) joins a group when ``re.search(pattern, name)`` finds a match
(the official test is ``len(re.findall(pattern, name)) > 0``, which is the same). The patterns are
used exactly as written, including the official "regex quirk": in ``(?!.*norm|bn)`` the ``|`` splits
the lookahead into ``.*norm`` OR ``bn`` (at the start of the name), so HGNetv2 BatchNorm weights such as
``backbone.stem.stem1.bn.weight`` match the first group (with weight decay) and the second group stays
empty. Empty groups are kept so the group indices (and optimizer state_dicts) match the official ones.

A parameter already taken by an earlier group is not added again (the official code would put it in
both groups and AdamW would raise; the official patterns never overlap). Parameters matched by no
pattern form one last group with the default ``lr`` and ``weight_decay``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from deimv2.errors import ConfigError

__all__ = ["assign_param_groups", "build_param_groups", "build_optimizer"]


def assign_param_groups(model: nn.Module, groups: Sequence[Mapping[str, Any]] | None) -> list[list[str]]:
    """Names of the trainable parameters in each group (the last list = unmatched rest, if any)."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    if not groups:
        return [names]
    taken: set[str] = set()
    out: list[list[str]] = []
    for i, g in enumerate(groups):
        pattern = g.get("params") if isinstance(g, Mapping) else None
        if not isinstance(pattern, str):
            raise ConfigError(
                f"optimizer.params 第 {i} 组缺少字符串形式的 'params' 正则表达式（得到 {pattern!r}）。"
                "每组应写成 {params: '<正则>', lr: ..., weight_decay: ...}。"
            )
        try:
            regex = re.compile(pattern)
        except re.error as e:
            raise ConfigError(f"optimizer.params 第 {i} 组的正则表达式 {pattern!r} 无效: {e}。请修改配置文件。") from e
        chosen = [n for n in names if n not in taken and regex.search(n) is not None]
        taken.update(chosen)
        out.append(chosen)
    rest = [n for n in names if n not in taken]
    if rest:
        out.append(rest)
    return out


def build_param_groups(
    model: nn.Module, groups: Sequence[Mapping[str, Any]] | None, base_lr: float, weight_decay: float
) -> list[dict[str, Any]]:
    """Torch param-group dicts: ``{'params': [tensors], 'lr': ..., 'weight_decay': ..., <other overrides>}``.

    Groups without ``lr`` / ``weight_decay`` get ``base_lr`` / ``weight_decay``.
    """
    params = dict(model.named_parameters())
    names_per_group = assign_param_groups(model, groups)
    specs: list[Mapping[str, Any]] = list(groups or [])
    out = []
    for i, names in enumerate(names_per_group):
        spec = {k: v for k, v in specs[i].items() if k != "params"} if i < len(specs) else {}
        spec.setdefault("lr", base_lr)
        spec.setdefault("weight_decay", weight_decay)
        spec["lr"] = float(spec["lr"])
        spec["weight_decay"] = float(spec["weight_decay"])
        out.append({"params": [params[n] for n in names], **spec})
    return out


def build_optimizer(
    model: nn.Module,
    groups: Sequence[Mapping[str, Any]] | None,
    lr: float,
    betas: Iterable[float] = (0.9, 0.999),
    weight_decay: float = 1e-4,
) -> torch.optim.AdamW:
    """AdamW over :func:`build_param_groups` (official ``optimizer: {type: AdamW, ...}``).

    ``foreach=True``: one batched update over all parameters instead of a Python loop over them, also on CPU
    (torch chooses it by itself only on CUDA); the same arithmetic, bit for bit (``tests/engine/test_optim.py``).
    """
    param_groups = build_param_groups(model, groups, lr, weight_decay)
    b = tuple(float(x) for x in betas)
    return torch.optim.AdamW(
        param_groups, lr=float(lr), betas=(b[0], b[1]), weight_decay=float(weight_decay), foreach=True
    )
