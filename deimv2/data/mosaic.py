"""Mosaic augmentation (same behaviour as the official engine/data/transforms/mosaic.py).

Four images, each resized so its shorter side is ``output_size``, are pasted on a 2x2 grid
of cells of size (max_w, max_h); then one RandomAffine (rotation, translation, scale, fill)
is applied to the whole canvas. The three partner images come from a per-process cache of
recently seen samples (``use_cache=True``, official default) or from ``dataset.load_item``.

Mosaic is one of the means of DEIM's Dense O2O: one-to-one matching stays, but an image that holds the
objects of four makes four times as many positive queries (see notebooks/09_loss.ipynb §2).
"""

from __future__ import annotations

import random

import torch
import torchvision.transforms.v2 as T
from PIL import Image
from torchvision import tv_tensors

from deimv2.errors import ConfigError

__all__ = ["Mosaic", "PER_OBJECT_KEYS"]

# Target entries with one row per object; they are concatenated across the 4 images.
# Other entries (image_id, idx, orig_size) are kept from the main sample.
PER_OBJECT_KEYS = ("boxes", "labels", "area", "iscrowd")


class Mosaic(T.Transform):
    """Input and output: (image, target) or (image, target, dataset). Official keyword names."""

    def __init__(
        self,
        output_size=320,
        max_size=None,
        rotation_range=0,
        translation_range=(0.1, 0.1),
        scaling_range=(0.5, 1.5),
        probability=1.0,
        fill_value=114,
        use_cache=True,
        max_cached_images=50,
        random_pop=True,
    ) -> None:
        super().__init__()
        self.output_size = output_size
        self.resize = T.Resize(size=output_size, max_size=max_size)
        self.probability = probability
        self.affine_transform = T.RandomAffine(
            degrees=rotation_range, translate=translation_range, scale=scaling_range, fill=fill_value
        )
        self.use_cache = use_cache
        self.max_cached_images = max_cached_images
        self.random_pop = random_pop
        self.mosaic_cache: list = []

    def _resized(self, image, target):
        if "masks" in target:
            raise ConfigError(
                "Mosaic 不支持带分割掩码的样本 (return_masks=True)。修复：关闭 Mosaic 或设 return_masks=False。"
            )
        image, target = self.resize(image, target)
        return image, {k: target[k] for k in PER_OBJECT_KEYS if k in target}

    def _partners_from_cache(self, image, target):
        self.mosaic_cache.append((image, target))
        if len(self.mosaic_cache) > self.max_cached_images:
            # never evict the sample just added
            drop = random.randint(0, len(self.mosaic_cache) - 2) if self.random_pop else 0
            self.mosaic_cache.pop(drop)
        picks = random.choices(range(len(self.mosaic_cache)), k=3)
        return [self.mosaic_cache[i] for i in picks]

    def _partners_from_dataset(self, dataset):
        if dataset is None or not hasattr(dataset, "load_item"):
            raise ConfigError(
                "Mosaic(use_cache=False) 需要数据集对象 (带 load_item 方法)。"
                "修复：通过 CocoDetection 调用变换，或设 use_cache=True。"
            )
        picks = random.choices(range(len(dataset)), k=3)
        return [self._resized(*dataset.load_item(i)) for i in picks]

    def forward(self, *inputs):
        sample = inputs if len(inputs) > 1 else inputs[0]
        image, target = sample[0], sample[1]
        dataset = sample[2] if len(sample) > 2 else None
        result = self._apply(image, target, dataset)
        return result if len(sample) > 2 else result[:2]

    def _apply(self, image, target, dataset):
        if not isinstance(image, Image.Image):
            raise ConfigError("Mosaic 必须放在 ConvertPILImage 之前（它处理 PIL 图片）。")
        if self.probability < 1.0 and random.random() > self.probability:
            return image, target, dataset

        small, small_target = self._resized(image, target)
        if self.use_cache:
            partners = self._partners_from_cache(small, small_target)
        else:
            partners = self._partners_from_dataset(dataset)
        parts = [(small, small_target)] + partners

        cell_w = max(p[0].size[0] for p in parts)
        cell_h = max(p[0].size[1] for p in parts)
        canvas = Image.new(mode=small.mode, size=(2 * cell_w, 2 * cell_h), color=0)
        corners = [(0, 0), (cell_w, 0), (0, cell_h), (cell_w, cell_h)]
        merged = {k: [] for k in parts[0][1]}
        for (img, tgt), (x0, y0) in zip(parts, corners):
            canvas.paste(img, (x0, y0))
            for k in merged:
                value = tgt[k].as_subclass(torch.Tensor)
                if k == "boxes":
                    value = value + torch.tensor([x0, y0, x0, y0], dtype=value.dtype)
                merged[k].append(value)

        out = {k: v for k, v in target.items() if k not in PER_OBJECT_KEYS}
        for k, values in merged.items():
            out[k] = torch.cat(values, dim=0)
        out["boxes"] = tv_tensors.BoundingBoxes(
            out["boxes"], format="XYXY", canvas_size=(canvas.size[1], canvas.size[0])
        )
        canvas, out = self.affine_transform(canvas, out)
        return canvas, out, dataset

    def extra_repr(self) -> str:
        return (
            f"output_size={self.output_size}, probability={self.probability}, "
            f"use_cache={self.use_cache}, max_cached_images={self.max_cached_images}"
        )
