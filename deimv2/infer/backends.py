"""Inference backends of :class:`~deimv2.infer.detector.Detector`: PyTorch, or on CPU OpenVINO or ONNX Runtime.

All run the same :class:`~deimv2.infer.graph.DetectionGraph` (model + post-processor in deploy form) and return
``(labels, boxes, scores)`` torch tensors, so the Detector builds the same :class:`Prediction` objects.

``backend="auto"`` (the default) runs a checkpoint file on CPU in the first installed runtime of :data:`AUTO_CPU`
for its backbone family, chosen by measurement: OpenVINO (exact float32: its CPU default, bfloat16 on CPUs with
AMX/AVX-512-BF16, is switched off), then ONNX Runtime, else PyTorch. An in-memory model (e.g. right after
training) and CUDA always use PyTorch (use TensorRT on GPU, ``docs/tensorrt.md``). On CPU the PyTorch path feeds
the HGNetv2 variants channels-last input (and converts a deploy graph's weights too, :data:`CHANNELS_LAST_CPU`),
which measured faster.
The ONNX file is exported once and cached, keyed by the weights' hash, the config (input size …), the opset
and the package versions; any change gives a new key and a new export. The cache lives next to the
checkpoint (``<folder>/.deimv2_cache/``), or in the user cache folder when that folder is not writable
(``$DEIMV2_CACHE_DIR``, else ``$XDG_CACHE_HOME/deimv2`` or ``~/.cache/deimv2``).
Explained in notebook ``05_inference.ipynb``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from deimv2 import __version__
from deimv2.errors import ConfigError, DEIMv2Error, WeightsError
from deimv2.infer.graph import ONNX_OPSET, build_graph, write_onnx

_log = logging.getLogger(__name__)

__all__ = [
    "AUTO_CPU",
    "BACKENDS",
    "CHANNELS_LAST_CPU",
    "OnnxRuntimeBackend",
    "OpenVINOBackend",
    "TorchBackend",
    "cache_key",
    "cached_onnx",
    "family",
    "make_backend",
    "ONNX_METADATA_KEY",
    "onnx_file_backend",
    "ort_session",
    "package_version",
    "read_onnx_metadata",
    "runtime_available",
]

BACKENDS = ("auto", "torch", "onnxruntime", "openvino")
OPSET = ONNX_OPSET
#: hex digits of the cache key in a cached ONNX file name (``<stem>-<key>.onnx``)
KEY_CHARS = 16
CACHE_DIRNAME = ".deimv2_cache"


#: What ``backend="auto"`` runs on CPU, per backbone family (:func:`family`): the first installed runtime of the
#: tuple, else PyTorch. Chosen by measurement (``benchmarks/results/predict_backends_cpu2.json``, 2-core machine,
#: ``<runtime>_over_deploy``: the runtime vs PyTorch deploy, channels-last where :data:`CHANNELS_LAST_CPU`):
#: OpenVINO was the fastest for both families, ONNX Runtime faster than PyTorch for HGNetv2 (Atto…N) but not for
#: DINOv3 (S…X), whose fused SDPA attention ONNX Runtime runs as separate MatMul/Softmax nodes.
#: ``tests/infer/test_backends_speed.py`` fails when a recorded measurement clearly (by more than 5 %) contradicts this.
AUTO_CPU = {"hgnetv2": ("openvino", "onnxruntime"), "dinov3": ("openvino",)}

#: Backbone families run in channels-last on CPU by the torch backend: the input always (then the convolutions
#: propagate that format), the weights too when the graph is in deploy form. Clearly faster for the CNN variants;
#: for the DINOv3 ViT channels-last weights are at parity, so they stay as they are
#: (``benchmarks/results/torch_speedups_cpu2.json``; checked by the tests).
CHANNELS_LAST_CPU = frozenset({"hgnetv2"})


def family(cfg) -> str:
    """``"dinov3"`` for S/M/L/X (the only variants that normalise their input), else ``"hgnetv2"`` (Atto…N)."""
    return "dinov3" if cfg.input_mean is not None else "hgnetv2"


class TorchBackend:
    """The graph itself, under ``torch.inference_mode``; ``memory_format``: the input's layout is made this one
    first (``None``: as given). ``channels_last``: the graph runs in channels-last."""

    name = "torch"

    def __init__(self, graph: torch.nn.Module, memory_format: torch.memory_format | None = None):
        self.graph = graph
        self.memory_format = memory_format
        self.channels_last = memory_format == torch.channels_last

    def __call__(self, images: torch.Tensor, sizes: torch.Tensor):
        if self.memory_format is not None:
            images = images.contiguous(memory_format=self.memory_format)
        with torch.inference_mode():
            return self.graph(images, sizes)


def torch_backend(graph: torch.nn.Module, cfg, device: torch.device, deployed: bool) -> TorchBackend:
    """:class:`TorchBackend`: on CPU channels-last for the families of :data:`CHANNELS_LAST_CPU`.

    Only a graph in deploy form gets channels-last weights (converted in place, like the BatchNorm folding of
    ``deploy()``); an eval-form model passed to ``Detector(model)`` keeps its weights as they are (the caller
    may go on training it) and gets channels-last input only. Other families and GPU get the input as it is.
    """
    if device.type != "cpu" or family(cfg) not in CHANNELS_LAST_CPU:
        return TorchBackend(graph)  # the input as Detector.preprocess made it
    if deployed:
        graph.to(memory_format=torch.channels_last)
    return TorchBackend(graph, torch.channels_last)


def ort_session(path: str | Path, threads: int | None = None):
    """A CPU ``onnxruntime.InferenceSession`` with ``threads`` intra-op threads (default: torch's count).

    Thread spinning is switched off (``session.intra_op.allow_spinning = 0``): with spinning on, ONNX Runtime's
    idle worker threads keep busy-waiting for a while after every ``run``, which steals the cores from whatever
    runs next in the process (decoding the next image, drawing boxes, a PyTorch call). On a 2-core machine that
    made the next PyTorch call 2–3× slower; the run itself is no slower without spinning.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # the default, stated
    opts.intra_op_num_threads = int(threads or torch.get_num_threads())
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class OnnxRuntimeBackend:
    """The exported graph in ONNX Runtime (CPU). Inputs/outputs as :class:`TorchBackend`."""

    name = "onnxruntime"
    memory_format = torch.contiguous_format

    def __init__(self, path: str | Path, threads: int | None = None):
        self.path = Path(path)
        self.session = ort_session(self.path, threads)

    def __call__(self, images: torch.Tensor, sizes: torch.Tensor):
        feeds = {
            "images": images.detach().cpu().contiguous().numpy(),
            "orig_target_sizes": sizes.detach().cpu().to(torch.int64).numpy(),
        }
        labels, boxes, scores = self.session.run(["labels", "boxes", "scores"], feeds)
        return torch.from_numpy(labels), torch.from_numpy(boxes), torch.from_numpy(scores)


#: OpenVINO CPU settings: float32 throughout (its default on CPUs with AMX/AVX-512-BF16 is bfloat16, which would
#: change the detections), latency mode (one stream), ``threads`` worker threads.
OPENVINO_CPU = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}


