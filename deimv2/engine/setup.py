"""Training set-up helpers: device, AMP, the dataset of ``--data``, datasets and loaders, memory estimate.

Explained in notebook ``04_train.ipynb``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from deimv2.config.checks import check_enough_queries
from deimv2.config.loader import Config
from deimv2.config.run_config import DatasetInfo
from deimv2.data.autodata import prepare_data
from deimv2.data.collate import BatchImageCollateFunction, batch_image_collate_fn
from deimv2.data.dataset import CocoDetection, dataset_class_names
from deimv2.data.layout import find_dataset, read_coco_json
from deimv2.data.loader import build_dataloader
from deimv2.data.transforms import build_transforms_from_ops
from deimv2.data.validate import empty_split_problem, shared_images_problem
from deimv2.engine import dist
from deimv2.engine.speed import loader_settings
from deimv2.errors import ConfigError, DatasetError
from deimv2.utils.inputs import local_processes
from deimv2.utils.runtime import resolve_device


def process_device(device: str | torch.device | None = None) -> torch.device:
    """The device of this process. Alone: :func:`resolve_device`. Under torchrun on CUDA, local rank ``i`` takes
    GPU ``i`` (no ``-d`` or ``-d cuda``) or the ``i``-th GPU of a list (``-d 2,3``); one GPU for several processes
    is an error (they would all crowd onto it)."""
    dev = resolve_device(device)
    procs, rank = local_processes()
    if procs <= 1 or dev.type != "cuda":
        return dev
    listed = isinstance(device, str) and "," in device.replace("，", ",")
    if dev.index is None:
        dev = resolve_device(f"cuda:{rank}")
    elif not listed:
        raise ConfigError(
            f"设备 {device} 只是一块 GPU，但 torchrun 在这台机器上启动了 {procs} 个进程，它们会挤在同一块 GPU 上。"
            f"修复：每个进程一块，写 -d {','.join(str(i) for i in range(procs))}（或去掉 -d：第 i 个进程用 GPU i）。"
        )
    return dev


def _check_boxes(split: str, ds) -> None:
    """Empty or crowd-only splits: the doctor's rule (deimv2.data.validate), so check and training agree."""
    problem = empty_split_problem(split, ds.num_boxes, ds.num_crowd, ds.ann_file)
    if problem:
        raise DatasetError(problem)


def amp_settings(use_amp: bool, device: torch.device, amp_dtype: str = "auto") -> tuple[bool, torch.dtype | None, bool]:
    """(enabled, dtype, needs GradScaler). AMP only on CUDA: bf16 where supported, else fp16 + GradScaler."""
    if not use_amp or device.type != "cuda":
        return False, None, False
    if amp_dtype == "float16" or (amp_dtype == "auto" and not torch.cuda.is_bf16_supported()):
        return True, torch.float16, True
    return True, torch.bfloat16, False


def read_dataset(data: str | Path) -> DatasetInfo:
    """The COCO dataset at ``data`` as a run's config takes it (:class:`~deimv2.config.run_config.DatasetInfo`):
    the train and val splits, the class names from the train split's categories and its number of images."""
    splits = find_dataset(data)
    if "train" not in splits:
        raise DatasetError(
            f"数据集 {data} 没有训练集（找到的划分：{'、'.join(splits)}）。请把训练图片和标注放进 train/ 文件夹"
            "（或 annotations/instances_train*.json + train*/），见 deimv2.data.layout.find_dataset 的说明。"
        )
    if "val" not in splits:
        raise DatasetError(
            f"数据集 {data} 只有训练集，没有验证集（valid/ 或 val/）。请划分出一部分图片作为验证集，"
            f"例如 deimv2 yolo2coco 的 --split-ratio 0.2。"
        )
    (train_images, train_ann), (val_images, val_ann) = splits["train"], splits["val"]
    return DatasetInfo(
        train_images=str(train_images),
        train_ann=str(train_ann),
        val_images=str(val_images),
        val_ann=str(val_ann),
        class_names=tuple(dataset_class_names(train_ann)),
        n_train=len(read_coco_json(train_ann, check_categories=False).get("images") or []),
    )


@dataclass
class DataBundle:
    train_dataset: Any
    val_dataset: Any
    train_loader: Any
    val_loader: Any
    collate: Any
    class_names: list
    category_ids: list


