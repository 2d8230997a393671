"""The official batch-size rule (deimv2.config.batch_rule): LR, EMA and warm-ups follow the effective batch."""

import pytest

import deimv2
from deimv2.config.batch_rule import apply_batch_rule, format_batch_scaling
from deimv2.config.loader import save_config


def _lrs(cfg):
    return [g["lr"] for g in cfg.raw["optimizer"]["params"] if "lr" in g], cfg.raw["optimizer"]["lr"]


def test_official_readme_example_s_32_to_64():
    # official README 3.2: S, total batch 32 -> 64 (k = 2)
    cfg = deimv2.load_config("s", {"batch_size": 64, "warmup_iter": 500})  # the README's LR warm-up is 500
    out, rep = apply_batch_rule(cfg, 64)
    assert rep.applied and rep.k == 2
    backbone, head = _lrs(out)
    assert backbone == [5e-05, 5e-05]
    assert head == 0.001  # the head is scaled too (see the module doc)
    assert out.train.ema_decay == 0.9998 and out.raw["ema"]["decay"] == 0.9998
    assert out.train.ema_warmups == 500
    assert out.schedule.warmup_iter == 250
    assert out.train.ema_restart_decay == 0.9998
    # the recipe's own warm-up (2000 iterations) follows the same rule
    assert apply_batch_rule(deimv2.load_config("s", batch_size=64), 64)[0].schedule.warmup_iter == 1000


def test_inverse_for_the_seed_batch_4():
    cfg = deimv2.load_config("s", ["train_dataloader.total_batch_size=4"])
    out, rep = apply_batch_rule(cfg, 4)
    assert rep.k == 0.125
    backbone, head = _lrs(out)
    assert backbone == [3.125e-06, 3.125e-06] and head == 6.25e-05
    assert out.train.ema_decay == 0.9999875 and out.train.ema_warmups == 8000
    assert out.schedule.warmup_iter == 16000
    # the input config is untouched
    assert _lrs(cfg) == ([2.5e-05, 2.5e-05], 0.0005) and cfg.train.ema_decay == 0.9999


def test_accumulate_that_keeps_the_recipe_batch_needs_no_scaling():
    cfg = deimv2.load_config("s", {"batch_size": 32, "accumulate": 8})  # 4 images per step x 8 = 32
    out, rep = apply_batch_rule(cfg, 4 * 8 * 1)
    assert not rep.applied and out is cfg
    assert "相同" in format_batch_scaling(rep)


def test_explicit_values_are_kept():
    cfg = deimv2.load_config("s", {"batch_size": 4, "lr": 3e-4, "ema.decay": 0.9995})
    out, rep = apply_batch_rule(cfg, 4, explicit={"optimizer.lr", "ema.decay", "train_dataloader.total_batch_size"})
    backbone, head = _lrs(out)
    assert head == 3e-4 and out.train.ema_decay == 0.9995 and backbone == [3.125e-06, 3.125e-06]
    text = format_batch_scaling(rep)
    assert "显式设置" in text and "k = 4/32" in text
    whole = apply_batch_rule(deimv2.load_config("s", {"batch_size": 4}), 4, explicit={"ema"})[0]
    assert whole.train.ema_decay == 0.9999 and whole.train.ema_warmups == 1000


def test_switch_turns_it_off():
    cfg = deimv2.load_config("s", ["batch_size=4", "scale_lr=false"])
    out, rep = apply_batch_rule(cfg, 4)
    assert not rep.applied and out is cfg and _lrs(out) == ([2.5e-05, 2.5e-05], 0.0005)
    assert "scale_lr=false" in format_batch_scaling(rep)


def test_scaled_config_is_a_recipe_for_its_batch(tmp_path):
    out, _ = apply_batch_rule(deimv2.load_config("atto", batch_size=16), 16)
    assert out.raw["reference_batch_size"] == 16
    again = deimv2.load_config(str(save_config(out, tmp_path / "c.yaml")))
    same, rep = apply_batch_rule(again, 16)
    assert not rep.applied and _lrs(same) == _lrs(out) == ([0.000125, 0.000125], 0.00025)


def test_official_yaml_without_reference_uses_its_own_batch(tmp_path):
    raw = deimv2.load_config("s").to_dict()
    raw.pop("reference_batch_size")
    raw["train_dataloader"]["total_batch_size"] = 16
    p = save_config(raw, tmp_path / "user.yaml")
    assert not apply_batch_rule(deimv2.load_config(str(p)), 16)[1].applied
    assert apply_batch_rule(deimv2.load_config(str(p), batch_size=8), 8)[1].k == 0.5


def test_format_table_rows():
    text = format_batch_scaling(apply_batch_rule(deimv2.load_config("s", batch_size=64), 64)[1])
    assert "k = 64/32 = 2" in text and "EMA decay" in text and "0.9999" in text and "0.9998" in text
    assert "学习率预热步数 warmup_iter" in text and "2000" in text and "→ 1000" in text


