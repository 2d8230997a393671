"""Data pipeline: dataset layouts, images, COCO dataset, official DEIMv2 augmentations, batch collation, loaders.

Names are imported lazily (on first use), so that ``deimv2.data.images`` and ``deimv2.data.layout`` (used by
drawing, prediction and the dataset tools) do not pull in torch and torchvision.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "BatchImageCollateFunction": "collate",
    "batch_image_collate_fn": "collate",
    "generate_scales": "collate",
    "CocoDetection": "dataset",
    "dataset_num_classes": "dataset",
    "dataset_class_names": "dataset",
    "MSCOCO_CATEGORY_IDS": "dataset",
    "MSCOCO_CATEGORY_NAMES": "dataset",
    "MSCOCO_CATEGORY_TO_LABEL": "dataset",
    "SharedEpoch": "epoch",
    "IMAGE_EXTS": "images",
    "as_rgb_image": "images",
    "exif_orientation": "images",
    "image_size": "images",
    "list_images": "images",
    "load_image": "images",
    "to_rgb": "images",
    "SplitFiles": "layout",
    "find_dataset": "layout",
    "read_coco_json": "layout",
    "DetDataLoader": "loader",
    "build_dataloader": "loader",
    "seed_worker": "loader",
    "IMAGENET_MEAN": "transforms",
    "IMAGENET_STD": "transforms",
    "Compose": "transforms",
    "ConvertBoxes": "transforms",
    "ConvertPILImage": "transforms",
    "Mosaic": "transforms",
    "Normalize": "transforms",
    "RandomHorizontalFlip": "transforms",
    "RandomIoUCrop": "transforms",
    "RandomPhotometricDistort": "transforms",
    "RandomZoomOut": "transforms",
    "Resize": "transforms",
    "SanitizeBoundingBoxes": "transforms",
    "build_train_transforms": "transforms",
    "build_val_transforms": "transforms",
    "build_transforms_from_ops": "transforms",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
