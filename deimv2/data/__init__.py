"""Data pipeline: COCO dataset, official DEIMv2 augmentations, batch collation, loaders."""
from .collate import BatchImageCollateFunction, batch_image_collate_fn, generate_scales
from .dataset import (
    MSCOCO_CATEGORY_IDS,
    MSCOCO_CATEGORY_NAMES,
    MSCOCO_CATEGORY_TO_LABEL,
    CocoDetection,
    dataset_class_names,
    dataset_num_classes,
    find_dataset,
    read_coco_json,
)
from .epoch import SharedEpoch
from .images import exif_orientation, image_size, load_image, to_rgb
from .loader import DetDataLoader, build_dataloader, seed_worker
from .transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Compose,
    ConvertBoxes,
    ConvertPILImage,
    Mosaic,
    Normalize,
    RandomHorizontalFlip,
    RandomIoUCrop,
    RandomPhotometricDistort,
    RandomZoomOut,
    Resize,
    SanitizeBoundingBoxes,
    build_train_transforms,
    build_transforms_from_ops,
    build_val_transforms,
)

__all__ = [
    "BatchImageCollateFunction", "batch_image_collate_fn", "generate_scales",
    "CocoDetection", "find_dataset", "dataset_num_classes", "dataset_class_names", "read_coco_json",
    "MSCOCO_CATEGORY_IDS", "MSCOCO_CATEGORY_NAMES", "MSCOCO_CATEGORY_TO_LABEL", "SharedEpoch",
    "load_image", "image_size", "to_rgb", "exif_orientation",
    "DetDataLoader", "build_dataloader", "seed_worker",
    "IMAGENET_MEAN", "IMAGENET_STD", "Compose", "ConvertBoxes", "ConvertPILImage", "Mosaic", "Normalize",
    "RandomHorizontalFlip", "RandomIoUCrop", "RandomPhotometricDistort", "RandomZoomOut", "Resize",
    "SanitizeBoundingBoxes", "build_train_transforms", "build_val_transforms", "build_transforms_from_ops",
]
