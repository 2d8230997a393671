"""The one table of DEIMv2 variants: config file, backbone, files to download, sizes that identify a state dict.

Plain data, no torch import, so :mod:`deimv2.config.loader` can read it. Every other module takes variant facts
from here (``config.VARIANTS``, format detection, the transformers port, download hints); the inverse maps
below are derived once from :data:`VARIANT_TABLE`. ``ap`` / ``params`` / ``gflops`` / ``latency_ms``
(TensorRT FP16 on a T4) are the official model-zoo numbers. Explained in notebook ``01_weights.ipynb``.
"""

from __future__ import annotations

from dataclasses import dataclass

#: where the PP-HGNetV2 stage-1 ImageNet files are released (D-FINE's storage)
HGNETV2_RELEASE_URL = "https://github.com/Peterande/storage/releases/download/dfinev1.0/"
#: HGNetv2 backbones that start from another backbone's stage-1 file (they are cut-down B0s)
_HGNETV2_STAGE1_FROM = {"Atto": "B0", "Femto": "B0", "Pico": "B0"}


def hgnetv2_stage1_file(name: str) -> str:
    """File name of the PP-HGNetV2 stage-1 ImageNet weights for HGNetv2 ``name`` (Atto/Femto/Pico use B0)."""
    return f"PPHGNetV2_{_HGNETV2_STAGE1_FROM.get(name, name)}_stage1.pth"


@dataclass(frozen=True)
class Variant:
    """One official DEIMv2 variant.

    ``backbone`` is the config section (``HGNetv2`` or ``DINOv3STAs``) and ``backbone_name`` its ``name``;
    ``hidden_dim`` is the decoder width (``d_model``), the size that identifies a detector state dict.
    """

    name: str
    config: str
    backbone: str
    backbone_name: str
    hidden_dim: int
    backbone_file: str
    backbone_url: str
    hf_repo: str
    checkpoint_url: str
    ap: float
    params: str
    gflops: float
    latency_ms: float

    @property
    def is_hgnetv2(self) -> bool:
        return self.backbone == "HGNetv2"

    @property
    def is_vit_tiny(self) -> bool:
        """ViT-Tiny(+) backbone (S/M): official keys one level deeper (``backbone.dinov3._model.``)."""
        return self.backbone_name.startswith("vit_tiny")


def _hgnet(name: str, backbone_name: str, hidden_dim: int, drive_id: str, **zoo) -> Variant:
    file = hgnetv2_stage1_file(backbone_name)
    return Variant(
        name=name,
        config=f"deimv2_hgnetv2_{name}_coco",
        backbone="HGNetv2",
        backbone_name=backbone_name,
        hidden_dim=hidden_dim,
        backbone_file=file,
        backbone_url=HGNETV2_RELEASE_URL + file,
        hf_repo=f"Intellindust/DEIMv2_HGNetv2_{name.upper()}_COCO",
        checkpoint_url=_DRIVE.format(drive_id),
        **zoo,
    )


def _dino(name: str, backbone_name: str, hidden_dim: int, drive_id: str, file: str, url: str, **zoo) -> Variant:
    return Variant(
        name=name,
        config=f"deimv2_dinov3_{name}_coco",
        backbone="DINOv3STAs",
        backbone_name=backbone_name,
        hidden_dim=hidden_dim,
        backbone_file=file,
        backbone_url=url,
        hf_repo=f"Intellindust/DEIMv2_DINOv3_{name.upper()}_COCO",
        checkpoint_url=_DRIVE.format(drive_id),
        **zoo,
    )


_DRIVE = "https://drive.google.com/file/d/{}/view"
_META = "https://github.com/facebookresearch/dinov3 （或 Hugging Face: facebook/{}-pretrain-lvd1689m）"

