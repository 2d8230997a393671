"""``--data`` accepts COCO or YOLO: a YOLO dataset is converted once into a cached COCO copy.

:func:`prepare_data` is what ``train(...)``, ``evaluate(...)`` and ``deimv2 train/eval --data`` call:

* a COCO dataset (any layout of :func:`deimv2.data.layout.find_dataset`) is used as it is;
* a YOLO dataset — a ``data.yaml`` file, or a folder in any layout that ``yolo2coco`` reads — is checked by
  the dataset doctor, then converted (images hard-linked where possible) into ``<dataset>/.deimv2_coco/``,
  or into ``<fallback>/data_cache/<name>-<key>/`` when the dataset folder is read-only.

The cache is keyed by a fingerprint of the label files (their contents), the images (name, size,
modification time) and the class-name file: edit one label and the next run converts again; otherwise
the copy is reused. Explained in notebook ``04_train.ipynb`` (the conversion itself: ``02_convert.ipynb``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from deimv2.data.convert import yolo_to_coco
from deimv2.data.doctor import check_dataset
from deimv2.data.layout import COCO_JSON, find_dataset, find_yolo_dataset, label_path_for
from deimv2.errors import DatasetError

__all__ = ["CACHE_DIR_NAME", "PreparedData", "is_writable", "prepare_data", "yolo_fingerprint"]

CACHE_DIR_NAME = ".deimv2_coco"
_STAMP = "deimv2_cache.json"
#: share of the images that becomes the validation set when a YOLO dataset has no val split
AUTO_VAL_RATIO = 0.2
_CACHE_VERSION = 1


@dataclass
class PreparedData:
    """Where the COCO data is, and what :func:`prepare_data` did to get it."""

    path: Path  # COCO root to give the trainer
    source: Path  # what the user passed (folder or data.yaml)
    kind: str  # "coco" | "yolo"
    converted: bool = False  # True when this call wrote the cache; False when it was reused (or COCO)
    fingerprint: str | None = None
    doctor: object | None = None  # the DoctorReport of the YOLO source (None when not checked)


def is_writable(folder: Path) -> bool:
    """True when a file can really be created in ``folder`` (``os.access`` says yes to root even on a
    read-only mount, so we try)."""
    try:
        fd, name = tempfile.mkstemp(prefix=".deimv2_write_test.", dir=folder)
    except OSError:
        return False
    os.close(fd)
    Path(name).unlink(missing_ok=True)
    return True


def _yolo_root(data: Path) -> Path:
    """The dataset folder for a path the user gave (a folder, or a data.yaml inside it)."""
    if data.is_dir():
        return data
    if data.suffix.lower() in (".yaml", ".yml") and data.is_file():
        return data.parent
    raise DatasetError(
        f"找不到数据集 {data}：--data 应当是数据集文件夹（COCO 或 YOLO 格式），或 YOLO 的 data.yaml 文件。请检查路径。"
    )


def yolo_fingerprint(root: str | Path) -> str:
    """SHA-1 over the YOLO dataset's class-name file, label contents and image (name, size, mtime)."""
    ds = find_yolo_dataset(root)
    root = ds.root
    h = hashlib.sha1(f"v{_CACHE_VERSION}|{ds.layout}|{AUTO_VAL_RATIO}\n".encode())
    if ds.names_file is not None and ds.names_file.is_file():
        h.update(ds.names_file.read_bytes())
    for split in sorted(ds.splits):
        for img in sorted(ds.splits[split]):
            rel = os.path.relpath(img, root)
            try:
                st = img.stat()
                h.update(f"{split}|{rel}|{st.st_size}|{st.st_mtime_ns}\n".encode())
            except OSError:
                h.update(f"{split}|{rel}|missing\n".encode())
            label = label_path_for(img)
            if label is not None:
                h.update(b"L" + label.read_bytes() + b"\n")
    return h.hexdigest()


def _cache_ok(folder: Path, fingerprint: str) -> bool:
    stamp = folder / _STAMP
    if not stamp.is_file() or not (folder / "train" / COCO_JSON).is_file():
        return False
    try:
        return json.loads(stamp.read_text(encoding="utf-8")).get("fingerprint") == fingerprint
    except (ValueError, OSError):
        return False


