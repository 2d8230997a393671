"""Dataset layouts, the one home: where the splits, annotation files and images of a dataset are.

* :func:`find_dataset`: the COCO layouts that training, evaluation, ``deimv2 doctor`` (the dataset doctor),
  ``--data`` auto-detection and ``coco2yolo`` all accept (the same function for all of them, so the check that
  ``train()`` runs first never disagrees with the trainer). Split names are always ``train`` / ``val`` / ``test``.
* :func:`read_coco_json`: the one COCO annotation reader.
* :func:`find_yolo_dataset` / :func:`label_path_for`: the YOLO layouts that ``yolo2coco`` and ``--data`` read.

Image files themselves (extensions, sizes, decoding) live in :mod:`deimv2.data.images`.
Explained in notebook 02_convert.ipynb.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import yaml

from deimv2.data.images import IMAGE_EXTS, list_images
from deimv2.errors import DatasetError

__all__ = [
    "COCO_JSON",
    "SPLITS",
    "SplitFiles",
    "YoloDataset",
    "find_dataset",
    "find_yolo_dataset",
    "label_path_for",
    "read_coco_json",
    "read_text",
    "split_alias",
]

#: the annotation file name of the Roboflow COCO export (and of everything deimv2 writes)
COCO_JSON = "_annotations.coco.json"
#: split names, in order
SPLITS = ("train", "val", "test")
_ALIAS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
_SHOW = 10  # how many items an error message lists


def split_alias(name: str) -> str | None:
    """The split a folder or file name stands for: ``train2017`` -> train, ``valid`` / ``instances_val2017`` -> val,
    ``testing`` -> test; None for any other name."""
    m = re.match(r"^(?:instances_)?(training|train|validation|valid|val|testing|test)(?:\d*)$", name.lower())
    return _ALIAS[m.group(1)] if m else None


class SplitFiles(NamedTuple):
    """Where one split is: ``CocoDetection(*split_files)`` reads it."""

    img_folder: Path
    ann_file: Path


def listing(items) -> str:
    """Up to ten items, one per line, then how many there are in all (for error messages)."""
    items = [str(x) for x in items]
    return "\n".join(f"  - {x}" for x in items[:_SHOW]) + (f"\n  ……共 {len(items)} 个" if len(items) > _SHOW else "")


# ---------------------------------------------------------------------------------------------- COCO layouts
def _first_file_names(ann_file: Path, n: int = 5) -> list[str]:
    """The first ``n`` image file names of a COCO json; [] when it cannot be read (read_coco_json reports that)."""
    try:
        data = json.loads(ann_file.read_text(encoding="utf-8-sig"))
        return [im["file_name"] for im in data["images"][:n] if isinstance(im.get("file_name"), str)]
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return []


def _holding(candidates: list[Path], ann_file: Path) -> Path | None:
    """The first folder that holds the first image files of ``ann_file``."""
    names = _first_file_names(ann_file)
    return next((c for c in candidates if names and all((c / f).is_file() for f in names)), None)


def _beside(ann_file: Path) -> Path:
    """Image folder of a json whose images are beside it (or in an ``images/`` folder beside it)."""
    folder = ann_file.parent
    if (folder / "images").is_dir():  # only then is the json read: the common case costs nothing
        return _holding([folder, folder / "images"], ann_file) or folder
    return folder


def _classic_images(root: Path, ann_file: Path) -> Path:
    """Image folder of ``root/annotations/instances_<name>.json``: ``root/<name>/`` or ``root/images/<name>/`` if one
    exists, else ``root/images/`` or ``root/`` when it holds the listed images."""
    name = ann_file.stem[len("instances_") :] if ann_file.stem.startswith("instances_") else ann_file.stem
    folder = next((d for d in (root / name, root / "images" / name) if d.is_dir()), None)
    folder = folder or _holding([root / "images", root], ann_file)
    if folder is None:
        raise DatasetError(
            f"找到了标注文件 {ann_file}，但没有找到它的图片目录：{root / name}、{root / 'images' / name} 都不存在，"
            f"{root / 'images'} 和 {root} 里也没有它列出的图片。\n"
            f"修复：把图片放进 {root / name}/（与标注文件名 instances_{name}.json 对应）。"
        )
    return folder


def _split_json(folder: Path) -> Path | None:
    """The annotation json of a split folder: ``_annotations.coco.json``, else its only ``.json`` file."""
    if not folder.is_dir():
        return None
    if (folder / COCO_JSON).is_file():
        return folder / COCO_JSON
    jsons = sorted(p for p in folder.glob("*.json") if p.is_file())
    if len(jsons) > 1:
        raise DatasetError(
            f"目录 {folder} 下有多个 JSON 文件，无法确定哪个是标注：\n{listing(jsons)}\n"
            f"修复：把标注文件命名为 {COCO_JSON}，或把其它 JSON 移走。"
        )
    return jsons[0] if jsons else None


def _looks_like_coco(path: Path) -> bool:
    """True for a JSON object with an ``images`` list (a Label Studio ``notes.json`` beside YOLO labels is not)."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and isinstance(data.get("images"), list)