class OpenVINOBackend:
    """The exported graph compiled by OpenVINO for the CPU; outputs as :class:`TorchBackend`.

    It reads the resized pixels as they are, ``uint8`` ``[B,H,W,3]`` (``pixels = True``: what
    :meth:`~deimv2.infer.detector.Detector.preprocess` then makes): OpenVINO's own pre-processing step converts them to
    float32, divides by 255 and transposes to NCHW inside the compiled graph, which measured faster than doing the
    same in PyTorch first. One compiled graph per batch size, with static shapes (measured faster than one graph
    with a dynamic batch dimension); the batch-1 graph is compiled at once, so a broken runtime fails here, not at
    the first image.
    """

    name = "openvino"
    pixels = True

    def __init__(self, path: str | Path, threads: int | None = None):
        import openvino as ov

        self.path = Path(path)
        self.threads = int(threads or torch.get_num_threads())
        self.core = ov.Core()
        self.model = self.core.read_model(str(self.path))
        self._requests: dict[int, Any] = {}
        self._request(1)

    def _request(self, n: int):
        if n not in self._requests:
            import openvino as ov
            from openvino.preprocess import PrePostProcessor

            model = self.model.clone()
            c, h, w = (d.get_length() for d in list(model.input("images").get_partial_shape())[1:])  # batch: dynamic
            model.reshape({"images": [n, c, h, w], "orig_target_sizes": [n, 2]})
            ppp = PrePostProcessor(model)
            images = ppp.input("images")
            images.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
            images.model().set_layout(ov.Layout("NCHW"))
            images.preprocess().convert_element_type(ov.Type.f32).scale(255.0)
            config = {**OPENVINO_CPU, "INFERENCE_NUM_THREADS": self.threads}
            self._requests[n] = self.core.compile_model(ppp.build(), "CPU", config).create_infer_request()
        return self._requests[n]

    def __call__(self, pixels: torch.Tensor, sizes: torch.Tensor):
        """``pixels``: ``uint8`` ``[B,H,W,3]`` at the graph's input size; ``sizes``: ``[B,2]`` original (w, h)."""
        if pixels.dtype != torch.uint8 or pixels.shape[-1] != 3:
            raise ValueError(
                f"OpenVINO 后端需要 uint8 的 [B,H,W,3] 像素，收到 {pixels.dtype} {tuple(pixels.shape)}。"
                "修复：用同一个 Detector 的 preprocess() 生成输入，或直接调用 detector(图片)。"
            )
        request = self._request(int(pixels.shape[0]))
        out = request.infer(
            {
                "images": pixels.detach().cpu().contiguous().numpy(),
                "orig_target_sizes": sizes.detach().cpu().to(torch.int64).numpy(),
            },
            share_inputs=True,  # read the arrays in place; the outputs are copies (share_outputs=False)
        )
        return tuple(torch.from_numpy(out[name]) for name in ("labels", "boxes", "scores"))


