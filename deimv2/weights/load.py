"""The one loader: read weight files safely, describe them, load them strictly, for fine-tuning or as a backbone.

Detector checkpoints: the official ``.pth`` (``model`` / ``ema``; EMA preferred), our training
checkpoints, the Hugging Face hub copies (``model.safetensors`` + ``config.json``) and the
transformers port (``Deimv2ForObjectDetection``). Backbone files: the distilled ViT-Tiny(+), DINOv3
ViT-S/16 and ViT-S+/16 in Meta's and in Hugging Face's format, HGNetv2 stage-1 (file names and links:
:data:`.variants.VARIANT_TABLE`). Only ``torch.load(..., weights_only=True)`` is used.
Training, prediction, export and ``deimv2 info`` all load through here. Explained in notebook ``01_weights.ipynb``.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file

from deimv2.config.variants import (
    BACKBONE_FILE_BY_NAME,
    VARIANT_TABLE,
    download_table,
    hgnetv2_stage1_file,
    variant_of_config_name,
)
from deimv2.errors import WeightsError
from deimv2.utils.inputs import foreign_weights_problem
from deimv2.weights.formats import (
    Format,
    backbone_file_variant,
    backbone_state,
    detector_format,
    num_classes_of_state_dict,
    variant_of_state_dict,
)
from deimv2.weights.keys import convert_hf_dinov3_to_meta, convert_transformers_port

#: tensors derived from ``eval_spatial_size``, not learned
DERIVED_KEYS = ("decoder.anchors", "decoder.valid_mask")


# --------------------------------------------------------------------------- reading files
def read_weights_file(path: str | Path) -> Any:
    """Read ``.pth/.pt/.bin`` (weights_only) or ``.safetensors``; a folder means its model.safetensors/pytorch_model.bin."""
    path = Path(path).expanduser()
    if path.is_dir():
        for name in ("model.safetensors", "pytorch_model.bin", "best.pth", "last.pth"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise WeightsError(
                f"文件夹 {path} 里没有 model.safetensors、pytorch_model.bin、best.pth 或 last.pth。请指定具体的权重文件。"
            )
    if not path.is_file():
        raise WeightsError(
            f"找不到权重文件（文件不存在）：{path}。请检查路径，或到下表下载后放进 ckpts/：\n{download_table()}"
        )
    foreign = foreign_weights_problem(path)  # ONNX, TensorRT, Paddle, a YAML config … named for what it is
    if foreign:
        raise WeightsError(foreign)
    if path.stat().st_size == 0:
        raise WeightsError(f"权重文件 {path} 是空文件（0 字节），可能下载没有完成。请重新下载。")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as e:
            raise WeightsError(
                f"无法读取 safetensors 文件 {path}：{e}。文件可能损坏或未下载完整，请重新下载。"
            ) from None
    with path.open("rb") as f:
        head = f.read(2)
    if not zipfile.is_zipfile(path) and head[:1] != b"\x80":
        raise WeightsError(
            f"{path} 不是可读取的 PyTorch checkpoint（文件开头不是 torch.save 的格式）。"
            f"文件可能损坏、没下载完整，或根本不是权重文件。"
        )
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = next((line for line in str(e).splitlines() if "Unsupported" in line or "GLOBAL" in line), "")
        raise WeightsError(
            f"{path} 含有不是张量的 Python 对象，出于安全只用 weights_only=True 读取，无法加载（{first.strip()}）。"
            f"如果这是你自己信任的文件，请在原环境中只保存 state_dict（例如 torch.save({{'model': model.state_dict()}}, ...)）。"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsError(
            f"{path} 不是可读取的 PyTorch checkpoint（{type(e).__name__}: {first}）。"
            f"文件可能损坏（例如保存或下载时被中断），请重新下载或换用 last.pth。"
        ) from None


def extract_detector_state(obj: Any) -> tuple[dict[str, torch.Tensor], Format]:
    """The official-layout detector state dict in a checkpoint object and its format (``({}, UNKNOWN)`` if none)."""
    fmt, sd = detector_format(obj)
    if fmt is Format.TRANSFORMERS_PORT:
        return convert_transformers_port(dict(sd)), fmt
    return dict(sd), fmt


# --------------------------------------------------------------------------- describing files
@dataclass
class CheckpointInfo:
    """What a file holds; ``kind`` ('detector', 'backbone' or 'unknown') is ``format.kind``."""

    path: str
    format: Format
    variant: str | None = None
    num_classes: int | None = None
    num_tensors: int = 0
    size_mb: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.format.kind


def inspect_weights(path: str | Path) -> CheckpointInfo:
    """Describe a weights file without building a model (``deimv2 info``, notebook 01)."""
    path = Path(path)
    obj = read_weights_file(path)
    real = (
        path
        if path.is_file()
        else next((p for p in path.iterdir() if p.suffix in {".safetensors", ".bin", ".pth"}), path)
    )
    size = real.stat().st_size / 2**20 if real.is_file() else 0.0
    sd, fmt = extract_detector_state(obj)
    if sd:
        info = CheckpointInfo(str(path), fmt, variant_of_state_dict(sd), num_classes_of_state_dict(sd), len(sd), size)
        if isinstance(obj, Mapping) and "class_names" in obj:
            info.extra["class_names"] = list(obj["class_names"])
        return info
    flat = backbone_state(obj)
    variant, bfmt = backbone_file_variant(flat) if flat else (None, Format.UNKNOWN)
    if bfmt is not Format.UNKNOWN:
        return CheckpointInfo(str(path), bfmt, variant, None, len(flat), size)
    return CheckpointInfo(str(path), Format.UNKNOWN, None, None, 0, size)


# --------------------------------------------------------------------------- loading into a model
@dataclass
class LoadReport:
    """What was loaded; ``skipped`` lists (key, reason) for every tensor not loaded."""

    path: str
    format: Format
    loaded: int = 0
    skipped: list = field(default_factory=list)
    missing: list = field(default_factory=list)
    class_names: list | None = None
    category_ids: list | None = None

    def summary(self) -> str:
        text = f"从 {self.path}（{self.format.label}）加载了 {self.loaded} 个张量"
        if self.skipped:
            text += f"；跳过 {len(self.skipped)} 个：" + "；".join(f"{k}（{r}）" for k, r in self.skipped[:8])
            if len(self.skipped) > 8:
                text += f" ……共 {len(self.skipped)} 个"
        if self.missing:
            text += f"；模型中有 {len(self.missing)} 个张量文件里没有，保持随机初始化"
        return text


def fill_shared_keys(sd: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Restore keys that safetensors stored once (tied tensors: ``decoder.up``, shared bbox heads)."""
    own = model.state_dict(keep_vars=True)
    by_ptr: dict[int, list[str]] = {}
    for k, v in own.items():
        by_ptr.setdefault(v.data_ptr(), []).append(k)
    out = dict(sd)
    for k, v in own.items():
        if k in out:
            continue
        for sibling in by_ptr.get(v.data_ptr(), []):
            if sibling in out:
                out[k] = out[sibling]
                break
    return out