@pytest.mark.parametrize("scale", [True, False])
def test_trainer_applies_it_once_at_setup(tiny_coco, tmp_path, scale, capsys):
    from deimv2.engine.api import _print_start, prepare_trainer

    ov = {
        "HGNetv2.pretrained": False,
        "eval_spatial_size": [64, 64],
        "DEIMTransformer.num_queries": 20,
        "PostProcessor.num_top_queries": 20,
        "batch_size": 2,
        "num_workers": 0,
        "val_dataloader.num_workers": 0,
        "scale_lr": scale,
    }
    t = prepare_trainer(
        "atto", data=tiny_coco, output_dir=tmp_path / "o", overrides=ov, epochs=1, progress=False, lr=1e-3
    )
    lrs = [g["initial_lr"] for g in t.optimizer.param_groups]
    k = 2 / 128
    if scale:
        assert t.batch_scaling.applied and t.cfg.raw["reference_batch_size"] == 2
        assert 0.001 * k in lrs and 1e-3 in lrs  # backbone scaled; the explicit head lr kept
        assert t.ema.decay == pytest.approx(1 - 1e-4 * k) and t.ema.warmups == 64000
    else:
        assert not t.batch_scaling.applied and 0.001 in lrs and t.ema.decay == 0.9999
    _print_start(t)
    out = capsys.readouterr().out
    assert ("batch size 规则" in out) == scale and ("但 scale_lr=false" in out) != scale
    rule_lines = [line for line in out.splitlines() if "batch size 规则" in line or "scale_lr=false" in line]
    assert len(rule_lines) == 1  # one line on the console ...
    table = tmp_path / "o" / "batch_rule.txt"
    assert table.is_file() == scale  # ... the full before/after table in the run folder
    if scale:
        assert str(table.resolve()) in out and "EMA 预热步数 ema.warmups：1000 → 64000" in table.read_text("utf-8")
    # the derived epoch schedule is printed too (1 epoch: the short-budget rule)
    assert "轮次安排" in out and "预算偏短" in out


def test_sqrt_rule_uses_the_square_root_of_k():
    # S at batch 8: k = 8/32 = 1/4, sqrt(k) = 1/2 (hand-worked)
    cfg = deimv2.load_config("s", {"batch_size": 8, "scale_lr_rule": "sqrt"})
    out, rep = apply_batch_rule(cfg, 8)
    assert rep.k == 0.25 and rep.factor == 0.5 and rep.rule == "sqrt"
    backbone, head = _lrs(out)
    assert backbone == [1.25e-05, 1.25e-05] and head == 0.00025
    assert out.train.ema_decay == 0.99995 and out.train.ema_warmups == 2000
    assert out.schedule.warmup_iter == 4000  # the recipe's 2000 ÷ 1/2
    assert "√k" in format_batch_scaling(rep)
    # linear at the same batch: × 1/4
    lin = apply_batch_rule(deimv2.load_config("s", {"batch_size": 8}), 8)[0]
    assert _lrs(lin)[1] == 0.000125 and lin.schedule.warmup_iter == 8000


def test_unknown_scale_rule_is_refused_in_chinese():
    from deimv2.errors import ConfigError

    with pytest.raises(ConfigError, match="scale_lr_rule='cubic'.*linear.*sqrt"):
        apply_batch_rule(deimv2.load_config("s", {"batch_size": 8, "scale_lr_rule": "cubic"}), 8)


@pytest.mark.parametrize("mode", ["scratch", "tune", "demo", "photo2"])
def test_docs_table_is_the_one_the_benchmark_wrote(mode):
    """docs/training.md's batch-rule tables are rendered from benchmarks/results/recipes/batch_rule_<mode>.json."""
    import importlib.util
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("batch_rule_bench", root / "benchmarks" / "batch_rule.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows = json.loads((root / "benchmarks/results/recipes" / f"batch_rule_{mode}.json").read_text("utf-8"))["rows"]
    assert (
        len(rows) == len({(r["rule"], r["batch"], r["seed"]) for r in rows}) >= {"demo": 2, "photo2": 3}.get(mode, 12)
    )
    start, end = mod.markers(mode)
    doc = (root / "docs" / "training.md").read_text(encoding="utf-8")
    assert doc.split(start, 1)[1].split(end, 1)[0].strip() == mod.render_table(rows)


def test_photo2_ranking_is_what_the_docs_say():
    """docs/training.md: on photo2 no rule is best, the square root second, linear worst (final validation AP50)."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    rows = json.loads((root / "benchmarks/results/recipes/batch_rule_photo2.json").read_text("utf-8"))["rows"]
    ap50 = {r["rule"]: r["AP50"] for r in rows}
    assert ap50["none"] > ap50["sqrt"] > ap50["linear"]
    assert "不缩放最好，平方根次之，线性缩放最差" in (root / "docs" / "training.md").read_text(encoding="utf-8")
