"""The training loop: official DEIMv2 recipe, AMP, EMA, accumulation, DDP, atomic checkpoints, resume/tune.

:class:`Trainer` reads the frozen :class:`~deimv2.config.run_config.RunConfig` of its run and never changes it;
:func:`deimv2.engine.api.train` and :func:`~deimv2.engine.api.evaluate` (``deimv2 train`` / ``deimv2 eval``,
notebooks ``04_train.ipynb`` and ``06_evaluate.ipynb``) build one with :func:`~deimv2.engine.api.open_trainer`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from deimv2.config.run_config import RunConfig
from deimv2.engine import dist
from deimv2.engine.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from deimv2.engine.early_stop import early_stop_reason
from deimv2.engine.ema import ModelEMA
from deimv2.engine.evaluate import CocoEvaluator, save_eval_json
from deimv2.engine.logger import JsonlLogger, MetricMeter, make_tensorboard_writer
from deimv2.engine.optim import build_optimizer
from deimv2.engine.rng import capture_rng_state, restore_rng_state
from deimv2.engine.schedule import FlatCosineLRScheduler
from deimv2.engine.setup import amp_settings, build_data
from deimv2.engine.speed import SpeedOptions, SpeedPlan
from deimv2.errors import DEIMv2Error, WeightsError
from deimv2.loss import build_criterion
from deimv2.models.build import build_model_from_config, build_postprocessor
from deimv2.weights.formats import num_classes_of_state_dict, variant_of_state_dict
from deimv2.weights.hub import download_hgnetv2_backbone
from deimv2.weights.load import (
    expected_backbone_path,
    fill_shared_keys,
    load_backbone_weights,
    load_for_finetune,
    missing_backbone_error,
)

_log = logging.getLogger(__name__)

#: the metrics of an evaluation that go into each line of ``log.jsonl``
LOGGED_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100")


class NonFiniteLossError(DEIMv2Error):
    """The loss became NaN/inf; the last good checkpoint is kept."""


#: TensorBoard gets the step loss every this many optimizer steps (the official det_engine's fixed 10)
TENSORBOARD_EVERY = 10


def _say(msg: str) -> None:
    if dist.is_main_process():
        _log.info(msg)


class Trainer:
    """Owns model, EMA, optimizer, scheduler, data and the loop. Built by :func:`deimv2.engine.api.open_trainer`.

    ``run``: the run's frozen config; the trainer reads ``run.cfg`` (as ``self.cfg``) and never replaces it.
    ``train=False``: only what evaluation needs (no training split, one step per epoch).
    """

    def __init__(
        self,
        run: RunConfig,
        device: torch.device,
        output_dir: Path,
        progress: bool = True,
        max_iters_per_epoch: int | None = None,
        train: bool = True,
    ):
        cfg = run.cfg
        self.run, self.cfg, self.device, self.output_dir, self.progress = run, cfg, device, output_dir, progress
        self.max_iters = max_iters_per_epoch
        self.batch_scaling = run.batch_scaling  # what the batch-size rule did (build_run_config applied it)
        self.warmup_explicit = "warmup_iter" in run.explicit
        self.distributed = dist.is_dist()
        # build_run_config checked that the total batch splits evenly over the processes and accumulation steps
        self.batch_per_step = cfg.data.batch_size // (dist.get_world_size() * cfg.train.accumulate)
        self.data = build_data(cfg, self.batch_per_step, self.distributed, train=train, device=device)
        self.class_names, self.category_ids = self.data.class_names, self.data.category_ids
        self._build_model()
        self._build_optimization(train)
        self._init_progress()

    # ------------------------------------------------------------------ set-up steps
    def _build_model(self) -> None:
        """Model (speed options first: memory order before the EMA copy and the optimizer), loss, AMP, EMA."""
        cfg, device = self.cfg, self.device
        self.speed = SpeedPlan(SpeedOptions.from_config(cfg.train), device)
        self.model = self.speed.prepare_model(build_model_from_config(cfg).to(device))
        self.criterion = build_criterion(cfg).to(device)
        self.postprocessor = build_postprocessor(cfg).to(device)
        self.amp, self.amp_dtype, use_scaler = amp_settings(cfg.train.use_amp, device, cfg.train.amp_dtype)
        if self.speed.cpu_amp:  # bf16 autocast on CPU (cpu_amp), as use_amp on CUDA
            self.amp, self.amp_dtype = True, torch.bfloat16
        self.scaler = torch.amp.GradScaler("cuda") if use_scaler else None
        t = cfg.train
        self.ema = ModelEMA(self.model, t.ema_decay, t.ema_warmups, t.ema_start) if t.use_ema else None

    def _build_optimization(self, train: bool) -> None:
        """Optimizer, LR schedule (steps per epoch, warm-up), the stage-2 epoch and the model the loop runs."""
        cfg, s = self.cfg, self.cfg.schedule
        o = cfg.optimizer
        self.optimizer = build_optimizer(self.model, o.param_groups, o.lr, o.betas, o.weight_decay)
        self.iters_per_epoch = self._optimizer_steps_per_epoch() if train else 1
        self.warmup_iter = self._effective_warmup()
        self.scheduler = FlatCosineLRScheduler(
            self.optimizer,
            lr_gamma=s.lr_gamma,
            iter_per_epoch=self.iters_per_epoch,
            total_epochs=s.epochs,
            warmup_iter=self.warmup_iter,
            flat_epochs=s.flat_epoch,
            no_aug_epochs=s.no_aug_epoch,
        )
        self.stop_epoch = int(cfg.data.collate.get("stop_epoch", s.epochs - s.no_aug_epoch))
        self.train_model = dist.wrap_model(self.model, cfg.train.sync_bn, cfg.train.find_unused_parameters)
        self.train_model = self.speed.compile(self.train_model)  # the module itself unless compile=true

    def _init_progress(self) -> None:
        """Where the run stands (epoch, step, best AP …) and its logs."""
        self.start_epoch, self.global_step, self.best_ap, self.best_epoch = 0, 0, -1.0, -1
        self.rng_state: dict | None = None  # RNG states at the end of the last trained epoch (saved in last.pth)
        self._resume_rng: dict | None = None
        self.history: list[dict] = []
        self.conf_threshold: float | None = None  # F1-best threshold of the latest evaluation (engine/f1.py)
        self.early_stop: dict | None = None  # set when patience ends the run; ``resumed_early_stop``: read by -r
        self.resumed_early_stop: dict | None = None
        main = dist.is_main_process()
        self.logger = JsonlLogger(self.output_dir / "log.jsonl") if main else None
        tensorboard = main and self.cfg.train.tensorboard
        self.writer = make_tensorboard_writer(self.output_dir / "tensorboard") if tensorboard else None

    def _optimizer_steps_per_epoch(self) -> int:
        n = len(self.data.train_loader)
        if self.max_iters:
            n = min(n, self.max_iters * self.cfg.train.accumulate)
        return max(1, n // self.cfg.train.accumulate)

    def _effective_warmup(self) -> int:
        """The official warmup is counted in COCO iterations; on a small dataset we end it no later than
        the epoch where the augmentation policy starts (official: ≈ 4 epochs), unless set explicitly."""
        w = self.cfg.schedule.warmup_iter
        if self.warmup_explicit:
            return w
        e0 = (self.cfg.data.policy.get("epoch") or [4])[0]
        return int(min(w, max(1, e0) * self.iters_per_epoch))

    # ------------------------------------------------------------------ checkpoints
    def _state(self, epoch: int) -> dict:
        return make_checkpoint(
            model=self.model,
            epoch=epoch,
            global_step=self.global_step,
            best_ap=self.best_ap,
            config=self.cfg.to_dict(),
            class_names=self.class_names,
            category_ids=self.category_ids,
            ema=self.ema,
            optimizer=self.optimizer,
            lr_scheduler=self.scheduler,
            scaler=self.scaler,
        )

    def save(self, name: str, epoch: int) -> Path | None:
        if not dist.is_main_process():
            return None
        state = self._state(epoch)
        state["best_epoch"] = self.best_epoch
        if self.conf_threshold is not None:
            state["conf_threshold"] = float(self.conf_threshold)
        if self.early_stop is not None:
            state["early_stop"] = dict(self.early_stop)
        if self.rng_state is not None:
            state["rng"] = self.rng_state
        return save_checkpoint(state, self.output_dir / name)

    def resume(self, path: str | Path) -> None:
        """Continue exactly: weights, EMA, optimizer, scheduler, scaler, epoch, best AP, RNG states."""
        ckpt = load_checkpoint(path)
        if "optimizer" not in ckpt or "epoch" not in ckpt and "last_epoch" not in ckpt:
            raise WeightsError(f"{path} 只有模型权重，没有优化器状态和轮数，不能用 -r 继续训练。请改用 -t 微调。")
        self._load_weights_state(ckpt, str(path))
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if "lr_scheduler" in ckpt:
            self.scheduler.load_state_dict(ckpt["lr_scheduler"])
        if self.scaler is not None and "scaler" in ckpt:
            self.scaler.load_state_dict(ckpt["scaler"])
        last = int(ckpt.get("epoch", ckpt.get("last_epoch", -1)))
        self.start_epoch = last + 1
        self.global_step = int(ckpt.get("global_step", self.start_epoch * self.iters_per_epoch))
        self.best_ap = float(ckpt.get("best_ap", -1.0))
        self.best_epoch = int(ckpt.get("best_epoch", -1))
        self.conf_threshold = ckpt.get("conf_threshold")
        self.resumed_early_stop = ckpt.get("early_stop")
        self._resume_rng = ckpt.get("rng")  # restored when fit() starts, after any set-up that draws numbers
        if self.start_epoch < self.cfg.schedule.epochs:  # else train() says the run is finished
            _say(f"从 {path} 继续训练：第 {self.start_epoch + 1} 轮开始，当前最佳 AP={self.best_ap:.4f}。")

    def _load_weights_state(self, ckpt: Mapping, where: str) -> None:
        model_sd = ckpt.get("model")
        if model_sd is None:
            raise WeightsError(f"{where} 里没有 'model' 权重。")
        try:
            self.model.load_state_dict(fill_shared_keys(dict(model_sd), self.model))
        except RuntimeError as e:  # another variant or another num_classes
            got = f"DEIMv2-{(variant_of_state_dict(model_sd) or '?').upper()}，{num_classes_of_state_dict(model_sd)} 类"
            want = (
                f"DEIMv2-{(variant_of_state_dict(self.model.state_dict()) or '?').upper()}，{self.cfg.num_classes} 类"
            )
            raise WeightsError(
                f"{where} 与这次训练的模型不一致：文件里是 {got}，配置/数据集要求 {want}"
                f"（{str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else e}）。"
                "-r 只能接着同一个变体、同一份类别的训练；换了数据集或类别请用 -t 微调。"
            ) from None
        if self.ema is not None:
            ema = ckpt.get("ema")
            if isinstance(ema, Mapping) and "module" in ema:
                self.ema.load_state_dict(
                    {"module": fill_shared_keys(dict(ema["module"]), self.ema.module), "updates": ema.get("updates", 0)}
                )
            else:  # official: an EMA missing from the file is filled from the model
                self.ema.module.load_state_dict(self.model.state_dict())

    def tune(self, path: str | Path):
        """Fine-tune: weights only (EMA preferred); heads that depend on num_classes are skipped and listed."""
        report = load_for_finetune(self.model, path)
        _say(report.summary())
        if self.ema is not None:
            self.ema.module.load_state_dict(self.model.state_dict())
        return report

    def load_backbone(self, required: bool = True) -> None:
        path = expected_backbone_path(self.cfg)
        if path is None:
            _say("骨干网络从随机初始化开始训练（配置没有指定预训练权重）。")
            return
        if not path.is_file() and not required:  # -t coco without the official weights: from scratch, as said
            _say(f"骨干网络的预训练权重 {path.resolve()} 也没有：骨干网络从随机初始化开始训练。")
            return
        if not path.is_file():
            if self.cfg.model.backbone_type != "HGNetv2":  # DINOv3 / ViT-Tiny files: by hand, as officially
                raise missing_backbone_error(self.cfg, path)
            if dist.is_main_process():  # as the official HGNetv2: rank 0 downloads, the others wait for the file
                _say(f"没有找到 {path}，从 D-FINE 的发布页自动下载（与官方训练代码相同）……")
                download_hgnetv2_backbone(self.cfg, path, progress=self.progress)
            if self.distributed:
                dist.barrier()
        report = load_backbone_weights(self.model, path)
        _say(f"已加载骨干网络预训练权重：{report.path}（{report.format}）")
        if self.ema is not None:
            self.ema.module.load_state_dict(self.model.state_dict())

    # ------------------------------------------------------------------ loop
    def _autocast(self):
        if not self.amp:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _set_epoch(self, epoch: int) -> None:
        self.data.train_dataset.set_epoch(epoch)
        self.data.collate.set_epoch(epoch)
        sampler = getattr(self.data.train_loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)

    def _restart_from_best(self, epoch: int, decay: float) -> None:
        best = self.output_dir / "best.pth"
        if self.distributed:
            dist.barrier()  # rank 0 has finished writing best.pth before anyone looks for it
        if best.is_file():
            ckpt = load_checkpoint(best)
            self._load_weights_state(ckpt, str(best))
            self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.ema is not None:
            self.ema.restart(decay)
        why = "进入无强增强阶段" if epoch == self.stop_epoch else "无强增强阶段本轮没有提升"
        _say(f"第 {epoch + 1} 轮（{why}）：{'载入最佳权重并' if best.is_file() else ''}重启 EMA（decay={decay:.4f}）。")

    def train_one_epoch(self, epoch: int) -> dict[str, float]:
        acc = self.cfg.train.accumulate
        self.train_model.train()
        self.criterion.train()
        meter = MetricMeter()
        total = self.iters_per_epoch * acc
        bar = tqdm(
            self.data.train_loader,
            total=total,
            desc=f"第 {epoch + 1}/{self.cfg.schedule.epochs} 轮",
            leave=False,
            disable=not (self.progress and dist.is_main_process()),
            dynamic_ncols=True,
        )
        self.optimizer.zero_grad(set_to_none=True)
        for i, (images, targets) in enumerate(bar):
            if i >= total:
                break
            loss_value, reduced = self._forward_backward(images, targets, epoch, i)
            if (i + 1) % acc:
                continue
            self._optimizer_step()
            meter.update(loss=loss_value, **reduced)
            self._report_step(bar, epoch, (i + 1) // acc, loss_value)
        bar.close()
        meter.synchronize_between_processes()
        stats = meter.global_averages()
        stats["lr"] = self.optimizer.param_groups[-1]["lr"]
        return stats

    def _forward_backward(self, images, targets, epoch: int, i: int) -> tuple[float, dict[str, float]]:
        """Loss of micro-batch ``i`` (the criterion in fp32), its gradients (÷ ``accumulate``); the loss summed over
        the processes, and its parts. A NaN/inf loss stops the run (``last.pth`` keeps the last good epoch)."""
        acc = self.cfg.train.accumulate
        images = self.speed.prepare_images(images.to(self.device, non_blocking=True))
        targets = [{k: v.to(self.device) for k, v in t.items()} for t in targets]
        metas = dict(epoch=epoch, step=i // acc, global_step=self.global_step, epoch_step=self.iters_per_epoch)
        with self._autocast():
            outputs = self.train_model(images, targets=targets)
        with torch.autocast(device_type=self.device.type, enabled=False):
            loss_dict = self.criterion(outputs, targets, **metas)
        loss = sum(loss_dict.values())
        reduced = dist.all_reduce_dict({k: v.detach() for k, v in loss_dict.items()})
        loss_value = sum(reduced.values())
        if not math.isfinite(loss_value):
            bad = {k: v for k, v in reduced.items() if not math.isfinite(v)}
            raise NonFiniteLossError(
                f"第 {epoch} 轮第 {i} 步损失变成了 {loss_value}（{bad}）。训练已停止，{self.output_dir / 'last.pth'} "
                f"保留上一轮的正常权重。常见原因：学习率太大、标注框有问题（先运行 deimv2 doctor）、fp16 溢出"
                f"（改用 bf16 或关闭 --use-amp）。"
            )
        scaled = loss / acc
        (self.scaler.scale(scaled) if self.scaler else scaled).backward()
        return loss_value, reduced

    def _optimizer_step(self) -> None:
        """Gradient clipping, the optimizer (through the GradScaler for fp16), EMA and the LR schedule."""
        opt = self.optimizer
        if self.scaler is not None:
            self.scaler.unscale_(opt)
        if self.cfg.train.clip_max_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.train_model.parameters(), self.cfg.train.clip_max_norm)
        if self.scaler is not None:
            self.scaler.step(opt)
            self.scaler.update()
        else:
            opt.step()
        opt.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model)
        self.scheduler.step(self.global_step)
        self.global_step += 1

    def _report_step(self, bar, epoch: int, step: int, loss_value: float) -> None:
        """The progress bar, a console line every ``print_freq`` steps without a bar, TensorBoard."""
        lr = self.optimizer.param_groups[-1]["lr"]
        bar.set_postfix(loss=f"{loss_value:.3f}", lr=f"{lr:.2e}")
        freq = self.cfg.train.print_freq
        if not self.progress and freq > 0 and step % freq == 0:
            _say(f"  第 {epoch + 1} 轮第 {step}/{self.iters_per_epoch} 步：loss={loss_value:.4f}  lr={lr:.2e}")
        if self.writer is not None and self.global_step % TENSORBOARD_EVERY == 0:
            self.writer.add_scalar("loss/total", loss_value, self.global_step)

    @torch.no_grad()
    def evaluate(self, module: torch.nn.Module | None = None) -> dict[str, Any]:
        module = module or (self.ema.module if self.ema is not None else self.model)
        module.eval()
        evaluator = CocoEvaluator(self.data.val_dataset.coco, self.category_ids, self.class_names)
        for images, targets in self.data.val_loader:
            images = images.to(self.device)
            with self._autocast():
                outputs = module(images)
            sizes = torch.stack([t["orig_size"] for t in targets]).to(self.device)
            results = self.postprocessor({k: v.float() for k, v in outputs.items()}, sizes)
            evaluator.update({int(t["image_id"]): r for t, r in zip(targets, results)})
        evaluator.synchronize_between_processes()
        return evaluator.compute()

    def fit(self, callback: Callable[[dict], None] | None = None) -> dict[str, Any]:
        """Train from ``start_epoch`` to the end (or an early stop); the last evaluation's metrics."""
        metrics: dict[str, Any] = {}
        if self.global_step == 0:  # the first step uses the warmup LR, not the full one
            self.scheduler.step(0)
        loader_gen = getattr(self.data.train_loader, "generator", None)
        if self._resume_rng is not None:
            restore_rng_state(self._resume_rng, loader_gen)
            self._resume_rng = None
        for epoch in range(self.start_epoch, self.cfg.schedule.epochs):
            self._set_epoch(epoch)
            if epoch == self.stop_epoch and epoch > 0:
                self._restart_from_best(epoch, self.cfg.train.ema_restart_decay)
            t0 = time.time()
            stats = self.train_one_epoch(epoch)
            self.rng_state = capture_rng_state(loader_gen)
            self._save_epoch(epoch)
            metrics = self.evaluate()
            self._keep_best(epoch, metrics)
            record = self._record(epoch, time.time() - t0, stats, metrics)
            if callback is not None:
                callback(record)
            if record.get("stop_reason"):
                self._stop_early(epoch, record["stop_reason"])
                break
        return metrics

    def _save_epoch(self, epoch: int) -> None:
        self.save("last.pth", epoch)
        freq = self.cfg.train.checkpoint_freq
        if freq > 0 and (epoch + 1) % freq == 0:  # as the official solver: an extra checkpoint every freq epochs
            self.save(f"checkpoint{epoch:04}.pth", epoch)

    def _keep_best(self, epoch: int, metrics: Mapping[str, Any]) -> None:
        """A better AP writes ``best.pth``; in the no-aug stage a worse one goes back to it (official stage 2)."""
        self.conf_threshold = metrics.get("best_conf")
        ap = float(metrics["AP"])
        if ap > self.best_ap:
            self.best_ap, self.best_epoch = ap, epoch
            self.save("best.pth", epoch)
            self.save("last.pth", epoch)  # keep best_ap in last.pth in step with best.pth
        elif epoch >= self.stop_epoch and self.ema is not None:
            # official stage-2 rule: a non-improving epoch goes back to the best weights and restarts EMA.
            # (The official code also writes ema.decay -= 1e-4, which its EMA never reads: same decay here.)
            self._restart_from_best(epoch, self.cfg.train.ema_restart_decay)

    def _record(self, epoch: int, seconds: float, stats: Mapping, metrics: Mapping[str, Any]) -> dict[str, Any]:
        """The epoch's line of ``log.jsonl`` (with ``stop_reason`` when patience ends the run), written with
        ``eval.json`` and said on the console."""
        epochs = self.cfg.schedule.epochs
        record = {
            "epoch": epoch,
            "time_s": round(seconds, 2),
            **{f"train_{k}": v for k, v in stats.items()},
            **{k: metrics[k] for k in LOGGED_METRICS},
            "best_AP": self.best_ap,
            "best_epoch": self.best_epoch,
        }
        stop = early_stop_reason(
            patience=self.cfg.train.patience,
            epoch=epoch,
            best_epoch=self.best_epoch,
            best_ap=self.best_ap,
            epochs=epochs,
            output_dir=self.output_dir,
        )
        if stop:
            record["stop_reason"] = stop
        self.history.append(record)
        if self.logger is not None:
            self.logger.log(record)
            save_eval_json(metrics, self.output_dir / "eval.json")
        _say(
            f"第 {epoch + 1}/{epochs} 轮：loss={stats.get('loss', float('nan')):.4f}  "
            f"AP={float(metrics['AP']):.4f}  AP50={metrics['AP50']:.4f}  最佳 AP={self.best_ap:.4f}"
            f"（第 {self.best_epoch + 1} 轮）  用时 {record['time_s']:.1f}s"
        )
        return record

    def _stop_early(self, epoch: int, reason: str) -> None:
        self.early_stop = {
            "epoch": epoch,
            "patience": self.cfg.train.patience,
            "best_epoch": self.best_epoch,
            "best_ap": self.best_ap,
            "reason": reason,
        }
        self.save("last.pth", epoch)
        _say(reason)
