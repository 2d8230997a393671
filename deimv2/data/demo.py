"""The bundled demo dataset (package data ``deimv2/assets/demo_yolo``) and its COCO conversion.

Explained in notebook 02_convert.ipynb.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

from deimv2.data.convert import yolo_to_coco
from deimv2.data.layout import COCO_JSON
from deimv2.errors import DatasetError

_STAMP = ".deimv2_demo_source.json"


def demo_dataset_dir() -> Path:
    """Path of the bundled YOLO demo dataset (package data ``deimv2/assets/demo_yolo``, also in a wheel)."""
    path = Path(str(resources.files("deimv2") / "assets" / "demo_yolo"))
    if not (path / "data.yaml").is_file():
        raise DatasetError(
            f"找不到示例数据集 {path}（deimv2 安装不完整：包里应当带有 assets/demo_yolo/）。"
            "请重新安装：pip install --force-reinstall deimv2；开发者可以运行 "
            "`pip install scikit-image && python data/make_demo_dataset.py` 重新生成。"
        )
    return path


def _fingerprint(src: Path) -> str:
    h = hashlib.sha1()
    for p in sorted(src.rglob("*")):
        if p.is_file():
            h.update(f"{p.relative_to(src).as_posix()}:{p.stat().st_size}\n".encode())
    h.update((src / "data.yaml").read_bytes())
    return h.hexdigest()


def prepare_demo_coco(dst: str | Path, *, one_based: bool = False) -> Path:
    """Convert the demo dataset to COCO in ``dst`` (``dst/{train,valid}/_annotations.coco.json``).

    Idempotent: does nothing when ``dst`` already holds a conversion of the same demo data with the
    same options. Returns ``dst``.
    """
    src, dst = demo_dataset_dir(), Path(dst)
    stamp = {"fingerprint": _fingerprint(src), "one_based": one_based}
    stamp_file = dst / _STAMP
    if stamp_file.is_file() and all((dst / s / COCO_JSON).is_file() for s in ("train", "valid")):
        try:
            if json.loads(stamp_file.read_text(encoding="utf-8")) == stamp:
                return dst
        except ValueError:
            pass
    if dst.exists() and any(dst.iterdir()) and not stamp_file.is_file():
        raise DatasetError(f"{dst} 已存在且不是示例数据集的转换结果，为避免覆盖你的文件，请换一个输出文件夹。")
    yolo_to_coco(src, dst, one_based=one_based, overwrite=True)
    stamp_file.write_text(json.dumps(stamp), encoding="utf-8")
    return dst
