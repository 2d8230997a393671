"""Weights: read every checkpoint form users have, identify the variant, load strictly or for fine-tuning.

Detector checkpoints: the official ``.pth`` (``model`` / ``ema``; EMA preferred), our training
checkpoints, the Hugging Face hub copies (``model.safetensors`` + ``config.json``) and the
transformers port (``Deimv2ForObjectDetection``). Backbone files: ``vitt_distill.pt``,
``vittplus_distill.pt``, DINOv3 ViT-S/16 and ViT-S+/16 in Meta's and in Hugging Face's format,
HGNetv2 ``PPHGNetV2_*_stage1.pth``. Only ``torch.load(..., weights_only=True)`` is used.
Explained in notebook ``01_weights.ipynb``.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .errors import WeightsError

#: what each variant needs and where to get it (shown in errors, ckpts/README.md and notebook 01);
#: ap / params / gflops / latency_ms (TensorRT FP16 on a T4) are the official model-zoo numbers
DOWNLOADS: dict[str, dict[str, Any]] = {
    "atto": {
        "ap": 23.8,
        "params": "0.5M",
        "gflops": 0.8,
        "latency_ms": 1.1,
        "backbone": "PPHGNetV2_B0_stage1.pth",
        "backbone_url": "https://github.com/Peterande/storage/releases/download/dfinev1.0/PPHGNetV2_B0_stage1.pth",
        "hf": "Intellindust/DEIMv2_HGNetv2_ATTO_COCO",
        "checkpoint": "https://drive.google.com/file/d/18sRJXX3FBUigmGJ1y5Oo_DPC5C3JCgYc/view",
    },
    "femto": {
        "ap": 31.0,
        "params": "1.0M",
        "gflops": 1.7,
        "latency_ms": 1.45,
        "backbone": "PPHGNetV2_B0_stage1.pth",
        "backbone_url": "https://github.com/Peterande/storage/releases/download/dfinev1.0/PPHGNetV2_B0_stage1.pth",
        "hf": "Intellindust/DEIMv2_HGNetv2_FEMTO_COCO",
        "checkpoint": "https://drive.google.com/file/d/16hh6l9Oln9TJng4V0_HNf_Z7uYb7feds/view",
    },
    "pico": {
        "ap": 38.5,
        "params": "1.5M",
        "gflops": 5.2,
        "latency_ms": 2.13,
        "backbone": "PPHGNetV2_B0_stage1.pth",
        "backbone_url": "https://github.com/Peterande/storage/releases/download/dfinev1.0/PPHGNetV2_B0_stage1.pth",
        "hf": "Intellindust/DEIMv2_HGNetv2_PICO_COCO",
        "checkpoint": "https://drive.google.com/file/d/1PXpUxYSnQO-zJHtzrCPqQZ3KKatZwzFT/view",
    },
    "n": {
        "ap": 43.0,
        "params": "3.6M",
        "gflops": 6.8,
        "latency_ms": 2.32,
        "backbone": "PPHGNetV2_B0_stage1.pth",
        "backbone_url": "https://github.com/Peterande/storage/releases/download/dfinev1.0/PPHGNetV2_B0_stage1.pth",
        "hf": "Intellindust/DEIMv2_HGNetv2_N_COCO",
        "checkpoint": "https://drive.google.com/file/d/1G_Q80EVO4T7LZVPfHwZ3sT65FX5egp9K/view",
    },
    "s": {
        "ap": 50.9,
        "params": "9.7M",
        "gflops": 25.6,
        "latency_ms": 5.78,
        "backbone": "vitt_distill.pt",
        "backbone_url": "https://drive.google.com/file/d/1YMTq_woOLjAcZnHSYNTsNg7f0ahj5LPs/view",
        "hf": "Intellindust/DEIMv2_DINOv3_S_COCO",
        "checkpoint": "https://drive.google.com/file/d/1MDOh8UXD39DNSew6rDzGFp1tAVpSGJdL/view",
    },
    "m": {
        "ap": 53.0,
        "params": "18.1M",
        "gflops": 52.2,
        "latency_ms": 8.8,
        "backbone": "vittplus_distill.pt",
        "backbone_url": "https://drive.google.com/file/d/1COHfjzq5KfnEaXTluVGEOMdhpuVcG6Jt/view",
        "hf": "Intellindust/DEIMv2_DINOv3_M_COCO",
        "checkpoint": "https://drive.google.com/file/d/1nPKDHrotusQ748O1cQXJfi5wdShq6bKp/view",
    },
    "l": {
        "ap": 56.0,
        "params": "32.2M",
        "gflops": 96.7,
        "latency_ms": 10.47,
        "backbone": "dinov3_vits16_pretrain_lvd1689m-08c60483.pth",
        "backbone_url": "https://github.com/facebookresearch/dinov3 （或 Hugging Face: facebook/dinov3-vits16-pretrain-lvd1689m）",
        "hf": "Intellindust/DEIMv2_DINOv3_L_COCO",
        "checkpoint": "https://drive.google.com/file/d/1dRJfVHr9HtpdvaHlnQP460yPVHynMray/view",
    },
    "x": {
        "ap": 57.8,
        "params": "50.3M",
        "gflops": 151.6,
        "latency_ms": 13.75,
        "backbone": "dinov3_vits16plus_pretrain_lvd1689m-4057cbaa.pth",
        "backbone_url": "https://github.com/facebookresearch/dinov3 （或 Hugging Face: facebook/dinov3-vits16plus-pretrain-lvd1689m）",
        "hf": "Intellindust/DEIMv2_DINOv3_X_COCO",
        "checkpoint": "https://drive.google.com/file/d/1pTiQaBGt8hwtO0mbYlJ8nE-HGztGafS7/view",
    },
}

#: decoder hidden size -> variant (256 is M or X, told apart by the backbone)
_HIDDEN_TO_VARIANT = {64: "atto", 96: "femto", 112: "pico", 128: "n", 192: "s", 224: "l"}


def download_table() -> str:
    """Chinese table of the files each variant needs."""
    lines = ["| 变体 | COCO AP | 参数量 | 骨干网络文件（放进 ckpts/） | 完整 COCO 权重 |", "|---|---|---|---|---|"]
    for v, d in DOWNLOADS.items():
        lines.append(
            f"| {v} | {d['ap']} | {d['params']} | {d['backbone']}（{d['backbone_url']}） | {d['checkpoint']} ；HF: {d['hf']} |"
        )
    return "\n".join(lines)


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
    if path.stat().st_size == 0:
        raise WeightsError(f"权重文件 {path} 是空文件（0 字节），可能下载没有完成。请重新下载。")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as e:  # safetensors raises its own error types
            raise WeightsError(
                f"无法读取 safetensors 文件 {path}：{e}。文件可能损坏或未下载完整，请重新下载。"
            ) from None
    import zipfile

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


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


@dataclass
class CheckpointInfo:
    """What a file holds. ``kind`` is 'detector', 'backbone' or 'unknown'."""

    path: str
    kind: str
    format: str
    variant: str | None = None
    num_classes: int | None = None
    num_tensors: int = 0
    size_mb: float = 0.0
    extra: dict = field(default_factory=dict)


def extract_detector_state(obj: Any) -> tuple[dict[str, torch.Tensor], str]:
    """Pick the detector state_dict out of a checkpoint object; returns (state_dict, format name)."""
    if isinstance(obj, Mapping):
        ema = obj.get("ema")
        ours = "class_names" in obj and "version" in obj
        if isinstance(ema, Mapping) and _is_tensor_dict(ema.get("module")):
            return dict(ema["module"]), "deimv2 训练 checkpoint（EMA 权重）" if ours else "官方 .pth（EMA 权重）"
        if _is_tensor_dict(obj.get("model")):
            return dict(obj["model"]), "deimv2 训练 checkpoint" if ours else "官方 .pth（model 权重）"
        if _is_tensor_dict(obj):
            if any(k.startswith("backbone.") for k in obj) and any(k.startswith("decoder.") for k in obj):
                return dict(obj), "state_dict / Hugging Face hub（safetensors）"
            from .hf_port import convert_transformers_port, is_transformers_port

            if is_transformers_port(obj):
                return convert_transformers_port(dict(obj)), "Hugging Face transformers（Deimv2ForObjectDetection）"
    return {}, "unknown"


def variant_of_state_dict(sd: Mapping[str, torch.Tensor]) -> str | None:
    """Which variant a detector state_dict belongs to (None if it is not a DEIMv2 detector)."""
    emb = sd.get("decoder.denoising_class_embed.weight")
    if emb is None:
        return None
    hidden = int(emb.shape[1])
    if hidden == 256:
        return "m" if any(k.startswith("backbone.dinov3._model.") for k in sd) else "x"
    return _HIDDEN_TO_VARIANT.get(hidden)


def num_classes_of_state_dict(sd: Mapping[str, torch.Tensor]) -> int | None:
    emb = sd.get("decoder.denoising_class_embed.weight")
    return int(emb.shape[0]) - 1 if emb is not None else None


def backbone_file_variant(sd: Mapping[str, torch.Tensor]) -> tuple[str | None, str]:
    """(variant, format) of a backbone file: ViT-Tiny(+), DINOv3 (Meta or HF), HGNetv2 stage1."""
    keys = set(sd)
    if "cls_token" in keys and "storage_tokens" not in keys:
        dim = int(sd["cls_token"].shape[-1])
        return {192: "s", 256: "m"}.get(dim), "ViT-Tiny 蒸馏骨干（vitt/vittplus）"
    if "storage_tokens" in keys:
        return ("x" if "blocks.0.mlp.w1.weight" in keys else "l"), "DINOv3（Meta .pth 格式）"
    hf = {k.removeprefix("model.") for k in keys}
    if "embeddings.register_tokens" in hf:
        gated = any(k.endswith("mlp.gate_proj.weight") for k in hf)
        return ("x" if gated else "l"), "DINOv3（Hugging Face 格式）"
    if any(k.startswith("stem.") for k in keys) and any(k.startswith("stages.") for k in keys):
        return None, "HGNetv2 stage1（ImageNet 预训练）"
    return None, "unknown"


def inspect_weights(path: str | Path) -> CheckpointInfo:
    """Describe a weights file without building a model (notebook 01)."""
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
        info = CheckpointInfo(
            str(path), "detector", fmt, variant_of_state_dict(sd), num_classes_of_state_dict(sd), len(sd), size
        )
        if isinstance(obj, Mapping) and "class_names" in obj:
            info.extra["class_names"] = list(obj["class_names"])
        return info
    flat = obj.get("model", obj) if isinstance(obj, Mapping) else {}
    if _is_tensor_dict(flat):
        variant, bfmt = backbone_file_variant(flat)
        if bfmt != "unknown":
            return CheckpointInfo(str(path), "backbone", bfmt, variant, None, len(flat), size)
    return CheckpointInfo(str(path), "unknown", "不是 DEIMv2 的权重文件", None, None, 0, size)


# --------------------------------------------------------------------------- HF hub / shared tensors
def variant_from_hf_config(config_path: str | Path) -> str | None:
    """Variant named by a Hugging Face hub ``config.json`` of Intellindust/DEIMv2_*."""
    cfg = json.loads(Path(config_path).read_text(encoding="utf-8"))
    dec = cfg.get("DEIMTransformer", {})
    if "DINOv3STAs" in cfg:
        name = cfg["DINOv3STAs"].get("name", "")
        return {"vit_tiny": "s", "vit_tinyplus": "m", "dinov3_vits16": "l", "dinov3_vits16plus": "x"}.get(name)
    if "HGNetv2" in cfg:
        name = cfg["HGNetv2"].get("name", "")
        return {"Atto": "atto", "Femto": "femto", "Pico": "pico"}.get(name) or _HIDDEN_TO_VARIANT.get(
            dec.get("hidden_dim")
        )
    return None


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


# --------------------------------------------------------------------------- loading into a model
@dataclass
class LoadReport:
    """What was loaded; ``skipped`` lists (key, reason) for every tensor not loaded."""

    path: str
    format: str
    loaded: int = 0
    skipped: list = field(default_factory=list)
    missing: list = field(default_factory=list)
    class_names: list | None = None
    category_ids: list | None = None

    def summary(self) -> str:
        text = f"从 {self.path}（{self.format}）加载了 {self.loaded} 个张量"
        if self.skipped:
            text += f"；跳过 {len(self.skipped)} 个：" + "；".join(f"{k}（{r}）" for k, r in self.skipped[:8])
            if len(self.skipped) > 8:
                text += f" ……共 {len(self.skipped)} 个"
        if self.missing:
            text += f"；模型中有 {len(self.missing)} 个张量文件里没有，保持随机初始化"
        return text


def _model_variant(model: nn.Module) -> str | None:
    return variant_of_state_dict(model.state_dict())


def _check_variant(sd: Mapping, model: nn.Module, path: str) -> None:
    got, want = variant_of_state_dict(sd), _model_variant(model)
    if got and want and got != want:
        raise WeightsError(
            f"{path} 看起来是 DEIMv2-{got.upper()} 的权重，但当前模型是 DEIMv2-{want.upper()}。"
            f"请改用配置 -c {got}，或下载 DEIMv2-{want.upper()} 的权重。"
        )


def load_detector_state(path: str | Path, model: nn.Module | None = None) -> tuple[dict, str, Any]:
    """Read a detector checkpoint file -> (state_dict, format, raw object). Raises if it is not one."""
    obj = read_weights_file(path)
    sd, fmt = extract_detector_state(obj)
    if not sd:
        info_variant, bfmt = backbone_file_variant(obj.get("model", obj) if isinstance(obj, Mapping) else {})
        if bfmt != "unknown":
            raise WeightsError(
                f"{path} 是骨干网络文件（{bfmt}），不是完整的检测器权重。"
                f"骨干网络文件请放进 ckpts/ 并在训练时由配置自动加载；推理/评估需要训练好的 checkpoint。"
            )
        raise WeightsError(f"{path} 不是 DEIMv2 的 checkpoint：找不到 model/ema 或 backbone./decoder. 开头的权重。")
    if model is not None:
        sd = fill_shared_keys(sd, model)
    return sd, fmt, obj


def load_weights(model: nn.Module, path: str | Path, strict: bool = True) -> LoadReport:
    """Load a full detector checkpoint. ``strict=True``: every key and shape must match (different
    ``num_classes`` is an error suggesting fine-tuning); ``strict=False``: load what fits, report the rest."""
    sd, fmt, obj = load_detector_state(path, model)
    _check_variant(sd, model, str(path))
    own = model.state_dict()
    for key in ("decoder.anchors", "decoder.valid_mask"):  # derived from eval_spatial_size, not learned
        if key in sd and key in own and sd[key].shape != own[key].shape:
            sd[key] = own[key]
    report = LoadReport(str(path), fmt)
    if isinstance(obj, Mapping):
        report.class_names = list(obj["class_names"]) if obj.get("class_names") else None
        report.category_ids = list(obj["category_ids"]) if obj.get("category_ids") else None
    if strict:
        own_nc, file_nc = num_classes_of_state_dict(model.state_dict()), num_classes_of_state_dict(sd)
        if own_nc != file_nc:
            raise WeightsError(
                f"{path} 是 {file_nc} 个类别的权重，而模型是 {own_nc} 个类别（num_classes 不一致）。"
                f"在自己的数据上微调请用 -t/--tune（会跳过与类别数有关的分类头），或把 num_classes 改成 {file_nc}。"
            )
        result = model.load_state_dict(sd, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise WeightsError(
                f"{path} 与模型结构不一致：缺少 {len(result.missing_keys)} 个键（如 {result.missing_keys[:3]}），"
                f"多出 {len(result.unexpected_keys)} 个键（如 {result.unexpected_keys[:3]}）。请确认配置和权重是同一个变体。"
            )
        report.loaded = len(sd)
        return report
    return _load_matching(model, sd, report)


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
def convert_hf_dinov3_to_meta(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Hugging Face ``DINOv3ViTModel`` keys -> Meta DINOv3 keys (qkv fused, k bias masked to 0)."""
    src = {k.removeprefix("model."): v for k, v in sd.items()}
    out: dict[str, torch.Tensor] = {
        "cls_token": src["embeddings.cls_token"],
        "storage_tokens": src["embeddings.register_tokens"],
        "mask_token": src["embeddings.mask_token"].reshape(1, -1),
        "patch_embed.proj.weight": src["embeddings.patch_embeddings.weight"],
        "patch_embed.proj.bias": src["embeddings.patch_embeddings.bias"],
        "norm.weight": src["norm.weight"],
        "norm.bias": src["norm.bias"],
    }
    dim = out["cls_token"].shape[-1]
    depth = 1 + max(int(k.split(".")[1]) for k in src if k.startswith("layer."))
    rename = {
        "norm1": "norm1",
        "norm2": "norm2",
        "attention.o_proj": "attn.proj",
        "mlp.up_proj": "mlp.fc1",
        "mlp.down_proj": "mlp.fc2",
    }
    gated = "layer.0.mlp.gate_proj.weight" in src
    if gated:
        rename.update({"mlp.gate_proj": "mlp.w1", "mlp.up_proj": "mlp.w2", "mlp.down_proj": "mlp.w3"})
    for i in range(depth):
        p = f"layer.{i}."
        a = src
        out[f"blocks.{i}.attn.qkv.weight"] = torch.cat(
            [a[p + "attention.q_proj.weight"], a[p + "attention.k_proj.weight"], a[p + "attention.v_proj.weight"]], 0
        )
        k_bias = a.get(p + "attention.k_proj.bias", torch.zeros(dim))
        out[f"blocks.{i}.attn.qkv.bias"] = torch.cat(
            [a[p + "attention.q_proj.bias"], k_bias, a[p + "attention.v_proj.bias"]], 0
        )
        out[f"blocks.{i}.attn.qkv.bias_mask"] = torch.cat([torch.ones(dim), torch.zeros(dim), torch.ones(dim)])
        out[f"blocks.{i}.ls1.gamma"] = a[p + "layer_scale1.lambda1"]
        out[f"blocks.{i}.ls2.gamma"] = a[p + "layer_scale2.lambda1"]
        for hf_name, meta_name in rename.items():
            for t in ("weight", "bias"):
                if p + f"{hf_name}.{t}" in a:
                    out[f"blocks.{i}.{meta_name}.{t}"] = a[p + f"{hf_name}.{t}"]
    head_dim_quarter = 16  # RoPE periods: 100 ** (2 * arange(D/4) / (D/2)) with D = head dim 64
    out["rope_embed.periods"] = 100.0 ** (
        2 * torch.arange(head_dim_quarter, dtype=torch.float32) / (2 * head_dim_quarter)
    )
    return out