def load_detector_state(path: str | Path, model: nn.Module | None = None) -> tuple[dict, Format, Any]:
    """Read a detector checkpoint file -> (state_dict, format, raw object). Raises if it is not one."""
    obj = read_weights_file(path)
    sd, fmt = extract_detector_state(obj)
    if not sd:
        flat = backbone_state(obj)
        bfmt = backbone_file_variant(flat)[1] if flat else Format.UNKNOWN
        if bfmt is not Format.UNKNOWN:
            raise WeightsError(
                f"{path} 是骨干网络文件（{bfmt.label}），不是完整的检测器权重。"
                f"骨干网络文件请放进 ckpts/ 并在训练时由配置自动加载；推理/评估需要训练好的 checkpoint。"
            )
        raise WeightsError(f"{path} 不是 DEIMv2 的 checkpoint：找不到 model/ema 或 backbone./decoder. 开头的权重。")
    if model is not None:
        sd = fill_shared_keys(sd, model)
    return sd, fmt, obj


def load_state_strict(model: nn.Module, sd: Mapping[str, torch.Tensor], source: str, derived_from_model: bool) -> int:
    """Load a full detector state dict: same variant, same class count, every key and shape must match.

    ``derived_from_model``: anchors of another ``eval_spatial_size`` are replaced by the model's own (they are
    computed, not learned); otherwise they are an error naming the fix. Returns the number of tensors loaded.
    """
    own = model.state_dict()
    _check_variant(sd, own, source)
    own_nc, file_nc = num_classes_of_state_dict(own), num_classes_of_state_dict(sd)
    if own_nc != file_nc:
        raise WeightsError(
            f"{source} 是 {file_nc} 个类别的权重，而模型是 {own_nc} 个类别（num_classes 不一致）。"
            f"在自己的数据上微调请用 -t/--tune（会跳过与类别数有关的分类头），或把 num_classes 改成 {file_nc}。"
        )
    sd = _with_own_derived(sd, own) if derived_from_model else dict(sd)
    bad = [k for k, v in sd.items() if k in own and own[k].shape != v.shape]
    if bad:
        hint = (
            "decoder.anchors 不同说明训练时的 eval_spatial_size 不同：请用 -c 指定训练时的配置 YAML。"
            if bad[0] in DERIVED_KEYS
            else "请确认配置和权重是同一个变体。"
        )
        raise WeightsError(
            f"{source} 中有 {len(bad)} 个张量的形状与模型不同（如 {bad[0]}: "
            f"{tuple(sd[bad[0]].shape)} ≠ {tuple(own[bad[0]].shape)}）。{hint}"
        )
    result = model.load_state_dict(sd, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise WeightsError(
            f"{source} 与模型结构不一致：缺少 {len(result.missing_keys)} 个键（如 {result.missing_keys[:3]}），"
            f"多出 {len(result.unexpected_keys)} 个键（如 {result.unexpected_keys[:3]}）。请确认配置和权重是同一个变体。"
        )
    return len(sd)


def load_weights(model: nn.Module, path: str | Path, strict: bool = True) -> LoadReport:
    """Load a full detector checkpoint. ``strict=True``: every key and shape must match (different
    ``num_classes`` is an error suggesting fine-tuning); ``strict=False``: load what fits, report the rest."""
    sd, fmt, obj = load_detector_state(path, model)
    report = LoadReport(str(path), fmt)
    if isinstance(obj, Mapping):
        report.class_names = list(obj["class_names"]) if obj.get("class_names") else None
        report.category_ids = list(obj["category_ids"]) if obj.get("category_ids") else None
    if strict:
        report.loaded = load_state_strict(model, sd, str(path), derived_from_model=True)
        return report
    own = model.state_dict()
    _check_variant(sd, own, str(path))
    return _load_matching(model, _with_own_derived(sd, own), report)


def _check_variant(sd: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor], source: str) -> None:
    got, want = variant_of_state_dict(sd), variant_of_state_dict(own)
    if got and want and got != want:
        raise WeightsError(
            f"{source} 是 DEIMv2-{got.upper()} 的权重，但当前模型（配置）是 DEIMv2-{want.upper()}。"
            f"请改用 -c {got}（或去掉 -c 让程序自动识别），或换用 DEIMv2-{want.upper()} 的权重。"
        )


