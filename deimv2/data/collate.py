"""Batch collation for training: MixUp, CopyBlend and multi-scale resize (official dataloader.py).

Inputs are samples after the train transforms: float image tensors of one size and targets with
normalized cxcywh ``boxes``. Python's ``random`` drives the choices, as in the official code.

MixUp and CopyBlend, like Mosaic, are means of DEIM's Dense O2O: they put more objects into each training
image, so one-to-one matching yields more positive queries per image (see notebooks/09_loss.ipynb §2).
"""

from __future__ import annotations

import random
from copy import deepcopy
from pathlib import Path

import torch
import torch.nn.functional as F

from deimv2.data.epoch import SharedEpoch
from deimv2.errors import ConfigError

__all__ = ["BatchImageCollateFunction", "generate_scales", "batch_image_collate_fn"]

_MIXED_KEYS = ("boxes", "labels", "area", "iscrowd")  # per-object entries joined by MixUp


def batch_image_collate_fn(items):
    """Validation collate: stack the images, keep the targets as a list."""
    return torch.stack([x[0] for x in items], dim=0), [x[1] for x in items]


def generate_scales(base_size: int, base_size_repeat: int) -> list[int]:
    """Official multi-scale list: sizes from ~0.75x to base (step 32), base x repeat, ~1.25x down to base."""
    low = int(base_size * 0.75 / 32) * 32
    steps = (base_size - low) // 32
    high = int(base_size * 1.25 / 32) * 32
    return [low + 32 * i for i in range(steps)] + [base_size] * base_size_repeat + [high - 32 * i for i in range(steps)]