def _check_num_classes(cfg: Config, dataset) -> None:
    n = len(dataset.category_names)
    if cfg.num_classes < n:
        raise ConfigError(
            f"配置的 num_classes={cfg.num_classes} 小于标注文件 {dataset.ann_file} 中的类别数 {n}。"
            f"类别 id 超出范围会在 GPU 上报 'device-side assert'。请设置 num_classes={n}（用 --data 会自动设置）。"
        )


def build_data(
    cfg: Config, batch_size: int, distributed: bool, train: bool = True, device: torch.device | None = None
) -> DataBundle:
    """Datasets and loaders from the config (official ops lists; multi-scale switch; ``num_workers`` as set, capped
    at the free cores, pinned memory for a CUDA ``device``: :func:`deimv2.engine.speed.loader_settings`)."""
    d = cfg.data
    _check_split_paths(cfg, train)
    loaders = _Loaders(device or torch.device("cpu"), distributed, cfg.train.seed)
    val_ds = _dataset(cfg, "val")
    val_batch = min(d.val_batch_size, max(batch_size, 1) * 2)
    val_loader = loaders.build(val_ds, batch_size=val_batch, workers=d.val_num_workers, collate=batch_image_collate_fn)
    names, cat_ids = list(val_ds.category_names), list(val_ds.label_to_category_id)
    if not train:
        return DataBundle(None, val_ds, None, val_loader, None, names, cat_ids)
    train_ds = _dataset(cfg, "train")
    _check_train_against_val(cfg, train_ds, val_ds)
    kw = dict(d.collate)
    kw.pop("ema_restart_decay", None)
    collate = BatchImageCollateFunction(**kw, multiscale=d.multiscale)
    if d.multiscale and collate.scales:
        low = min(collate.scales)
        check_enough_queries(
            cfg, (low, low), "多尺度训练的最小尺寸（train_dataloader.collate_fn.base_size 的约 0.75 倍）"
        )
    train_loader = loaders.build(
        train_ds,
        batch_size=batch_size,
        workers=d.num_workers,
        collate=collate,
        shuffle=d.shuffle,
        drop_last=d.drop_last and len(train_ds) >= batch_size * 2,
    )
    return DataBundle(train_ds, val_ds, train_loader, val_loader, collate, names, cat_ids)


def _check_split_paths(cfg: Config, train: bool) -> None:
    d = cfg.data
    splits = (("训练", d.train_img_folder, d.train_ann_file), ("验证", d.val_img_folder, d.val_ann_file))
    for what, folder, ann in splits[0 if train else 1 :]:
        if not folder or not ann:
            raise ConfigError(
                f"配置里没有{what}集路径。请用 --data 指定数据集根目录，或在 YAML 里填写 img_folder 和 ann_file。"
            )


def _dataset(cfg: Config, split: str) -> CocoDetection:
    """The train or val ``CocoDetection`` of the config, with the checks that need its annotations."""
    d = cfg.data
    if split == "val":
        folder, ann, transforms = d.val_img_folder, d.val_ann_file, build_transforms_from_ops(d.val_ops)
    else:
        ops, policy = d.train_ops, d.policy or None
        folder, ann = d.train_img_folder, d.train_ann_file
        transforms = build_transforms_from_ops(ops, policy=policy, mosaic_prob=d.mosaic_prob)
    ds = CocoDetection(folder, ann, transforms=transforms, remap_mscoco_category=cfg.remap_mscoco_category)
    _check_num_classes(cfg, ds)
    if split == "train" and len(ds) == 0:
        raise DatasetError(f"训练集 {ann} 里没有图片。请检查标注文件的 images 列表。")
    _check_boxes(split, ds)
    return ds


def _check_train_against_val(cfg: Config, train_ds, val_ds) -> None:
    """No image in both splits; the same categories (ids and names) in both (deimv2 doctor: categories_disagree)."""
    d = cfg.data
    shared = shared_images_problem(
        {n: [ds.image_path(i) for i in range(len(ds))] for n, ds in (("train", train_ds), ("val", val_ds))}
    )
    if shared:
        raise DatasetError(f"训练集 {d.train_ann_file} 与验证集 {d.val_ann_file}：{shared}")
    names, cat_ids = list(val_ds.category_names), list(val_ds.label_to_category_id)
    if list(train_ds.label_to_category_id) != cat_ids or list(train_ds.category_names) != names:
        raise DatasetError(
            f"训练集 {d.train_ann_file} 与验证集 {d.val_ann_file} 的 categories 不一致"
            f"（训练集：{dict(zip(train_ds.label_to_category_id, train_ds.category_names))}；"
            f"验证集：{dict(zip(cat_ids, names))}）。请让两者使用同一份类别列表（id 和名字都相同）。"
        )


