"""Training loop: it learns, checkpoints are complete and atomic, resume continues, tune skips heads, NaN stops."""

import json
import math

import pytest
import torch
from helpers.tinydata import TINY_TRAIN

from deimv2.engine.api import evaluate, prepare_trainer, train
from deimv2.engine.checkpoint import load_checkpoint
from deimv2.engine.trainer import NonFiniteLossError

TINY = {
    **TINY_TRAIN,
    "batch_size": 2,
    "scale_lr": False,  # batch 2 vs the recipe's 128 would scale the LR by 1/64 (tested in test_batch_rule.py)
}


def test_loss_falls_on_a_tiny_set(tiny_coco, tmp_path):
    torch.manual_seed(0)
    t = prepare_trainer(
        "atto",
        data=tiny_coco,
        output_dir=tmp_path / "out",
        overrides=TINY,
        epochs=40,
        progress=False,
        warmup_iter=1,
        **{
            "train_dataloader.dataset.transforms.policy.epoch": [99, 100, 101],
            "train_dataloader.collate_fn.stop_epoch": 101,
        },
    )
    images, targets = next(iter(t.data.train_loader))
    images = t.speed.prepare_images(images)  # the memory order the model trains in, as the trainer's step does
    t.model.train()
    losses = []
    for _step in range(24):  # Adam's first steps amplify rounding: the path differs with threads and memory order
        out = t.model(images, targets=targets)
        loss = sum(t.criterion(out, targets, epoch=0).values())
        t.optimizer.zero_grad()
        loss.backward()
        t.optimizer.step()
        losses.append(float(loss.detach()))
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.75 * losses[0], losses


def test_train_writes_checkpoints_logs_and_resumes_exactly(tiny_coco, tmp_path):
    out = tmp_path / "运行 1"
    metrics = train(
        "atto",
        data=tiny_coco,
        output_dir=out,
        overrides=TINY,
        epochs=3,
        max_iters_per_epoch=2,
        progress=False,
        check_data=True,
    )
    for name in ("last.pth", "best.pth", "log.jsonl", "eval.json", "config.yaml"):
        assert (out / name).is_file(), name
    assert {"AP", "AP50", "per_class", "best_AP"} <= set(metrics)
    ckpt = load_checkpoint(out / "last.pth")
    assert {"model", "ema", "optimizer", "lr_scheduler", "epoch", "config", "class_names", "category_ids"} <= set(ckpt)
    assert ckpt["epoch"] == 2 and ckpt["class_names"] == ["红色", "绿色", "蓝色"] and ckpt["category_ids"] == [0, 1, 2]
    assert len((out / "log.jsonl").read_text(encoding="utf-8").splitlines()) == 3

    # resume from the epoch-2 checkpoint into a longer schedule: same LR, EMA and step continue
    t = prepare_trainer(
        "atto",
        data=tiny_coco,
        output_dir=tmp_path / "resumed",
        overrides=TINY,
        epochs=3,
        max_iters_per_epoch=2,
        progress=False,
    )
    t.resume(out / "last.pth")
    assert t.start_epoch == 3 and t.global_step == ckpt["global_step"]
    assert t.scheduler.last_iter == ckpt["lr_scheduler"]["last_iter"]
    assert [g["lr"] for g in t.optimizer.param_groups] == pytest.approx(
        [g["lr"] for g in ckpt["optimizer"]["param_groups"]]
    )
    ema_now = t.ema.module.state_dict()
    assert all(torch.equal(ema_now[k], v) for k, v in ckpt["ema"]["module"].items())
    assert t.ema.updates == ckpt["ema"]["updates"]
    state = t.optimizer.state_dict()["state"]
    assert all(torch.equal(state[i]["exp_avg"], ckpt["optimizer"]["state"][i]["exp_avg"]) for i in list(state)[:5])