def _one_per_split(found: dict[str, list], where: Path, what: str) -> dict[str, SplitFiles]:
    for split, items in found.items():
        if len(items) > 1:
            raise DatasetError(
                f"{where} 下有 {len(items)} 个{what}都是 {split} 划分，无法确定用哪个：\n"
                f"{listing(i[1] for i in items)}\n修复：只保留一个（删除或改名其余的）。"
            )
    return {s: SplitFiles(*found[s][0]) for s in SPLITS if s in found}


def _split_folders(root: Path) -> dict[str, SplitFiles]:
    """Layout A: ``root/<split>/<json>``."""
    found: dict[str, list] = {}
    for d in sorted(root.iterdir()):
        split = split_alias(d.name) if d.is_dir() else None
        ann = _split_json(d) if split else None
        if ann is not None:
            found.setdefault(split, []).append((_beside(ann), ann))
    return _one_per_split(found, root, "带标注 JSON 的文件夹")


def _annotations_folder(root: Path) -> dict[str, SplitFiles]:
    """Layout B: ``root/annotations/<split>.json``."""
    ann_dir = root / "annotations"
    found: dict[str, list] = {}
    for ann in sorted(ann_dir.glob("*.json")) if ann_dir.is_dir() else []:
        split = split_alias(ann.stem)
        if split and ann.is_file():
            found.setdefault(split, []).append((_classic_images(root, ann), ann))
    return _one_per_split(found, ann_dir, "标注文件")


def _json_file(ann: Path) -> dict[str, SplitFiles]:
    """Layout D: the annotation file itself."""
    split = split_alias(ann.parent.name) or split_alias(ann.stem) or "train"
    if ann.parent.name == "annotations":
        return {split: SplitFiles(_classic_images(ann.parent.parent, ann), ann)}
    return {split: SplitFiles(_beside(ann), ann)}