# --------------------------------------------------------------------------- cache
def package_version(name: str) -> str | None:
    """The installed version of distribution ``name``, or ``None`` when it is not installed."""
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _versions() -> dict:
    """Versions that shape the exported file or the runtimes reading it (``None``: not installed)."""
    return {
        "deimv2": __version__,
        "torch": torch.__version__,
        **{k: package_version(k) for k in ("onnx", "onnxruntime", "openvino")},
    }


def weights_hash(module: torch.nn.Module) -> str:
    """SHA-256 of every tensor (names, shapes, dtypes, values) in ``module.state_dict()``."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        t = t.detach().cpu()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}".encode())
        h.update(t.reshape(-1).contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def cache_key(weights: str, cfg, opset: int = OPSET) -> str:
    """Hex key of (weights hash, config incl. input size, opset, package versions)."""
    payload = {
        "weights": weights,
        "config": cfg.raw,
        "input": [int(v) for v in cfg.eval_spatial_size],
        "opset": int(opset),
        "versions": _versions(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def user_cache_dir() -> Path:
    if os.environ.get("DEIMV2_CACHE_DIR"):
        return Path(os.environ["DEIMV2_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.environ.get("LOCALAPPDATA") or Path.home() / ".cache"
    return Path(base) / "deimv2"


def _cache_dirs(source: str | Path | None) -> list[Path]:
    dirs = []
    if source is not None:
        src = Path(source)
        dirs.append((src if src.is_dir() else src.parent) / CACHE_DIRNAME)
    dirs.append(user_cache_dir() / "onnx")
    return dirs


def _write_atomic(graph, cfg, target: Path, opset: int) -> None:
    """Export into a temp file in ``target``'s folder, then ``os.replace``: never a half-written file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        write_onnx(graph, cfg, tmp, opset=opset)
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def cached_onnx(
    graph: torch.nn.Module, cfg, source: str | Path | None = None, opset: int = OPSET, verbose: bool = True
) -> Path:
    """Path of the ONNX file of ``graph`` (deploy form, CPU), exporting it first when not yet cached."""
    key = cache_key(weights_hash(graph), cfg, opset)
    stem = Path(source).stem if source is not None else str(cfg.name)
    name = f"{stem}-{key[:KEY_CHARS]}.onnx"
    dirs = _cache_dirs(source)
    for d in dirs:
        if (d / name).is_file():
            return d / name
    errors = []
    for d in dirs:
        try:
            d.mkdir(parents=True, exist_ok=True)
            if not os.access(d, os.W_OK):
                raise PermissionError(f"{d} 不可写")
        except OSError as e:
            errors.append(f"{d}（{e}）")
            continue
        target = d / name
        if verbose:
            _log.info(f"首次在 CPU 上用 ONNX 运行时：正在把 {stem} 导出为 ONNX（只需一次，缓存在 {target}）……")
        _write_atomic(graph, cfg, target, opset)
        for old in d.glob(f"{stem}-*.onnx"):  # older exports of the same checkpoint (weights/versions changed)
            if old != target and len(old.stem) == len(stem) + 1 + KEY_CHARS:
                old.unlink(missing_ok=True)
        return target
    raise OSError("没有可写的 ONNX 缓存目录：" + "；".join(errors))