def expected_backbone_path(cfg) -> Path | None:
    """Backbone file the config asks for (None when the config trains the backbone from scratch)."""
    if cfg.model.backbone_type == "DINOv3STAs":
        wp = cfg.model.backbone.get("weights_path")
        return Path(wp) if wp else None
    bb = cfg.model.backbone
    if not bb.get("pretrained", False):
        return None
    name = bb.get("name", "B0")
    stem = "B0" if name in ("Atto", "Femto", "Pico") else name
    return Path(bb.get("local_model_dir") or "./ckpts/") / f"PPHGNetV2_{stem}_stage1.pth"


def _variant_of_cfg(cfg) -> str:
    from .config import VARIANTS

    inv = {v: k for k, v in VARIANTS.items()}
    return inv.get(cfg.name, cfg.name)


def missing_backbone_error(cfg, path: Path) -> WeightsError:
    v = _variant_of_cfg(cfg)
    d = DOWNLOADS.get(v, {})
    how = "DINOv3STAs.weights_path=null" if cfg.model.backbone_type == "DINOv3STAs" else "HGNetv2.pretrained=false"
    return WeightsError(
        f"找不到 DEIMv2-{v.upper()} 需要的骨干网络预训练权重：{path.resolve()}。\n"
        f"请下载 {d.get('backbone', path.name)}（{d.get('backbone_url', '见 ckpts/README.md')}）放到该路径，文件名不用改，"
        f"Meta 或 Hugging Face 格式都可以。\n如果确实要从头训练骨干网络，请加 --update {how}。\n{download_table()}"
    )


