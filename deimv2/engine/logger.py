"""Training logs: JSON-lines epoch records, optional TensorBoard, running averages, curve plots.

One epoch record (one line of ``log.jsonl``) as the trainer writes it, e.g.::

    {"epoch": 0, "lr": 0.0005, "train_loss": 35.2, "train_loss_mal": 0.9, ..., "AP": 0.12, "AP50": 0.25, ...}

:func:`plot_training_curves` also reads the official ``log.txt`` (``train_loss``, ``test_coco_eval_bbox``).
Explained in notebook 04_train.ipynb.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deimv2.engine.dist import all_reduce_dict, is_dist
from deimv2.errors import DEIMv2Error
from deimv2.utils.fonts import cjk_figure

_log = logging.getLogger(__name__)

__all__ = ["JsonlLogger", "read_log", "make_tensorboard_writer", "SmoothedValue", "MetricMeter", "plot_training_curves"]


def _plain(v: Any) -> Any:
    if torch.is_tensor(v):
        return v.item() if v.numel() == 1 else v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, Path):
        return str(v)
    return v


class JsonlLogger:
    """Appends one JSON object per line to ``path`` (UTF-8, Chinese kept readable)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def log(self, record: Mapping[str, Any]) -> None:
        line = json.dumps(_plain(record), ensure_ascii=False)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()


def read_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All records of a JSON-lines log. A cut-off last line (crash while writing) is skipped with a notice."""
    path = Path(path)
    if not path.is_file():
        raise DEIMv2Error(f"找不到训练日志 '{path}'。请确认输出目录正确（日志文件名为 log.jsonl 或官方的 log.txt）。")
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == len(lines) - 1:
                _log.info(f"提示: 训练日志 '{path}' 的最后一行不完整（可能写入时训练被中断），已跳过该行。")
                break
            raise DEIMv2Error(f"训练日志 '{path}' 第 {i + 1} 行不是合法的 JSON: {e}。请检查或删除该行。") from e
    return records


def make_tensorboard_writer(log_dir: str | os.PathLike):
    """A ``torch.utils.tensorboard.SummaryWriter``, or None (with a notice) if tensorboard is not installed."""
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        _log.info("提示: 未安装 tensorboard，跳过 TensorBoard 日志（需要时运行 pip install tensorboard）。")
        return None
    return SummaryWriter(log_dir=str(log_dir))


class SmoothedValue:
    """Running statistics of a scalar: a window (median/avg) and the global average."""

    def __init__(self, window_size: int = 20):
        self.window: deque[float] = deque(maxlen=window_size)
        self.total = 0.0
        self.count = 0

    def update(self, value: float, n: int = 1) -> None:
        value = float(value)
        self.window.append(value)
        self.total += value * n
        self.count += n

    @property
    def value(self) -> float:
        return self.window[-1] if self.window else math.nan

    @property
    def median(self) -> float:
        return float(np.median(list(self.window))) if self.window else math.nan

    @property
    def avg(self) -> float:
        return float(np.mean(list(self.window))) if self.window else math.nan

    @property
    def global_avg(self) -> float:
        return self.total / self.count if self.count else math.nan


class MetricMeter:
    """A dict of :class:`SmoothedValue` fed with ``update(loss=..., lr=...)`` (tensors or numbers)."""

    def __init__(self, window_size: int = 20):
        self.window_size = window_size
        self.meters: dict[str, SmoothedValue] = {}

    def update(self, n: int = 1, **values: Any) -> None:
        for k, v in values.items():
            if torch.is_tensor(v):
                v = v.item()
            self.meters.setdefault(k, SmoothedValue(self.window_size)).update(v, n)

    def __getitem__(self, key: str) -> SmoothedValue:
        return self.meters[key]

    def postfix(self, keys: Sequence[str] | None = None, fmt: str = "{:.4g}") -> dict[str, str]:
        """Window averages as strings, for ``tqdm.set_postfix``."""
        keys = list(self.meters) if keys is None else [k for k in keys if k in self.meters]
        return {k: fmt.format(self.meters[k].avg) for k in keys}

    def global_averages(self) -> dict[str, float]:
        return {k: m.global_avg for k, m in self.meters.items()}

    def synchronize_between_processes(self) -> None:
        """Sum totals and counts over processes (global averages become global)."""
        if not is_dist():
            return
        data = {}
        for k, m in self.meters.items():
            data[f"{k}/total"] = m.total
            data[f"{k}/count"] = m.count
        reduced = all_reduce_dict(data, average=False)
        for k, m in self.meters.items():
            m.total = reduced[f"{k}/total"]
            m.count = int(round(reduced[f"{k}/count"]))


# ---------------------------------------------------------------------- plots
def _series(records: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for i, r in enumerate(records):
        v = r.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            xs.append(r.get("epoch", i))
            ys.append(float(v))
    return xs, ys


def _normalize_official(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in records:
        r = dict(r)
        bbox = r.get("test_coco_eval_bbox")
        if isinstance(bbox, list) and len(bbox) >= 2:
            r.setdefault("AP", bbox[0])
            r.setdefault("AP50", bbox[1])
        out.append(r)
    return out


def plot_training_curves(log: str | os.PathLike | Sequence[Mapping[str, Any]], max_loss_terms: int = 6):
    """Figure with the training loss (total + main terms) and validation AP / AP50 per epoch."""
    records = read_log(log) if isinstance(log, (str, os.PathLike)) else list(log)
    records = _normalize_official(records)
    fig = cjk_figure((12, 4.5))
    ax_loss, ax_ap = fig.subplots(1, 2)
    keys = sorted(
        {
            k
            for r in records
            for k in r
            if k.startswith("train_loss_")
            and "_aux" not in k
            and "_dn" not in k
            and "_pre" not in k
            and "_enc" not in k
        }
    )
    for key in ["train_loss"] + keys[:max_loss_terms]:
        xs, ys = _series(records, key)
        if xs:
            ax_loss.plot(
                xs,
                ys,
                marker="." if len(xs) < 30 else None,
                linewidth=2.0 if key == "train_loss" else 1.0,
                label=key.removeprefix("train_"),
            )
    ax_loss.set_xlabel("轮次 epoch")
    ax_loss.set_ylabel("损失")
    ax_loss.set_title("训练损失")
    ax_loss.grid(alpha=0.3)
    if ax_loss.lines:
        ax_loss.legend(fontsize=8)
    for key in ("AP", "AP50"):
        xs, ys = _series(records, key)
        if xs:
            ax_ap.plot(xs, ys, marker="o" if len(xs) < 30 else None, label=key)
    ax_ap.set_xlabel("轮次 epoch")
    ax_ap.set_ylabel("mAP")
    ax_ap.set_title("验证集精度")
    ax_ap.grid(alpha=0.3)
    if ax_ap.lines:
        ax_ap.legend()
    return fig
