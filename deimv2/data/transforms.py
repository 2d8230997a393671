"""Detection augmentations (official DEIMv2 pipeline) on the torchvision.transforms.v2 API.

Every transform takes and returns the sample ``(image, target)`` or ``(image, target, dataset)``;
the dataset entry is passed through untouched (Mosaic uses it when ``use_cache=False``).
Target boxes are ``tv_tensors.BoundingBoxes`` (xyxy, pixels) until ``ConvertBoxes``.
"""

from __future__ import annotations

import random
from typing import Any

import PIL.Image
import torch
import torch.nn as nn
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as F
from torchvision import tv_tensors
from torchvision.ops import box_convert

from deimv2.data.epoch import SharedEpoch
from deimv2.data.mosaic import PER_OBJECT_KEYS, Mosaic
from deimv2.errors import ConfigError

__all__ = [
    "Mosaic",
    "RandomPhotometricDistort",
    "RandomZoomOut",
    "RandomIoUCrop",
    "SanitizeBoundingBoxes",
    "RandomHorizontalFlip",
    "Resize",
    "Normalize",
    "ConvertPILImage",
    "ConvertBoxes",
    "Compose",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "POLICY_OPS",
    "build_train_transforms",
    "build_val_transforms",
    "build_transforms_from_ops",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# torchvision ops used unchanged by the official pipeline
RandomPhotometricDistort = T.RandomPhotometricDistort
RandomZoomOut = T.RandomZoomOut
RandomHorizontalFlip = T.RandomHorizontalFlip
Resize = T.Resize
Normalize = T.Normalize


class RandomIoUCrop(T.RandomIoUCrop):
    """torchvision's SSD IoU crop, applied with probability ``p`` (official wrapper)."""

    def __init__(
        self,
        min_scale: float = 0.3,
        max_scale: float = 1,
        min_aspect_ratio: float = 0.5,
        max_aspect_ratio: float = 2,
        sampler_options=None,
        trials: int = 40,
        p: float = 1.0,
    ):
        super().__init__(min_scale, max_scale, min_aspect_ratio, max_aspect_ratio, sampler_options, trials)
        self.p = p

    def forward(self, *inputs: Any) -> Any:
        if torch.rand(1) >= self.p:
            return inputs if len(inputs) > 1 else inputs[0]
        return super().forward(*inputs)


def per_object_entries(inputs: Any):
    """labels_getter: the target's per-object tensors (labels, area, iscrowd) that must follow the boxes."""
    target = None
    if isinstance(inputs, dict):
        target = inputs
    elif isinstance(inputs, (tuple, list)) and len(inputs) >= 2 and isinstance(inputs[1], dict):
        target = inputs[1]
    if target is None:
        return None
    found = tuple(target[k] for k in PER_OBJECT_KEYS if k != "boxes" and isinstance(target.get(k), torch.Tensor))
    return found or None


class SanitizeBoundingBoxes(T.SanitizeBoundingBoxes):
    """Drop boxes smaller than ``min_size``; labels, area and iscrowd are filtered with them.

    (The official pipeline filters only labels, leaving area/iscrowd misaligned after crops.)
    """

    def __init__(self, min_size: float = 1.0, min_area: float = 1.0, labels_getter=per_object_entries) -> None:
        super().__init__(min_size=min_size, min_area=min_area, labels_getter=labels_getter)


class ConvertPILImage(T.Transform):
    """PIL image -> tv_tensors.Image; ``dtype='float32'`` casts, ``scale=True`` divides by 255."""

    _transformed_types = (PIL.Image.Image,)

    def __init__(self, dtype="float32", scale=True) -> None:
        super().__init__()
        if dtype not in ("float32", torch.float32, "uint8", torch.uint8):
            raise ConfigError(f"ConvertPILImage 的 dtype={dtype!r} 不支持。修复：使用 'float32' 或 'uint8'。")
        self.dtype = dtype
        self.scale = scale

    def transform(self, inpt: Any, params: dict) -> Any:
        out = F.pil_to_tensor(inpt)
        if self.dtype in ("float32", torch.float32):
            out = out.float()
        if self.scale:
            out = out.div_(255.0) if out.is_floating_point() else out / 255.0
        return tv_tensors.Image(out)


class ConvertBoxes(T.Transform):
    """Change box format (``fmt``: 'xyxy' | 'xywh' | 'cxcywh') and optionally divide by (w, h, w, h).

    With ``normalize=True`` the output is a plain tensor with values in [0, 1] (as in the official code).
    """

    _transformed_types = (tv_tensors.BoundingBoxes,)

    def __init__(self, fmt="", normalize=False) -> None:
        super().__init__()
        self.fmt = fmt
        self.normalize = normalize

    def transform(self, inpt: Any, params: dict) -> Any:
        canvas_h, canvas_w = inpt.canvas_size
        if self.fmt:
            raw = box_convert(inpt.as_subclass(torch.Tensor), in_fmt=inpt.format.name.lower(), out_fmt=self.fmt.lower())
            inpt = tv_tensors.BoundingBoxes(raw, format=self.fmt.upper(), canvas_size=(canvas_h, canvas_w))
        if self.normalize:
            scale = torch.tensor([canvas_w, canvas_h, canvas_w, canvas_h], dtype=inpt.dtype)
            inpt = inpt.as_subclass(torch.Tensor) / scale
        return inpt


# The four ops switched by the epoch policy (official policy.ops names -> our classes).
POLICY_OPS = {
    "Mosaic": Mosaic,
    "RandomPhotometricDistort": T.RandomPhotometricDistort,
    "RandomZoomOut": T.RandomZoomOut,
    "RandomIoUCrop": T.RandomIoUCrop,
}


class Compose(T.Compose):
    """Run ops in order, switching the policy ops on/off by epoch (official ``stop_epoch`` policy).

    policy: None (always run every op) or a dict with
      - ``epoch``: [e0, e1, e2] (4 stages) or a single int e (policy ops stop at e);
      - ``ops``: policy op classes or their official names (default: the four of POLICY_OPS);
      - ``name``: 'stop_epoch' (default) or 'stop_sample' (with ``sample``: per-process sample count).
    4-stage rule: epoch < e0 -> no policy op; e0 <= epoch < e1 -> Mosaic with probability
    ``mosaic_prob`` and, for a mosaic sample, ZoomOut/IoUCrop skipped; e1 <= epoch < e2 -> all but
    Mosaic; epoch >= e2 -> no policy op. The epoch is set by ``set_epoch`` (shared with workers).
    """

    def __init__(self, ops, policy=None, mosaic_prob=-0.1) -> None:
        ops = list(ops) if ops else [T.Identity()]
        for op in ops:
            if not isinstance(op, nn.Module):
                raise ConfigError(
                    f"Compose 的 ops 只接受变换对象，收到 {op!r}。"
                    "修复：用 build_transforms_from_ops 从 YAML 的 ops 列表构建。"
                )
        super().__init__(ops)
        self.mosaic_prob = mosaic_prob
        self.policy = self._check_policy(policy)
        self._epoch = SharedEpoch(-1)
        self.global_samples = 0

    @staticmethod
    def _check_policy(policy):
        if policy is None:
            return None
        policy = dict(policy)
        name = policy.get("name", "stop_epoch")
        if name == "default":
            return None
        if name not in ("stop_epoch", "stop_sample"):
            raise ConfigError(f"未知的数据增强 policy 名称 {name!r}。修复：使用 'stop_epoch' 或 'stop_sample'。")
        classes = []
        for op in policy.get("ops", list(POLICY_OPS)):
            if isinstance(op, type):
                classes.append(op)
            elif op in POLICY_OPS:
                classes.append(POLICY_OPS[op])
            else:
                raise ConfigError(
                    f"policy.ops 中的 {op!r} 不是可按 epoch 开关的变换。修复：只使用 {list(POLICY_OPS)}。"
                )
        policy["name"], policy["types"] = name, tuple(classes)
        if name == "stop_epoch":
            epoch = policy.get("epoch")
            ok = isinstance(epoch, int) or (
                isinstance(epoch, (list, tuple)) and len(epoch) == 3 and list(epoch) == sorted(epoch)
            )
            if not ok:
                raise ConfigError(f"policy.epoch={epoch!r} 无效。修复：写成 [e0, e1, e2]（递增）或一个整数。")
        elif not isinstance(policy.get("sample"), int):
            raise ConfigError("policy 'stop_sample' 需要整数 sample。")
        return policy

    def set_epoch(self, epoch: int) -> None:
        self._epoch.set(epoch)

    @property
    def epoch(self) -> int:
        return self._epoch.get()

    def _is_policy_op(self, op) -> bool:
        return isinstance(op, self.policy["types"])

    def active_ops(self) -> list:
        """The ops that run for the next sample (draws the Mosaic coin for the 4-stage policy)."""
        if self.policy is None:
            return list(self.transforms)
        if self.policy["name"] == "stop_sample":
            stop = self.global_samples >= self.policy["sample"]
            self.global_samples += 1
            return [op for op in self.transforms if not (stop and self._is_policy_op(op))]
        epoch, bounds = self.epoch, self.policy["epoch"]
        if isinstance(bounds, int):
            return [op for op in self.transforms if not (self._is_policy_op(op) and epoch >= bounds)]
        e0, e1, e2 = bounds
        with_mosaic = e0 <= epoch < e1 and random.random() <= self.mosaic_prob
        active = []
        for op in self.transforms:
            if self._is_policy_op(op) and (epoch < e0 or epoch >= e2):
                continue
            if isinstance(op, Mosaic) and not with_mosaic:
                continue
            if with_mosaic and isinstance(op, (T.RandomZoomOut, T.RandomIoUCrop)):
                continue
            active.append(op)
        return active

    def forward(self, *inputs: Any) -> Any:
        sample = inputs if len(inputs) > 1 else inputs[0]
        for op in self.active_ops():
            sample = op(sample)
        return sample

    def extra_repr(self) -> str:
        if self.policy is None:
            return ""
        bounds = self.policy.get("epoch", self.policy.get("sample"))
        return f"policy={self.policy['name']}@{bounds}, mosaic_prob={self.mosaic_prob}"


def _hw(size) -> list[int]:
    if isinstance(size, int):
        return [size, size]
    if isinstance(size, (list, tuple)) and len(size) == 2:
        return [int(size[0]), int(size[1])]
    raise ConfigError(f"图像尺寸 {size!r} 无效。修复：写一个整数（如 640）或 [高, 宽]。")


def build_train_transforms(
    train_size,
    mosaic_size,
    min_size,
    normalize: bool,
    policy_epochs,
    mosaic_prob,
    photometric_p: float = 0.5,
    iou_crop_p: float = 0.8,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
) -> Compose:
    """Official DEIMv2 train pipeline.

    train_size: int or [h, w] (Resize target); mosaic_size: Mosaic ``output_size`` (official:
    train_size / 2), None removes Mosaic; min_size: SanitizeBoundingBoxes (Atto 12, Femto 10,
    Pico 8, others 1); normalize: ImageNet mean/std (DINOv3 variants S/M/L/X);
    policy_epochs: [e0, e1, e2]; mosaic_prob: official ``mosaic_prob`` (0.5; Atto 0.3).
    """
    ops = []
    if mosaic_size is not None:
        ops.append(
            Mosaic(
                output_size=mosaic_size,
                rotation_range=10,
                translation_range=(0.1, 0.1),
                scaling_range=(0.5, 1.5),
                probability=1.0,
                fill_value=0,
                use_cache=True,
                max_cached_images=50,
                random_pop=True,
            )
        )
    ops += [
        RandomPhotometricDistort(p=photometric_p),
        RandomZoomOut(fill=0),
        RandomIoUCrop(p=iou_crop_p),
        SanitizeBoundingBoxes(min_size=min_size),
        RandomHorizontalFlip(),
        Resize(size=_hw(train_size)),
        SanitizeBoundingBoxes(min_size=min_size),
        ConvertPILImage(dtype="float32", scale=True),
    ]
    if normalize:
        ops.append(Normalize(mean=list(mean), std=list(std)))
    ops.append(ConvertBoxes(fmt="cxcywh", normalize=True))
    policy = {"name": "stop_epoch", "epoch": policy_epochs, "ops": list(POLICY_OPS)}
    return Compose(ops, policy=policy, mosaic_prob=mosaic_prob)


def build_val_transforms(eval_size, normalize: bool, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> Compose:
    """Official val pipeline: Resize(eval_size) -> float /255 -> [ImageNet Normalize]. Boxes stay xyxy pixels."""
    ops = [Resize(size=_hw(eval_size)), ConvertPILImage(dtype="float32", scale=True)]
    if normalize:
        ops.append(Normalize(mean=list(mean), std=list(std)))
    return Compose(ops)


def build_transforms_from_ops(ops_list, policy=None, mosaic_prob=-0.1) -> Compose:
    """Build ``Compose`` from an official YAML ``ops:`` list of dicts ({type: Name, **kwargs})."""
    known = {
        "Mosaic": Mosaic,
        "RandomPhotometricDistort": RandomPhotometricDistort,
        "RandomZoomOut": RandomZoomOut,
        "RandomIoUCrop": RandomIoUCrop,
        "SanitizeBoundingBoxes": SanitizeBoundingBoxes,
        "RandomHorizontalFlip": RandomHorizontalFlip,
        "Resize": Resize,
        "ConvertPILImage": ConvertPILImage,
        "Normalize": Normalize,
        "ConvertBoxes": ConvertBoxes,
    }
    ops = []
    for entry in ops_list or []:
        if isinstance(entry, nn.Module):
            ops.append(entry)
            continue
        if not isinstance(entry, dict) or "type" not in entry:
            raise ConfigError(f"ops 列表中的 {entry!r} 缺少 type。修复：写成 {{type: Resize, size: [640, 640]}}。")
        kwargs = {k: v for k, v in entry.items() if k != "type"}
        name = entry["type"]
        if name not in known:
            raise ConfigError(f"不支持的数据变换类型 {name!r}。修复：只使用 {sorted(known)}。")
        try:
            ops.append(known[name](**kwargs))
        except TypeError as exc:
            raise ConfigError(
                f"数据变换 {name} 的参数 {sorted(kwargs)} 有误：{exc}。修复：对照官方 YAML 的参数名。"
            ) from None
    return Compose(ops, policy=policy, mosaic_prob=mosaic_prob)
