"""Data pipeline: dataset layouts, images, COCO dataset, official DEIMv2 augmentations, batch collation, loaders.

Names are imported lazily (on first use), so that ``deimv2.data.images`` and ``deimv2.data.layout`` (used by
drawing, prediction and the dataset tools) do not pull in torch and torchvision.
"""

from __future__ import annotations

import lazy_loader

# name -> defining submodule, imported on first use (lazy_loader: the scientific-Python convention)
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "collate": ["BatchImageCollateFunction", "batch_image_collate_fn", "generate_scales"],
        "dataset": [
            "CocoDetection",
            "dataset_num_classes",
            "dataset_class_names",
            "MSCOCO_CATEGORY_TO_LABEL",
        ],
        "epoch": ["SharedEpoch"],
        "images": [
            "IMAGE_EXTS",
            "as_rgb_image",
            "exif_orientation",
            "image_size",
            "list_images",
            "load_image",
            "to_rgb",
        ],
        "layout": ["SplitFiles", "find_dataset", "read_coco_json"],
        "loader": ["DetDataLoader", "build_dataloader", "seed_worker"],
        "mscoco": ["MSCOCO_CATEGORY_IDS", "MSCOCO_CATEGORY_NAMES"],
        "transforms": [
            "IMAGENET_MEAN",
            "IMAGENET_STD",
            "Compose",
            "ConvertBoxes",
            "ConvertPILImage",
            "Mosaic",
            "Normalize",
            "RandomHorizontalFlip",
            "RandomIoUCrop",
            "RandomPhotometricDistort",
            "RandomZoomOut",
            "Resize",
            "SanitizeBoundingBoxes",
            "build_train_transforms",
            "build_val_transforms",
            "build_transforms_from_ops",
        ],
    },
)