def _with_own_derived(sd: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``sd`` with anchors of another eval size replaced by the model's (computed, not learned)."""
    out = dict(sd)
    for key in DERIVED_KEYS:
        if key in out and key in own and out[key].shape != own[key].shape:
            out[key] = own[key]
    return out


def _load_matching(model: nn.Module, sd: Mapping[str, torch.Tensor], report: LoadReport) -> LoadReport:
    own = model.state_dict()
    keep = {}
    for k, v in sd.items():
        if k not in own:
            report.skipped.append((k, "模型中没有这个键"))
        elif tuple(own[k].shape) != tuple(v.shape):
            report.skipped.append((k, f"形状 {tuple(v.shape)} ≠ 模型 {tuple(own[k].shape)}"))
        else:
            keep[k] = v
    result = model.load_state_dict(keep, strict=False)
    report.missing = [k for k in result.missing_keys if k not in sd]
    report.loaded = len(keep)
    return report


def load_for_finetune(model: nn.Module, path: str | Path) -> LoadReport:
    """Fine-tuning (-t): load every tensor that fits; class-dependent heads of another num_classes are skipped."""
    return load_weights(model, path, strict=False)


# --------------------------------------------------------------------------- backbone files
def expected_backbone_path(cfg) -> Path | None:
    """Backbone file the config asks for (None when the config trains the backbone from scratch)."""
    bb = cfg.model.backbone
    if cfg.model.backbone_type == "DINOv3STAs":
        wp = bb.get("weights_path")
        return Path(wp) if wp else None
    if not bb.get("pretrained", False):
        return None
    return Path(bb.get("local_model_dir") or "./ckpts/") / hgnetv2_stage1_file(bb.get("name", "B0"))


def missing_backbone_error(cfg, path: Path) -> WeightsError:
    """The error for a backbone file the config asks for but that is not there: what to download, or how to skip it."""
    v = variant_of_config_name(cfg.name) or cfg.name
    info = VARIANT_TABLE.get(v)
    file, url = (info.backbone_file, info.backbone_url) if info else (path.name, "见 ckpts/README.md")
    how = "DINOv3STAs.weights_path=null" if cfg.model.backbone_type == "DINOv3STAs" else "HGNetv2.pretrained=false"
    return WeightsError(
        f"找不到 DEIMv2-{v.upper()} 需要的骨干网络预训练权重：{path.resolve()}。\n"
        f"请下载 {file}（{url}）放到该路径，文件名不用改，"
        f"Meta 或 Hugging Face 格式都可以。\n如果确实要从头训练骨干网络，请加 --update {how}。\n{download_table()}"
    )


def load_backbone_weights(model: nn.Module, path: str | Path) -> LoadReport:
    """Load a backbone file (any accepted format) into ``model.backbone`` (or into ``model`` itself when it
    is a bare backbone); checks it fits the variant.

    HGNetv2: every tensor whose name and shape fit (the B0 file only partly fits Atto/Femto/Pico).
    ViT-Tiny / DINOv3: strict, into the ViT of ``DINOv3STAs`` (Hugging Face DINOv3 keys are converted first).
    """
    path = Path(path)
    obj = read_weights_file(path)
    flat = backbone_state(obj)
    if not flat:
        raise WeightsError(f"{path} 不是骨干网络权重文件：里面没有张量字典。")
    file_variant, fmt = backbone_file_variant(flat)
    if fmt is Format.UNKNOWN:
        if extract_detector_state(obj)[0]:
            raise WeightsError(f"{path} 是完整的检测器 checkpoint，不是骨干网络文件。请用 -t/--tune 加载它来微调。")
        raise WeightsError(f"{path} 不是已知的骨干网络文件（ViT-Tiny、DINOv3、HGNetv2）。")
    want = variant_of_state_dict(model.state_dict())
    backbone = getattr(model, "backbone", model)
    report = LoadReport(str(path), fmt)
    if fmt is Format.HGNETV2:
        if not hasattr(backbone, "stages"):
            raise WeightsError(
                f"{path} 是 HGNetv2 骨干权重，但当前模型 DEIMv2-{(want or '?').upper()} 用的是 DINOv3 骨干。"
            )
        return _load_matching(backbone, flat, report)
    if not hasattr(backbone, "vit_module"):
        raise WeightsError(
            f"{path} 是 ViT/DINOv3 骨干权重，但当前模型 DEIMv2-{(want or '?').upper()} 用的是 HGNetv2 骨干。"
        )
    if file_variant and want and file_variant != want:
        raise WeightsError(
            f"{path} 是 DEIMv2-{file_variant.upper()} 用的骨干（{fmt.label}），当前模型是 DEIMv2-{want.upper()}，"
            f"它需要 {VARIANT_TABLE[want].backbone_file}。"
        )
    if fmt is Format.DINOV3_HF:
        flat = convert_hf_dinov3_to_meta(flat)
    try:
        backbone.vit_module().load_state_dict(flat, strict=True)
    except RuntimeError as e:
        expected = BACKBONE_FILE_BY_NAME.get(backbone.name, "?")
        raise WeightsError(
            f"{path} 与 DINOv3STAs '{backbone.name}' 的 ViT 结构不匹配（应为官方 {expected} 的扁平 state_dict 格式）。"
            f"详细信息：{e}"
        ) from None
    report.loaded = len(flat)
    return report
