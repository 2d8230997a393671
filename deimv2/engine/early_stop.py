"""Early stopping: stop when the validation AP has not improved for ``patience`` epochs (``-u patience=N``).

Off (0) in the official recipe. The trainer calls :func:`early_stop_reason` after each evaluation; a run it
stops keeps ``best.pth``, writes the reason into ``log.jsonl`` (``stop_reason``) and into ``last.pth``
(``early_stop``). :func:`check_resume_after_early_stop` makes ``-r last.pth`` of such a run continue only
when ``patience`` is given again, with a value that does not stop it at once. Explained in ``04_train.ipynb``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from deimv2.errors import ConfigError

__all__ = ["check_resume_after_early_stop", "early_stop_reason"]


def early_stop_reason(
    *, patience: int, epoch: int, best_epoch: int, best_ap: float, epochs: int, output_dir: Path
) -> str | None:
    """The Chinese reason to stop after ``epoch`` (0-based), or None to go on.

    Stops when ``epoch - best_epoch >= patience > 0`` and ``epoch`` is not already the last one.
    """
    waited = epoch - best_epoch
    if patience <= 0 or waited < patience or epoch + 1 >= epochs:
        return None
    return (
        f"早停：验证集 AP 已经连续 {waited} 轮没有超过第 {best_epoch + 1} 轮的最佳值 {best_ap:.4f}"
        f"（patience={patience}），训练在第 {epoch + 1}/{epochs} 轮后停止。最佳权重："
        f"{(Path(output_dir) / 'best.pth').resolve()}。如果确实要接着训练：-r {Path(output_dir) / 'last.pth'} "
        f"-u patience=更大的值（或 patience=0 关闭早停）。"
    )


def check_resume_after_early_stop(
    info: Mapping | None, path, waited: int, patience: int, overrides: Mapping, say: Callable[[str], None] = print
) -> None:
    """Raise unless resuming an early-stopped run (``info`` = its ``early_stop`` record) was asked for:
    ``patience`` in ``overrides``, and either 0 (off) or larger than ``waited`` (epochs since the best)."""
    if not info:
        return
    if "patience" not in overrides:
        raise ConfigError(
            f"{path} 来自一次早停结束的训练（第 {int(info['epoch']) + 1} 轮，patience={info['patience']}，"
            f"已连续 {waited} 轮没有提升）。默认不会继续。如果确实要接着训练，请显式给出 -u patience=N"
            f"（N > {waited}），或 -u patience=0 关闭早停。"
        )
    if 0 < patience <= waited:
        raise ConfigError(
            f"patience={patience} 不大于已经没有提升的轮数 {waited}，继续训练会立刻再次早停。"
            f"请用 -u patience={waited + 1} 或更大的值，或 patience=0 关闭早停。"
        )
    say(f"继续一次早停结束的训练（patience 现在是 {patience}{'，即不早停' if patience == 0 else ''}）。")