def find_dataset(path: str | Path, *, required: bool = True) -> dict[str, SplitFiles]:
    """Find the COCO splits of a dataset: ``{"train" | "val" | "test": SplitFiles(img_folder, ann_file)}``.

    Accepted layouts, tried in this order (the first that finds a split wins; split folders and files are
    recognised by :func:`split_alias`: ``train``, ``training``, ``train2017``, ``val``, ``valid``, ``validation``,
    ``val2017``, ``test``, ``testing`` ..., in any case):

    A. Roboflow style: ``ROOT/train/_annotations.coco.json`` (or the folder's only ``.json``) with the images beside
       it (or in ``ROOT/train/images/``); likewise ``ROOT/valid/`` (or ``val/``, ``val2017/`` ...), ``ROOT/test/``.
    B. COCO style: ``ROOT/annotations/instances_train2017.json`` (or ``train.json`` ...) with the images in
       ``ROOT/train2017/`` or ``ROOT/images/train2017/`` (else in ``ROOT/images/`` or ``ROOT/`` when they hold the
       listed files); likewise ``instances_val2017.json``, ``instances_test2017.json``.
    C. One split folder: ``ROOT/_annotations.coco.json`` (or ROOT's only ``.json`` if it is a JSON object with an
       ``images`` list, so that e.g. Label Studio's ``notes.json`` beside YOLO labels is not taken for COCO) with the
       images beside it; the split is named by ROOT's own name (``ROOT = .../valid`` -> val), else it is ``train``.
    D. The annotation file itself (``path`` is a ``.json``): images found as in A (or B for ``annotations/``), split
       named by its folder or file name, else ``train``.

    Two candidates for one split (``val/`` and ``valid/`` both with a json, two train jsons in ``annotations/``,
    two jsons in one split folder) are an error, never a silent choice. When nothing matches: a
    :class:`~deimv2.errors.DatasetError` naming the folder, what was looked for and the fix, or ``{}`` with
    ``required=False`` (the dataset doctor then tries YOLO).
    """
    root = Path(path)
    if root.is_file() and root.suffix.lower() == ".json":
        return _json_file(root)
    if not root.is_dir():
        raise DatasetError(
            f"数据集路径 {root} 不存在（或不是文件夹）。\n修复：检查路径（可以是绝对路径，中文和空格都可以）。"
        )
    found = _split_folders(root) or _annotations_folder(root)
    if not found:
        ann = _split_json(root)
        if ann is not None and (ann.name == COCO_JSON or _looks_like_coco(ann)):
            found = {split_alias(root.name) or "train": SplitFiles(_beside(ann), ann)}
    if found or not required:
        return found
    raise DatasetError(
        f"在 {root} 下没有找到 COCO 格式的数据集。已查找以下结构：\n"
        f"  A) {root / 'train' / COCO_JSON}（或 train/ 下唯一的 .json），图片与之同目录；"
        f"验证集 {root / 'valid'}/（或 val/），测试集 {root / 'test'}/（可选）\n"
        f"  B) {root / 'annotations' / 'instances_train*.json'} + 图片目录 {root / 'train*'}/"
        f"（或 {root / 'images' / 'train*'}/），验证集 instances_val*.json + val*/\n"
        f"  C) {root / COCO_JSON}（或 {root} 下唯一的、含 images 列表的 .json），图片与之同目录\n"
        "修复：把数据整理成以上任一结构（文件夹名 train/valid/val/test，可带年份如 train2017）；"
        "YOLO 格式的数据可以直接交给 deimv2 train --data（会自动转换），或先用 deimv2 yolo2coco 转成 COCO。"
    )


# ---------------------------------------------------------------------------------------------- COCO reader
def read_coco_json(ann_file: str | Path, *, check_categories: bool = True) -> dict:
    """Read a COCO annotation file and check its structure: a JSON object with lists ``images``, ``annotations``
    (may be missing: []) and ``categories``.

    ``check_categories`` (training, class names): ``categories`` must be present and non-empty, each with a
    unique integer ``id``. The dataset doctor passes False and reports category problems itself.
    Any problem raises :class:`~deimv2.errors.DatasetError` naming the file and the fix.
    """
    path = Path(ann_file)
    if not path.is_file():
        raise DatasetError(f"找不到标注文件 {path}。\n修复：检查 ann_file 路径；数据集应为 COCO 格式的 JSON 文件。")
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise DatasetError(
            f"标注文件 {path} 不是 UTF-8 编码的文本。\n修复：用 UTF-8 编码重新保存该 JSON 文件。"
        ) from None
    except json.JSONDecodeError as exc:
        raise DatasetError(
            f"标注文件 {path} 不是合法的 JSON（第 {exc.lineno} 行第 {exc.colno} 列：{exc.msg}）。\n"
            "修复：用文本编辑器或 JSON 校验工具修正该处，或重新导出标注。"
        ) from None
    if not isinstance(data, dict):
        raise DatasetError(
            f"标注文件 {path} 的顶层不是 JSON 对象。\n修复：COCO 格式应为 "
            '{"images": [...], "annotations": [...], "categories": [...]}。'
        )
    data.setdefault("annotations", [])
    if not check_categories:
        data.setdefault("categories", [])
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(
                f'标注文件 {path} 缺少列表字段 "{key}"。\n修复：确认这是 COCO 检测格式'
                "（YOLO 等格式请先用 deimv2 的转换工具转成 COCO）。"
            )
    if check_categories:
        _check_categories(data["categories"], path)
    return data