def test_evaluate_our_checkpoint_without_config(tiny_coco, tmp_path):
    out = tmp_path / "out"
    train("atto", data=tiny_coco, output_dir=out, overrides=TINY, epochs=1, max_iters_per_epoch=1, progress=False)
    (out / "eval.json").unlink()
    metrics = evaluate(None, out / "best.pth", data=tiny_coco)
    # the stored config rebuilds the model and the EMA weights reproduce the AP measured during training
    assert metrics["AP"] == pytest.approx(load_checkpoint(out / "best.pth")["best_ap"], abs=1e-12)
    assert json.loads((out / "eval.json").read_text(encoding="utf-8"))["AP"] == pytest.approx(metrics["AP"])


def test_tune_into_other_num_classes_skips_heads(tiny_coco, tmp_path):
    from deimv2.models.build import build_model

    coco80 = tmp_path / "coco80.pth"
    src = build_model(
        "atto", num_classes=80, eval_spatial_size=[96, 96], overrides={"DEIMTransformer.num_queries": 30}
    ).state_dict()
    torch.save({"model": src}, coco80)
    t = prepare_trainer("atto", data=tiny_coco, output_dir=tmp_path / "tune", overrides=TINY, epochs=1, progress=False)
    report = t.tune(coco80)
    ours = t.model.state_dict()
    # exactly the tensors whose shape depends on num_classes are skipped; everything else is loaded
    by_class = sorted(k for k, v in src.items() if ours[k].shape != v.shape)
    assert by_class and all("score_head" in k or "denoising_class_embed" in k for k in by_class)
    assert sorted(k for k, _ in report.skipped) == by_class and report.loaded == len(src) - len(by_class)
    assert all(torch.equal(ours[k], src[k]) for k in src if k not in by_class)
    assert all(torch.equal(t.ema.module.state_dict()[k], ours[k]) for k in ours)


def test_non_finite_loss_stops_and_keeps_last_good(tiny_coco, tmp_path, monkeypatch):
    out = tmp_path / "nan"
    train("atto", data=tiny_coco, output_dir=out, overrides=TINY, epochs=1, max_iters_per_epoch=1, progress=False)
    good = (out / "last.pth").read_bytes()
    t = prepare_trainer(
        "atto", data=tiny_coco, output_dir=out, overrides=TINY, epochs=2, max_iters_per_epoch=1, progress=False
    )
    t.resume(out / "last.pth")
    real = t.criterion.forward
    monkeypatch.setattr(
        t.criterion, "forward", lambda *a, **k: {k2: v * float("nan") for k2, v in real(*a, **k).items()}
    )
    with pytest.raises(NonFiniteLossError, match="last.pth"):
        t.fit()
    assert (out / "last.pth").read_bytes() == good


def test_accumulation_keeps_the_effective_batch(tiny_coco, tmp_path):
    t = prepare_trainer(
        "atto",
        data=tiny_coco,
        output_dir=tmp_path / "acc",
        overrides={**TINY, "batch_size": 4},
        accumulate=2,
        epochs=1,
        progress=False,
    )
    assert t.batch_per_step == 2 and t.iters_per_epoch == len(t.data.train_loader) // 2


def test_one_based_dataset_maps_back_to_user_ids(tmp_path):
    from helpers.tinydata import make_coco_dataset

    data = make_coco_dataset(tmp_path / "one", one_based=True)
    t = prepare_trainer("atto", data=data, output_dir=tmp_path / "o", overrides=TINY, epochs=1, progress=False)
    assert t.category_ids == [1, 2, 3] and t.cfg.num_classes == 3


def test_a_new_run_never_overwrites_a_finished_one(tmp_path):
    from deimv2.engine.run_files import fresh_output_dir, latest_run

    run = tmp_path / "run"
    assert fresh_output_dir(run) == run
    run.mkdir(exist_ok=True)  # fresh_output_dir claims (creates) the folder it returns
    (run / "best.pth").write_bytes(b"old")
    new = fresh_output_dir(run)
    assert new == tmp_path / "run-2"
    new.mkdir(exist_ok=True)
    (new / "best.pth").write_bytes(b"new")
    assert fresh_output_dir(run) == tmp_path / "run-3"
    assert latest_run(run) == new


