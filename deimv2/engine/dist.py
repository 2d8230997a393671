"""Distributed-training helpers. Every function works (as a no-op) without torch.distributed.

Launch multi-GPU training with ``torchrun --nproc_per_node=4 ...``; torchrun sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``, which :func:`init_distributed` reads.
"""

from __future__ import annotations

import os
import random
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as td
from torch import nn

from deimv2.errors import ConfigError

__all__ = [
    "is_dist",
    "get_rank",
    "get_world_size",
    "get_local_rank",
    "is_main_process",
    "init_distributed",
    "cleanup",
    "barrier",
    "all_reduce_dict",
    "all_gather_object",
    "unwrap",
    "convert_sync_bn",
    "wrap_model",
    "seed_everything",
]


def is_dist() -> bool:
    """True when a process group is initialized."""
    return td.is_available() and td.is_initialized()


def get_rank() -> int:
    return td.get_rank() if is_dist() else 0


def get_world_size() -> int:
    return td.get_world_size() if is_dist() else 1


def get_local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0)) if is_dist() else 0


def is_main_process() -> bool:
    return get_rank() == 0


def init_distributed(
    backend: str | None = None, timeout_minutes: float = 30.0, device: torch.device | None = None
) -> bool:
    """Initialize the process group from torchrun's env vars; return True when distributed.

    Without ``WORLD_SIZE`` > 1 in the environment nothing happens (single GPU/CPU) and False is
    returned. The backend defaults to ``nccl`` when CUDA is available, else ``gloo``. On CUDA ``device`` (this
    process's GPU, :func:`deimv2.engine.setup.process_device`) is selected, else GPU ``LOCAL_RANK``.
    """
    if is_dist():
        return True
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    if world_size < 2:
        return False
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ConfigError(
            f"环境变量 WORLD_SIZE={world_size}，但缺少 {missing}。多卡训练请用 torchrun 启动"
            "（例如 torchrun --nproc_per_node=4 你的训练脚本.py），单卡训练请删除 WORLD_SIZE 环境变量。"
        )
    use_cuda = torch.cuda.is_available()
    if backend is None:
        backend = "nccl" if use_cuda else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if use_cuda and backend == "nccl":
        torch.cuda.set_device(device if device is not None and device.type == "cuda" else local_rank)
    td.init_process_group(backend=backend, init_method="env://", timeout=timedelta(minutes=timeout_minutes))
    return True


def cleanup() -> None:
    """Destroy the process group (safe to call when not distributed)."""
    if is_dist():
        td.destroy_process_group()


def barrier() -> None:
    if is_dist():
        td.barrier()


def all_reduce_dict(data: dict[str, Any], average: bool = True) -> dict[str, float]:
    """Sum (or average) scalar values over all processes; returns plain floats.

    Values may be 0-dim tensors or numbers. All ranks must pass the same keys. Keys are reduced
    in sorted order, in one collective and one device->host copy.
    """
    if not data:
        return {}
    keys = sorted(data)
    first = next((v for v in data.values() if torch.is_tensor(v)), None)
    device = first.device if first is not None else torch.device("cpu")
    if is_dist() and td.get_backend() == "nccl" and device.type != "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    values = torch.stack(
        [
            (data[k].detach().reshape(()) if torch.is_tensor(data[k]) else torch.tensor(float(data[k]))).to(
                device=device, dtype=torch.float64
            )
            for k in keys
        ]
    )
    if is_dist() and get_world_size() > 1:
        td.all_reduce(values)
        if average:
            values /= get_world_size()
    return dict(zip(keys, values.tolist()))


def all_gather_object(obj: Any) -> list[Any]:
    """Gather any picklable object from every process (a one-element list when not distributed)."""
    if not is_dist() or get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * get_world_size()
    td.all_gather_object(out, obj)
    return out


def unwrap(model: nn.Module) -> nn.Module:
    """Strip DistributedDataParallel / DataParallel and torch.compile wrappers."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def convert_sync_bn(model: nn.Module) -> nn.Module:
    """BatchNorm -> SyncBatchNorm when distributed (official ``sync_bn: True``); unchanged otherwise."""
    return nn.SyncBatchNorm.convert_sync_batchnorm(model) if is_dist() else model


def wrap_model(model: nn.Module, sync_bn: bool = True, find_unused_parameters: bool = True) -> nn.Module:
    """Wrap for training like the official solver: SyncBN + DDP when distributed, else the model itself.

    ``model`` must already be on its device. SyncBN is applied to CUDA models only (DDP refuses
    SyncBatchNorm on CPU, where multi-process training is for testing anyway).
    """
    if not is_dist():
        return model
    if next(model.parameters()).is_cuda:
        if sync_bn:
            model = convert_sync_bn(model)
        dev = next(model.parameters()).device.index  # the GPU process_device chose (-d 2,3: not LOCAL_RANK)
        return nn.parallel.DistributedDataParallel(
            model, device_ids=[dev], output_device=dev, find_unused_parameters=find_unused_parameters
        )
    return nn.parallel.DistributedDataParallel(model, find_unused_parameters=find_unused_parameters)


def seed_everything(seed: int, per_rank: bool = True) -> int:
    """Seed python, numpy and torch (``seed + rank`` when ``per_rank``, as the official code does)."""
    s = int(seed) + (get_rank() if per_rank else 0)
    random.seed(s)
    np.random.seed(s % (2**32))
    torch.manual_seed(s)
    return s