#: short variant name -> :class:`Variant`, in model-zoo order
VARIANT_TABLE: dict[str, Variant] = {
    v.name: v
    for v in (
        _hgnet(
            "atto", "Atto", 64, "18sRJXX3FBUigmGJ1y5Oo_DPC5C3JCgYc", ap=23.8, params="0.5M", gflops=0.8, latency_ms=1.1
        ),
        _hgnet(
            "femto",
            "Femto",
            96,
            "16hh6l9Oln9TJng4V0_HNf_Z7uYb7feds",
            ap=31.0,
            params="1.0M",
            gflops=1.7,
            latency_ms=1.45,
        ),
        _hgnet(
            "pico",
            "Pico",
            112,
            "1PXpUxYSnQO-zJHtzrCPqQZ3KKatZwzFT",
            ap=38.5,
            params="1.5M",
            gflops=5.2,
            latency_ms=2.13,
        ),
        _hgnet(
            "n", "B0", 128, "1G_Q80EVO4T7LZVPfHwZ3sT65FX5egp9K", ap=43.0, params="3.6M", gflops=6.8, latency_ms=2.32
        ),
        _dino(
            "s",
            "vit_tiny",
            192,
            "1MDOh8UXD39DNSew6rDzGFp1tAVpSGJdL",
            file="vitt_distill.pt",
            url=_DRIVE.format("1YMTq_woOLjAcZnHSYNTsNg7f0ahj5LPs"),
            ap=50.9,
            params="9.7M",
            gflops=25.6,
            latency_ms=5.78,
        ),
        _dino(
            "m",
            "vit_tinyplus",
            256,
            "1nPKDHrotusQ748O1cQXJfi5wdShq6bKp",
            file="vittplus_distill.pt",
            url=_DRIVE.format("1COHfjzq5KfnEaXTluVGEOMdhpuVcG6Jt"),
            ap=53.0,
            params="18.1M",
            gflops=52.2,
            latency_ms=8.8,
        ),
        _dino(
            "l",
            "dinov3_vits16",
            224,
            "1dRJfVHr9HtpdvaHlnQP460yPVHynMray",
            file="dinov3_vits16_pretrain_lvd1689m-08c60483.pth",
            url=_META.format("dinov3-vits16"),
            ap=56.0,
            params="32.2M",
            gflops=96.7,
            latency_ms=10.47,
        ),
        _dino(
            "x",
            "dinov3_vits16plus",
            256,
            "1pTiQaBGt8hwtO0mbYlJ8nE-HGztGafS7",
            file="dinov3_vits16plus_pretrain_lvd1689m-4057cbaa.pth",
            url=_META.format("dinov3-vits16plus"),
            ap=57.8,
            params="50.3M",
            gflops=151.6,
            latency_ms=13.75,
        ),
    )
}

# --------------------------------------------------------------------------- inverse maps (derived once)
#: official config name -> variant
VARIANT_BY_CONFIG: dict[str, str] = {v.config: v.name for v in VARIANT_TABLE.values()}
#: backbone ``name`` (``Atto`` ... ``B0``, ``vit_tiny`` ... ``dinov3_vits16plus``) -> variant (one each)
VARIANT_BY_BACKBONE: dict[str, str] = {v.backbone_name: v.name for v in VARIANT_TABLE.values()}
#: decoder hidden size -> variants with it (256 is both M and X: told apart by the backbone)
VARIANTS_BY_HIDDEN: dict[int, tuple[str, ...]] = {}
for _v in VARIANT_TABLE.values():
    VARIANTS_BY_HIDDEN[_v.hidden_dim] = (*VARIANTS_BY_HIDDEN.get(_v.hidden_dim, ()), _v.name)
del _v
#: DINOv3STAs backbone ``name`` -> official file name of its weights (``weights_path``)
BACKBONE_FILE_BY_NAME: dict[str, str] = {
    v.backbone_name: v.backbone_file for v in VARIANT_TABLE.values() if not v.is_hgnetv2
}

assert len(VARIANT_BY_BACKBONE) == len(VARIANT_TABLE), "each variant has its own backbone name"


def variant_of_config_name(name: str) -> str | None:
    """Variant of a config given by short name (``atto``) or official name (``deimv2_hgnetv2_atto_coco``)."""
    return name if name in VARIANT_TABLE else VARIANT_BY_CONFIG.get(name)


def download_table() -> str:
    """Chinese Markdown table of the files each variant needs."""
    lines = ["| 变体 | COCO AP | 参数量 | 骨干网络文件（放进 ckpts/） | 完整 COCO 权重 |", "|---|---|---|---|---|"]
    for v in VARIANT_TABLE.values():
        lines.append(
            f"| {v.name} | {v.ap} | {v.params} | {v.backbone_file}（{v.backbone_url}） | {v.checkpoint_url} ；HF: {v.hf_repo} |"
        )
    return "\n".join(lines)
