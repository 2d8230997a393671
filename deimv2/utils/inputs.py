"""The input-resolution layer: what a user may type for a checkpoint, a device or a prediction option.

Every command and the Python API go through these functions, so a value is checked once, at the edge, and the
error says what was given and what is expected (policy: ``docs/errors.md``):

- checkpoints (:func:`resolve_checkpoint`): a file, a run folder (``last.pth`` to resume, else ``best.pth``), and
  files of other tools (ONNX, TensorRT, Paddle, Keras, a YAML config …) named for what they are;
- devices (:func:`parse_device`): ``cpu``, ``cuda``, ``cuda:N``, ``N`` and ``0,1`` (and ``gpu`` / ``gpu:N``); under
  torchrun process ``i`` of a machine takes the ``i``-th listed GPU;
- ``conf`` ∈ [0, 1] and ``max_det`` ≥ 1 (:func:`check_conf`, :func:`check_max_det`).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from deimv2.errors import ConfigError, WeightsError

#: most boxes kept per image by default (the official PostProcessor keeps its 300 top queries)
MAX_DET = 300

__all__ = [
    "MAX_DET",
    "FOREIGN_WEIGHTS",
    "check_conf",
    "check_max_det",
    "foreign_weights_problem",
    "local_processes",
    "parse_device",
    "resolve_checkpoint",
]

#: suffix -> (what the file is, what to do instead)
FOREIGN_WEIGHTS = {
    ".onnx": (
        "导出的 ONNX 模型（deimv2 export 的结果）",
        "ONNX 只能用来推理和部署，不能加载回 PyTorch 来继续训练、微调、评估或再导出；请给出导出它的 .pth"
        '（推理可以直接用它：deimv2 predict -r 模型.onnx，或 Detector.from_checkpoint("模型.onnx")）',
    ),
    ".engine": ("TensorRT 引擎", "请给出导出它的 .pth"),
    ".trt": ("TensorRT 引擎", "请给出导出它的 .pth"),
    ".plan": ("TensorRT 引擎", "请给出导出它的 .pth"),
    ".pdparams": ("PaddlePaddle 权重", "DEIMv2 读不了 Paddle 格式；请使用 DEIMv2 官方 .pth 或本包训练得到的 .pth"),
    ".pdopt": ("PaddlePaddle 优化器状态", "请使用 DEIMv2 官方 .pth 或本包训练得到的 .pth"),
    ".tflite": ("TensorFlow Lite 模型", "请使用 DEIMv2 官方 .pth 或本包训练得到的 .pth"),
    ".h5": ("Keras 权重", "请使用 DEIMv2 官方 .pth 或本包训练得到的 .pth"),
    ".keras": ("Keras 模型", "请使用 DEIMv2 官方 .pth 或本包训练得到的 .pth"),
    ".xml": ("OpenVINO 模型", "请给出导出它的 .pth"),
    ".yaml": ("配置文件", "配置请用 -c/--config 给出；-r 需要权重文件（.pth）"),
    ".yml": ("配置文件", "配置请用 -c/--config 给出；-r 需要权重文件（.pth）"),
    ".json": ("JSON 文件（标注或配置）", "-r 需要权重文件（.pth / .safetensors）"),
}


def foreign_weights_problem(path: str | Path) -> str | None:
    """A Chinese sentence when ``path`` is, by its suffix, not a weights file this package reads; else None."""
    path = Path(path)
    hit = FOREIGN_WEIGHTS.get(path.suffix.lower())
    if hit is None:
        return None
    what, fix = hit
    return f"{path} 是{what}，不是 PyTorch 权重文件。{fix}。"


def resolve_checkpoint(path: str | Path, *, resume: bool = False, option: str = "-r/--checkpoint") -> Path:
    """The weights file meant by ``path``: a file is itself; a run folder means its ``last.pth`` when resuming
    (``resume=True``), else its ``best.pth`` (then ``last.pth``, ``model.safetensors``, ``pytorch_model.bin``).
    Files of other tools (ONNX, TensorRT …) raise WeightsError naming what they are."""
    if path is None or not str(path).strip():
        raise WeightsError(f"{option} 是空的。请给出权重文件（.pth），或训练输出文件夹。")
    p = Path(path).expanduser()
    if p.is_dir():
        names = ("last.pth",) if resume else ("best.pth", "last.pth", "model.safetensors", "pytorch_model.bin")
        for name in names:
            if (p / name).is_file():
                return p / name
        if resume:
            raise WeightsError(
                f"{option} 给的是文件夹 {p}，继续训练要用其中的 last.pth，但它不存在。"
                f"请给出那次训练的输出文件夹（里面有 last.pth），或直接给出 .pth 文件。"
            )
        raise WeightsError(
            f"{option} 给的是文件夹 {p}，里面没有 {'、'.join(names)}。请给出训练输出文件夹，或直接给出权重文件。"
        )
    problem = foreign_weights_problem(p)
    if problem:
        raise WeightsError(f"{option}：{problem}")
    if resume and p.exists() and p.suffix.lower() == ".safetensors":
        raise WeightsError(
            f"{option}：{p} 是 safetensors 权重，只有模型权重，没有优化器状态和轮数，不能用 -r 继续训练。"
            f"请改用 -t {p} 微调。"
        )
    return p


# --------------------------------------------------------------------------- devices
_DEVICE_HELP = "应为 cpu、cuda、cuda:N、N（GPU 编号，如 0）或 0,1（多卡，配合 torchrun）"


def parse_device(device) -> str | None:
    """A device string in the styles users bring from other tools -> ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``
    or ``None`` (auto). ``0,1`` lists GPUs for ``torchrun``: local rank ``i`` takes the ``i``-th listed GPU; the list
    must have one GPU per process of the machine; one process given several GPUs is an error (it would use only the
    first)."""
    if device is None:
        return None
    if not isinstance(device, (str, int)) or isinstance(device, bool):
        return str(device) if type(device).__name__ == "device" else _bad_device(device)
    text = str(device).strip().lower().replace("：", ":").replace("，", ",")
    if text in ("", "auto"):
        return None
    if text in ("cpu", "mps", "cuda"):
        return text
    if text in ("gpu", "/gpu"):
        return "cuda"
    m = re.fullmatch(r"(?:cuda|gpu|/gpu|/device:gpu)?:?(\d+(?:\s*,\s*\d+)*),?", text)
    if m is None:
        return _bad_device(device)
    ids = [int(x) for x in m.group(1).split(",")]
    if len(ids) == 1:
        return f"cuda:{ids[0]}"
    procs, rank = local_processes()
    if len(set(ids)) != len(ids):
        raise ConfigError(f"设备 {device} 里有重复的 GPU 编号：每个进程要用不同的一块 GPU，如 -d 0,1。")
    if procs <= 1:
        raise ConfigError(
            f"设备 {device} 列出了 {len(ids)} 块 GPU，但这是单个进程，只会用到第一块。多卡训练请用 "
            f"torchrun --nproc_per_node={len(ids)} -m deimv2 train ... -d {device}；只用一块请写 -d {ids[0]}。"
        )
    if procs != len(ids):
        raise ConfigError(
            f"设备 {device} 列出了 {len(ids)} 块 GPU，但 torchrun 在这台机器上启动了 {procs} 个进程"
            f"（--nproc_per_node）。两者要相等：第 i 个进程用列出的第 i 块 GPU。"
            f"修复：torchrun --nproc_per_node={len(ids)} …，或 -d 只列出 {procs} 块 GPU。"
        )
    return f"cuda:{ids[rank]}"


def local_processes() -> tuple[int, int]:
    """``(processes on this machine, this process's local rank)`` from torchrun's environment (1, 0 without it)."""
    env = os.environ
    procs = int(env.get("LOCAL_WORLD_SIZE") or env.get("WORLD_SIZE") or 1)
    return procs, int(env.get("LOCAL_RANK") or 0)


def _bad_device(device):
    raise ConfigError(f"无法识别的设备 {device!r}：{_DEVICE_HELP}。")


# --------------------------------------------------------------------------- prediction options
def check_conf(conf, option: str = "conf") -> float | None:
    """``conf`` must be a number in [0, 1] (None: the default)."""
    if conf is None:
        return None
    try:
        value = float(conf)
    except (TypeError, ValueError):
        raise ConfigError(f"{option}={conf!r} 不是数字。置信度阈值应在 0 到 1 之间，如 0.25。") from None
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        hint = f"；{value:g} 看起来是百分数，请写 {value / 100:g}" if 1 < value <= 100 else ""
        raise ConfigError(f"{option}={conf} 超出范围：置信度阈值应在 0 到 1 之间，如 0.25{hint}。")
    return value


def check_max_det(max_det, option: str = "max_det") -> int:
    """``max_det`` must be an integer ≥ 1."""
    if isinstance(max_det, bool) or not isinstance(max_det, (int, float, str)):
        raise ConfigError(f"{option}={max_det!r} 不是整数。每张图最多保留的检测框数应 ≥ 1，如 {MAX_DET}。")
    try:
        value = int(str(max_det).strip())
    except ValueError:
        raise ConfigError(f"{option}={max_det!r} 不是整数。每张图最多保留的检测框数应 ≥ 1，如 {MAX_DET}。") from None
    if value < 1:
        raise ConfigError(f"{option}={max_det} 超出范围：每张图最多保留的检测框数应 ≥ 1，如 {MAX_DET}。")
    return value