# --------------------------------------------------------------------------- choice
#: the modules each runtime needs (also what the install hint names), and its backend class
_NEEDS = {"onnxruntime": ("onnx", "onnxruntime"), "openvino": ("onnx", "openvino")}
_CLASSES = {"onnxruntime": OnnxRuntimeBackend, "openvino": OpenVINOBackend}


def runtime_available(name: str) -> bool:
    """Whether the packages of runtime ``name`` (``"onnxruntime"`` or ``"openvino"``) import."""
    try:
        for module in _NEEDS[name]:
            __import__(module)
    except ImportError:
        return False
    return True


def onnxruntime_available() -> bool:
    return runtime_available("onnxruntime")


def _deploy_graph(graph, cfg, deployed: bool):
    """``graph`` if already in deploy form, else a deployed copy (the caller's model stays as it is)."""
    return graph if deployed else build_graph(copy.deepcopy(graph.model).cpu(), cfg, deploy=True)


def auto_order(cfg) -> tuple[str, ...]:
    """The runtimes ``auto`` tries on CPU for this config's family, in order (:data:`AUTO_CPU`); then torch."""
    return AUTO_CPU[family(cfg)]


def make_backend(
    backend: str,
    graph: torch.nn.Module,
    cfg,
    device: torch.device,
    source: str | Path | None = None,
    deployed: bool = True,
) -> Any:
    """The backend object for ``Detector``; see the module docstring for what ``"auto"`` picks.

    ``source``: the checkpoint the weights came from (names the cache); ``deployed``: ``graph`` is in deploy form.
    """
    if backend not in BACKENDS:
        raise ConfigError(
            f"未知的推理后端 backend={backend!r}。可选：{'、'.join(BACKENDS)}"
            "（auto = CPU 上依次尝试 openvino、onnxruntime，GPU 上用 torch）。"
        )
    if backend == "torch":
        return torch_backend(graph, cfg, device, deployed)
    if backend != "auto":  # an explicit runtime: CPU only, installed, or a clear error
        if device.type != "cpu":
            raise ConfigError(
                f"{backend} 后端只用于 CPU，当前设备是 {device}。GPU 上请用 backend='torch'，"
                "或按 docs/tensorrt.md 导出 TensorRT 引擎。"
            )
        if not runtime_available(backend):
            raise DEIMv2Error(
                f'backend="{backend}" 需要 {" 和 ".join(_NEEDS[backend])}：请运行 pip install {" ".join(_NEEDS[backend])}，'
                '或改用 backend="torch"。'
            )
        return _CLASSES[backend](cached_onnx(_deploy_graph(graph, cfg, deployed), cfg, source))
    # auto: on CPU, a checkpoint file runs in the first installed runtime of AUTO_CPU that loads. An in-memory
    # model (e.g. right after training) stays in torch.
    if device.type != "cpu" or source is None:
        return torch_backend(graph, cfg, device, deployed)
    order = auto_order(cfg)
    installed = [name for name in order if runtime_available(name)]
    if not installed:
        _log.info(
            f"提示：没有安装 {' 或 '.join(order)}，推理使用 PyTorch"
            f"（pip install onnx {order[0]} 后 CPU 推理会快很多）。"
        )
    if installed:
        try:
            path = cached_onnx(_deploy_graph(graph, cfg, deployed), cfg, source)
        except Exception as e:  # noqa: BLE001 - any export failure: the torch path still works
            _log.info(
                f"提示：导出 ONNX 失败（{type(e).__name__}: {str(e)[:200]}），推理改用 PyTorch（结果相同，只是更慢）。"
            )
            installed = []
    for name in installed:
        try:
            return _CLASSES[name](path)
        except Exception as e:  # noqa: BLE001 - a runtime that cannot load the file: the next one, or torch
            _log.info(
                f"提示：{name} 加载 ONNX 失败（{type(e).__name__}: {str(e)[:200]}），"
                "改用下一个后端（结果相同，只是更慢）。"
            )
    return torch_backend(graph, cfg, device, deployed)


