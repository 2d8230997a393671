"""The training loop: official DEIMv2 recipe, AMP, EMA, accumulation, DDP, atomic checkpoints, resume/tune.

Python API for the notebooks: :func:`train` and :func:`evaluate` (explained in ``04_train.ipynb``
and ``06_evaluate.ipynb``). ``deimv2 train`` / ``deimv2 eval`` call the same functions.
Outputs in ``output_dir``: ``last.pth`` (every epoch), ``best.pth`` (best val AP), ``log.jsonl``
(one line per epoch), ``eval.json`` (the latest evaluation), ``config.yaml``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from deimv2.config.batch_rule import apply_batch_rule, batch_scaling_line, format_batch_scaling
from deimv2.config.checks import check_image_size
from deimv2.config.loader import ALIASES, Config, format_milestones, load_config, parse_overrides, save_config
from deimv2.config.recipes import REASON, check_recipe, merge_recipe
from deimv2.data.doctor import check_dataset
from deimv2.data.layout import find_dataset, read_coco_json
from deimv2.engine import dist
from deimv2.engine.autobatch import resolve_auto_batch, split_auto_batch
from deimv2.engine.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from deimv2.engine.early_stop import check_resume_after_early_stop, early_stop_reason
from deimv2.engine.ema import ModelEMA
from deimv2.engine.evaluate import CocoEvaluator, check_class_names, format_metrics_table, save_eval_json
from deimv2.engine.logger import JsonlLogger, MetricMeter, make_tensorboard_writer
from deimv2.engine.optim import build_optimizer
from deimv2.engine.rng import capture_rng_state, restore_rng_state
from deimv2.engine.run_files import check_not_finished, finish_line, resume_target
from deimv2.engine.schedule import FlatCosineLRScheduler
from deimv2.engine.setup import (
    amp_settings,
    apply_data_dir,
    build_data,
    measure_activation_bytes,
    memory_table,
    prepare_run_data,
    process_device,
)
from deimv2.engine.speed import SpeedOptions, SpeedPlan
from deimv2.errors import ConfigError, DEIMv2Error, WeightsError
from deimv2.loss import build_criterion
from deimv2.models.build import build_model_from_config, build_postprocessor
from deimv2.utils.inputs import resolve_checkpoint
from deimv2.utils.outputs import claim_output_dir, ensure_output_dir
from deimv2.weights.formats import num_classes_of_state_dict, variant_of_state_dict
from deimv2.weights.hub import coco_target, download_hgnetv2_backbone
from deimv2.weights.load import (
    expected_backbone_path,
    fill_shared_keys,
    load_backbone_weights,
    load_for_finetune,
    load_weights,
    missing_backbone_error,
)

_log = logging.getLogger(__name__)


class NonFiniteLossError(DEIMv2Error):
    """The loss became NaN/inf; the last good checkpoint is kept."""


#: TensorBoard gets the step loss every this many optimizer steps (the official det_engine's fixed 10)
TENSORBOARD_EVERY = 10


def _say(msg: str) -> None:
    if dist.is_main_process():
        _log.info(msg)


class Trainer:
    """Owns model, EMA, optimizer, scheduler, data and the loop. Build with :func:`prepare_trainer`."""

    def __init__(
        self,
        cfg: Config,
        device: torch.device,
        output_dir: Path,
        progress: bool = True,
        max_iters_per_epoch: int | None = None,
        train: bool = True,
        warmup_explicit: bool = False,
        explicit_keys: Iterable[str] = (),
    ):

        self.cfg, self.device, self.output_dir, self.progress = cfg, device, output_dir, progress
        self.max_iters = max_iters_per_epoch
        explicit_keys = set(explicit_keys)
        self.warmup_explicit = warmup_explicit or "warmup_iter" in explicit_keys
        self.distributed = dist.is_dist()
        world = dist.get_world_size()
        total = cfg.data.batch_size
        acc = cfg.train.accumulate
        if total % (world * acc):
            raise ConfigError(
                f"total_batch_size={total} 不能被 GPU 数 {world} × accumulate {acc} 整除。请调整其中一个。"
            )
        self.batch_per_step = total // (world * acc)
        # the one place where the batch-size rule is applied: to the batch this run really uses
        cfg, self.batch_scaling = apply_batch_rule(cfg, self.batch_per_step * acc * world, explicit_keys)
        self.cfg = cfg
        self.data = build_data(cfg, self.batch_per_step, self.distributed, train=train, device=device)
        self.class_names, self.category_ids = self.data.class_names, self.data.category_ids

        # speed options (deimv2.engine.speed): memory order before the EMA copy and the optimizer are made
        self.speed = SpeedPlan(SpeedOptions.from_config(cfg.train), device)
        model = self.speed.prepare_model(build_model_from_config(cfg).to(device))
        self.model = model
        self.criterion = build_criterion(cfg).to(device)
        self.postprocessor = build_postprocessor(cfg).to(device)
        self.amp, self.amp_dtype, use_scaler = amp_settings(cfg.train.use_amp, device, cfg.train.amp_dtype)
        if self.speed.cpu_amp:  # bf16 autocast on CPU (cpu_amp), as use_amp on CUDA
            self.amp, self.amp_dtype = True, torch.bfloat16
        self.scaler = torch.amp.GradScaler("cuda") if use_scaler else None
        self.ema = (
            ModelEMA(model, cfg.train.ema_decay, cfg.train.ema_warmups, cfg.train.ema_start)
            if cfg.train.use_ema
            else None
        )
        self.optimizer = build_optimizer(
            model, cfg.optimizer.param_groups, cfg.optimizer.lr, cfg.optimizer.betas, cfg.optimizer.weight_decay
        )
        self.iters_per_epoch = self._optimizer_steps_per_epoch() if train else 1
        s = cfg.schedule
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
        self.train_model = dist.wrap_model(model, cfg.train.sync_bn, cfg.train.find_unused_parameters)
        self.train_model = self.speed.compile(self.train_model)  # the module itself unless compile=true
        self.start_epoch, self.global_step, self.best_ap, self.best_epoch = 0, 0, -1.0, -1
        self.rng_state: dict | None = None  # RNG states at the end of the last trained epoch (saved in last.pth)
        self._resume_rng: dict | None = None
        self.history: list[dict] = []
        self.conf_threshold: float | None = None  # F1-best threshold of the latest evaluation (engine/f1.py)
        self.early_stop: dict | None = None  # set when patience ends the run; ``resumed_early_stop``: read by -r
        self.resumed_early_stop: dict | None = None
        self.logger = JsonlLogger(output_dir / "log.jsonl") if dist.is_main_process() else None
        self.writer = (
            make_tensorboard_writer(output_dir / "tensorboard")
            if (dist.is_main_process() and cfg.train.tensorboard)
            else None
        )

    # ------------------------------------------------------------------ set-up details
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
        from tqdm.auto import tqdm

        model, opt, acc = self.train_model, self.optimizer, self.cfg.train.accumulate
        model.train()
        self.criterion.train()
        meter = MetricMeter()
        loader = self.data.train_loader
        total = self.iters_per_epoch * acc
        bar = tqdm(
            loader,
            total=total,
            desc=f"第 {epoch + 1}/{self.cfg.schedule.epochs} 轮",
            leave=False,
            disable=not (self.progress and dist.is_main_process()),
            dynamic_ncols=True,
        )
        opt.zero_grad(set_to_none=True)
        for i, (images, targets) in enumerate(bar):
            if i >= total:
                break
            images = self.speed.prepare_images(images.to(self.device, non_blocking=True))
            targets = [{k: v.to(self.device) for k, v in t.items()} for t in targets]
            metas = dict(epoch=epoch, step=i // acc, global_step=self.global_step, epoch_step=self.iters_per_epoch)
            with self._autocast():
                outputs = model(images, targets=targets)
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
            if (i + 1) % acc:
                continue
            if self.scaler is not None:
                self.scaler.unscale_(opt)
            if self.cfg.train.clip_max_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), self.cfg.train.clip_max_norm)
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
            meter.update(loss=loss_value, **reduced)
            lr = opt.param_groups[-1]["lr"]
            bar.set_postfix(loss=f"{loss_value:.3f}", lr=f"{lr:.2e}")
            step = (i + 1) // acc
            if not self.progress and self.cfg.train.print_freq > 0 and step % self.cfg.train.print_freq == 0:
                _say(f"  第 {epoch + 1} 轮第 {step}/{self.iters_per_epoch} 步：loss={loss_value:.4f}  lr={lr:.2e}")
            if self.writer is not None and self.global_step % TENSORBOARD_EVERY == 0:
                self.writer.add_scalar("loss/total", loss_value, self.global_step)
        bar.close()
        meter.synchronize_between_processes()
        stats = meter.global_averages()
        stats["lr"] = opt.param_groups[-1]["lr"]
        return stats

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
        cfg = self.cfg
        metrics: dict[str, Any] = {}
        if self.global_step == 0:  # the first step uses the warmup LR, not the full one
            self.scheduler.step(0)
        loader_gen = getattr(self.data.train_loader, "generator", None)
        if self._resume_rng is not None:
            restore_rng_state(self._resume_rng, loader_gen)
            self._resume_rng = None
        for epoch in range(self.start_epoch, cfg.schedule.epochs):
            self._set_epoch(epoch)
            if epoch == self.stop_epoch and epoch > 0:
                self._restart_from_best(epoch, cfg.train.ema_restart_decay)
            t0 = time.time()
            stats = self.train_one_epoch(epoch)
            self.rng_state = capture_rng_state(loader_gen)
            self.save("last.pth", epoch)
            freq = cfg.train.checkpoint_freq
            if freq > 0 and (epoch + 1) % freq == 0:  # as the official solver: an extra checkpoint every freq epochs
                self.save(f"checkpoint{epoch:04}.pth", epoch)
            metrics = self.evaluate()
            self.conf_threshold = metrics.get("best_conf")
            ap = float(metrics["AP"])
            improved = ap > self.best_ap
            if improved:
                self.best_ap, self.best_epoch = ap, epoch
                self.save("best.pth", epoch)
                self.save("last.pth", epoch)  # keep best_ap in last.pth in step with best.pth
            elif epoch >= self.stop_epoch and self.ema is not None:
                # official stage-2 rule: a non-improving epoch goes back to the best weights and restarts EMA.
                # (The official code also writes ema.decay -= 1e-4, which its EMA never reads: same decay here.)
                self._restart_from_best(epoch, cfg.train.ema_restart_decay)
            record = {
                "epoch": epoch,
                "time_s": round(time.time() - t0, 2),
                **{f"train_{k}": v for k, v in stats.items()},
                **{k: metrics[k] for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100")},
                "best_AP": self.best_ap,
                "best_epoch": self.best_epoch,
            }
            stop = early_stop_reason(
                patience=cfg.train.patience,
                epoch=epoch,
                best_epoch=self.best_epoch,
                best_ap=self.best_ap,
                epochs=cfg.schedule.epochs,
                output_dir=self.output_dir,
            )
            if stop:
                record["stop_reason"] = stop
            self.history.append(record)
            if self.logger is not None:
                self.logger.log(record)
                save_eval_json(metrics, self.output_dir / "eval.json")
            _say(
                f"第 {epoch + 1}/{cfg.schedule.epochs} 轮：loss={stats.get('loss', float('nan')):.4f}  "
                f"AP={ap:.4f}  AP50={metrics['AP50']:.4f}  最佳 AP={self.best_ap:.4f}（第 {self.best_epoch + 1} 轮）"
                f"  用时 {record['time_s']:.1f}s"
            )
            if callback is not None:
                callback(record)
            if stop:
                self.early_stop = {
                    "epoch": epoch,
                    "patience": cfg.train.patience,
                    "best_epoch": self.best_epoch,
                    "best_ap": self.best_ap,
                    "reason": stop,
                }
                self.save("last.pth", epoch)
                _say(stop)
                break
        return metrics


# ---------------------------------------------------------------------- public API
def _prepare_config(config, data, overrides, output_dir, seed, use_amp, kwargs) -> Config:
    ov = parse_overrides(kwargs)
    ov.update(parse_overrides(overrides))
    explicit_nc = ov.get("num_classes")
    cfg = load_config(config, ov)
    if data is not None:
        cfg = apply_data_dir(cfg, data, explicit_nc)
    run = {"output_dir": (output_dir, str), "seed": (seed, int), "use_amp": (use_amp, bool)}
    run = {k: cast(v) for k, (v, cast) in run.items() if v is not None}
    return cfg.replace(**run) if run else cfg


def fresh_output_dir(path: Path) -> Path:
    """``path`` itself, or ``path-2``, ``path-3`` … when it already holds a finished run or another run started
    into it at the same time (never overwrite one). Outside DDP the folder is claimed atomically."""

    def taken(p: Path) -> bool:
        return (
            (p / "last.pth").exists() or (p / "best.pth").exists() or (not dist.is_dist() and not claim_output_dir(p))
        )

    if not taken(path):
        return path
    n = 2
    while (path.parent / f"{path.name}-{n}").exists() or taken(path.parent / f"{path.name}-{n}"):
        n += 1
    new = path.parent / f"{path.name}-{n}"
    _say(
        f"输出目录 {path} 里已有一次训练的结果（或另一个正在进行的训练），为了不覆盖它，这次写到 {new}"
        f"（继续那次训练请用 -r {path / 'last.pth'}）。"
    )
    return new


def latest_run(path: str | Path) -> Path:
    """The newest of ``path``, ``path-2``, ``path-3`` … that holds a ``best.pth`` (see :func:`fresh_output_dir`);
    ``path`` itself when none does. Used by notebooks 05/06 to find the model trained in 04."""
    path = Path(path)
    runs = [p for p in [path, *path.parent.glob(f"{path.name}-*")] if (p / "best.pth").is_file()]
    return max(runs, key=lambda p: (p / "best.pth").stat().st_mtime) if runs else path


def prepare_trainer(
    config: str | Path | Config | Mapping = "atto",
    *,
    data=None,
    overrides=None,
    output_dir=None,
    seed=None,
    use_amp=None,
    device=None,
    progress=True,
    max_iters_per_epoch=None,
    train=True,
    new_run=False,
    **kwargs,
) -> Trainer:
    """Everything before the first step: config, distributed init, seeds, data, model, optimizer."""
    overrides, kwargs, auto_batch = split_auto_batch(overrides, kwargs)
    cfg = _prepare_config(config, data, overrides, output_dir, seed, use_amp, kwargs)
    dev = process_device(device)  # under torchrun: this local rank's GPU (deimv2.utils.inputs: -d 2,3 -> GPU 2, 3)
    dist.init_distributed(device=dev)
    dist.seed_everything(cfg.train.seed)
    torch.backends.cudnn.benchmark = True
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if auto_batch and train:  # a concrete batch before Trainer(): the batch-size rule then applies to it
        cfg = resolve_auto_batch(cfg, dev, dist.get_world_size(), say=_say)
    out = Path(cfg.train.output_dir)
    if new_run:
        out = fresh_output_dir(out)  # every rank computes the same name before rank 0 creates it
    if dist.is_main_process():
        ensure_output_dir(out)
    explicit = {ALIASES.get(k, k) for k in {**parse_overrides(overrides), **kwargs}}
    return Trainer(
        cfg, dev, out, progress=progress, max_iters_per_epoch=max_iters_per_epoch, train=train, explicit_keys=explicit
    )


def _say_recipe(note: str, out: Path | None) -> None:
    """The recipe in one or two lines; each setting's reason goes to ``<run>/recipe.txt``."""
    lines = note.split("\n")
    short = [line for line in lines if not line.startswith(REASON)]
    if out is not None and len(short) < len(lines):
        path = out / "recipe.txt"
        path.write_text(note + "\n", encoding="utf-8")
        short[-1] += f"（每项设置的理由见 {path.resolve()}）"
    _say("\n".join(short))