class BatchImageCollateFunction:
    """Official train collate with ``set_epoch``. ``multiscale=False`` turns the random resize off."""

    def __init__(
        self,
        stop_epoch=None,
        ema_restart_decay=0.9999,
        base_size=640,
        base_size_repeat=None,
        mixup_prob=0.0,
        mixup_epochs=(0, 0),
        copyblend_prob=0.0,
        copyblend_epochs=(0, 0),
        copyblend_type="blend",
        area_threshold=100,
        num_objects=3,
        with_expand=False,
        expand_ratios=(0.1, 0.25),
        random_num_objects=False,
        data_vis=False,
        vis_save=None,
        multiscale=True,
    ) -> None:
        if copyblend_type not in ("blend", "copy"):
            raise ConfigError(f"copyblend_type={copyblend_type!r} 无效。修复：使用 'blend' 或 'copy'。")
        self.base_size = base_size
        self.base_size_repeat = base_size_repeat
        self.scales = generate_scales(base_size, base_size_repeat) if base_size_repeat is not None else None
        self.stop_epoch = stop_epoch if stop_epoch is not None else 100000000
        self.ema_restart_decay = ema_restart_decay
        self.mixup_prob, self.mixup_epochs = mixup_prob, list(mixup_epochs)
        self.copyblend_prob, self.copyblend_epochs = copyblend_prob, list(copyblend_epochs)
        self.copyblend_type = copyblend_type
        self.area_threshold, self.num_objects = area_threshold, num_objects
        self.with_expand, self.expand_ratios = with_expand, list(expand_ratios)
        self.random_num_objects = random_num_objects
        self.data_vis = data_vis
        self.vis_save = Path(vis_save) if vis_save is not None else Path("vis_dataset")
        self.multiscale = multiscale
        self._epoch = SharedEpoch(-1)
        self._vis_count = 0

    def set_epoch(self, epoch: int) -> None:
        self._epoch.set(epoch)

    @property
    def epoch(self) -> int:
        return self._epoch.get()

    # ------------------------------------------------------------------ MixUp
    def _mixup(self, images, targets, beta):
        images = images.roll(shifts=1, dims=0).mul_(1.0 - beta).add_(images.mul(beta))
        partners = targets[-1:] + targets[:-1]  # image i was mixed with image i-1
        mixed = []
        for tgt, other in zip(targets, partners):
            new = dict(tgt)
            for k in _MIXED_KEYS:
                if k in tgt and k in other:
                    new[k] = torch.cat([tgt[k], other[k]], dim=0)
            new["mixup"] = torch.tensor(
                [beta] * len(tgt["labels"]) + [1.0 - beta] * len(other["labels"]), dtype=torch.float32
            )
            mixed.append(new)
        return images, mixed

    # ------------------------------------------------------------------ CopyBlend
    def _copyblend(self, images, targets, beta):
        img_h, img_w = images.shape[-2:]
        pool = []  # (cxcywh box, label, area, source image index)
        for i, tgt in enumerate(targets):
            for j in range(len(tgt["boxes"])):
                if tgt["area"][j] >= self.area_threshold:
                    pool.append((tgt["boxes"][j], tgt["labels"][j], tgt["area"][j], i))
        if not pool:
            return images, targets

        out_images = images.clone()
        out_targets = deepcopy(targets)
        for i in range(len(images)):
            count = min(self.num_objects, len(pool))
            if self.random_num_objects:
                count = random.randint(1, count)
            boxes, labels, areas, ratios = [], [], [], []
            for p in random.sample(range(len(pool)), count):
                box, label, area, src = pool[p]
                cx, cy, w, h = box  # 0-d float tensors: same rounding as the official code
                sx1, sy1 = max(int((cx - w / 2) * img_w), 0), max(int((cy - h / 2) * img_h), 0)
                sx2, sy2 = min(int((cx + w / 2) * img_w), img_w), min(int((cy + h / 2) * img_h), img_h)
                pw, ph = sx2 - sx1, sy2 - sy1
                if pw <= 0 or ph <= 0:
                    continue
                x1 = random.randint(0, img_w - pw) if pw < img_w else 0
                y1 = random.randint(0, img_h - ph) if ph < img_h else 0
                x2, y2 = x1 + pw, y1 + ph
                boxes.append(torch.tensor([(x1 + pw / 2) / img_w, (y1 + ph / 2) / img_h, pw / img_w, ph / img_h]))
                labels.append(label)
                areas.append(area)
                ratios.append(1.0 - beta)
                if self.with_expand:
                    # grow the pasted patch by a margin, limited by both image borders
                    alpha = round(random.uniform(self.expand_ratios[0], self.expand_ratios[1]), 6)
                    ew, eh = int(pw * alpha), int(ph * alpha)
                    left, top = sx1 - max(sx1 - ew, 0), sy1 - max(sy1 - eh, 0)
                    right, bottom = min(sx2 + ew, img_w) - sx2, min(sy2 + eh, img_h) - sy2
                    left, top = x1 - max(x1 - left, 0), y1 - max(y1 - top, 0)
                    right, bottom = min(x2 + right, img_w) - x2, min(y2 + bottom, img_h) - y2
                    sx1, sy1, sx2, sy2 = sx1 - left, sy1 - top, sx2 + right, sy2 + bottom
                    x1, y1, x2, y2 = x1 - left, y1 - top, x2 + right, y2 + bottom
                patch = images[src, :, sy1:sy2, sx1:sx2]
                if self.copyblend_type == "blend":
                    out_images[i, :, y1:y2, x1:x2] = out_images[i, :, y1:y2, x1:x2] * beta + patch * (1 - beta)
                else:
                    out_images[i, :, y1:y2, x1:x2] = patch
            if boxes:
                tgt = out_targets[i]
                tgt["mixup"] = torch.tensor([1.0] * len(tgt["boxes"]) + ratios, dtype=torch.float32)
                tgt["boxes"] = torch.cat([tgt["boxes"], torch.stack(boxes).to(tgt["boxes"].dtype)])
                tgt["labels"] = torch.cat([tgt["labels"], torch.stack(labels)])
                tgt["area"] = torch.cat([tgt["area"], torch.stack(areas).to(tgt["area"].dtype)])
                if "iscrowd" in tgt:
                    tgt["iscrowd"] = torch.cat([tgt["iscrowd"], tgt["iscrowd"].new_zeros(len(boxes))])
        return out_images, out_targets

    def apply_mixup(self, images, targets):
        """MixUp (mixup_epochs, mixup_prob) or else CopyBlend (copyblend_epochs, copyblend_prob)."""
        epoch = self.epoch
        beta = round(random.uniform(0.45, 0.55), 6)
        if random.random() < self.mixup_prob and self.mixup_epochs[0] <= epoch < self.mixup_epochs[-1]:
            beta = round(random.uniform(0.45, 0.55), 6)
            images, targets = self._mixup(images, targets, beta)
        elif self.copyblend_epochs[0] <= epoch < self.copyblend_epochs[-1] and random.random() < self.copyblend_prob:
            images, targets = self._copyblend(images, targets, beta)
            if self.data_vis:
                self._save_vis(images, targets)
        return images, targets

    def _save_vis(self, images, targets) -> None:
        from PIL import Image, ImageDraw

        self.vis_save.mkdir(parents=True, exist_ok=True)
        mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
        for img, tgt in zip(images, targets):
            img = img * std + mean if img.min() < 0 else img  # undo ImageNet normalization
            pil = Image.fromarray((img.clamp(0, 1) * 255).to(torch.uint8).permute(1, 2, 0).numpy())
            draw = ImageDraw.Draw(pil)
            w, h = pil.size
            for cx, cy, bw, bh in tgt["boxes"].tolist():
                draw.rectangle(
                    [(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h], outline=(255, 255, 0)
                )
            pil.save(self.vis_save / f"{self._vis_count}_{len(tgt['boxes'])}_out.jpg")
            self._vis_count += 1

    def __call__(self, items):
        images = torch.stack([x[0] for x in items], dim=0)
        targets = [x[1] for x in items]
        images, targets = self.apply_mixup(images, targets)
        if self.multiscale and self.scales is not None and self.epoch < self.stop_epoch:
            size = random.choice(self.scales)
            images = F.interpolate(images, size=size)  # nearest, as in the official code
            for tgt in targets:
                if "masks" in tgt:
                    tgt["masks"] = F.interpolate(tgt["masks"][None].float(), size=size)[0].to(tgt["masks"].dtype)
        return images, targets

    def __repr__(self) -> str:
        return (
            f"BatchImageCollateFunction(stop_epoch={self.stop_epoch}, scales={self.scales}, "
            f"multiscale={self.multiscale}, mixup_prob={self.mixup_prob}, mixup_epochs={self.mixup_epochs}, "
            f"copyblend_prob={self.copyblend_prob}, copyblend_epochs={self.copyblend_epochs})"
        )
