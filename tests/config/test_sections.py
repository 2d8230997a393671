"""Typed config sections: documented fields, strict model sections, frozen Config with replace()/to_dict()."""

import dataclasses
import inspect
import subprocess
import sys

import pytest
import yaml

import deimv2.config.sections as sections
from deimv2.config.loader import (
    MILESTONE_TARGETS,
    Config,
    load_config,
    milestones_of,
    read_yaml,
    resolve_config_path,
    save_config,
)
from deimv2.config.sections import MODEL_SECTIONS, field_docs
from deimv2.errors import ConfigError

ALL_SECTIONS = [getattr(sections, n) for n in sections.__all__ if n.endswith("Config")] + [Config]


def _write_variant(tmp_path, variant, edit):
    raw = read_yaml(resolve_config_path(variant))
    edit(raw)
    path = tmp_path / "我的 配置" / "模型.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@pytest.mark.parametrize("cls", ALL_SECTIONS, ids=lambda c: c.__name__)
def test_every_field_is_documented(cls):
    assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
    undocumented = [f.name for f in dataclasses.fields(cls) if len(f.metadata.get("doc", "").strip()) < 10]
    assert undocumented == [], f"{cls.__name__}: fields without a doc: {undocumented}"
    rows = field_docs(cls)
    assert [r[0] for r in rows] == [f.metadata.get("key") or f.name for f in dataclasses.fields(cls)]


def _constructors():
    from deimv2.models.decoder import DEIMTransformer
    from deimv2.models.hgnetv2 import HGNetv2
    from deimv2.models.hybrid_encoder import HybridEncoder
    from deimv2.models.lite_encoder import LiteEncoder
    from deimv2.models.postprocess import PostProcessor
    from deimv2.models.sta import DINOv3STAs

    return {
        "HGNetv2": HGNetv2,
        "DINOv3STAs": DINOv3STAs,
        "HybridEncoder": HybridEncoder,
        "LiteEncoder": LiteEncoder,
        "DEIMTransformer": DEIMTransformer,
        "PostProcessor": PostProcessor,
    }


#: constructor arguments that come from elsewhere in the config, not from the section
FROM_TOP_LEVEL = {"num_classes", "use_focal_loss", "remap_mscoco_category"}


@pytest.mark.parametrize("section", list(MODEL_SECTIONS))
def test_model_section_mirrors_its_constructor(section):
    """Same parameter names and the same (official) defaults: the section is the one documented home."""
    params = inspect.signature(_constructors()[section]).parameters
    cls = MODEL_SECTIONS[section]
    names = {f.name for f in dataclasses.fields(cls)}
    assert set(params) - FROM_TOP_LEVEL == names - sections.WEIGHT_FILE_KEYS
    for f in dataclasses.fields(cls):
        if f.name in sections.WEIGHT_FILE_KEYS:
            continue
        default = params[f.name].default
        if default is inspect.Parameter.empty:
            assert f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            continue
        ours = sections.default_of(cls, f.name)
        default = list(default) if isinstance(default, tuple) else default
        assert default == ours and type(default) is type(ours), f"{section}.{f.name}: {default!r} vs {ours!r}"


def test_config_module_is_plain_data():
    code = "import sys, deimv2.config.loader; assert 'torch' not in sys.modules and 'deimv2.engine' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_sections_are_typed_and_kept_from_the_yaml():
    cfg = load_config("s")
    enc = cfg.model.encoder
    assert isinstance(enc, sections.HybridEncoderConfig)
    assert (enc.expansion, enc.csp_type, enc.fuse_op, enc.version) == (0.34, "csp2", "sum", "deim")
    assert enc.pe_temperature == 10000  # not in the YAML: the official default
    assert isinstance(cfg.model.backbone, sections.DINOv3STAsConfig) and cfg.model.backbone.name == "vit_tiny"
    assert cfg.model.backbone["interaction_indexes"] == [3, 7, 11]  # read access by YAML key still works
    atto = load_config("atto")
    assert isinstance(atto.model.encoder, sections.LiteEncoderConfig)
    assert atto.model.decoder.share_bbox_head is True and atto.model.decoder.use_gateway is False
    assert atto.criterion.matcher.change_matcher is True and atto.criterion.use_uni_set is False


def test_unknown_key_in_a_model_section_names_key_and_file(tmp_path):
    path = _write_variant(tmp_path, "s", lambda raw: raw["HybridEncoder"].update(expansio=0.5))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    assert "HybridEncoder.expansio" in msg and str(path) in msg and "expansion" in msg and "未知的键" in msg