def _cache_folder(root: Path, fingerprint: str, fallback: Path | None) -> Path:
    """``root/.deimv2_coco`` if ``root`` is writable, else ``fallback/data_cache/<name>-<key>``."""
    if is_writable(root):
        return root / CACHE_DIR_NAME
    if fallback is None:
        raise DatasetError(
            f"数据集文件夹 {root} 是只读的，无法在旁边保存转换后的 COCO 副本。"
            f"请指定一个可写的输出目录（--output-dir），副本会放在那里的 data_cache/ 下。"
        )
    return Path(fallback) / "data_cache" / f"{root.name}-{fingerprint[:12]}"


def prepare_data(
    data: str | Path,
    fallback: str | Path | None = None,
    *,
    check: bool = True,
    num_classes: int | None = None,
    verbose: bool = True,
) -> PreparedData:
    """COCO data -> itself; YOLO data -> the (cached) COCO conversion. See the module docstring.

    ``fallback``: the output folder, used for the cache when the dataset folder is read-only.
    ``check``: run the dataset doctor on the YOLO source (errors stop with the report).
    """
    src = Path(data).expanduser()
    if not src.exists():
        raise DatasetError(
            f"找不到数据集 {src}。--data 应当是数据集文件夹（COCO 或 YOLO 格式）或 YOLO 的 data.yaml，请检查路径。"
        )
    if src.is_dir() and find_dataset(src, required=False):
        return PreparedData(path=src, source=src, kind="coco")
    if src.is_file() and src.suffix.lower() == ".json":
        return PreparedData(path=src, source=src, kind="coco")  # a COCO annotation file (find_dataset, layout D)
    root = _yolo_root(src)
    yolo = src if src.is_file() else root  # one named data.yaml among several is read as given
    say = print if verbose else (lambda *a, **k: None)
    report = None
    if check:
        report = check_dataset(yolo, num_classes=num_classes)
        if not report.ok:
            raise DatasetError("YOLO 数据集检查没有通过，没有转换也没有训练：\n" + report.format())
        if report.warnings:
            say(report.format())
    ds = find_yolo_dataset(yolo)
    fingerprint = yolo_fingerprint(yolo)
    cache = _cache_folder(root, fingerprint, Path(fallback) if fallback is not None else None)
    if yolo != root and src.name not in ("data.yaml", "data.yml", "dataset.yaml"):
        cache = cache.with_name(f"{cache.name}-{src.stem}")  # each named YAML has its own copy
    where = "数据集文件夹里" if cache.parent == root else "输出目录下（数据集文件夹只读）"
    if _cache_ok(cache, fingerprint):
        say(
            f"检测到 YOLO 格式数据集 {root}（{len(ds.names)} 个类别）；标注和图片没有变化，直接使用已转换的 COCO 副本：{cache}"
        )
        return PreparedData(path=cache, source=src, kind="yolo", fingerprint=fingerprint, doctor=report)
    stale = cache.exists()
    split_ratio = AUTO_VAL_RATIO if not ds.splits.get("val") else None
    if split_ratio is not None:
        say(f"YOLO 数据集 {root} 没有验证集：按 {split_ratio:.0%} 的比例（种子 0）自动划分出验证集。")
    conv = yolo_to_coco(yolo, cache, split_ratio=split_ratio, link=True, overwrite=True)
    (cache / _STAMP).write_text(
        json.dumps({"fingerprint": fingerprint, "source": str(root.resolve())}, ensure_ascii=False), encoding="utf-8"
    )
    counts = "，".join(f"{s} {c.images} 张图 {c.boxes} 个框" for s, c in conv.splits.items())
    say(
        f"检测到 YOLO 格式数据集 {root}（{ds.layout} 布局，{len(ds.names)} 个类别）"
        f"{'，标注或图片有改动，已重新转换' if stale else '，已自动转换'}为 COCO 格式（{counts}）。"
        f"\nCOCO 副本在{where}：{cache}（图片是硬链接或符号链接，不额外占空间；以后标注不变就直接复用）。"
    )
    return PreparedData(path=cache, source=src, kind="yolo", converted=True, fingerprint=fingerprint, doctor=report)