@dataclass(frozen=True)
class _Loaders:
    """What the train and val loaders share: the device (pinned memory), DDP and the seed."""

    device: torch.device
    distributed: bool
    seed: int

    def build(self, ds, *, batch_size: int, workers: int, collate, shuffle: bool = False, drop_last: bool = False):
        n_workers, pin = loader_settings(workers, self.device, local_processes()[0])
        return build_dataloader(
            ds,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=n_workers,
            pin_memory=pin,
            collate_fn=collate,
            drop_last=drop_last,
            distributed=self.distributed,
            seed=self.seed,
        )


def measure_activation_bytes(
    model: torch.nn.Module,
    criterion: torch.nn.Module,
    image_size: list[int],
    device: torch.device,
    batch_size: int = 1,
    autocast_dtype: torch.dtype | None = None,
) -> int:
    """Bytes autograd keeps for backward for one training batch (measured with saved-tensor hooks).

    Runs one forward + loss on ``batch_size`` images of ``image_size`` with one dummy box each (under
    ``torch.autocast(dtype=autocast_dtype)`` when given); works on CPU and GPU alike. Leaves no trace:
    BatchNorm statistics and the random-number states are put back afterwards.
    """
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        try:
            ptr = t.untyped_storage().data_ptr()
            seen[ptr] = max(seen.get(ptr, 0), t.untyped_storage().nbytes())
        except (RuntimeError, NotImplementedError):  # tensors without storage (e.g. sparse): skip
            pass
        return t

    was_training = model.training
    buffers = {k: v.clone() for k, v in model.state_dict().items() if not v.is_floating_point() or "running" in k}
    model.train()
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        x = torch.rand(batch_size, 3, *image_size, device=device)
        targets = [
            {
                "labels": torch.zeros(1, dtype=torch.long, device=device),
                "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]], device=device),
            }
            for _ in range(batch_size)
        ]
        amp = (
            torch.autocast(device_type=device.type, dtype=autocast_dtype)
            if autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            with amp:
                out = model(x, targets=targets)
            sum(criterion(out, targets, epoch=0).values())
    model.train(was_training)
    model.load_state_dict(buffers, strict=False)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    return sum(v for k, v in seen.items() if k not in params)


def memory_table(
    model: torch.nn.Module, act_bytes_per_image: int, batch_sizes=(1, 2, 4, 8, 16, 32, 64), amp: bool = False
) -> list[tuple[int, float]]:
    """(batch size, estimated training memory in GB): weights + grads + 2 AdamW moments + activations.

    AMP roughly halves the activations. A guide for choosing batch size / ``accumulate``, not a guarantee
    (allocator overhead and the CUDA context add a few hundred MB).
    """
    static = sum(p.numel() for p in model.parameters()) * 4 * 4
    act = act_bytes_per_image * (0.5 if amp else 1.0)
    return [(b, (static + b * act) / 2**30) for b in batch_sizes]


def prepare_run_data(
    data: str | Path | None, output_dir: str | Path | None, check: bool, num_classes: int | None = None
) -> tuple[Path | None, bool]:
    """``--data`` as COCO or YOLO (see :mod:`deimv2.data.autodata`): the COCO root, and whether the dataset
    doctor already ran on the YOLO source. Under torchrun only rank 0 converts; the others wait for it."""
    if data is None:
        return None, False
    dist.init_distributed()  # idempotent; needed here so that only rank 0 converts
    if not dist.is_main_process():
        dist.barrier()
    prep = prepare_data(
        data,
        Path(output_dir) if output_dir is not None else Path("outputs"),
        check=check,
        num_classes=num_classes,
        verbose=dist.is_main_process(),
    )
    if dist.is_main_process() and dist.is_dist():
        dist.barrier()
    return prep.path, prep.kind == "yolo" and check