def _check_categories(categories: list, path: Path) -> None:
    if not categories:
        raise DatasetError(
            f'标注文件 {path} 的 "categories" 为空。\n修复：在 categories 里列出所有类别'
            '（如 {"id": 0, "name": "cat"}）。'
        )
    seen = set()
    for cat in categories:
        if not isinstance(cat, dict) or type(cat.get("id")) is not int:
            raise DatasetError(
                f'标注文件 {path} 的类别 {cat!r} 缺少整数 id。\n修复：每个类别写成 {{"id": 整数, "name": "类别名"}}。'
            )
        if cat["id"] in seen:
            raise DatasetError(f"标注文件 {path} 中类别 id {cat['id']} 出现了多次。\n修复：每个类别的 id 必须唯一。")
        seen.add(cat["id"])


# ---------------------------------------------------------------------------------------------- YOLO layouts
def read_text(path: Path) -> str:
    """UTF-8 (with or without BOM); also UTF-16 with a BOM and GBK, the encodings Windows editors save in."""
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        err = e
    try:
        return data.decode("gbk")
    except UnicodeDecodeError:
        raise DatasetError(
            f"{path} 不是 UTF-8 编码（也不是 UTF-16 或 GBK）：{err}。请用文本编辑器另存为 UTF-8 后重试。"
        ) from None


def label_path_for(image: Path) -> Path | None:
    """YOLO label file for an image: ``.../images/x.jpg`` -> ``.../labels/x.txt``, else beside the image
    or in a ``labels/`` subfolder. None when no label file exists (a negative image)."""
    parts = image.parts
    candidates = []
    if "images" in parts:
        i = len(parts) - 1 - parts[::-1].index("images")
        candidates.append(Path(*parts[:i], "labels", *parts[i + 1 :]).with_suffix(".txt"))
    candidates += [image.with_suffix(".txt"), image.parent / "labels" / (image.stem + ".txt")]
    return next((c for c in candidates if c.is_file()), None)


@dataclass
class YoloDataset:
    """A discovered YOLO dataset: class names and, per split (train / val / test), the image files."""

    root: Path
    layout: str  # roboflow | ultralytics | flat
    names: list[str]
    splits: dict[str, list[Path]]
    names_file: Path | None = None


def _parse_names(raw, nc, source: Path) -> list[str]:
    if isinstance(raw, dict):
        try:
            items = sorted((int(k), str(v)) for k, v in raw.items())
        except (TypeError, ValueError) as e:
            raise DatasetError(f"{source} 中 names 的键必须是整数类别索引：{e}") from e
        if [k for k, _ in items] != list(range(len(items))):
            raise DatasetError(f"{source} 中 names 的类别索引必须是 0..N-1 连续整数，实际为 {[k for k, _ in items]}。")
        names = [v for _, v in items]
    elif isinstance(raw, (list, tuple)):
        names = [str(v) for v in raw]
    else:
        raise DatasetError(f"{source} 缺少 names（类别名列表），请添加例如 names: ['猫', '狗']。")
    if not names:
        raise DatasetError(f"{source} 中 names 为空，请列出至少一个类别名。")
    if nc is not None and int(nc) != len(names):
        raise DatasetError(f"{source} 中 nc={nc} 与 names 的个数 {len(names)} 不一致，请改成一致。")
    return names


