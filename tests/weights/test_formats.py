"""Format detection (the Format enum) on files made here, variant facts from the one table, package layering."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from deimv2.config.loader import CONFIG_DIR, VARIANTS, load_config
from deimv2.config.variants import (
    BACKBONE_FILE_BY_NAME,
    VARIANT_TABLE,
    VARIANTS_BY_HIDDEN,
    hgnetv2_stage1_file,
)
from deimv2.engine.checkpoint import make_checkpoint, save_checkpoint
from deimv2.engine.ema import ModelEMA
from deimv2.models.build import build_model
from deimv2.weights.formats import Format, detect_format, variant_of_state_dict
from deimv2.weights.keys import to_transformers_port
from deimv2.weights.load import expected_backbone_path, inspect_weights, missing_backbone_error, read_weights_file

torch.set_num_threads(1)

PACKAGE = Path(__file__).resolve().parents[2] / "deimv2"
REF = Path(__file__).resolve().parents[1] / "fixtures" / "official" / "state_dict"  # benchmarks/make_golden.py


@pytest.fixture(scope="module")
def atto():
    torch.manual_seed(0)
    return build_model("atto", num_classes=3)


def _dedup(sd: dict) -> dict:
    """One copy of each shared tensor, contiguous (what safetensors stores)."""
    seen, out = set(), {}
    for k, v in sd.items():
        if v.data_ptr() not in seen:
            seen.add(v.data_ptr())
            out[k] = v.detach().clone().contiguous()
    return out


def _official_ema(t: Path, m) -> Path:
    torch.save({"model": m.state_dict(), "ema": {"module": m.state_dict(), "updates": 5}}, t / "官方 ema.pth")
    return t / "官方 ema.pth"


def _official_model(t: Path, m) -> Path:
    torch.save({"model": m.state_dict()}, t / "official.pth")
    return t / "official.pth"


def _training(t: Path, m, ema: bool) -> Path:
    ckpt = make_checkpoint(
        model=m,
        epoch=0,
        global_step=1,
        best_ap=0.0,
        config={"num_classes": 3},
        class_names=["猫", "狗", "鸟"],
        category_ids=[0, 1, 2],
        ema=ModelEMA(m) if ema else None,
    )
    return save_checkpoint(ckpt, t / ("ema.pth" if ema else "last.pth"))


def _hub(t: Path, m) -> Path:
    (t / "hub").mkdir()
    save_file(_dedup(m.state_dict()), str(t / "hub" / "model.safetensors"))
    return t / "hub"


def _port(t: Path, m) -> Path:
    save_file(_dedup(to_transformers_port(m.state_dict(), "atto")), str(t / "port.safetensors"))
    return t / "port.safetensors"


def _saved(name: str, obj) -> callable:
    def make(t: Path, m) -> Path:
        torch.save(obj, t / name)
        return t / name

    return make


# (format, file maker, variant the file names); backbone files carry only the keys detection reads
CASES = [
    (Format.OFFICIAL_EMA, _official_ema, "atto"),
    (Format.OFFICIAL_MODEL, _official_model, "atto"),
    (Format.TRAINING_EMA, lambda t, m: _training(t, m, ema=True), "atto"),
    (Format.TRAINING_MODEL, lambda t, m: _training(t, m, ema=False), "atto"),
    (Format.STATE_DICT, _hub, "atto"),
    (Format.TRANSFORMERS_PORT, _port, "atto"),
    (Format.VIT_TINY, _saved("vittplus_distill.pt", {"cls_token": torch.zeros(1, 1, 256)}), "m"),
    (
        Format.DINOV3_META,
        _saved("meta.pth", {"cls_token": torch.zeros(1, 1, 384), "storage_tokens": torch.zeros(1, 4, 384)}),
        "l",
    ),
    (
        Format.DINOV3_HF,
        _saved(
            "hf.bin",
            {
                "embeddings.register_tokens": torch.zeros(1, 4, 384),
                "model.layer.0.mlp.gate_proj.weight": torch.zeros(1),
            },
        ),
        "x",
    ),
    (
        Format.HGNETV2,
        _saved(
            "PPHGNetV2_B0_stage1.pth",
            {"model": {"stem.stem1.conv.weight": torch.zeros(1), "stages.0.x": torch.zeros(1)}},
        ),
        None,
    ),
    (Format.UNKNOWN, _saved("other.pth", {"weight": torch.zeros(3)}), None),
]


@pytest.mark.parametrize("fmt,make,variant", CASES, ids=[c[0].name for c in CASES])
def test_each_format_is_detected_as_its_enum_member(tmp_path, atto, fmt, make, variant):
    path = make(tmp_path, atto)
    assert detect_format(read_weights_file(path)) is fmt
    info = inspect_weights(path)
    assert info.format is fmt and info.kind == fmt.kind and info.variant == variant
    if fmt.kind == "detector":
        assert info.num_classes == 3


def test_format_labels_are_display_only():
    labels = [f.label for f in Format]
    assert len(set(labels)) == len(labels) and all(str(f) == f.label for f in Format)
    assert {f.kind for f in Format} == {"detector", "backbone", "unknown"}
    assert f"{Format.OFFICIAL_EMA}" == "官方 .pth（EMA 权重）"  # what `deimv2 info` prints


def test_no_control_flow_on_display_strings():
    """Nothing in the package tests a format by its display text (``fmt.startswith(...)``, ``"..." in fmt``)."""
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for bad in ("fmt.startswith(", '" in fmt', '" in bfmt', "format.startswith("):
            assert bad not in text, f"{path}: {bad}"


# --------------------------------------------------------------------------- the one variant table
@pytest.mark.parametrize("variant", list(VARIANT_TABLE))
def test_table_agrees_with_the_variant_configs(variant):
    v = VARIANT_TABLE[variant]
    assert VARIANTS[variant] == v.config and (CONFIG_DIR / f"{v.config}.yaml").is_file()
    cfg = load_config(variant)
    assert cfg.model.backbone_type == v.backbone and cfg.model.backbone["name"] == v.backbone_name
    assert cfg.model.decoder["hidden_dim"] == v.hidden_dim
    assert expected_backbone_path(cfg).name == v.backbone_file  # the YAML names the table's file
    err = str(missing_backbone_error(cfg, Path("缺失") / v.backbone_file))
    assert v.backbone_file in err and v.backbone_url in err


@pytest.mark.parametrize("variant", list(VARIANT_TABLE))
def test_variant_recognised_from_the_official_key_list(variant):
    """Shapes only (meta tensors): the official state dict of each variant maps back to it."""
    shapes = json.loads((REF / f"{variant}.json").read_text(encoding="utf-8"))["state_dict"]
    sd = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    assert variant_of_state_dict(sd) == variant


def test_inverse_maps_are_derived_from_the_table():
    assert VARIANTS_BY_HIDDEN[256] == ("m", "x") and VARIANTS_BY_HIDDEN[64] == ("atto",)
    assert BACKBONE_FILE_BY_NAME == {
        v.backbone_name: v.backbone_file for v in VARIANT_TABLE.values() if not v.is_hgnetv2
    }
    assert hgnetv2_stage1_file("Pico") == hgnetv2_stage1_file("B0") == "PPHGNetV2_B0_stage1.pth"
    assert hgnetv2_stage1_file("B4") == "PPHGNetV2_B4_stage1.pth"


def test_variant_facts_live_only_in_the_table():
    """File names, hub repositories and download links appear in no other module of the package."""
    table = PACKAGE / "config" / "variants.py"
    facts = {f for v in VARIANT_TABLE.values() for f in (v.backbone_file, v.hf_repo, v.checkpoint_url.split("/")[-2])}
    for path in PACKAGE.rglob("*.py"):
        if path != table:
            text = path.read_text(encoding="utf-8")
            assert not [f for f in facts if f in text], path


def test_ckpts_readme_agrees_with_the_table():
    """ckpts/README.md is written for people; every fact in it must equal the table's."""
    text = (PACKAGE.parent / "ckpts" / "README.md").read_text(encoding="utf-8")
    for v in VARIANT_TABLE.values():
        facts = (v.backbone_file, v.backbone_url.split()[0], v.hf_repo, v.checkpoint_url, f"| {v.ap} | {v.params} |")
        assert [f for f in facts if f not in text] == [], v.name


# --------------------------------------------------------------------------- layering
def _imports(path: Path) -> set[str]:
    """Absolute names of the deimv2 modules a file imports (relative imports resolved)."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            mod = ".".join(p for p in (base, node.module or "") if p)
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m.startswith("deimv2")}


def test_models_never_import_checkpoints_and_checkpoints_never_import_upper_layers():
    for path in (PACKAGE / "models").glob("*.py"):
        assert not [m for m in _imports(path) if m.startswith("deimv2.weights")], path
    upper = (
        "deimv2.engine",
        "deimv2.infer.detector",
        "deimv2.cli",
        "deimv2.infer.export",
        "deimv2.weights.hub",
        "deimv2.tutorial.demo",
    )
    for path in (PACKAGE / "checkpoints").glob("*.py"):
        assert not [m for m in _imports(path) if m.startswith(upper)], path


def test_variant_table_imports_no_torch():
    code = "import sys, deimv2.config.variants; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
