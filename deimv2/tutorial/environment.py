"""Environment report: versions, devices, memory, disk, optional packages and the CJK font.

Explained in notebook 00_environment.ipynb.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
import platform
import re
import shutil
import sys
import unicodedata
from collections.abc import Callable
from pathlib import Path

from deimv2 import __version__

_log = logging.getLogger(__name__)

__all__ = ["checks", "CHECK_KEYS"]

CHECK_KEYS = (
    "python",
    "deimv2",
    "torch",
    "torchvision",
    "transforms_v2",
    "cuda",
    "mps",
    "cpu",
    "ram",
    "disk",
    "pycocotools",
    "ipywidgets",
    "onnx",
    "onnxruntime",
    "openvino",
    "tensorboard",
    "cjk_font",
)
_ICON = {"ok": "✅", "warn": "⚠️", "fail": "❌"}
_GIB = 1024**3
MIN_PYTHON = (3, 10)
MIN_TORCH = (2, 3)
MIN_TORCHVISION = (0, 18)


def _row(label: str, status: str, detail: str, hint: str = "") -> dict:
    return {"label": label, "status": status, "detail": detail, "hint": hint}


def _version_tuple(version: str) -> tuple[int, ...]:
    """'2.14.1+cu121' -> (2, 14, 1)."""
    return tuple(int(p) for p in re.findall(r"\d+", version.split("+")[0])[:3])


def _check_python() -> dict:
    v = platform.python_version()
    if sys.version_info[:2] >= MIN_PYTHON:
        return _row("Python", "ok", f"{v}（{sys.executable}）")
    return _row("Python", "fail", v, "需要 Python ≥ 3.10，请新建 Python 3.10+ 的虚拟环境")


def _check_deimv2() -> dict:
    return _row("deimv2", "ok", f"{__version__}（{Path(__file__).resolve().parent}）")


def _check_torch() -> dict:
    try:
        import torch
    except ImportError:
        return _row("torch", "fail", "未安装", "按 https://pytorch.org 的说明安装 torch（GPU 机器选带 CUDA 的版本）")
    v = torch.__version__
    if _version_tuple(v) >= MIN_TORCH:
        return _row("torch", "ok", v)
    return _row("torch", "fail", v, "需要 torch ≥ 2.3：pip install -U torch torchvision")


def _check_torchvision() -> dict:
    try:
        import torchvision
    except ImportError:
        return _row("torchvision", "fail", "未安装", "pip install torchvision（版本需与 torch 配套）")
    v = torchvision.__version__
    if _version_tuple(v) >= MIN_TORCHVISION:
        return _row("torchvision", "ok", v)
    return _row("torchvision", "fail", v, "需要 torchvision ≥ 0.18：pip install -U torch torchvision")


def _check_transforms_v2() -> dict:
    label = "transforms.v2 API"
    try:
        from torchvision.transforms import v2
    except ImportError:
        return _row(label, "fail", "torchvision.transforms.v2 不存在", "pip install -U 'torchvision>=0.21'")
    if hasattr(v2.Transform, "transform") and hasattr(v2.Transform, "make_params"):
        return _row(label, "ok", "支持 transform / make_params（新接口）")
    return _row(
        label,
        "fail",
        "只有旧的 _transform / _get_params 接口",
        "deimv2 的数据增强使用新接口：pip install -U 'torchvision>=0.21'（torch 一起升级）",
    )


def _check_cuda() -> dict:
    try:
        import torch
    except ImportError:
        return _row("CUDA", "fail", "torch 未安装", "先安装 torch")
    if not torch.cuda.is_available():
        build = torch.version.cuda
        detail = (
            "不可用（当前 torch 为 CPU 版本）"
            if build is None
            else f"不可用（torch 编译于 CUDA {build}，但没有找到 GPU/驱动）"
        )
        return _row(
            "CUDA",
            "warn",
            detail,
            "没有 GPU 时只能用 CPU 训练（很慢）；有 NVIDIA GPU 请安装驱动和带 CUDA 的 torch（见 pytorch.org）",
        )
    gpus = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        gpus.append(f"{i}: {p.name} {p.total_memory / _GIB:.1f} GiB")
    return _row("CUDA", "ok", f"CUDA {torch.version.cuda}；" + "；".join(gpus))


def _check_mps() -> dict:
    if sys.platform != "darwin":
        return _row("MPS (Apple)", "ok", "不适用（非 macOS）")
    try:
        import torch
    except ImportError:
        return _row("MPS (Apple)", "fail", "torch 未安装", "先安装 torch")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return _row("MPS (Apple)", "ok", "可用（device='mps'）")
    return _row("MPS (Apple)", "warn", "不可用", "Apple 芯片请使用 macOS 12.3+ 和 arm64 版 Python/torch")


def _check_cpu() -> dict:
    n = os.cpu_count() or 1
    try:
        import torch

        threads = f"，torch 线程数 {torch.get_num_threads()}"
    except ImportError:
        threads = ""
    detail = f"{n} 核{threads}（{platform.machine() or '未知架构'}）"
    if n < 4:
        return _row("CPU", "warn", detail, "CPU 核数少：数据加载可能成为瓶颈，num_workers 设为 0–2")
    return _row("CPU", "ok", detail)


def _memory_bytes() -> tuple[int | None, int | None]:
    """(total, available) RAM in bytes; psutil if installed, else /proc/meminfo, else sysconf."""
    try:
        import psutil

        vm = psutil.virtual_memory()
        return int(vm.total), int(vm.available)
    except ImportError:
        pass
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        values = {}
        for line in meminfo.read_text(encoding="utf-8").splitlines():
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts:
                values[key] = int(parts[0]) * 1024
        if "MemTotal" in values:
            return values["MemTotal"], values.get("MemAvailable")
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        total = page * os.sysconf("SC_PHYS_PAGES")
        try:
            avail = page * os.sysconf("SC_AVPHYS_PAGES")
        except (ValueError, OSError):
            avail = None
        return total, avail
    except (ValueError, OSError, AttributeError):
        return None, None


def _check_ram() -> dict:
    total, avail = _memory_bytes()
    if total is None:
        return _row("内存", "warn", "无法读取", "pip install psutil 后可显示内存信息")
    detail = f"共 {total / _GIB:.1f} GiB" + ("" if avail is None else f"，可用 {avail / _GIB:.1f} GiB")
    if total < 8 * _GIB:
        return _row("内存", "warn", detail, "内存小于 8 GiB：请减小 batch size 和 num_workers")
    return _row("内存", "ok", detail)


def _check_disk(path: Path) -> dict:
    try:
        usage = shutil.disk_usage(path)
    except OSError as e:
        return _row("磁盘", "warn", f"无法读取 {path}：{e}")
    detail = f"{path}：剩余 {usage.free / _GIB:.1f} GiB / 共 {usage.total / _GIB:.1f} GiB"
    if usage.free < 1 * _GIB:
        return _row("磁盘", "fail", detail, "剩余空间不足 1 GiB，无法保存权重：请清理磁盘或换输出目录")
    if usage.free < 10 * _GIB:
        return _row("磁盘", "warn", detail, "剩余空间不足 10 GiB：训练日志和多个权重文件可能放不下")
    return _row("磁盘", "ok", detail)


def _check_package(module: str, label: str, required: bool, hint: str) -> dict:
    try:
        mod = importlib.import_module(module)
    except Exception as e:  # broken installs raise more than ImportError
        missing = "未安装" if isinstance(e, ImportError) else f"导入失败：{type(e).__name__}: {e}"
        return _row(label, "fail" if required else "warn", missing + ("" if required else "（可选）"), hint)
    version = getattr(mod, "__version__", None)
    if version is None:
        try:
            version = importlib.metadata.version(label)
        except importlib.metadata.PackageNotFoundError:
            version = "已安装"
    return _row(label, "ok", str(version))


def _check_font() -> dict:
    from deimv2.utils.fonts import INSTALL_HINT, find_cjk_font  # lazy: checks() must report a missing Pillow, not crash

    try:
        return _row("中文字体", "ok", str(find_cjk_font()))
    except Exception as e:  # DEIMv2Error (nothing found) or a broken font file
        first = str(e).splitlines()[0]
        return _row("中文字体", "fail", first[:60], INSTALL_HINT.replace("\n", " ").replace("  ", " "))


def _display_width(text: str) -> int:
    width = 0
    for ch in text:
        if unicodedata.combining(ch) or ch == "\ufe0f":
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width + (1 if "\ufe0f" in text else 0)  # "⚠️" is shown two cells wide


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - _display_width(text))


def _format_table(results: dict) -> str:
    headers = ("项目", "状态", "详情")
    rows = [(r["label"], _ICON[r["status"]], r["detail"]) for r in results.values()]
    widths = [max(_display_width(x) for x in col) for col in zip(headers, *rows)]
    lines = ["  ".join(_pad(c, w) for c, w in zip(headers, widths)).rstrip()]
    lines.append("-" * min(100, sum(widths) + 4))
    indent = " " * (widths[0] + widths[1] + 4)
    for row, r in zip(rows, results.values()):
        lines.append("  ".join(_pad(c, w) for c, w in zip(row, widths)).rstrip())
        if r["hint"]:
            lines.append(f"{indent}└ 建议：{r['hint']}")
    n_fail = sum(r["status"] == "fail" for r in results.values())
    n_warn = sum(r["status"] == "warn" for r in results.values())
    if n_fail:
        lines.append(f"❌ 有 {n_fail} 项必须修复（见“建议”列），{n_warn} 项警告。")
    elif n_warn:
        lines.append(f"✅ 必需项全部通过；{n_warn} 项警告（可选功能或性能相关）。")
    else:
        lines.append("✅ 全部检查通过。")
    return "\n".join(lines)


def checks(verbose: bool = True, path: str | os.PathLike | None = None) -> dict:
    """Check the environment and print a table (in Chinese) like Ultralytics' ``checks()``.

    Returns {key: {"label", "status", "detail", "hint"}} for every key in CHECK_KEYS; status is
    "ok", "warn" (optional or slow) or "fail" (deimv2 will not work). ``path`` is the directory
    whose free disk space is reported (default: the current directory).
    """
    disk_path = Path(path) if path is not None else Path.cwd()
    steps: dict[str, Callable[[], dict]] = {
        "python": _check_python,
        "deimv2": _check_deimv2,
        "torch": _check_torch,
        "torchvision": _check_torchvision,
        "transforms_v2": _check_transforms_v2,
        "cuda": _check_cuda,
        "mps": _check_mps,
        "cpu": _check_cpu,
        "ram": _check_ram,
        "disk": lambda: _check_disk(disk_path),
        "pycocotools": lambda: _check_package(
            "pycocotools", "pycocotools", True, "计算 COCO mAP 必需：pip install pycocotools"
        ),
        "ipywidgets": lambda: _check_package(
            "ipywidgets", "ipywidgets", False, 'notebook 进度条需要：pip install "deimv2[notebooks]"'
        ),
        "onnx": lambda: _check_package("onnx", "onnx", False, '导出 ONNX 需要：pip install "deimv2[export]"'),
        "onnxruntime": lambda: _check_package(
            "onnxruntime", "onnxruntime", False, '运行 ONNX 模型需要：pip install "deimv2[export]"'
        ),
        "openvino": lambda: _check_package(
            "openvino", "openvino", False, "CPU 上最快的推理后端（默认会用）：pip install openvino"
        ),
        "tensorboard": lambda: _check_package(
            "tensorboard", "tensorboard", False, "查看训练曲线（可选）：pip install tensorboard"
        ),
        "cjk_font": _check_font,
    }
    results = {}
    for key, fn in steps.items():
        try:
            results[key] = fn()
        except Exception as e:  # a check must never crash the report
            results[key] = _row(key, "fail", f"检查出错：{type(e).__name__}: {e}", "")
    if verbose:
        _log.info(_format_table(results))
    return results