def _find_yaml(root: Path) -> Path | None:
    for name in ("data.yaml", "data.yml", "dataset.yaml"):
        if (root / name).is_file():
            return root / name
    found = sorted(root.glob("*.yaml")) + sorted(root.glob("*.yml"))
    return found[0] if len(found) == 1 else None


def _yaml_split_images(cfg: dict, yaml_path: Path) -> tuple[dict[str, list[Path]], list[str]]:
    """Images of each split named in data.yaml, and a Chinese line for every entry that cannot be found.
    Windows paths (``data\\images\\train``) are read with ``/``."""
    base = yaml_path.parent
    if cfg.get("path"):
        p = Path(str(cfg["path"]).replace("\\", "/"))
        base = (
            p if p.is_absolute() and p.is_dir() else (yaml_path.parent / p if (yaml_path.parent / p).is_dir() else base)
        )
    out: dict[str, list[Path]] = {}
    missing: list[str] = []
    for split in SPLITS:
        key = next((k for k in (split, "valid" if split == "val" else None) if k and cfg.get(k)), split)
        entries = cfg.get(key)
        if not entries:
            continue
        images: list[Path] = []
        for entry in entries if isinstance(entries, list) else [entries]:
            rel = Path(str(entry).replace("\\", "/"))
            stripped = Path(*[s for s in rel.parts if s not in ("..", ".")]) if not rel.is_absolute() else rel
            tried = (base / rel, yaml_path.parent / rel, base / stripped, yaml_path.parent / stripped, rel)
            target = next((c for c in tried if c.exists()), None)
            if target is None:
                hint = (
                    "（这是绝对路径，换了电脑就找不到；请改成相对 data.yaml 所在文件夹的路径）"
                    if rel.is_absolute()
                    else ""
                )
                missing.append(f"{key}: {entry} —— 找不到 {base / rel}{hint}")
                continue
            if target.is_dir():
                images += list_images(target, recursive=True)
            else:  # a .txt list of image paths, relative to base
                for line in read_text(target).splitlines():
                    if line.strip():
                        q = Path(line.strip().replace("\\", "/"))
                        images.append(q if q.is_absolute() else (base / q))
        out[split] = images
    return out, missing


def find_yolo_dataset(src: str | Path) -> YoloDataset:
    """Discover a YOLO dataset. Accepted layouts (tried in this order):

    * ``roboflow``: ``train/images``, ``train/labels``, ``valid/...``, ``test/...`` (+ ``data.yaml``);
    * ``ultralytics``: ``images/train``, ``labels/train`` ..., or the ``train`` / ``val`` / ``test`` paths
      (folders or .txt lists) of ``data.yaml`` (relative to its ``path``);
    * ``flat``: one folder of images (``ROOT`` or ``ROOT/images``), labels beside them or in ``labels/``.

    Class names come from ``data.yaml`` (``names``) or ``classes.txt`` / ``labels/classes.txt`` / ``obj.names``.
    """
    root, yaml_path, named = _yolo_root(src)
    cfg = _read_data_yaml(yaml_path)
    layout, splits = _yolo_layout_splits(root, cfg, yaml_path, named)
    if not any(splits.values()):
        raise DatasetError(f"在 {root} 中没有找到图像文件（支持 {', '.join(sorted(IMAGE_EXTS))}）。")
    names, names_file = _yolo_class_names(root, cfg, yaml_path)
    return YoloDataset(root, layout, names, splits, names_file)


