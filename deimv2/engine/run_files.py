"""Which run folder a training writes into, and what it says about the files there (policy: ``docs/errors.md``).

- ``-r`` resumes into the run folder it came from unless ``--output-dir`` says otherwise; a folder given to ``-r``
  means its ``last.pth`` (:func:`resume_target`). An ``--output-dir`` other than that folder is a new folder
  (never another run's files).
- Resuming a run that already trained all its epochs says so and tells how to train more (:func:`check_not_finished`).
- The closing line names only files that exist (:func:`finish_line`).
- A new run never writes into a folder that holds a finished run or another running one: it takes ``path-2``,
  ``path-3`` … (:func:`fresh_output_dir`); :func:`latest_run` finds the newest of them again (notebooks 05/06).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from deimv2.errors import ConfigError
from deimv2.utils.inputs import resolve_checkpoint
from deimv2.utils.outputs import claim_output_dir

__all__ = ["check_not_finished", "finish_line", "fresh_output_dir", "latest_run", "resume_target"]

_log = logging.getLogger(__name__)


def resume_target(resume, tune, output_dir, test_only: bool) -> tuple[Path | None, Path | None, object, bool]:
    """``(resume, tune, output_dir, into_other)``: the checkpoint files meant by ``-r`` / ``-t`` (a folder -> its
    ``last.pth`` to resume, its ``best.pth`` to tune or evaluate), the output folder (the resumed run's own folder
    when none is given) and whether a resumed run writes into a folder other than its own (then a fresh one)."""
    tune_path = resolve_checkpoint(tune, option="-t/--tune") if tune else None
    if not resume:
        return None, tune_path, output_dir, False
    path = resolve_checkpoint(resume, resume=not test_only, option="-r/--resume")
    if output_dir is None:
        return path, tune_path, path.parent, False
    into_other = not test_only and Path(output_dir).resolve() != path.parent.resolve()
    return path, tune_path, output_dir, into_other


def check_not_finished(path, start_epoch: int, epochs: int) -> None:
    """Raise when the checkpoint at ``path`` already finished every epoch of the schedule (1-based in the message)."""
    if start_epoch < epochs:
        return
    raise ConfigError(
        f"{path} 来自一次已经完成的训练（共 {epochs} 轮，第 {start_epoch} 轮已训练完），-r 没有可以继续的轮次，"
        f"所以什么也没有训练。要多训练几轮：-r {path} -u epochs=N（N 大于 {epochs}）；"
        f"要在它的基础上换设置或换数据重新训练：-t {path} 微调。"
    )


def finish_line(output_dir: Path, best_ap: float, best_epoch: int) -> str:
    """The closing line: the best AP and ``best.pth`` only when that file exists; else why not and ``last.pth``."""
    best = output_dir / "best.pth"
    if best.is_file():
        return f"训练完成。最佳 AP={best_ap:.4f}（第 {best_epoch + 1} 轮），权重：{best.resolve()}"
    last = output_dir / "last.pth"
    where = f"最后一轮的权重：{last.resolve()}" if last.is_file() else "也没有写出 last.pth"
    return (
        "训练完成，但没有写出 best.pth：验证集上的 AP 一直没有有效值（通常是验证集里没有标注框，"
        f"或只有 iscrowd=1 的框，COCO 评估给出 -1）。{where}。修复：检查验证集的标注（deimv2 doctor 数据集）。"
    )


def fresh_output_dir(path: Path, *, claim: bool = True, say: Callable[[str], None] = _log.info) -> Path:
    """``path`` itself, or ``path-2``, ``path-3`` … when it already holds a finished run or another run started
    into it at the same time (never overwrite one). With ``claim`` (not under DDP, where every rank computes the
    same name before rank 0 creates it) the folder is claimed atomically. ``say``: the one line when it moves."""

    def taken(p: Path) -> bool:
        return (p / "last.pth").exists() or (p / "best.pth").exists() or (claim and not claim_output_dir(p))

    if not taken(path):
        return path
    n = 2
    while (path.parent / f"{path.name}-{n}").exists() or taken(path.parent / f"{path.name}-{n}"):
        n += 1
    new = path.parent / f"{path.name}-{n}"
    say(
        f"输出目录 {path} 里已有一次训练的结果（或另一个正在进行的训练），为了不覆盖它，这次写到 {new}"
        f"（继续那次训练请用 -r {path / 'last.pth'}）。"
    )
    return new


def latest_run(path: str | Path) -> Path:
    """The newest of ``path``, ``path-2``, ``path-3`` … that holds a ``best.pth`` (see :func:`fresh_output_dir`);
    ``path`` itself when none does. Used by notebooks 05/06 to find the model trained in 04."""
    path = Path(path)
    runs = [p for p in [path, *path.parent.glob(f"{path.name}-*")] if (p / "best.pth").is_file()]
    return max(runs, key=lambda p: (p / "best.pth").stat().st_mtime) if runs else path
