"""An epoch counter shared with DataLoader worker processes."""

from __future__ import annotations

import torch

__all__ = ["SharedEpoch"]


class SharedEpoch:
    """Integer held in shared memory.

    Persistent DataLoader workers keep their own copy of the dataset and collate function,
    so a plain attribute set in the main process never reaches them. A shared-memory tensor
    is inherited (fork) or passed by handle (spawn, Windows), so ``set`` is seen everywhere.
    """

    def __init__(self, value: int = -1) -> None:
        self._value = torch.full((), int(value), dtype=torch.int64).share_memory_()

    def get(self) -> int:
        return int(self._value.item())

    def set(self, value: int) -> None:
        self._value.fill_(int(value))

    def __repr__(self) -> str:
        return f"SharedEpoch({self.get()})"
