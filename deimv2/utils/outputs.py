"""Output folders: the one place that creates them and explains, in Chinese, why one cannot be written.

Every command that writes (``yolo2coco``, ``coco2yolo``, ``train``, ``eval``, ``predict``, ``export``, ``demo``)
calls :func:`ensure_output_dir` before any heavy work; :func:`explain_os_error` turns an ``OSError`` raised later
(disk full while saving a checkpoint …) into the same kind of message; :func:`claim_output_dir` lets two trainings
started at once never share a folder. Policy: ``docs/errors.md``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from deimv2.errors import DEIMv2Error

__all__ = ["RUN_MARKER", "OutputError", "claim_output_dir", "ensure_output_dir", "explain_os_error", "os_error_reason"]

_REASONS = {
    errno.EACCES: "没有写入权限",
    errno.EPERM: "操作不被允许（没有权限，或是特殊文件系统）",
    errno.EROFS: "所在的文件系统是只读的",
    errno.ENOSPC: "磁盘空间已满",
    errno.EDQUOT: "超出了磁盘配额",
    errno.ENOTDIR: "路径中的某一级是文件，不是文件夹",
    errno.EEXIST: "同名的文件已经存在，不是文件夹",
    errno.ENOENT: "上一级文件夹不存在且无法创建（可能是特殊文件系统，如 /proc）",
    errno.ENAMETOOLONG: "路径太长",
    errno.EISDIR: "这是一个文件夹，不是文件",
    errno.EIO: "磁盘读写错误（I/O error）",
}
_FIX = {
    errno.ENOSPC: "清理磁盘空间，或换一个空间充足的输出路径",
    errno.EDQUOT: "清理磁盘空间，或换一个空间充足的输出路径",
    errno.ENOTDIR: "把那个文件改名/移走，或换一个输出路径",
    errno.EEXIST: "把那个文件改名/移走，或换一个输出路径",
}


class OutputError(DEIMv2Error):
    """An output folder or file that cannot be created or written."""


def os_error_reason(e: OSError) -> str:
    """Chinese reason for an OSError (errno), with the system's own words in brackets."""
    reason = _REASONS.get(e.errno or -1, "读写失败")
    return f"{reason}（{e.strerror or type(e).__name__}）"


def explain_os_error(
    e: OSError, what: str = "文件", path: str | os.PathLike | None = None, verb: str = "创建或写入"
) -> str:
    """The Chinese message for an OSError: which path (``path``, else the one in ``e``), why, and what to do."""
    failing = e.filename if e.filename is not None else None
    if path is None and failing is None:
        return f"文件读写失败：{os_error_reason(e)}。修复：检查磁盘空间和输出路径的权限，或加 --debug 查看是哪一步。"
    shown = path if path is not None else failing
    where = f"（出错的是 {failing}）" if failing is not None and path is not None and str(failing) != str(path) else ""
    fix = _FIX.get(e.errno or -1, "换一个你有写权限的输出路径（例如家目录下的文件夹），或检查该路径的权限")
    return f"无法{verb}{what} {shown}：{os_error_reason(e)}{where}。修复：{fix}。"


def ensure_output_dir(path: str | os.PathLike, what: str = "输出文件夹") -> Path:
    """Create ``path`` (with parents) and prove it is writable by creating and removing a temp file.

    Raises :class:`OutputError` naming the folder and the reason (no permission, read-only or special
    file system, a file where a folder is expected, disk full …).
    """
    path = Path(path)
    try:
        if path.exists() and not path.is_dir():
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path))
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".deimv2-write-test-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(explain_os_error(e, what, path)) from e
    return path


RUN_MARKER = ".deimv2-run"  #: holds the PID of the training run that claimed the folder


def claim_output_dir(path: Path) -> bool:
    """Atomically claim ``path`` for a new run (O_EXCL marker file with our PID). False while another live process
    holds it; a marker left by a run that died before its first checkpoint is taken over."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return True  # not creatable (a file in the way, no permission …): ensure_output_dir explains it
    try:
        fd = os.open(path / RUN_MARKER, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            pid = int((path / RUN_MARKER).read_text(encoding="utf-8").strip() or 0)
            if pid and pid != os.getpid():
                os.kill(pid, 0)  # raises if no such process
                return False
        except (ValueError, ProcessLookupError):
            pass  # a stale claim: take it over
        except OSError:
            return False  # alive but another user's, or unreadable: leave it alone
        with contextlib.suppress(OSError):
            (path / RUN_MARKER).write_text(str(os.getpid()), encoding="utf-8")
        return True
    except OSError:
        return True  # not writable: ensure_output_dir explains it
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(str(os.getpid()))
    return True