def load_backbone_weights(model: nn.Module, path: str | Path) -> LoadReport:
    """Load a backbone file (any accepted format) into ``model.backbone``; checks it fits the variant."""
    path = Path(path)
    obj = read_weights_file(path)
    flat = obj.get("model", obj) if isinstance(obj, Mapping) and not _is_tensor_dict(obj) else obj
    if not _is_tensor_dict(flat):
        raise WeightsError(f"{path} 不是骨干网络权重文件：里面没有张量字典。")
    file_variant, fmt = backbone_file_variant(flat)
    if fmt == "unknown":
        if extract_detector_state(obj)[0]:
            raise WeightsError(f"{path} 是完整的检测器 checkpoint，不是骨干网络文件。请用 -t/--tune 加载它来微调。")
        raise WeightsError(f"{path} 不是已知的骨干网络文件（ViT-Tiny、DINOv3、HGNetv2）。")
    want = _model_variant(model)
    backbone = model.backbone
    report = LoadReport(str(path), fmt)
    if fmt.startswith("HGNetv2"):
        if not hasattr(backbone, "stages"):
            raise WeightsError(
                f"{path} 是 HGNetv2 骨干权重，但当前模型 DEIMv2-{(want or '?').upper()} 用的是 DINOv3 骨干。"
            )
        report.loaded = _load_matching(backbone, flat, report).loaded
        return report
    if not hasattr(backbone, "load_backbone_state_dict"):
        raise WeightsError(
            f"{path} 是 ViT/DINOv3 骨干权重，但当前模型 DEIMv2-{(want or '?').upper()} 用的是 HGNetv2 骨干。"
        )
    if file_variant and want and file_variant != want:
        raise WeightsError(
            f"{path} 是 DEIMv2-{file_variant.upper()} 用的骨干（{fmt}），当前模型是 DEIMv2-{want.upper()}，"
            f"它需要 {DOWNLOADS[want]['backbone']}。"
        )
    if "Hugging Face" in fmt:
        flat = convert_hf_dinov3_to_meta(flat)
    backbone.load_backbone_state_dict(flat)
    report.loaded = len(flat)
    return report
