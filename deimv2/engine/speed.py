"""Training speed options that keep the maths: channels-last, ``torch.compile``, bf16 autocast on CPU, loader workers.

Each is a ``TrainConfig`` key, off by default (eager float32 stays the reference of the golden tests):

- ``channels_last``: weights and input images in channels-last (NHWC) memory order. The same convolutions, run
  by kernels that suit many small convolutions with BatchNorm (the HGNetv2 backbones of Atto…N) better;
- ``compile``: ``torch.compile`` of the model (forward and backward). The first steps pay the compilation; its
  results are cached on disk (:func:`enable_compile_cache`), so the next run with the same model and sizes
  starts quickly;
- ``cpu_amp``: bf16 autocast on CPUs with native bf16 (AVX-512-BF16 or AMX), as ``use_amp`` does on CUDA.

:func:`loader_settings` chooses data-loader workers and pinned memory from the cores this process may use.
Explained in ``docs/training.md`` (训练提速选项).
"""

from __future__ import annotations

import logging
import os
import tempfile
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from deimv2.errors import ConfigError

__all__ = [
    "CACHE_ENV",
    "SpeedOptions",
    "SpeedPlan",
    "compile_cache_dir",
    "cpu_bf16_supported",
    "enable_compile_cache",
    "free_cores",
    "loader_settings",
]

log = logging.getLogger(__name__)

#: torch inductor's own switch for where its caches live (FX graphs, kernels, AOTAutograd graphs)
CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"


def cpu_bf16_supported() -> bool:
    """Whether this CPU runs bf16 natively (oneDNN's check: AVX-512-BF16 or AMX)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def compile_cache_dir() -> Path:
    """``$TORCHINDUCTOR_CACHE_DIR`` when set, else ``deimv2/inductor`` in the user's cache folder (kept across
    reboots, unlike torch's default in the temporary folder). Inductor passes the folder unquoted to the C++
    compiler, so a folder with a space (``C:/Users/张 三``) is replaced by one in the temporary folder."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or (Path.home() / ".cache")
    path = Path(base) / "deimv2" / "inductor"
    if " " in str(path):
        path = Path(tempfile.gettempdir()) / "deimv2-inductor"
    if " " in str(path):
        log.warning(
            "torch.compile 的缓存目录 %s 含空格，C++ 编译可能失败；请设置环境变量 %s 为不含空格的目录。",
            path,
            CACHE_ENV,
        )
    return path


def enable_compile_cache() -> Path:
    """Point torch inductor at :func:`compile_cache_dir` and switch on its on-disk caches (FX graph and
    AOTAutograd): a second run compiling the same graphs loads them instead of compiling again."""
    path = compile_cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    os.environ[CACHE_ENV] = str(path)
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    inductor_config.fx_graph_cache = True
    if hasattr(functorch_config, "enable_autograd_cache"):
        functorch_config.enable_autograd_cache = True
    return path


def free_cores() -> int:
    """CPU cores this process may run on (its affinity mask, which containers and ``taskset`` narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def loader_settings(requested: int, device: torch.device, processes: int = 1) -> tuple[int, bool]:
    """(workers, pin_memory) for a data loader: ``requested`` workers capped at the free cores shared by the
    ``processes`` training processes of this machine (the official 4 would oversubscribe a 2-core laptop);
    pinned memory when the batches go to a CUDA GPU (faster, asynchronous copies)."""
    cap = max(1, free_cores() // max(1, processes))
    return max(0, min(int(requested), cap)), device.type == "cuda"


@dataclass(frozen=True)
class SpeedOptions:
    """Which speed options are on (see the module docstring). ``compile_backend``: ``torch.compile``'s backend."""

    channels_last: bool = False
    compile: bool = False
    cpu_amp: bool = False
    compile_backend: str = "inductor"

    @classmethod
    def from_config(cls, train) -> SpeedOptions:
        """From a :class:`~deimv2.config.sections.TrainConfig`."""
        return cls(channels_last=train.channels_last, compile=train.compile, cpu_amp=train.cpu_amp)

    @classmethod
    def from_names(cls, names) -> SpeedOptions:
        """From option names such as ``["channels_last", "compile"]`` (benchmarks)."""
        names = set(names)
        unknown = names - {"channels_last", "compile", "cpu_amp"}
        if unknown:
            raise ConfigError(f"未知的提速选项 {sorted(unknown)}；可选 channels_last、compile、cpu_amp。")
        return cls(**{n: True for n in names})


class SpeedPlan:
    """Applies :class:`SpeedOptions` for one device: :meth:`prepare_model` (memory order, before the EMA copy and
    the optimizer are made), :meth:`compile` (the module the loop calls), :meth:`prepare_images` (each batch) and
    :meth:`autocast` (CPU bf16; CUDA AMP stays with ``use_amp``)."""

    def __init__(self, options: SpeedOptions, device: torch.device):
        self.options, self.device = options, device
        self.memory_format = torch.channels_last if options.channels_last else torch.contiguous_format
        self.cpu_amp = options.cpu_amp and device.type == "cpu"
        if self.cpu_amp and not cpu_bf16_supported():
            raise ConfigError(
                "设置了 cpu_amp=true（CPU 上的 bf16 混合精度），但当前 CPU 不支持原生 bf16（需要 AVX-512-BF16 或 AMX），"
                "模拟的 bf16 只会更慢。请去掉 -u cpu_amp=true。"
            )

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        if self.options.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def prepare_images(self, images: torch.Tensor) -> torch.Tensor:
        if self.options.channels_last and images.dim() == 4:
            return images.contiguous(memory_format=torch.channels_last)
        return images

    def compile(self, module: torch.nn.Module) -> torch.nn.Module:
        """``torch.compile(module)`` with the on-disk cache switched on; ``module`` itself when compile is off.
        The compiled wrapper shares the parameters of ``module`` (save and load ``module``, not the wrapper)."""
        if not self.options.compile:
            return module
        path = None
        if self.options.compile_backend == "inductor":
            path = enable_compile_cache()
            import torch._inductor.config as inductor_config

            # the denoising queries' random draws: eager's generator, not inductor's own (same noise, same seed)
            inductor_config.fallback_random = True
        log.info("torch.compile (%s), cache %s", self.options.compile_backend, path)
        return torch.compile(module, backend=self.options.compile_backend)

    def autocast(self):
        """bf16 autocast on CPU when ``cpu_amp`` is on, else nothing."""
        return torch.autocast("cpu", dtype=torch.bfloat16) if self.cpu_amp else nullcontext()
