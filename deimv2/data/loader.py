"""DataLoader construction (single process, DDP, Windows num_workers=0)."""

from __future__ import annotations

import random

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, SequentialSampler

from deimv2.data.collate import batch_image_collate_fn
from deimv2.errors import ConfigError

__all__ = ["DetDataLoader", "build_dataloader", "seed_worker", "batch_image_collate_fn"]


def seed_worker(worker_id: int) -> None:
    """worker_init_fn: seed numpy/random/torch from the per-worker seed torch assigned."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class DetDataLoader(DataLoader):
    """DataLoader whose ``set_epoch`` reaches the dataset, the collate function and the sampler."""

    def set_epoch(self, epoch: int) -> None:
        for part in (self.dataset, self.collate_fn, self.sampler):
            if hasattr(part, "set_epoch"):
                part.set_epoch(epoch)


def build_dataloader(
    dataset,
    batch_size: int,
    shuffle: bool,
    num_workers: int = 0,
    collate_fn=None,
    drop_last: bool = False,
    distributed: bool | None = None,
    seed: int = 0,
    pin_memory: bool = False,
) -> DetDataLoader:
    """Build the loader. ``batch_size`` is per process.

    distributed: None = use a DistributedSampler when torch.distributed is initialized;
    True = require it; False = never. Workers restart every epoch (``persistent_workers=False``): their
    seeds then come from ``generator`` alone, whose state ``last.pth`` stores, so a resumed run sees the
    same data as an uninterrupted one (see :mod:`deimv2.engine.rng`).
    """
    initialized = dist.is_available() and dist.is_initialized()
    if distributed and not initialized:
        raise ConfigError(
            "distributed=True，但 torch.distributed 尚未初始化。"
            "修复：用 torchrun 启动并先调用 init_process_group，或设 distributed=False。"
        )
    if batch_size < 1 or num_workers < 0:
        raise ConfigError(
            f"batch_size={batch_size}、num_workers={num_workers} 无效。修复：batch_size ≥ 1，num_workers ≥ 0。"
        )
    generator = torch.Generator()
    generator.manual_seed(seed)
    if initialized and distributed is not False:
        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last)
    elif shuffle:
        sampler = RandomSampler(dataset, generator=generator)
    else:
        sampler = SequentialSampler(dataset)
    return DetDataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_fn if collate_fn is not None else batch_image_collate_fn,
        drop_last=drop_last,
        pin_memory=pin_memory,
        worker_init_fn=seed_worker if num_workers > 0 else None,
        generator=generator,
        persistent_workers=False,
    )
