"""``train()`` and ``evaluate()``: the Python API of notebooks ``04_train.ipynb`` / ``06_evaluate.ipynb`` and what
``deimv2 train`` / ``deimv2 eval`` call (``deimv2.train``, ``deimv2.evaluate``).

Outputs in the run folder: ``last.pth`` (every epoch), ``best.pth`` (best val AP), ``log.jsonl`` (one line per
epoch), ``eval.json`` (the latest evaluation), ``config.yaml``. A call becomes a run in four steps:

1. :func:`~deimv2.config.run_config.check_config`: the config and the overrides, read once and checked;
2. :func:`plan_run`: ``-t coco`` (the official weights), the ``-r`` run folder, ``--data`` (a YOLO folder converted,
   the dataset checked);
3. :func:`~deimv2.config.run_config.build_run_config`: the run's frozen config (recipe, dataset, batch rule);
4. :func:`open_trainer`: seeds, the run folder and the :class:`~deimv2.engine.trainer.Trainer`, which only reads it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from deimv2.config.batch_rule import batch_scaling_line, format_batch_scaling
from deimv2.config.loader import Config, format_milestones, save_config
from deimv2.config.recipes import REASON, check_recipe
from deimv2.config.run_config import CheckedConfig, DatasetInfo, RunConfig, build_run_config, check_config
from deimv2.data.doctor import check_dataset
from deimv2.engine import dist
from deimv2.engine.autobatch import resolve_auto_batch
from deimv2.engine.checkpoint import load_checkpoint
from deimv2.engine.early_stop import check_resume_after_early_stop
from deimv2.engine.evaluate import check_class_names, format_metrics_table, save_eval_json
from deimv2.engine.run_files import check_not_finished, finish_line, fresh_output_dir, resume_target
from deimv2.engine.setup import measure_activation_bytes, memory_table, prepare_run_data, process_device, read_dataset
from deimv2.engine.trainer import Trainer
from deimv2.errors import ConfigError, DEIMv2Error
from deimv2.utils.inputs import resolve_checkpoint
from deimv2.utils.outputs import ensure_output_dir
from deimv2.weights.hub import coco_target
from deimv2.weights.load import load_weights

__all__ = ["RunPlan", "evaluate", "open_device", "open_trainer", "plan_run", "prepare_trainer", "train"]

_log = logging.getLogger(__name__)


def _say(msg: str) -> None:
    if dist.is_main_process():
        _log.info(msg)


# ---------------------------------------------------------------------- the Python API
def train(
    config: str | Path | Config | Mapping = "atto",
    *,
    data: str | Path | None = None,
    tune: str | Path | None = None,
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
    """Train a DEIMv2 model (or, with ``test_only``, evaluate a checkpoint) and return the final metrics.

    Args:
        config: Variant name (``"atto"`` … ``"x"``), official config name, YAML path, dict or ``Config``.
        data: Dataset root, COCO or YOLO (a YOLO folder is converted next to the run); sets the split paths,
            ``num_classes`` and the class names.
        tune: Checkpoint (or run folder) to fine-tune from, or ``"coco"``: the variant's official COCO weights.
        resume: ``last.pth`` (or its run folder) to continue exactly; the run writes into that folder.
        use_amp: Mixed precision on CUDA (None: the config's ``use_amp``).
        seed: Random seed (None: the config's).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"2,3"`` under torchrun … (None: a GPU when there is one).
        output_dir: Run folder (None: ``./outputs/<config name>``); a folder that holds a run gets ``-2``, ``-3`` ….
        overrides: ``-u`` style ``["key=value", …]`` or a mapping of dotted config keys.
        test_only: Only evaluate the checkpoint given as ``resume``.
        check_data: Run the dataset doctor before training.
        progress: Show a progress bar per epoch (else a line every ``print_freq`` steps).
        max_iters_per_epoch: Stop each epoch after this many optimizer steps (quick tries).
        callback: Called after each epoch with that epoch's ``log.jsonl`` record.
        recipe: ``"auto"`` (None means the same: from scratch / fine-tune / resume and the training set's size),
            ``"official"`` or ``"small"`` (:mod:`deimv2.config.recipes`); the user's overrides win over it.
        **kwargs: More config overrides (``epochs=12``, ``batch_size=8``, ``lr="1e-3"`` reads as ``-u lr=1e-3``);
            they win over ``overrides``. ``batch_size="auto"`` measures the largest batch that fits the GPU.

    Returns:
        The last evaluation's metrics (the 12 COCO numbers ``AP``, ``AP50`` …, ``per_class``, ``best_conf`` …)
        with ``best_AP`` and ``output_dir``; with ``test_only`` the evaluation's, with ``eval_json``.

    Example:
        One epoch of one step on the bundled demo set at 96×96 pixels with 30 queries, into a temporary folder:

        >>> import tempfile
        >>> from pathlib import Path
        >>> import deimv2
        >>> from deimv2.data.demo import prepare_demo_coco
        >>> work = tempfile.mkdtemp()
        >>> data = prepare_demo_coco(f"{work}/demo")
        >>> tiny = ["eval_spatial_size=[96,96]", "DEIMTransformer.num_queries=30", "PostProcessor.num_top_queries=30",
        ...         "HGNetv2.pretrained=false", "num_workers=0"]
        >>> metrics = deimv2.train("atto", data=data, output_dir=f"{work}/run", overrides=tiny, epochs=1,
        ...                        max_iters_per_epoch=1, progress=False)  # doctest: +ELLIPSIS
        骨干网络从随机初始化开始训练（配置没有指定预训练权重）。
        训练配方 recipe=auto → small：从头训练，训练集 160 张...
        训练完成。最佳 AP=...
        >>> -1 <= metrics["AP"] <= 1, sorted(p.name for p in Path(metrics["output_dir"]).glob("*.pth"))
        (True, ['best.pth', 'last.pth'])
    """
    if tune and resume:
        raise ConfigError("-t/--tune 和 -r/--resume 只能选一个：-t 只加载权重微调，-r 接着上次的训练继续。")
    if test_only and not resume:
        raise ConfigError("--test-only 需要用 -r 指定要评估的 checkpoint。")
    recipe = check_recipe(recipe)
    checked = check_config(config, overrides, kwargs)  # a wrong name, key or value: before any dataset file is read
    plan = plan_run(
        checked, data=data, tune=tune, resume=resume, output_dir=output_dir, test_only=test_only, check_data=check_data
    )
    dev = open_device(device)
    run = build_run_config(
        checked,
        dataset=plan.dataset,
        settings={"output_dir": plan.output_dir, "seed": seed, "use_amp": use_amp},
        recipe=None if test_only else recipe,
        tune=plan.tune is not None,
        resume=plan.resume is not None,
        world_size=dist.get_world_size(),
        choose_batch=None if test_only else _auto_batch(dev),
    )
    t = open_trainer(
        run, dev, progress=progress, max_iters_per_epoch=max_iters_per_epoch, train=not test_only, new_run=plan.new_run
    )
    if test_only:
        return _evaluate_checkpoint(t, plan.resume, plan.data)
    _load_start_weights(t, plan)
    _write_run_files(t)
    return _fit(t, callback)


def evaluate(
    config: str | Path | Config | Mapping | None,
    checkpoint: str | Path,
    *,
    data: str | Path | None = None,
    device: str | None = None,
    output_dir: str | Path | None = None,
    overrides: Iterable[str] | Mapping | None = None,
    progress: bool = False,
    **kwargs: Any,
) -> dict[str, Any]:
    """COCO evaluation of a checkpoint on the validation set; writes ``eval.json`` and returns the metrics.

    Args:
        config: As for :func:`train`, or None for our own checkpoints (the config stored inside is used).
        checkpoint: ``best.pth`` / ``last.pth`` (or a run folder: its ``best.pth``), official or safetensors weights.
        data: Dataset root (COCO or YOLO) whose validation split is evaluated (None: the config's paths).
        device: As for :func:`train`.
        output_dir: Where ``eval.json`` goes (None: the checkpoint's folder); an existing one is kept and the new
            file is ``eval-2.json``, ``eval-3.json`` ….
        overrides: Config overrides, as for :func:`train` (``eval_spatial_size``, ``num_classes`` …).
        progress: Passed to the trainer as for :func:`train` (the evaluation itself shows no progress bar).
        **kwargs: More config overrides; they win over ``overrides``.

    Returns:
        The metrics: the 12 COCO numbers (``AP``, ``AP50`` … ``ARl``), ``per_class``, ``pr_curves``, ``f1_curve``
        with ``best_conf``, ``confusion_matrix``, and ``eval_json``: the file written.

    Example:
        Evaluate, with the config stored in it, the ``best.pth`` of one training step on the bundled demo set
        (96×96 pixels, 30 queries; the config overrides given as a mapping and as keyword arguments this time):

        >>> import tempfile
        >>> import deimv2
        >>> from deimv2.data.demo import prepare_demo_coco
        >>> data = prepare_demo_coco(tempfile.mkdtemp())
        >>> quick = {"HGNetv2.pretrained": False, "DEIMTransformer.num_queries": 30, "PostProcessor.num_top_queries": 30}
        >>> result = deimv2.train("atto", data=data, output_dir=tempfile.mkdtemp(), overrides=quick, progress=False,
        ...                       eval_spatial_size=[96, 96], num_workers=0, epochs=1, max_iters_per_epoch=1)
        ... # doctest: +ELLIPSIS
        骨干网络...
        >>> metrics = deimv2.evaluate(None, f"{result['output_dir']}/best.pth", data=data)  # doctest: +ELLIPSIS
        指标...
        评估结果已写入 ...eval-2.json
        >>> metrics["eval_json"].endswith("eval-2.json"), -1 <= metrics["AP"] <= 1
        (True, True)
    """
    checkpoint = resolve_checkpoint(checkpoint, option="-r/--checkpoint")
    out = output_dir or Path(checkpoint).parent
    checked = check_config(config if config is not None else _saved_config(checkpoint), overrides, kwargs)
    data, _ = prepare_run_data(data, out, True, checked.user.get("num_classes"))
    dev = open_device(device)
    run = build_run_config(
        checked,
        dataset=read_dataset(data) if data is not None else None,
        settings={"output_dir": out},
        world_size=dist.get_world_size(),
    )
    t = open_trainer(run, dev, progress=progress, train=False)
    return _evaluate_checkpoint(t, checkpoint, data)


def prepare_trainer(
    config: str | Path | Config | Mapping = "atto",
    *,
    data: str | Path | None = None,
    overrides: Iterable[str] | Mapping | None = None,
    output_dir: str | Path | None = None,
    seed: int | None = None,
    use_amp: bool | None = None,
    device: str | None = None,
    progress: bool = True,
    max_iters_per_epoch: int | None = None,
    train: bool = True,
    new_run: bool = False,
    **kwargs: Any,
) -> Trainer:
    """A trainer on a COCO ``data`` folder without :func:`train`'s recipe, ``-t``/``-r`` and dataset doctor (tests,
    benchmarks, a look inside a run): the same steps, config → run config → trainer; no weights loaded."""
    checked = check_config(config, overrides, kwargs)
    dev = open_device(device)
    run = build_run_config(
        checked,
        dataset=read_dataset(data) if data is not None else None,
        settings={"output_dir": output_dir, "seed": seed, "use_amp": use_amp},
        world_size=dist.get_world_size(),
        choose_batch=_auto_batch(dev) if train else None,
    )
    return open_trainer(
        run, dev, progress=progress, max_iters_per_epoch=max_iters_per_epoch, train=train, new_run=new_run
    )


# ---------------------------------------------------------------------- the steps
@dataclass(frozen=True)
class RunPlan:
    """What ``-t``, ``-r``, ``--data`` and ``--output-dir`` mean for a run (:func:`plan_run`).

    ``tune``: the checkpoint to fine-tune from (``-t coco``: the official weights' folder); ``scratch``: ``-t coco``
    without those weights (then from scratch, the backbone weights optional); ``resume``: the ``last.pth`` to
    continue; ``new_run``: a fresh folder (``path-2`` …) when ``output_dir`` holds a run; ``data``: the COCO root
    (a YOLO folder converted); ``dataset``: what it gives the config.
    """

    tune: Path | None = None
    scratch: bool = False
    resume: Path | None = None
    output_dir: str | Path | None = None
    new_run: bool = True
    data: Path | None = None
    dataset: DatasetInfo | None = None


def plan_run(
    checked: CheckedConfig,
    *,
    data: str | Path | None = None,
    tune: str | Path | None = None,
    resume: str | Path | None = None,
    output_dir: str | Path | None = None,
    test_only: bool = False,
    check_data: bool = True,
) -> RunPlan:
    """Step 2: ``-t coco`` becomes the official weights (downloaded once), ``-r`` its run folder's ``last.pth``,
    ``--data`` a checked COCO dataset (a YOLO folder converted and checked; a COCO one checked by the doctor)."""
    tune, scratch = coco_target(checked.cfg, tune, _say)
    resume, tune, output_dir, into_other = resume_target(resume, tune, output_dir, test_only)
    check = check_data and not test_only
    num_classes = checked.user.get("num_classes")
    data, yolo_checked = prepare_run_data(data, output_dir, check, num_classes)
    if data is not None and check and not yolo_checked:
        report = check_dataset(data, num_classes=num_classes)
        if not report.ok:
            raise DEIMv2Error("数据集检查没有通过，训练没有开始：\n" + report.format())
    dataset = read_dataset(data) if data is not None else None
    new_run = not (resume or test_only) or into_other
    return RunPlan(tune, scratch, resume, output_dir, new_run, data, dataset)


def open_device(device: str | torch.device | None = None) -> torch.device:
    """This process's device (under torchrun: its GPU, :func:`~deimv2.engine.setup.process_device`), the process
    group, and the cuDNN autotuner and TF32 matmuls on CUDA."""
    dev = process_device(device)
    dist.init_distributed(device=dev)
    torch.backends.cudnn.benchmark = True
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return dev


def _auto_batch(device: torch.device) -> Callable[[Config], int]:
    """``build_run_config``'s ``choose_batch``: the measured total batch for ``batch_size=auto``."""
    return lambda cfg: resolve_auto_batch(cfg, device, dist.get_world_size(), say=_say)


def open_trainer(
    run: RunConfig,
    device: torch.device,
    *,
    progress: bool = True,
    max_iters_per_epoch: int | None = None,
    train: bool = True,
    new_run: bool = False,
) -> Trainer:
    """Step 4: seed every process, make the run folder (``new_run``: a fresh one), build the trainer."""
    dist.seed_everything(run.cfg.train.seed)
    out = Path(run.cfg.train.output_dir)
    if new_run:  # every rank computes the same name before rank 0 creates it
        out = fresh_output_dir(out, claim=not dist.is_dist(), say=_say)
    if dist.is_main_process():
        ensure_output_dir(out)
    return Trainer(run, device, out, progress=progress, max_iters_per_epoch=max_iters_per_epoch, train=train)


def _load_start_weights(t: Trainer, plan: RunPlan) -> None:
    """``-r``: the whole training state (refused for a finished or early-stopped run); ``-t``: the weights;
    else the backbone's pretrained weights."""
    if plan.resume is not None:
        t.resume(plan.resume)
        waited = t.start_epoch - 1 - t.best_epoch
        patience = t.cfg.train.patience
        check_resume_after_early_stop(t.resumed_early_stop, plan.resume, waited, patience, t.run.explicit, say=_say)
        if not t.resumed_early_stop:
            check_not_finished(plan.resume, t.start_epoch, t.cfg.schedule.epochs)
    elif plan.tune is not None:
        t.tune(plan.tune)
    else:
        t.load_backbone(required=not plan.scratch)


def _write_run_files(t: Trainer) -> None:
    """After ``-r`` is accepted (a refused resume leaves the run's files as they were): ``config.yaml``, the
    recipe and the start-of-training lines."""
    if dist.is_main_process():
        save_config(t.cfg, t.output_dir / "config.yaml")
    if t.run.recipe_note:
        _say_recipe(t.run.recipe_note, t.output_dir if dist.is_main_process() else None)
    _print_start(t)
    _print_memory(t)


def _fit(t: Trainer, callback: Callable[[dict], None] | None) -> dict[str, Any]:
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


def _saved_config(checkpoint: Path) -> dict:
    ckpt = load_checkpoint(checkpoint)
    if not isinstance(ckpt.get("config"), Mapping):
        raise ConfigError(f"{checkpoint} 里没有保存配置，请用 -c 指定变体或 YAML。")
    return dict(ckpt["config"])


def _evaluate_checkpoint(t: Trainer, checkpoint: Path, data: Path | None) -> dict[str, Any]:
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


# ---------------------------------------------------------------------- start-of-training lines
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
    names = "、".join(t.class_names[:8]) + ("……" if len(t.class_names) > 8 else "")
    _say(
        f"配置 {cfg.name}：{cfg.num_classes} 个类别（{names}），"
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