def _print_start(t: Trainer) -> None:
    cfg = t.cfg
    n_params = sum(p.numel() for p in t.model.parameters())
    _say(
        f"配置 {cfg.name}：{cfg.num_classes} 个类别（{'、'.join(t.class_names[:8])}{'……' if len(t.class_names) > 8 else ''}），"
        f"参数量 {n_params / 1e6:.2f}M，设备 {t.device}，AMP {'开（' + str(t.amp_dtype) + '）' if t.amp else '关'}。"
    )
    _say(
        f"训练集 {len(t.data.train_dataset)} 张，验证集 {len(t.data.val_dataset)} 张；每步 batch {t.batch_per_step}"
        f" × 累积 {cfg.train.accumulate} × {dist.get_world_size()} 卡 = {cfg.data.batch_size}；每轮 {t.iters_per_epoch} 步，"
        f"学习率预热 {t.warmup_iter} 步。"
    )
    _say("轮次安排：" + format_milestones(cfg))
    table = None
    if t.batch_scaling.applied and dist.is_main_process():  # the full before/after table: a file, not the console
        table = t.output_dir / "batch_rule.txt"
        table.write_text(format_batch_scaling(t.batch_scaling) + "\n", encoding="utf-8")
    _say(batch_scaling_line(t.batch_scaling, str(table.resolve()) if table else None))
    _say(f"输出目录：{t.output_dir.resolve()}")


