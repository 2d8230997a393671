"""Which run folder a training writes into, and what it says about the files there (policy: ``docs/errors.md``).

- ``-r`` resumes into the run folder it came from unless ``--output-dir`` says otherwise; a folder given to ``-r``
  means its ``last.pth`` (:func:`resume_target`). An ``--output-dir`` other than that folder is a new folder
  (never another run's files).
- Resuming a run that already trained all its epochs says so and tells how to train more (:func:`check_not_finished`).
- The closing line names only files that exist (:func:`finish_line`).
"""

from __future__ import annotations

from pathlib import Path

from deimv2.errors import ConfigError
from deimv2.utils.inputs import resolve_checkpoint

__all__ = ["check_not_finished", "finish_line", "resume_target"]


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
