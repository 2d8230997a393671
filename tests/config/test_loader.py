"""Config system: variant files, official __include__ chains, overrides, epoch derivation."""

import pytest

from deimv2.config.loader import VARIANTS, load_config, parse_overrides, read_yaml, resolve_config_path, save_config
from deimv2.errors import ConfigError

OFFICIAL_EPOCHS = {"atto": 500, "femto": 500, "pico": 500, "n": 160, "s": 132, "m": 102, "l": 68, "x": 58}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_variant_loads_with_official_recipe(variant):
    cfg = load_config(variant)
    assert cfg.schedule.epochs == OFFICIAL_EPOCHS[variant]
    assert cfg.num_classes == 80
    dinov3 = variant in ("s", "m", "l", "x")
    assert cfg.model.backbone_type == ("DINOv3STAs" if dinov3 else "HGNetv2")
    assert cfg.normalize is dinov3  # ImageNet mean/std only for the DINOv3 variants
    assert cfg.eval_spatial_size == {"atto": [320, 320], "femto": [416, 416]}.get(variant, [640, 640])
    assert cfg.criterion.weight_dict["loss_mal"] == 1 and cfg.criterion.weight_dict["loss_bbox"] == 5
    local = "local" in cfg.criterion.losses
    assert local is (variant not in ("atto", "femto", "pico"))


def test_full_config_names_and_yaml_paths_resolve():
    assert resolve_config_path("deimv2_dinov3_s_coco") == resolve_config_path("s")
    assert resolve_config_path("deimv2_dinov3_s_coco.yml") == resolve_config_path("s")
    path = resolve_config_path("atto")
    assert load_config(str(path)).schedule.epochs == 500


def test_unknown_config_gives_chinese_error():
    with pytest.raises(ConfigError, match="找不到配置"):
        load_config("not-a-variant")


def test_seed_update_syntax_and_num_classes():
    cfg = load_config(
        "s", ["train_dataloader.total_batch_size=4", "epoches=62", "flat_epoch=29", "no_aug_epoch=12", "num_classes=4"]
    )
    assert cfg.data.batch_size == 4 and cfg.num_classes == 4
    assert cfg.schedule.epochs == 62 and cfg.schedule.flat_epoch == 29 and cfg.schedule.no_aug_epoch == 12
    # milestones not given explicitly were derived from the recipe
    # milestones not given explicitly were derived; the no-aug stage starts at 62 - 12
    assert cfg.raw["train_dataloader"]["collate_fn"]["stop_epoch"] == 50
    assert cfg.raw["train_dataloader"]["dataset"]["transforms"]["policy"]["epoch"][2] == 50
    assert cfg.criterion.matcher.matcher_change_epoch <= 50


def test_epochs_alone_derives_every_milestone():
    cfg = load_config("s", epochs=66)
    m = cfg.milestones
    assert cfg.schedule.epochs == 66
    e0, e1, e2 = cfg.raw["train_dataloader"]["dataset"]["transforms"]["policy"]["epoch"]
    assert 0 < e0 < e1 < e2 <= 66
    assert cfg.schedule.flat_epoch < 66 and cfg.schedule.no_aug_epoch >= 1
    assert cfg.criterion.matcher.matcher_change_epoch < 66
    assert m  # printed at training start


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="缺少 '='"):
        parse_overrides(["epoches"])
    assert parse_overrides(["a.b=1", "c=[1, 2]", "d=null", "e=文字"]) == {"a.b": 1, "c": [1, 2], "d": None, "e": "文字"}


def test_official_style_include_chain(tmp_path):
    base = tmp_path / "配置 目录" / "base"
    base.mkdir(parents=True)
    (base / "model.yml").write_text(
        "num_classes: 80\nDEIM: {backbone: HGNetv2, encoder: LiteEncoder}\n"
        "HGNetv2: {name: Atto, return_idx: [2]}\nepoches: 500\n",
        encoding="utf-8",
    )
    user = tmp_path / "配置 目录" / "mine.yml"
    user.write_text("__include__: ['./base/model.yml']\nnum_classes: 4\nepoches: 62\n", encoding="utf-8")
    raw = read_yaml(user)
    assert raw["num_classes"] == 4 and raw["HGNetv2"]["name"] == "Atto" and raw["epoches"] == 62
    cfg = load_config(user)
    assert cfg.model.backbone["name"] == "Atto"


def test_missing_include_and_cycle(tmp_path):
    a = tmp_path / "a.yml"
    a.write_text("__include__: ['missing.yml']\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="不存在的文件"):
        read_yaml(a)
    b, c = tmp_path / "b.yml", tmp_path / "c.yml"
    b.write_text("__include__: ['c.yml']\n", encoding="utf-8")
    c.write_text("__include__: ['b.yml']\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="循环"):
        read_yaml(b)


def test_save_and_reload_roundtrip(tmp_path):
    cfg = load_config("atto", num_classes=3, class_names=["猫", "狗", "鸟"])
    out = save_config(cfg, tmp_path / "我的 配置.yaml")
    again = load_config(out)
    assert again.num_classes == 3 and again.class_names == ["猫", "狗", "鸟"]
    assert again.raw == cfg.raw


def test_two_loads_do_not_bleed():
    """The official loader leaks one config into the next (mutable default); ours must not."""
    a = load_config("atto")
    s = load_config("s")
    assert a.model.decoder.get("share_bbox_head") is True
    assert not s.model.decoder.get("share_bbox_head", False)


def test_eval_size_override_moves_every_size_in_the_recipe():
    cfg = load_config("atto", eval_spatial_size=[256, 256])
    ops = cfg.data.train_ops
    assert next(o for o in ops if o["type"] == "Resize")["size"] == [256, 256]
    assert next(o for o in ops if o["type"] == "Mosaic")["output_size"] == 128
    assert next(o for o in cfg.data.val_ops if o["type"] == "Resize")["size"] == [256, 256]
    assert cfg.data.collate["base_size"] == 256
