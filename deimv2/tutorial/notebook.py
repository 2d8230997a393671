"""One-call helpers for the tutorial notebooks: the workspace, the parameters cell's ``DATA``, the run that
04 wrote, the fallback model of 05/06 and the shared setup of 08/09.

Explained in notebooks 02_convert … 06_evaluate (their parameters cells). Every helper is public so that a cell
copied into another project works with ``pip install deimv2`` alone. What these helpers print is the point of
the notebook cell that calls them (the workspace, which model is used, why a setting applies).

    WORKSPACE = workspace("outputs")            # -> Path, made; DEIMV2_CKPTS defaults to WORKSPACE/ckpts
    data = dataset_path("demo", WORKSPACE)     # "demo" -> the bundled demo converted to COCO
    run = trained_run(WORKSPACE)                # the newest run of 04: checkpoint, class names, dataset
    S = explain_setup(WORKSPACE)                # 08/09: a small model trained with GO-LSD and one image
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from deimv2.config.loader import Config, load_config
from deimv2.data.dataset import CocoDetection
from deimv2.data.demo import prepare_demo_coco
from deimv2.data.transforms import build_transforms_from_ops
from deimv2.engine.api import train
from deimv2.engine.run_files import latest_run
from deimv2.errors import DatasetError
from deimv2.infer.detector import load_detector
from deimv2.tutorial.demo import FAST_SCHEDULE, FULL_SCHEDULE, demo_overrides
from deimv2.utils.fonts import setup_matplotlib_cjk
from deimv2.utils.runtime import fast_mode

_log = logging.getLogger(__name__)

__all__ = [
    "DEMO",
    "EXPLAIN_LOSSES",
    "ExplainSetup",
    "TrainedRun",
    "dataset_path",
    "explain_setup",
    "is_demo",
    "scale_lrs",
    "train_settings",
    "trained_run",
    "trained_run_or_fallback",
    "workspace",
]

#: ``DATA = "demo"`` in a parameters cell: the dataset bundled with deimv2 (4 classes, 160 + 48 images)
DEMO = "demo"
#: where notebook 04 writes its run (``fresh_output_dir`` adds -2, -3 … when it exists)
RUN_04 = Path("04_train") / "run"


def workspace(path: str | Path = "outputs", google_drive: bool = False) -> Path:
    """Make and return the notebook's output folder; on Colab with ``google_drive`` it lives in Google Drive.

    Official checkpoints (``tune="coco"``, notebook 01) go to ``WORKSPACE/ckpts`` unless ``DEIMV2_CKPTS`` is set.
    """
    path = Path(path)
    if google_drive and "google.colab" in sys.modules:
        from google.colab import drive  # type: ignore[import-not-found]

        drive.mount("/content/drive")
        path = Path("/content/drive/MyDrive/deimv2") / path
    elif google_drive:
        _log.info("google_drive=True 只在 Colab 上起作用，这里继续使用本地的工作目录。")
    path.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("DEIMV2_CKPTS", str(path / "ckpts"))
    _log.info(f"工作目录：{path.resolve()}")
    return path


def is_demo(data) -> bool:
    """True for ``DATA = "demo"`` (or None): the bundled demo dataset."""
    return data is None or str(data) == DEMO


def dataset_path(data, work: str | Path) -> Path:
    """``DATA`` as ``train(data=...)`` takes it: the demo converted to COCO in ``work/demo_coco``; a YOLO folder,
    a ``data.yaml`` or a COCO folder as given (``train`` converts YOLO itself, once, and caches it)."""
    if is_demo(data):
        return prepare_demo_coco(Path(work) / "demo_coco")
    path = Path(data).expanduser()
    if not path.exists():
        raise DatasetError(
            f"找不到数据集 {path}。DATA 应当是 YOLO 数据集文件夹、它的 data.yaml 或 COCO 数据集文件夹，"
            '请检查参数单元里的路径；用示例数据集请写 DATA = "demo"。'
        )
    return path


def train_settings(data) -> dict:
    """Extra ``train(...)`` arguments that are not the learner's choice, each announced in one printed line.

    Fast mode (``DEIMV2_FAST=1``, any data): 2 epochs of 2 steps at 160 px, only to check the pipeline. The demo in
    normal mode: 256 px, batch 8, no loader workers, no backbone download (CPU-friendly). The learner's own data in
    normal mode: nothing, so the variant's config and the recipe (:mod:`deimv2.config.recipes`) decide.
    """
    if fast_mode():
        s = FAST_SCHEDULE
        _log.info(
            f"快速模式（DEIMV2_FAST=1）：只训练 {s['epochs']} 轮、每轮 {s['max_iters']} 步，输入 {s['size']}×{s['size']}，"
            "只用来检查流程；去掉 DEIMV2_FAST 才是真正的训练。"
        )
        return {
            "epochs": s["epochs"],
            "max_iters_per_epoch": s["max_iters"],
            "overrides": demo_overrides(s["size"], s["batch_size"], recipe="auto"),
        }
    if is_demo(data):
        s = FULL_SCHEDULE
        _log.info(
            f"示例数据集专用设置（DATA 换成你的数据后不再使用）：输入 {s['size']}×{s['size']}、batch size {s['batch_size']}、"
            "不用数据加载进程、骨干网络不下载预训练权重——为了在 CPU 上也能几十分钟内训练完。"
        )
        return {"overrides": demo_overrides(s["size"], s["batch_size"], recipe="auto")}
    return {}


def scale_lrs(cfg: Config, factor: float) -> Config:
    """Every learning rate of ``cfg`` (``optimizer.lr`` and each parameter group's own ``lr``) times ``factor``:
    the backbone-to-rest ratio of the recipe stays as it is (setting ``lr`` alone would change it)."""
    raw = cfg.to_dict()
    opt = raw["optimizer"]
    groups = [dict(g, lr=g["lr"] * factor) if "lr" in g else dict(g) for g in opt.get("params") or []]
    return cfg.replace({"optimizer.lr": opt["lr"] * factor, "optimizer.params": groups})


@dataclass(frozen=True)
class TrainedRun:
    """A run that notebook 04 wrote: its folder, ``best.pth``, class names and validation split."""

    folder: Path
    checkpoint: Path
    class_names: list
    val_images: Path
    val_ann: Path

    @property
    def images(self) -> list[Path]:
        """The validation images listed in ``val_ann`` (in file order)."""
        doc = json.loads(self.val_ann.read_text(encoding="utf-8"))
        return [self.val_images / im["file_name"] for im in doc.get("images", [])]


def _run_of(folder: Path) -> TrainedRun:
    cfg = load_config(folder / "config.yaml")
    return TrainedRun(
        folder=folder,
        checkpoint=folder / "best.pth",
        class_names=list(cfg.class_names or []),
        val_images=Path(cfg.data.val_img_folder),
        val_ann=Path(cfg.data.val_ann_file),
    )


def trained_run(work: str | Path) -> TrainedRun | None:
    """The newest run of notebook 04 in ``work`` (``04_train/run``, ``run-2`` …) with its ``best.pth`` and
    ``config.yaml``; None when there is none."""
    folder = latest_run(Path(work) / RUN_04)
    if not ((folder / "best.pth").is_file() and (folder / "config.yaml").is_file()):
        return None
    return _run_of(folder)


def trained_run_or_fallback(work: str | Path, data=DEMO, variant: str = "atto") -> TrainedRun:
    """Notebooks 05/06: the run of 04 (:func:`trained_run`), else, after a clear warning, a model trained for a
    few steps on ``data`` so that the notebook also runs on its own."""
    from IPython.display import Markdown, display  # the notebooks extra (Jupyter), not a dependency of deimv2

    run = trained_run(work)
    if run is None:
        display(
            Markdown(
                f"> ⚠️ **警告：没有找到 04_train.ipynb 训练的模型**（`{Path(work) / RUN_04}`）。\n>\n"
                "> 下面先用快速日程训练一个**只训练了几步的小模型**，让本节可以独立运行；它几乎检测不到东西，结果没有意义。\n"
                "> 要看到真正的效果，请先完整运行 `04_train.ipynb`（工作目录要相同；在 Colab 上请在 04 和本节都打开 Google Drive）。"
            )
        )
        s = FAST_SCHEDULE
        result = train(
            variant,
            data=dataset_path(data, work),
            output_dir=Path(work) / "tiny_train",
            epochs=s["epochs"],
            max_iters_per_epoch=s["max_iters"],
            overrides=demo_overrides(s["size"], s["batch_size"]),
        )
        run = _run_of(Path(result["output_dir"]))
    _log.info(f"使用的模型：{run.checkpoint.resolve()}（{len(run.class_names)} 类：{'、'.join(run.class_names)}）")
    _log.info(f"验证集：{run.val_ann.resolve()}")
    return run


#: the criterion of the model that notebooks 08/09 look inside: N…X's losses (GO-LSD's FGL + DDF = ``'local'``,
#: with the union of all layers' matches), which Atto's official config leaves out
EXPLAIN_LOSSES = {"DEIMCriterion.losses": ["mal", "boxes", "local"], "DEIMCriterion.use_uni_set": True}
#: its training on the demo: a few CPU minutes; in fast mode 2 × 8 steps (seconds), enough for the layers' FDR
#: distributions to differ from one another (they start equal: the heads' last layers start at zero)
EXPLAIN_SCHEDULE = dict(epochs=10, size=192, batch_size=8, max_iters=None)
EXPLAIN_FAST_SCHEDULE = dict(epochs=2, size=160, batch_size=4, max_iters=8)
#: where it is kept in the workspace (shared by 08 and 09); ``finished.txt`` marks a completed training
EXPLAIN_RUN = "explain_local"


@dataclass(frozen=True)
class ExplainSetup:
    """What notebooks 08/09 look at: the model (eval mode), its config and class names, and the validation image
    with the most objects, transformed as in validation. ``x`` is ``[1, 3, H, W]`` in [0, 1]; ``target`` holds
    plain tensors ``labels`` and ``boxes`` (normalized cxcywh, what the loss uses); ``shown`` is ``x`` as an
    ``[H, W, 3]`` array for ``imshow``."""

    model: object
    cfg: Config
    names: list
    checkpoint: Path
    image: Path
    x: object
    target: dict
    shown: object


def _explain_run(work: Path, data) -> Path:
    """Train (once) the small model of 08/09 with ``'local'`` in its losses; return its folder."""
    fast = fast_mode()
    s = EXPLAIN_FAST_SCHEDULE if fast else EXPLAIN_SCHEDULE
    folder = latest_run(work / (EXPLAIN_RUN + ("_fast" if fast else "")))
    if (folder / "finished.txt").is_file():
        return folder
    _log.info(
        f"训练一个使用 GO-LSD（losses 里有 'local'）的小 DEIMv2-Atto：{s['epochs']} 轮，输入 {s['size']}×{s['size']}，"
        + (
            f"快速模式每轮只训练 {s['max_iters']} 步，检测不到什么东西，只用来检查流程。"
            if fast
            else "CPU 上几分钟；训练好的模型保存在工作目录里，08 和 09 共用。"
        )
    )
    result = train(
        "atto",
        data=dataset_path(data, work),
        output_dir=folder,
        epochs=s["epochs"],
        max_iters_per_epoch=s["max_iters"],
        overrides={**demo_overrides(s["size"], s["batch_size"]), **EXPLAIN_LOSSES},
    )
    folder = Path(result["output_dir"])
    (folder / "finished.txt").write_text(str(s), encoding="utf-8")
    return folder


def explain_setup(work: str | Path, data=DEMO) -> ExplainSetup:
    """Notebooks 08/09: a small Atto trained on ``data`` with GO-LSD (:data:`EXPLAIN_LOSSES`; trained once into
    ``work/explain_local``, retrained when that run was interrupted), and the validation image with the most
    objects. Also sets up matplotlib for Chinese labels."""
    run = _run_of(_explain_run(Path(work), data))
    model, cfg, meta = load_detector(run.checkpoint)
    model.eval()
    names = list(meta.get("class_names") or [str(i) for i in range(cfg.num_classes)])
    _log.info(
        f"模型 {cfg.name}（{run.checkpoint.resolve()}），输入 {cfg.eval_spatial_size}，损失 {cfg.criterion.losses}"
    )

    to_loss_format = {"type": "ConvertBoxes", "fmt": "cxcywh", "normalize": True}  # the training pipeline's last step
    val = CocoDetection(
        run.val_images, run.val_ann, transforms=build_transforms_from_ops(cfg.data.val_ops + [to_loss_format])
    )
    doc = json.loads(run.val_ann.read_text(encoding="utf-8"))
    counts = {im["id"]: 0 for im in doc["images"]}
    for ann in doc["annotations"]:
        counts[ann["image_id"]] += 1
    index = [im["id"] for im in doc["images"]].index(max(counts, key=counts.get))
    x, target = val[index]
    target = {k: v.as_subclass(torch.Tensor) for k, v in target.items()}
    setup_matplotlib_cjk()
    image = val.image_path(index)
    _log.info(f"图片 {image.name}：{len(target['labels'])} 个物体 {[names[i] for i in target['labels']]}")
    return ExplainSetup(model, cfg, names, run.checkpoint, image, x[None], target, x.permute(1, 2, 0).numpy())
