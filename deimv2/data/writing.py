"""Writing a new dataset folder (:mod:`deimv2.data.convert`): never into or over its input, never partial (it is
written into a temporary folder beside it that is renamed at the end), with unique file names; source files are
copied or linked, never moved.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from deimv2.errors import DatasetError
from deimv2.utils.outputs import ensure_output_dir

__all__ = ["check_output_folder", "place_file", "unique_name", "unique_stem", "write_all_at_once"]


def check_output_folder(src: Path, dst: Path, overwrite: bool) -> None:
    """``dst`` may be written: not ``src`` itself or inside it, not a file, empty (unless ``overwrite``), and its
    parent writable; else a Chinese error."""
    s, d = src.resolve(), dst.resolve()
    if s == d or d in s.parents:
        raise DatasetError(f"输出文件夹 {dst} 不能与输入 {src} 相同或互相包含，请换一个输出路径。")
    if dst.exists() and not dst.is_dir():
        raise DatasetError(
            f"输出路径 {dst} 是一个已存在的文件，不是文件夹（即使 --overwrite 也不会删除文件）。"
            "请换一个输出路径，或先把这个文件移走。"
        )
    if dst.exists() and any(dst.iterdir()) and not overwrite:
        raise DatasetError(f"输出文件夹 {dst} 已存在且非空。请换一个路径，或使用 overwrite=True 覆盖。")
    ensure_output_dir(dst.parent, "输出文件夹的上一级")


def place_file(src: Path, dst: Path, link: bool) -> None:
    """``src`` copied to ``dst``, or linked (a hard link, else a symlink): never moved."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not link:
        shutil.copy2(src, dst)
        return
    try:
        os.link(src, dst)
    except OSError:  # other file system / not permitted: fall back to a symlink
        os.symlink(src.resolve(), dst)


def write_all_at_once(dst: Path, write) -> None:
    """Run ``write(tmp)`` on a fresh temp folder beside dst, then replace dst by it."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp, old = (dst.with_name(f".{dst.name}.{tag}-{os.getpid()}") for tag in ("tmp", "old"))
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write(tmp)
        if dst.exists():
            dst.rename(old)
        tmp.rename(dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not dst.exists():
            old.rename(dst)
        raise
    if old.exists():
        shutil.rmtree(old) if old.is_dir() else old.unlink()


def unique_name(name: str, used: set[str]) -> str:
    """``name``, or ``stem_1.ext`` … when a file of that name (in any letter case) is already ``used``."""
    return _first_unused(Path(name).stem, Path(name).suffix, used)


def unique_stem(name: str, used: set[str]) -> str:
    """``name``, or ``stem_1.ext`` … so that no two files of a split share a stem (YOLO labels are ``stem.txt``)."""
    return _first_unused(Path(name).stem, "", used) + Path(name).suffix


def _first_unused(stem: str, suffix: str, used: set[str]) -> str:
    """``stem + suffix``, else ``stem_1 + suffix``, ``stem_2 + suffix`` …: the first not ``used`` (in any letter
    case), which is then added to ``used``."""
    out, k = stem + suffix, 1
    while out.lower() in used:
        out, k = f"{stem}_{k}{suffix}", k + 1
    used.add(out.lower())
    return out