def _yolo_root(src: str | Path) -> tuple[Path, Path | None, bool]:
    """``(dataset folder, its data.yaml or None, whether that YAML was named though it is not the default one)``."""
    root, yaml_path = Path(src), None
    if root.is_file() and root.suffix.lower() in (".yaml", ".yml"):  # one named data.yaml (among several)
        root, yaml_path = root.parent, root
    if not root.is_dir():
        raise DatasetError(
            f"找不到数据集 {root}：YOLO 数据集应当是一个文件夹，或其中的 data.yaml 文件（{root} "
            f"{'是一个文件' if root.exists() else '不存在'}）。请检查路径。"
        )
    default = _find_yaml(root)
    named = yaml_path is not None and yaml_path.resolve() != (default.resolve() if default else None)
    yaml_path = yaml_path or default
    several = sorted(p.name for p in root.iterdir() if p.suffix.lower() in (".yaml", ".yml"))
    if yaml_path is None and len(several) > 1:
        raise DatasetError(
            f"{root} 里有多个 YAML 文件（{'、'.join(several)}），不知道哪个描述数据集。"
            f"请直接给出其中一个，如 {root / several[0]}（或把它改名为 data.yaml）。"
        )
    return root, yaml_path, named


def _read_data_yaml(yaml_path: Path | None):
    if yaml_path is None:
        return {}
    try:
        return yaml.safe_load(read_text(yaml_path)) or {}
    except yaml.YAMLError as e:
        raise DatasetError(f"{yaml_path} 不是合法的 YAML：{e}") from e


def _yolo_layout_splits(root: Path, cfg, yaml_path: Path | None, named: bool) -> tuple[str, dict[str, list[Path]]]:
    """``(layout, images of each split)``, the layouts tried in the order :func:`find_yolo_dataset` lists them
    (a named data.yaml with its own ``train`` goes before the split folders)."""
    splits: dict[str, list[Path]] = {}
    has_train = isinstance(cfg, dict) and bool(cfg.get("train"))
    for d in sorted(root.iterdir()) if not (named and has_train) else []:
        s = split_alias(d.name)
        if d.is_dir() and s and (d / "images").is_dir() and s not in splits:
            splits[s] = list_images(d / "images", recursive=True)
    if splits:
        return "roboflow", splits
    if (root / "images").is_dir():
        for d in sorted((root / "images").iterdir()):
            s = split_alias(d.name)
            if d.is_dir() and s and s not in splits:
                splits[s] = list_images(d, recursive=True)
        if splits:
            return "ultralytics", splits
    if has_train:
        splits, missing = _yaml_split_images(cfg, yaml_path)
        if missing:
            raise DatasetError(
                f"{yaml_path} 中有 {len(missing)} 个路径在磁盘上找不到：\n"
                + "\n".join(f"  {m}" for m in missing)
                + f"\n修复：改正这些项（相对路径从 data.yaml 所在的文件夹 {yaml_path.parent} 算起，或写 path: 数据集根目录）。"
            )
        if splits:
            return "ultralytics", splits
    folder = root / "images" if (root / "images").is_dir() else root
    return "flat", {"train": list_images(folder)}


def _yolo_class_names(root: Path, cfg, yaml_path: Path | None) -> tuple[list[str], Path]:
    """``(class names, the file they come from)``: data.yaml's ``names``, else classes.txt (or obj.names)."""
    if isinstance(cfg, dict) and "names" in cfg:
        return _parse_names(cfg["names"], cfg.get("nc"), yaml_path), yaml_path
    names_file = next(
        (c for c in (root / "classes.txt", root / "labels" / "classes.txt", root / "obj.names") if c.is_file()),
        None,
    )
    if names_file is None:
        raise DatasetError(f"在 {root} 中找不到类别名：请提供 data.yaml（含 names）或 classes.txt（每行一个类别名）。")
    names = [ln.strip() for ln in read_text(names_file).splitlines() if ln.strip()]
    if not names:
        raise DatasetError(f"{names_file} 是空的，请每行写一个类别名。")
    return names, names_file