# --------------------------------------------------------------------------- exported files
#: the ``metadata_props`` key under which ``deimv2 export`` stores a JSON of the config, class names and ids
ONNX_METADATA_KEY = "deimv2"


def read_onnx_metadata(path: str | Path) -> dict:
    """The JSON that ``deimv2 export`` wrote into an ONNX file (``config``, ``class_names``, ``category_ids``,
    ``conf_threshold``); a WeightsError naming the file when it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"ONNX 文件 {path} 不存在。请检查路径，或给出训练得到的 .pth。")
    try:
        import onnx

        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    except ImportError:
        raise DEIMv2Error("读取 ONNX 文件需要 onnx：请运行 pip install onnx onnxruntime。") from None
    except Exception as e:  # noqa: BLE001 - any parse failure is the file's problem
        raise WeightsError(
            f"无法读取 ONNX 文件 {path}（{type(e).__name__}: {str(e)[:200]}）：文件可能不完整或不是 ONNX。"
            "请重新导出（deimv2 export -r 权重.pth），或直接给出 .pth。"
        ) from None
    if ONNX_METADATA_KEY not in props:
        raise WeightsError(
            f"{path} 是 ONNX 模型，但里面没有 deimv2 export 写入的配置和类别名（可能由别的工具或旧版本导出）。"
            f"修复：用 deimv2 export -r 权重.pth 重新导出，或直接给出导出它的 .pth。"
        )
    return json.loads(props[ONNX_METADATA_KEY])


def onnx_file_backend(backend: str, path: str | Path, cfg, device: torch.device) -> Any:
    """An OpenVINO / ONNX Runtime backend running an exported file ``path`` (CPU only; torch cannot read ONNX).
    ``"auto"``: the runtimes of :data:`AUTO_CPU` for the family, then ONNX Runtime."""
    if backend not in BACKENDS:
        return make_backend(backend, None, cfg, device)  # the unknown-backend error
    if backend == "torch":
        raise ConfigError(
            f"{path} 是导出的 ONNX 模型，不能用 PyTorch 后端（backend='torch' / --backend torch）运行。"
            "修复：去掉这个选项（自动用 OpenVINO 或 onnxruntime），或给出导出它的 .pth。"
        )
    if device.type != "cpu":
        raise ConfigError(
            f"{path} 是导出的 ONNX 模型，只能在 CPU 上用 OpenVINO 或 onnxruntime 运行，当前设备是 {device}。"
            "修复：-d cpu；GPU 推理请给出导出它的 .pth，或按 docs/tensorrt.md 转成 TensorRT 引擎。"
        )
    order = tuple(dict.fromkeys([*auto_order(cfg), "onnxruntime"])) if backend == "auto" else (backend,)
    installed = [name for name in order if runtime_available(name)]
    if not installed:
        need = " ".join(dict.fromkeys(m for name in order for m in _NEEDS[name]))
        raise DEIMv2Error(f"运行 ONNX 文件 {path} 需要 {' 或 '.join(order)}：请运行 pip install {need}。")
    for name in installed[:-1]:
        try:
            return _CLASSES[name](path)
        except Exception as e:  # noqa: BLE001 - a runtime that cannot load the file: the next one
            _log.info(f"提示：{name} 加载 {path} 失败（{type(e).__name__}: {str(e)[:200]}），改用下一个后端。")
    return _CLASSES[installed[-1]](path)
