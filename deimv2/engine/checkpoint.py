"""Checkpoint files: atomic save, safe (``weights_only=True``) load.

A deimv2 training checkpoint is a plain dict that ``torch.load(..., weights_only=True)`` can read
(tensors, numbers, strings, None, and lists/tuples/dicts of them)::

    {
      'model':        model.state_dict() (unwrapped),
      'ema':          {'module': state_dict, 'updates': int}      # or absent
      'optimizer':    optimizer.state_dict(),
      'lr_scheduler': FlatCosineLRScheduler.state_dict(),
      'scaler':       GradScaler.state_dict()                      # or absent
      'epoch':        int, last finished epoch (0-based; -1 = none),
      'global_step':  int, optimizer steps done,
      'best_ap':      float,
      'config':       plain dict of the resolved config,
      'class_names':  list[str], 'category_ids': list[int] (label i <-> category_ids[i]),
      'version':      deimv2.__version__,
      'best_epoch':     int, epoch of best_ap (added by the trainer),
      'conf_threshold': float, F1-best confidence of the latest evaluation (absent when F1 was 0; engine/f1.py),
      'early_stop':     {'epoch', 'patience', 'best_epoch', 'best_ap', 'reason'} in the last.pth of an early-stopped run,
      'rng':          every random-number state training consumes (training checkpoints; deimv2.engine.rng),
    }

Official checkpoints (``last.pth``, ``best_stg1.pth``, ``best_stg2.pth``...) also load: they hold ``model``/``ema`` and
only strings/ints besides tensors.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deimv2 import __version__
from deimv2.engine.dist import unwrap
from deimv2.errors import WeightsError
from deimv2.utils.outputs import OutputError, explain_os_error
from deimv2.weights.load import read_weights_file

__all__ = [
    "CHECKPOINT_KEYS",
    "make_checkpoint",
    "check_plain",
    "save_checkpoint",
    "load_checkpoint",
    "model_state_from_checkpoint",
]

CHECKPOINT_KEYS = (
    "model",
    "ema",
    "optimizer",
    "lr_scheduler",
    "scaler",
    "epoch",
    "global_step",
    "best_ap",
    "config",
    "class_names",
    "category_ids",
    "version",
)

_PLAIN = (str, int, float, bool, type(None), torch.Tensor, torch.Size, torch.dtype, torch.device)


def check_plain(obj: Any, where: str = "checkpoint") -> None:
    """Raise TypeError if ``obj`` holds something ``weights_only=True`` loading would refuse."""
    if isinstance(obj, _PLAIN):
        return
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            check_plain(k, f"{where} key")
            check_plain(v, f"{where}[{k!r}]")
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            check_plain(v, f"{where}[{i}]")
        return
    raise TypeError(
        f"{where} holds a {type(obj).__name__}; checkpoints may hold only tensors, "
        "numbers, strings, None and lists/dicts of them"
    )


def make_checkpoint(
    *,
    model: nn.Module,
    epoch: int,
    global_step: int,
    best_ap: float,
    config: Mapping[str, Any],
    class_names: list[str],
    category_ids: list[int],
    ema=None,
    optimizer=None,
    lr_scheduler=None,
    scaler=None,
) -> dict[str, Any]:
    """Assemble the checkpoint dict documented in this module (wrappers are unwrapped)."""
    ckpt: dict[str, Any] = {"model": unwrap(model).state_dict()}
    if ema is not None:
        ckpt["ema"] = ema.state_dict()
    if optimizer is not None:
        ckpt["optimizer"] = optimizer.state_dict()
    if lr_scheduler is not None:
        ckpt["lr_scheduler"] = lr_scheduler.state_dict()
    if scaler is not None:
        ckpt["scaler"] = scaler.state_dict()
    ckpt.update(
        epoch=int(epoch),
        global_step=int(global_step),
        best_ap=float(best_ap),
        config=dict(config),
        class_names=[str(n) for n in class_names],
        category_ids=[int(c) for c in category_ids],
        version=str(__version__),
    )
    check_plain(ckpt)
    return ckpt


def save_checkpoint(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` with ``torch.save`` atomically: temp file in the same folder, fsync, ``os.replace``.

    If anything fails midway, the previous file at ``path`` is untouched and the temp file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):  # disk full, permissions …: say which file, and that the old one is intact
            kept = f"之前保存的 {path} 完好无损。" if path.is_file() else ""
            raise OutputError(explain_os_error(e, "checkpoint", path) + kept) from e
        raise
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a process killed while saving
        stale.unlink(missing_ok=True)
    try:  # make the rename itself durable (POSIX); harmless where unsupported
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return path


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint dict with ``weights_only=True`` (via :func:`deimv2.weights.read_weights_file`);
    raises WeightsError (Chinese) for a missing, corrupt or non-dict file."""
    obj = read_weights_file(path)
    if not isinstance(obj, dict):
        raise WeightsError(
            f"权重文件 '{path}' 的内容是 {type(obj).__name__}，不是 checkpoint 字典。"
            "请使用包含 'model' 或 'ema' 键的 .pth 文件（官方权重或本包训练得到的 last.pth / best.pth）。"
        )
    if map_location not in (None, "cpu"):
        obj = _to_device(obj, map_location)
    return obj


def _to_device(obj: Any, device: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_device(v, device) for v in obj]
    return obj


def model_state_from_checkpoint(
    ckpt: Mapping[str, Any], prefer_ema: bool = True, source: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """The weights to use for inference/fine-tuning: ``ema.module`` if present (and preferred), else ``model``.

    Also accepts a bare state_dict (all values tensors).
    """
    ema = ckpt.get("ema")
    if prefer_ema and isinstance(ema, Mapping) and isinstance(ema.get("module"), Mapping):
        return dict(ema["module"])
    if isinstance(ckpt.get("model"), Mapping):
        return dict(ckpt["model"])
    if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return dict(ckpt)
    raise WeightsError(
        f"{source} 中既没有 'ema' 也没有 'model' 权重（现有键: {sorted(map(str, ckpt))[:10]}）。"
        "请使用官方发布的 .pth 或本包训练得到的 checkpoint。"
    )
