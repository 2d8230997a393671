"""One-call helpers for the tutorial notebooks: the workspace, the parameters cell's ``DATA``, the run that
04 wrote, the fallback model of 05/06 and the shared setup of 08/09.

Explained in notebooks 02_convert … 06_evaluate (their parameters cells). Every helper is public so that a cell
copied into another project works with ``pip install deimv2`` alone. What these helpers print is the point of
the notebook cell that calls them (the workspace, which model is used, why a setting applies).

    WORKSPACE = workspace("outputs")            # -> Path, made; DEIMV2_CKPTS defaults to WORKSPACE/ckpts
    data = dataset_path("demo", WORKSPACE)     # "demo" -> the bundled demo converted to COCO
    run = trained_run(WORKSPACE)                # the newest run of 04: checkpoint, class names, dataset
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .config import Config, load_config
from .demo import FAST_SCHEDULE, FULL_SCHEDULE, demo_overrides
from .engine.setup import fast_mode

__all__ = [
    "DEMO",
    "TrainedRun",
    "dataset_path",
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
        print("google_drive=True 只在 Colab 上起作用，这里继续使用本地的工作目录。")
    path.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("DEIMV2_CKPTS", str(path / "ckpts"))
    print("工作目录：", path.resolve())
    return path


def is_demo(data) -> bool:
    """True for ``DATA = "demo"`` (or None): the bundled demo dataset."""
    return data is None or str(data) == DEMO


def dataset_path(data, work: str | Path) -> Path:
    """``DATA`` as ``train(data=...)`` takes it: the demo converted to COCO in ``work/demo_coco``; a YOLO folder,
    a ``data.yaml`` or a COCO folder as given (``train`` converts YOLO itself, once, and caches it)."""
    if is_demo(data):
        from .data.demo import prepare_demo_coco

        return prepare_demo_coco(Path(work) / "demo_coco")
    path = Path(data).expanduser()
    if not path.exists():
        from .errors import DatasetError

        raise DatasetError(
            f"找不到数据集 {path}。DATA 应当是 YOLO 数据集文件夹、它的 data.yaml 或 COCO 数据集文件夹，"
            '请检查参数单元里的路径；用示例数据集请写 DATA = "demo"。'
        )
    return path


def train_settings(data) -> dict:
    """Extra ``train(...)`` arguments that are not the learner's choice, each announced in one printed line.

    Fast mode (``DEIMV2_FAST=1``, any data): 2 epochs of 2 steps at 160 px, only to check the pipeline. The demo in
    normal mode: 256 px, batch 8, no loader workers, no backbone download (CPU-friendly). The learner's own data in
    normal mode: nothing, so the variant's config and the recipe (:mod:`deimv2.recipes`) decide.
    """
    if fast_mode():
        s = FAST_SCHEDULE
        print(
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
        print(
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
        import json

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
    from .engine.trainer import latest_run

    folder = latest_run(Path(work) / RUN_04)
    if not ((folder / "best.pth").is_file() and (folder / "config.yaml").is_file()):
        return None
    return _run_of(folder)


def trained_run_or_fallback(work: str | Path, data=DEMO, variant: str = "atto") -> TrainedRun:
    """Notebooks 05/06: the run of 04 (:func:`trained_run`), else, after a clear warning, a model trained for a
    few steps on ``data`` so that the notebook also runs on its own."""
    from IPython.display import Markdown, display

    from .engine.trainer import train

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
    print(f"使用的模型：{run.checkpoint.resolve()}（{len(run.class_names)} 类：{'、'.join(run.class_names)}）")
    print(f"验证集：{run.val_ann.resolve()}")
    return run
