"""Early stopping (patience), resume after it only when asked, and the F1-best threshold in checkpoints."""

import json

import pytest

from deimv2.config.loader import load_config
from deimv2.engine.api import train
from deimv2.engine.checkpoint import load_checkpoint
from deimv2.engine.trainer import Trainer
from deimv2.errors import ConfigError

TINY = {
    "HGNetv2.pretrained": False,
    "eval_spatial_size": [64, 64],
    "batch_size": 2,
    "num_workers": 0,
    "val_dataloader.num_workers": 0,
    "val_dataloader.total_batch_size": 4,
    "DEIMTransformer.num_queries": 20,
    "PostProcessor.num_top_queries": 20,
}


def _script(monkeypatch, aps, conf=0.37):
    """Real evaluation, but AP (and the F1-best threshold) taken from ``aps`` epoch by epoch."""
    it = iter(aps)
    real = Trainer.evaluate

    def fake(self, module=None):
        m = real(self, module)
        m["AP"] = next(it)
        m["best_conf"] = conf
        return m

    monkeypatch.setattr(Trainer, "evaluate", fake)


def _log(out):
    return [json.loads(x) for x in (out / "log.jsonl").read_text(encoding="utf-8").splitlines()]


def test_patience_is_off_in_the_official_recipe_and_validated():
    assert load_config("atto").train.patience == 0
    assert load_config("atto", ["patience=7"]).train.patience == 7
    with pytest.raises(ConfigError, match="patience"):
        load_config("atto", ["patience=-1"])


def test_early_stop_keeps_best_logs_and_prints_the_reason(tiny_coco, tmp_path, monkeypatch, capsys):
    _script(monkeypatch, [0.1, 0.2, 0.15, 0.18, 0.5, 0.6])
    out = tmp_path / "早停"
    train(
        "atto",
        data=tiny_coco,
        output_dir=out,
        overrides=TINY,
        epochs=6,
        patience=2,
        max_iters_per_epoch=1,
        progress=False,
        check_data=False,
    )
    log = _log(out)
    assert [r["epoch"] for r in log] == [0, 1, 2, 3]  # best at epoch 1; epochs 2 and 3 not better -> stop
    assert "stop_reason" not in log[2] and "patience=2" in log[3]["stop_reason"]
    assert "早停" in capsys.readouterr().out
    best, last = load_checkpoint(out / "best.pth"), load_checkpoint(out / "last.pth")
    assert best["epoch"] == 1 and best["best_ap"] == pytest.approx(0.2)
    assert last["epoch"] == 3 and last["early_stop"]["best_epoch"] == 1
    assert best["conf_threshold"] == pytest.approx(0.37)  # the F1-best threshold travels with the weights

    # resuming an early-stopped run needs an explicit patience, large enough not to stop at once
    with pytest.raises(ConfigError, match="早停"):
        train(
            "atto",
            data=tiny_coco,
            output_dir=out,
            overrides=TINY,
            epochs=6,
            resume=out / "last.pth",
            max_iters_per_epoch=1,
            progress=False,
            check_data=False,
        )
    with pytest.raises(ConfigError, match="立刻再次早停"):
        train(
            "atto",
            data=tiny_coco,
            output_dir=out,
            overrides=TINY,
            epochs=6,
            patience=2,
            resume=out / "last.pth",
            max_iters_per_epoch=1,
            progress=False,
            check_data=False,
        )
    _script(monkeypatch, [0.5, 0.6])
    train(
        "atto",
        data=tiny_coco,
        output_dir=out,
        overrides=TINY,
        epochs=6,
        patience=5,
        resume=out / "last.pth",
        max_iters_per_epoch=1,
        progress=False,
        check_data=False,
    )
    assert [r["epoch"] for r in _log(out)] == [0, 1, 2, 3, 4, 5]
    assert load_checkpoint(out / "best.pth")["epoch"] == 5 and "early_stop" not in load_checkpoint(out / "last.pth")


def test_without_patience_all_epochs_run(tiny_coco, tmp_path, monkeypatch):
    _script(monkeypatch, [0.3, 0.1, 0.1])
    out = tmp_path / "run"
    train(
        "atto",
        data=tiny_coco,
        output_dir=out,
        overrides=TINY,
        epochs=3,
        max_iters_per_epoch=1,
        progress=False,
        check_data=False,
    )
    assert [r["epoch"] for r in _log(out)] == [0, 1, 2] and not any("stop_reason" in r for r in _log(out))


def test_detector_uses_the_saved_threshold_unless_conf_is_given(tiny_coco, tmp_path, monkeypatch, capsys):
    from deimv2.cli import main
    from deimv2.infer.detector import Detector

    _script(monkeypatch, [0.3], conf=0.62)
    out = tmp_path / "run"
    train(
        "atto",
        data=tiny_coco,
        output_dir=out,
        overrides=TINY,
        epochs=1,
        max_iters_per_epoch=1,
        progress=False,
        check_data=False,
    )
    capsys.readouterr()
    det = Detector.from_checkpoint(out / "best.pth")
    assert det.conf == pytest.approx(0.62) and "F1 最高" in capsys.readouterr().out
    assert Detector.from_checkpoint(out / "best.pth", conf=0.2).conf == pytest.approx(0.2)
    assert "F1 最高" not in capsys.readouterr().out
    img = next((tiny_coco / "valid").glob("*.jpg"))
    assert main(["predict", "-r", str(out / "best.pth"), "-i", str(img), "-o", str(tmp_path / "p")]) == 0
    said = capsys.readouterr().out
    assert "F1 最高" in said and "置信度阈值 0.62" in said


def test_early_stop_rule_by_hand(tmp_path):
    from deimv2.engine.early_stop import early_stop_reason

    assert (
        early_stop_reason(patience=2, epoch=2, best_epoch=1, best_ap=0.2, epochs=10, output_dir=tmp_path) is None
    )  # 1 epoch without a better AP
    assert "连续 2 轮" in early_stop_reason(
        patience=2, epoch=3, best_epoch=1, best_ap=0.2, epochs=10, output_dir=tmp_path
    )  # 2 epochs: stop
    assert (
        early_stop_reason(patience=2, epoch=9, best_epoch=1, best_ap=0.2, epochs=10, output_dir=tmp_path) is None
    )  # the last epoch ends the run anyway
    assert (
        early_stop_reason(patience=0, epoch=9, best_epoch=1, best_ap=0.2, epochs=20, output_dir=tmp_path) is None
    )  # patience 0 = off