def _print_memory(t: Trainer) -> None:
    size = list(t.cfg.eval_spatial_size)
    try:
        act = measure_activation_bytes(t.model, t.criterion, size, t.device)
    except RuntimeError as e:  # out of memory while measuring: say so and go on
        _say(f"（显存估算失败：{e}）")
        return
    rows = memory_table(t.model, act, amp=t.amp)
    _say("显存/内存估算（训练，每张卡）：" + "，".join(f"batch {b}: {gb:.1f} GB" for b, gb in rows))


def train(
    config: str | Path | Config | Mapping = "atto",
    *,
    data: str | Path | None = None,
    tune: str | Path | None = None,  # a checkpoint, or "coco": the variant's official COCO weights (deimv2.weights.hub)
    resume: str | Path | None = None,
    use_amp: bool | None = None,
    seed: int | None = None,
    device: str | None = None,
    output_dir: str | Path | None = None,
    overrides: Iterable[str] | Mapping | None = None,
    test_only: bool = False,
    check_data: bool = True,
    progress: bool = True,
    max_iters_per_epoch: int | None = None,
    callback: Callable[[dict], None] | None = None,
    recipe: str | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Train (or with ``test_only`` just evaluate) and return the final metrics dict.

    ``kwargs`` are config overrides (``epochs=12``, ``batch_size=8``, ``num_classes=4`` ...).
    ``recipe``: ``"auto"`` (None means the same: decided from scratch/fine-tune/resume and the training set's size),
    ``"official"`` (the official schedule and batch-size rule) or ``"small"`` (a small dataset from scratch), see
    :mod:`deimv2.config.recipes`; the recipe's overrides go under the user's.
    """
    kwargs = parse_overrides(kwargs)  # train(lr="1e-3") reads as -u lr=1e-3
    if tune and resume:
        raise ConfigError("-t/--tune 和 -r/--resume 只能选一个：-t 只加载权重微调，-r 接着上次的训练继续。")
    check_recipe(recipe)
    ov, kw, _ = split_auto_batch(overrides, kwargs)
    tune, scratch = coco_target(config, tune, {**ov, **kw}, _say)  # tune="coco": the official COCO weights
    resume, tune, output_dir, into_other = resume_target(resume, tune, output_dir, test_only)
    # a wrong config name, an unknown override key or a bad value is reported before the dataset is read
    check_image_size(load_config(config, {**ov, **kw}))
    data, yolo_checked = prepare_run_data(data, output_dir, check_data and not test_only, parse_nc(overrides, kwargs))
    recipe_note = None
    if not test_only:
        overrides, recipe_note = merge_recipe(
            recipe,
            {**parse_overrides(overrides), **kwargs},
            tune=bool(tune),
            resume=bool(resume),
            n_train=count_train_images(data),
        )
        kwargs = {}
    if data is not None and check_data and not test_only and not yolo_checked:
        report = check_dataset(data, num_classes=(parse_nc(overrides, kwargs)))
        if not report.ok:
            raise DEIMv2Error("数据集检查没有通过，训练没有开始：\n" + report.format())
    t = prepare_trainer(
        config,
        data=data,
        overrides=overrides,
        output_dir=output_dir,
        seed=seed,
        use_amp=use_amp,
        device=device,
        progress=progress,
        max_iters_per_epoch=max_iters_per_epoch,
        train=not test_only,
        new_run=not (resume or test_only) or into_other,
        **kwargs,
    )
    if test_only:
        if not resume:
            raise ConfigError("--test-only 需要用 -r 指定要评估的 checkpoint。")
        _check_eval_classes(t, resume, data)
        load_weights(t.model, resume, strict=True)
        metrics = t.evaluate(t.model)
        _finish_eval(t, metrics)
        return metrics
    if resume:
        t.resume(resume)
        check_resume_after_early_stop(
            t.resumed_early_stop,
            resume,
            t.start_epoch - 1 - t.best_epoch,
            t.cfg.train.patience,
            {**parse_overrides(overrides), **kwargs},
            say=_say,
        )
        if not t.resumed_early_stop:
            check_not_finished(resume, t.start_epoch, t.cfg.schedule.epochs)
    elif tune:
        t.tune(tune)
    else:
        t.load_backbone(required=not scratch)
    if dist.is_main_process():  # after -r is accepted: a refused resume leaves the run's files as they were
        save_config(t.cfg, t.output_dir / "config.yaml")
    if recipe_note:
        _say_recipe(recipe_note, t.output_dir if dist.is_main_process() else None)
    _print_start(t)
    _print_memory(t)
    try:
        metrics = t.fit(callback=callback)
    finally:
        if t.writer is not None:
            t.writer.close()
    if metrics:
        _say(format_metrics_table(metrics))
    _say(finish_line(t.output_dir, t.best_ap, t.best_epoch))
    metrics = dict(metrics)
    metrics["best_AP"] = t.best_ap
    metrics["output_dir"] = str(t.output_dir)
    return metrics


def count_train_images(data: Path | None) -> int | None:
    """Images in the training split of the COCO dataset at ``data`` (None without a dataset or a train split)."""
    if data is None:
        return None
    split = find_dataset(data, required=False).get("train")
    if split is None:
        return None
    return len(read_coco_json(split.ann_file, check_categories=False).get("images") or [])


def parse_nc(overrides, kwargs) -> int | None:
    ov = {**parse_overrides(overrides), **kwargs}
    return ov.get("num_classes")


def _finish_eval(t: Trainer, metrics: dict) -> None:
    """Print the table and write ``eval.json``, or ``eval-2.json`` … when the folder already has one (the run's
    own, or an earlier evaluation's): an evaluation never overwrites another file. ``metrics["eval_json"]``: where."""
    if dist.is_main_process():
        path, n = t.output_dir / "eval.json", 2
        while path.exists():
            path, n = t.output_dir / f"eval-{n}.json", n + 1
        save_eval_json(metrics, path)
        _say(format_metrics_table(metrics))
        _say(f"评估结果已写入 {path.resolve()}")
        metrics["eval_json"] = str(path)


def evaluate(
    config: str | Path | Config | Mapping | None,
    checkpoint: str | Path,
    *,
    data=None,
    device=None,
    output_dir=None,
    overrides=None,
    progress: bool = False,
    **kwargs,
) -> dict[str, Any]:
    """COCO evaluation of a checkpoint on the validation set; writes ``eval.json`` and returns the metrics.

    ``config`` may be None for our own checkpoints (the config stored inside is used).
    """
    kwargs = parse_overrides(kwargs)
    checkpoint = resolve_checkpoint(checkpoint, option="-r/--checkpoint")
    data, _ = prepare_run_data(data, output_dir or Path(checkpoint).parent, True, parse_nc(overrides, kwargs))
    if config is None:
        ckpt = load_checkpoint(checkpoint)
        if not isinstance(ckpt.get("config"), Mapping):
            raise ConfigError(f"{checkpoint} 里没有保存配置，请用 -c 指定变体或 YAML。")
        config = dict(ckpt["config"])
    t = prepare_trainer(
        config,
        data=data,
        overrides=overrides,
        output_dir=output_dir or Path(checkpoint).parent,
        device=device,
        progress=progress,
        train=False,
        **kwargs,
    )
    _check_eval_classes(t, checkpoint, data)
    load_weights(t.model, checkpoint, strict=True)
    metrics = t.evaluate(t.model)
    _finish_eval(t, metrics)
    return metrics


def _check_eval_classes(t: Trainer, checkpoint, data) -> None:
    """The checkpoint's saved class names against the dataset's (:func:`~deimv2.engine.evaluate.check_class_names`)."""
    try:
        saved = load_checkpoint(checkpoint).get("class_names")
    except Exception:  # noqa: BLE001 - a format without saved names (official, safetensors): load_weights reports
        saved = None
    warning = check_class_names(checkpoint, saved, data, t.class_names)
    if warning:
        _say(warning)
