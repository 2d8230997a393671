"""Download the official COCO checkpoints (the Hugging Face copies named in ``deimv2.config.variants.VARIANT_TABLE``),
and the PP-HGNetV2 stage-1 backbone files that HGNetv2 variants start from (as the official trainer does).

Each Intellindust/DEIMv2_* repository holds ``config.json`` and ``model.safetensors``; we fetch both with
urllib (redirects followed, tqdm progress bar), write through a ``.part`` file that replaces the target only
when its size matches the server's ``Content-Length``, then check the folder with the same logic as
``deimv2 info`` (:func:`deimv2.weights.inspect_weights`): a detector of the requested variant.
``train(..., tune="coco")`` and ``deimv2 train -t coco`` call :func:`coco_checkpoint`: the variant's official
checkpoint from ``DEIMV2_CKPTS`` (default ``ckpts/``), downloaded when missing; when it cannot be had (offline, a
firewall) one Chinese line says why and the run trains from scratch.
Explained in notebook 04_train.ipynb (fine-tuning from the official COCO weights).
"""

from __future__ import annotations

import logging
import os
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from deimv2.config.loader import Config
from deimv2.config.variants import HGNETV2_RELEASE_URL, VARIANT_BY_BACKBONE, VARIANT_TABLE, variant_of_config_name
from deimv2.errors import ConfigError, WeightsError
from deimv2.weights.load import CheckpointInfo, inspect_weights, missing_backbone_error

HF_BASE = os.environ.get("HF_ENDPOINT", "https://huggingface.co")  # the hub's own mirror variable
HF_FILES = ("config.json", "model.safetensors")
_CHUNK = 1 << 20
#: ``tune="coco"`` / ``-t coco``: fine-tune from the variant's official COCO checkpoint
COCO = "coco"
_log = logging.getLogger(__name__)


def official_checkpoint_urls(variant: str, base: str = HF_BASE) -> dict[str, str]:
    """``{file name: URL}`` of the official COCO checkpoint of ``variant`` on the Hugging Face hub."""
    if variant not in VARIANT_TABLE:
        raise WeightsError(f"没有变体 {variant!r} 的官方权重。可选：{', '.join(VARIANT_TABLE)}。")
    repo = VARIANT_TABLE[variant].hf_repo
    return {name: f"{base.rstrip('/')}/{repo}/resolve/main/{name}" for name in HF_FILES}


def official_checkpoint_dir(variant: str, ckpts_dir: str | Path) -> Path:
    """Where :func:`download_official_checkpoint` puts ``variant``: ``ckpts_dir/DEIMv2_…_COCO``."""
    official_checkpoint_urls(variant)  # validates the name
    return Path(ckpts_dir) / VARIANT_TABLE[variant].hf_repo.split("/")[-1]


def offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (the hub's own switch) is set to 1/true/yes/on: no HTTP(S) requests at all.

    The tests set it, so that no test depends on (or waits for) the network; ``file://`` URLs still work.
    """
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _blocked(url: str) -> bool:
    return offline() and url.lower().startswith(("http://", "https://"))


def can_reach(url: str, timeout: float = 5.0) -> bool:
    """True when ``url`` answers (a HEAD request); False offline (``HF_HUB_OFFLINE=1``), behind a firewall or on
    any error."""
    if _blocked(url):
        return False
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return True
    except Exception:  # noqa: BLE001 - any failure means "cannot download from here"
        return False


def copy_stream(src: BinaryIO, dst: Path, expected: int | None, desc: str = "", progress: bool = True) -> int:
    """Copy ``src`` into ``dst`` via ``dst.part``; ``dst`` appears only when the byte count equals ``expected``."""
    from tqdm.auto import tqdm

    part = dst.with_name(dst.name + ".part")
    done = 0
    with (
        open(part, "wb") as f,
        tqdm(total=expected, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, disable=not progress) as bar,
    ):
        while chunk := src.read(_CHUNK):
            f.write(chunk)
            done += len(chunk)
            bar.update(len(chunk))
    if expected is not None and done != expected:
        part.unlink(missing_ok=True)
        raise WeightsError(
            f"下载不完整：{dst.name} 收到 {done} 字节，服务器声明 {expected} 字节。"
            "请检查网络后重新运行（已下载的部分已删除）。"
        )
    os.replace(part, dst)
    return done


def download_file(url: str, dst: str | Path, timeout: float = 60.0, progress: bool = True) -> Path:
    """Download ``url`` to ``dst`` (progress bar, size check, never leaves a half-written ``dst``)."""
    dst = Path(dst)
    if _blocked(url):
        raise WeightsError(
            f"离线模式：环境变量 HF_HUB_OFFLINE={os.environ['HF_HUB_OFFLINE']}，不下载 {url}。"
            f"要下载请去掉这个环境变量后重启内核，或在浏览器中下载后放到 {dst}。"
        )
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            length = r.headers.get("Content-Length")
            copy_stream(r, dst, int(length) if length else None, desc=dst.name, progress=progress)
    except WeightsError:
        raise
    except Exception as e:
        raise WeightsError(
            f"无法下载 {url}：{e}。请检查网络；国内可以设置镜像，"
            f"设置环境变量 HF_ENDPOINT=https://hf-mirror.com 后重启内核，或在浏览器中下载后放到 {dst}。"
        ) from e
    return dst


def download_official_checkpoint(
    variant: str, ckpts_dir: str | Path, base: str = HF_BASE, progress: bool = True
) -> CheckpointInfo:
    """Download (unless present) and check the official COCO checkpoint of ``variant``; returns its info."""
    folder = official_checkpoint_dir(variant, ckpts_dir)
    for name, url in official_checkpoint_urls(variant, base).items():
        if not (folder / name).is_file():
            download_file(url, folder / name, progress=progress)
    info = inspect_weights(folder)
    if info.kind != "detector" or info.variant != variant:
        raise WeightsError(
            f"{folder} 不是 DEIMv2-{variant.upper()} 的完整检测器权重"
            f"（识别结果：{info.kind}，{info.format}，变体 {info.variant or '未知'}）。"
            "请删除这个文件夹后重新下载。"
        )
    return info


def download_hgnetv2_backbone(cfg, path: str | Path, base: str | None = None, progress: bool = True) -> Path:
    """HGNetv2 variants: fetch the missing PP-HGNetV2 stage-1 file ``path`` from D-FINE's release (``base`` + its
    name), as the official trainer does on first use. Offline (``HF_HUB_OFFLINE=1``) or on any failure: the
    missing-backbone error (where to put the file, how to train without it), after the reason."""
    path = Path(path)
    url = (base or HGNETV2_RELEASE_URL).rstrip("/") + "/" + path.name
    try:
        return download_file(url, path, progress=progress)
    except WeightsError as e:
        raise WeightsError(f"自动下载骨干网络权重没有成功：{e}\n{missing_backbone_error(cfg, path)}") from e


def default_ckpts_dir() -> Path:
    """Where official checkpoints go: ``$DEIMV2_CKPTS`` (the notebooks set it to ``WORKSPACE/ckpts``), else ``ckpts``."""
    return Path(os.environ.get("DEIMV2_CKPTS") or "ckpts")


def is_coco(tune) -> bool:
    """True for ``tune="coco"`` (any case), unless a file or folder of that name exists."""
    return isinstance(tune, str) and tune.strip().lower() == COCO and not Path(tune).exists()


def coco_checkpoint(
    variant: str, ckpts_dir: str | Path | None = None, say: Callable[[str], None] = _log.info
) -> Path | None:
    """``tune="coco"``: the folder of ``variant``'s official COCO checkpoint (present, else downloaded), or None
    after one Chinese line through ``say`` when it cannot be had (the caller then trains from scratch)."""
    folder = official_checkpoint_dir(variant, ckpts_dir or default_ckpts_dir())
    url = official_checkpoint_urls(variant, HF_BASE)["model.safetensors"]
    present = all((folder / name).is_file() for name in HF_FILES)
    try:
        if present or can_reach(url):
            return Path(download_official_checkpoint(variant, folder.parent, base=HF_BASE).path)
        why = "离线模式 HF_HUB_OFFLINE=1" if offline() else f"连不上 {url}"
    except WeightsError as e:
        why = str(e).split("。")[0]
    say(
        f"无法下载 DEIMv2-{variant.upper()} 的官方 COCO 权重（{why}），这次从头训练；联网后重新运行即可微调，"
        f"或把 {' 和 '.join(HF_FILES)} 放进 {folder.resolve()}。"
    )
    return None


def coco_target(cfg: Config, tune, say) -> tuple[object, bool]:
    """``(tune, from_scratch)``: ``tune="coco"`` becomes the folder of the official COCO checkpoint of ``cfg``'s
    variant (:func:`deimv2.weights.hub.coco_checkpoint`), or None with ``from_scratch`` True when it cannot be had
    (one line says why); any other ``tune`` is returned as it is."""
    if not is_coco(tune):
        return tune, False
    backbone = cfg.model.backbone.get("name")  # the backbone tells the variant (a saved YAML keeps it)
    variant = VARIANT_BY_BACKBONE.get(backbone) if backbone else variant_of_config_name(cfg.name)
    if variant is None:
        raise ConfigError(
            f"-t coco 要下载官方 COCO 权重，但认不出配置 {cfg.name} 是哪个官方变体（atto … x）。"
            "请用 -c 指定变体名，或用 -t 给出权重文件的路径。"
        )
    path = coco_checkpoint(variant, say=say)
    return path, path is None