@pytest.mark.parametrize(
    "section,edit",
    [
        ("DEIMTransformer", lambda raw: raw["DEIMTransformer"].update(num_querys=100)),
        ("LiteEncoder", lambda raw: raw["LiteEncoder"].update(fuse_op="sum")),
        ("HGNetv2", lambda raw: raw["HGNetv2"].update(depth=3)),
        ("PostProcessor", lambda raw: raw["PostProcessor"].update(top_k=10)),
        ("DEIMCriterion.matcher", lambda raw: raw["DEIMCriterion"]["matcher"].update(cost_class=2)),
        ("DEIMCriterion", lambda raw: raw["DEIMCriterion"].update(mal_alpha=0.5)),
    ],
)
def test_unknown_keys_in_every_strict_section(tmp_path, section, edit):
    path = _write_variant(tmp_path, "atto", edit)
    with pytest.raises(ConfigError, match=f"{section} 段里有未知的键"):
        load_config(path)


def test_official_type_key_and_missing_required_key(tmp_path):
    ok = _write_variant(tmp_path / "a", "atto", lambda raw: raw["HGNetv2"].update(type="HGNetv2"))
    assert load_config(ok).model.backbone.name == "Atto"  # official registry key 'type' is allowed
    bad = _write_variant(tmp_path / "b", "atto", lambda raw: raw["HGNetv2"].pop("name"))
    with pytest.raises(ConfigError, match="HGNetv2 段缺少必需的键 name"):
        load_config(bad)


def test_config_is_frozen():
    cfg = load_config("atto")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.num_classes = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.model.decoder.num_queries = 10
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.seed = 1


def test_replace_returns_a_new_validated_config():
    cfg = load_config("s", epochs=30)
    new = cfg.replace({"DEIMTransformer.num_queries": 100}, num_classes=3, seed=7)
    assert (new.model.decoder.num_queries, new.num_classes, new.train.seed) == (100, 3, 7)
    assert (cfg.model.decoder.num_queries, cfg.num_classes, cfg.train.seed) == (300, 80, 0)  # unchanged
    assert new.name == cfg.name == "deimv2_dinov3_s_coco"
    assert new.milestones == cfg.milestones and new.milestone_note == cfg.milestone_note != ""
    with pytest.raises(ConfigError, match="未知的配置键"):
        cfg.replace(num_querys=1)
    bigger = cfg.replace(eval_spatial_size=[320, 320])
    assert bigger.data.collate["base_size"] == 320 and cfg.data.collate["base_size"] == 640


def test_to_dict_round_trip_and_milestones_from_one_table(tmp_path):
    cfg = load_config("pico", num_classes=5, class_names=list("abcde"))
    d = cfg.to_dict()
    assert d["__name__"] == "deimv2_hgnetv2_pico_coco" and "__name__" not in cfg.raw
    assert load_config(d) == cfg
    d["num_classes"] = 6  # a copy: the config is untouched
    assert cfg.num_classes == 5 and cfg.raw["num_classes"] == 5
    assert list(milestones_of(cfg.raw)) == ["epoches", *MILESTONE_TARGETS]
    assert cfg.milestones == milestones_of(cfg.raw)


def test_model_is_built_from_the_typed_sections():
    from deimv2.models.build import build_model

    model = build_model("atto", num_classes=3, overrides={"DEIMTransformer.num_queries": 50})
    assert model.decoder.num_queries == 50 and model.config.model.decoder.num_queries == 50
    assert model.decoder.eval_spatial_size == [320, 320]  # from the top level: the section leaves it null


def test_save_config_writes_a_complete_file(tmp_path):
    base = tmp_path / "官方" / "base"
    base.mkdir(parents=True)
    (base / "model.yml").write_text(
        "DEIM: {backbone: HGNetv2, encoder: LiteEncoder}\nHGNetv2: {name: Atto, return_idx: [2]}\n"
        "LiteEncoder: {in_channels: [256], hidden_dim: 64}\nDEIMTransformer: {feat_channels: [64, 64]}\n",
        encoding="utf-8",
    )
    user = tmp_path / "官方" / "mine.yml"
    user.write_text("__include__: ['./base/model.yml']\nnum_classes: 4\nepoches: 62\n", encoding="utf-8")
    cfg = load_config(user).replace(seed=3)
    assert cfg.train.output_dir == "./outputs/mine"  # derived from the name: must survive a rename
    saved = save_config(cfg, tmp_path / "保存" / "另一个 名字.yaml")
    text = saved.read_text(encoding="utf-8")
    assert "__include__" not in text and "__name__" not in text
    again = load_config(saved)
    assert again.name == "另一个 名字"
    assert dataclasses.replace(again, name=cfg.name, raw=cfg.raw) == cfg
    assert again.raw == {**cfg.raw, "output_dir": "./outputs/mine"}


def test_a_documented_field_absent_from_the_file_can_be_overridden():
    cfg = load_config("s", {"HybridEncoder.pe_temperature": 5000, "DEIMCriterion.matcher.iou_order_alpha": 2.0})
    assert cfg.model.encoder.pe_temperature == 5000 and cfg.criterion.matcher.iou_order_alpha == 2.0
    assert load_config("atto", {"DEIMTransformer.share_score_head": True}).model.decoder.share_score_head is True
    with pytest.raises(ConfigError, match="未知的配置键"):  # atto has a LiteEncoder, no HybridEncoder section
        load_config("atto", {"HybridEncoder.pe_temperature": 5000})
