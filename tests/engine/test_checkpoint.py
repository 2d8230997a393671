"""Atomic checkpoint save and safe load."""

from pathlib import Path

import pytest
import torch
from torch import nn

from deimv2.engine import checkpoint as ckpt_mod
from deimv2.engine.checkpoint import (
    check_plain,
    load_checkpoint,
    make_checkpoint,
    model_state_from_checkpoint,
    save_checkpoint,
)
from deimv2.engine.ema import ModelEMA
from deimv2.engine.schedule import FlatCosineLRScheduler
from deimv2.errors import WeightsError


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "输出 目录"  # Chinese characters and a space
    d.mkdir()
    return d


def test_roundtrip_full_training_checkpoint(folder):
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    sched = FlatCosineLRScheduler(
        opt, lr_gamma=0.5, iter_per_epoch=10, total_epochs=10, warmup_iter=2, flat_epochs=4, no_aug_epochs=2
    )
    sched.step(5)
    scaler = torch.amp.GradScaler("cpu")
    ckpt = make_checkpoint(
        model=model,
        ema=ModelEMA(model),
        optimizer=opt,
        lr_scheduler=sched,
        scaler=scaler,
        epoch=3,
        global_step=40,
        best_ap=0.25,
        config={"epoches": 10, "name": "测试"},
        class_names=["猫", "狗"],
        category_ids=[3, 7],
    )
    path = save_checkpoint(ckpt, folder / "last.pth")
    back = load_checkpoint(path)
    assert set(back) == set(ckpt_mod.CHECKPOINT_KEYS)
    assert back["class_names"] == ["猫", "狗"] and back["category_ids"] == [3, 7]
    assert back["epoch"] == 3 and back["global_step"] == 40 and back["best_ap"] == 0.25
    torch.testing.assert_close(back["model"]["0.weight"], model[0].weight)
    opt2 = torch.optim.AdamW(model.parameters(), lr=1e-3)
    opt2.load_state_dict(back["optimizer"])
    assert back["lr_scheduler"]["last_iter"] == 5
    assert [p.name for p in folder.iterdir()] == ["last.pth"]


def test_interrupted_save_keeps_old_file(folder, monkeypatch):
    path = folder / "last.pth"
    save_checkpoint({"epoch": 1, "w": torch.ones(3)}, path)

    real_save = torch.save

    def broken_save(obj, f, *a, **k):
        f.write(b"PK\x03\x04 partial bytes")
        raise KeyboardInterrupt("killed while saving")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"epoch": 2, "w": torch.zeros(3)}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert [p.name for p in folder.iterdir()] == ["last.pth"]  # no temp file left
    back = load_checkpoint(path)
    assert back["epoch"] == 1 and torch.equal(back["w"], torch.ones(3))


def test_missing_and_invalid_files(folder):
    with pytest.raises(WeightsError, match="找不到"):
        load_checkpoint(folder / "nope.pth")
    bad = folder / "bad.pth"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(WeightsError, match="不是可读取的"):
        load_checkpoint(bad)
    truncated = folder / "truncated.pth"
    save_checkpoint({"w": torch.ones(100)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(WeightsError):
        load_checkpoint(truncated)
    not_dict = folder / "tensor.pth"
    save_checkpoint(torch.ones(2), not_dict)
    with pytest.raises(WeightsError, match="不是 checkpoint 字典"):
        load_checkpoint(not_dict)


class Custom:
    pass


def test_python_objects_are_refused(folder):
    path = folder / "unsafe.pth"
    torch.save({"obj": Custom()}, path)  # a file made elsewhere with a pickled class
    with pytest.raises(WeightsError, match="weights_only"):
        load_checkpoint(path)
    with pytest.raises(TypeError, match="Path"):
        check_plain({"config": {"dir": Path("x")}})
    with pytest.raises(TypeError):
        make_checkpoint(
            model=nn.Linear(1, 1),
            epoch=0,
            global_step=0,
            best_ap=0.0,
            config={"obj": Custom()},
            class_names=[],
            category_ids=[],
        )


def test_model_state_preference():
    m = {"a": torch.ones(1)}
    e = {"a": torch.zeros(1)}
    assert model_state_from_checkpoint({"model": m, "ema": {"module": e, "updates": 1}})["a"].item() == 0
    assert model_state_from_checkpoint({"model": m, "ema": {"module": e}}, prefer_ema=False)["a"].item() == 1
    assert model_state_from_checkpoint({"model": m})["a"].item() == 1
    assert model_state_from_checkpoint(m)["a"].item() == 1
    with pytest.raises(WeightsError, match="'ema'"):
        model_state_from_checkpoint({"date": "2025", "last_epoch": 3})