def test_warmup_is_capped_on_small_data_unless_set(tiny_coco, tmp_path):
    auto = prepare_trainer("atto", data=tiny_coco, output_dir=tmp_path / "a", overrides=TINY, epochs=10, progress=False)
    assert auto.warmup_iter == max(1, auto.cfg.data.policy["epoch"][0]) * auto.iters_per_epoch < 4000
    fixed = prepare_trainer(
        "atto", data=tiny_coco, output_dir=tmp_path / "b", overrides=TINY, epochs=10, progress=False, warmup_iter=123
    )
    assert fixed.warmup_iter == fixed.scheduler.warmup_iter == 123
    # the LR still ramps up at step 122 although the capped warmup would have ended long before
    base, lr = fixed.scheduler.base_lrs[-1], fixed.scheduler.lr_at
    assert 0 < lr(61)[-1] < lr(122)[-1] < base and auto.scheduler.lr_at(auto.warmup_iter + 1)[-1] > lr(122)[-1]


def test_training_reaches_an_ap_that_an_untrained_model_does_not(tmp_path):
    """Learning, measured: 40 epochs on 8 images (evaluated on the same images, no strong augmentation).

    The untrained model stays below the first bound; training must clear the second by a wide margin.
    """
    import shutil

    from helpers.tinydata import make_coco_dataset

    data = make_coco_dataset(tmp_path / "data", n_train=8, n_val=1)
    shutil.rmtree(data / "valid")
    shutil.copytree(data / "train", data / "valid")
    overrides = {
        **TINY,
        "batch_size": 4,
        "train_dataloader.dataset.transforms.policy.epoch": [99, 100, 101],
        "train_dataloader.collate_fn.stop_epoch": 101,
    }
    torch.manual_seed(0)
    untrained = prepare_trainer(
        "atto", data=data, output_dir=tmp_path / "u", overrides=overrides, progress=False
    ).evaluate()
    torch.manual_seed(0)
    trained = train(
        "atto", data=data, output_dir=tmp_path / "t", overrides=overrides, epochs=40, warmup_iter=1, progress=False
    )
    assert untrained["AP50"] < 0.05, untrained["AP50"]
    assert trained["AP50"] > 0.5 and trained["AP"] > 0.2, (trained["AP50"], trained["AP"])


def test_checkpoint_freq_and_print_freq_do_what_they_say(tiny_coco, tmp_path, capsys):
    """checkpoint_freq: an extra checkpoint<epoch>.pth every N epochs (official solver); print_freq: without a
    progress bar, a loss line every N optimizer steps; 0 turns each off."""
    out = tmp_path / "每 2 轮"
    ov = {**TINY, "checkpoint_freq": 2, "print_freq": 1}
    train("atto", data=tiny_coco, output_dir=out, overrides=ov, epochs=3, max_iters_per_epoch=2, progress=False)
    assert sorted(p.name for p in out.glob("checkpoint*.pth")) == ["checkpoint0001.pth"]  # after epoch 2 of 3
    assert load_checkpoint(out / "checkpoint0001.pth")["epoch"] == 1
    text = capsys.readouterr().out
    assert "第 1 轮第 1/2 步：loss=" in text and "第 3 轮第 2/2 步：loss=" in text
    off = tmp_path / "关"
    ov = {**TINY, "checkpoint_freq": 0, "print_freq": 0}
    train("atto", data=tiny_coco, output_dir=off, overrides=ov, epochs=2, max_iters_per_epoch=2, progress=False)
    assert not list(off.glob("checkpoint*.pth")) and "步：loss=" not in capsys.readouterr().out
