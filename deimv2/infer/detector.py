"""Inference: a :class:`Detector` that turns images (paths, PIL, numpy, torch) into
:class:`~deimv2.infer.results.Prediction` objects, and :func:`load_detector` (a checkpoint -> model + config).

Preprocessing is the official val pipeline: resize to ``eval_spatial_size`` (PIL bilinear, no letterbox),
``/255``, and ImageNet mean/std for the DINOv3 variants only. The normalisation lives in one place,
:class:`~deimv2.infer.graph.DetectionGraph`, which is also the graph that :mod:`deimv2.infer.export` writes to ONNX.
Files, folders and videos (``deimv2 predict``) are :mod:`deimv2.infer.run`. Explained in notebook
``05_inference.ipynb``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from deimv2.config.loader import Config, load_config
from deimv2.data.images import as_rgb_image
from deimv2.data.mscoco import MSCOCO_CATEGORY_IDS, MSCOCO_CATEGORY_NAMES
from deimv2.errors import ConfigError, WeightsError
from deimv2.infer.backends import make_backend, onnx_file_backend, read_onnx_metadata
from deimv2.infer.graph import build_graph
from deimv2.infer.results import Prediction
from deimv2.infer.tiling import tiled_detections
from deimv2.infer.tracking import track_frames
from deimv2.models.build import build_model, build_model_from_config
from deimv2.utils.inputs import MAX_DET, check_conf, check_max_det, resolve_checkpoint
from deimv2.utils.runtime import resolve_device
from deimv2.weights.formats import num_classes_of_state_dict, variant_of_state_dict
from deimv2.weights.load import fill_shared_keys, load_detector_state, load_state_strict

_log = logging.getLogger(__name__)

__all__ = ["Detector", "load_detector", "DEFAULT_CONF"]

#: confidence threshold when neither the caller nor the checkpoint gives one
DEFAULT_CONF = 0.45


# --------------------------------------------------------------------------- inputs
def _source_path(item: Any) -> str | None:
    """The file an input came from (a path, or an opened PIL image's ``filename``), else None."""
    if isinstance(item, (str, Path)):
        return str(Path(item))
    return getattr(item, "filename", None) or None


def _as_list(inputs: Any) -> tuple[list, bool]:
    if isinstance(inputs, (list, tuple)):
        return list(inputs), True
    if isinstance(inputs, np.ndarray) and inputs.ndim == 4:
        return list(inputs), True
    return [inputs], False


# --------------------------------------------------------------------------- detector
class Detector:
    """Images in, :class:`~deimv2.infer.results.Prediction` out.

    Wraps a built model: it is put in eval mode (``deploy=True`` also folds it for inference, in place). Most
    users do not call this constructor but :meth:`from_checkpoint` (a trained file), or :meth:`from_config`
    (random weights, for trying things out). The attributes ``tile`` / ``overlap`` turn on tiled inference for
    every :meth:`predict` call that does not say otherwise.

    Args:
        model: a model built by :func:`deimv2.models.build_model` (or with a ``config`` attribute).
        cfg: its :class:`~deimv2.config.loader.Config`; default ``model.config``.
        class_names: one name per class, in training order; default the config's (or the COCO names for an
            80-class COCO config, else ``"0"``, ``"1"`` …).
        category_ids: the dataset's category id of each class (for :meth:`Prediction.to_coco`).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` …; default CUDA when available, else CPU.
        conf: confidence threshold; default 0.45.
        max_det: at most this many boxes per image.
        classes: keep only these classes (names or 0-based ids).
        batch_size: images per model call when :meth:`predict` gets a list.
        deploy: fold the model for inference (faster, same boxes).
        backend: ``"auto"`` (for a checkpoint on CPU, the first installed of OpenVINO / onnxruntime that
            :data:`~deimv2.infer.backends.AUTO_CPU` lists, else torch), ``"torch"``, ``"onnxruntime"`` or
            ``"openvino"``; see :mod:`deimv2.infer.backends`.
        source: the checkpoint file the model came from (it names the ONNX cache of the CPU runtimes).

    Example:
        A detector with random weights (it finds nothing real, but shows the interface):

        >>> import numpy as np
        >>> from deimv2 import Detector
        >>> det = Detector.from_config("atto", num_classes=3, overrides={"eval_spatial_size": [160, 160]})
        >>> det.class_names, det.size_hw, det.backend.name
        (['0', '1', '2'], (160, 160), 'torch')
        >>> pred = det(np.zeros((120, 200, 3), dtype=np.uint8))  # same as det.predict(...)
        >>> pred.image_size  # (width, height) of the input
        (200, 120)
    """

    tile: int | None = None
    overlap: float = 0.2

    def __init__(
        self,
        model: nn.Module,
        cfg: Config | None = None,
        class_names: Sequence[str] | None = None,
        category_ids: Sequence[int] | None = None,
        device: str | torch.device | None = None,
        conf: float | None = None,
        max_det: int = MAX_DET,
        classes: Sequence[str | int] | None = None,
        batch_size: int = 8,
        deploy: bool = False,
        backend: str = "auto",
        source: str | Path | None = None,
    ):
        cfg = cfg if cfg is not None else getattr(model, "config", None)
        if cfg is None:
            raise ConfigError(
                "Detector 需要配置：请传入 cfg，或使用 deimv2.models.build_model 构建的模型（带 .config）。"
            )
        self._settings(cfg, class_names, category_ids, resolve_device(device), conf, max_det, classes, batch_size)
        self.graph = build_graph(model.to(self.device), cfg, deploy=deploy).to(self.device)
        self.model = model
        self.backend = make_backend(backend, self.graph, cfg, self.device, source=source, deployed=deploy)

    def _settings(self, cfg, class_names, category_ids, device, conf, max_det, classes, batch_size) -> None:
        """Everything but the model and the backend: config, names, ids, device and the checked options."""
        self.cfg, self.num_classes, self.device = cfg, int(cfg.num_classes), device
        self.class_names = _resolve_names(class_names, cfg, self.num_classes)
        self.category_ids = _resolve_category_ids(category_ids, cfg, self.num_classes, self.class_names)
        self.size_hw = (int(cfg.eval_spatial_size[0]), int(cfg.eval_spatial_size[1]))
        self.conf = DEFAULT_CONF if conf is None else check_conf(conf)
        self.max_det, self.batch_size = check_max_det(max_det), max(1, int(batch_size))
        self.classes = self._class_ids(classes)

    # -- construction
    @classmethod
    def from_config(
        cls,
        name: str | Path | Config = "atto",
        num_classes: int | None = 80,
        overrides: Mapping | list | None = None,
        **kwargs: Any,
    ) -> Detector:
        """Random weights (tests, demos, latency); e.g. ``overrides={"eval_spatial_size": [160, 160]}``.
        ``kwargs`` go to :class:`Detector`."""
        model = build_model(name, num_classes=num_classes, overrides=overrides)
        kwargs.setdefault("deploy", True)
        return cls(model, model.config, **kwargs)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        config: str | Path | Config | None = None,
        device=None,
        conf: float | None = None,
        max_det: int = MAX_DET,
        classes=None,
        class_names=None,
        batch_size: int = 8,
        deploy: bool = True,
        backend: str = "auto",
    ) -> Detector:
        """A detector from a weights file: our training checkpoints (``best.pth``, with the config, class names
        and threshold inside), official ``.pth``, Hugging Face safetensors, or an ONNX file written by
        ``deimv2 export`` (see :meth:`from_onnx`).

        Args:
            path: the weights file.
            config: variant name (``"atto"`` … ``"x"``), YAML file or :class:`~deimv2.config.loader.Config`;
                needed only when the file has no config and its variant cannot be recognised. ``num_classes``
                always comes from the weights.
            device: as in :class:`Detector`.
            conf: confidence threshold; default the F1-best threshold that training saved in the checkpoint
                (see :mod:`deimv2.engine.f1`), else 0.45.
            max_det: at most this many boxes per image.
            classes: keep only these classes (names or 0-based ids).
            class_names: one name per class, in training order; default the names saved in the file.
            batch_size: images per model call.
            deploy: fold the model for inference (faster, same boxes).
            backend: as in :class:`Detector`; ``"auto"`` exports the model to ONNX once (cached beside the file)
                when it picks a CPU runtime.

        Returns:
            The :class:`Detector`.

        Example:
            An official-style file (weights only) of a 3-class Atto:

            >>> import tempfile
            >>> from pathlib import Path
            >>> import torch
            >>> from deimv2 import Detector, build_model
            >>> model = build_model("atto", num_classes=3, eval_spatial_size=[160, 160])
            >>> path = Path(tempfile.mkdtemp()) / "我的 模型" / "best.pth"
            >>> path.parent.mkdir()
            >>> torch.save({"model": model.state_dict()}, path)
            >>> det = Detector.from_checkpoint(path, config=model.config, class_names=["猫", "狗", "杯子"], backend="torch")
            >>> det.class_names, det.num_classes, det.size_hw
            (['猫', '狗', '杯子'], 3, (160, 160))
        """
        if Path(path).suffix.lower() == ".onnx":
            if config is not None:
                raise ConfigError(
                    f"{path} 是导出的 ONNX 模型，输入尺寸和类别已固定在文件里，不能再指定配置 {config}。请去掉 -c/config。"
                )
            opts = dict(conf=conf, max_det=max_det, classes=classes, class_names=class_names, batch_size=batch_size)
            return cls.from_onnx(path, device=device, backend=backend, **opts)
        path = resolve_checkpoint(path)
        model, cfg, meta = load_detector(path, config)
        names = class_names if class_names is not None else meta.get("class_names")
        return cls(
            model,
            cfg,
            class_names=names,
            category_ids=meta.get("category_ids"),
            device=device,
            conf=_saved_conf(path, conf, meta),
            max_det=max_det,
            classes=classes,
            batch_size=batch_size,
            deploy=deploy,
            backend=backend,
            source=path,
        )

    @classmethod
    def from_onnx(
        cls, path, device=None, conf=None, max_det=MAX_DET, classes=None, class_names=None, batch_size=8, backend="auto"
    ) -> Detector:
        """An ONNX file written by ``deimv2 export`` (config, class names and threshold in its metadata), run on
        CPU by OpenVINO or ONNX Runtime (:func:`deimv2.infer.backends.onnx_file_backend`); no PyTorch model."""
        meta = read_onnx_metadata(path)
        cfg, dev = load_config(meta["config"]), resolve_device(device)
        self = cls.__new__(cls)
        names = class_names if class_names is not None else meta.get("class_names")
        conf = _saved_conf(path, conf, meta)
        self._settings(cfg, names, meta.get("category_ids"), dev, conf, max_det, classes, batch_size)
        self.model = self.graph = None
        self.backend = onnx_file_backend(backend, path, cfg, dev)
        return self

    def _class_ids(self, classes) -> set[int] | None:
        if classes is None:
            return None
        ids = set()
        for c in [classes] if isinstance(classes, (str, int)) else classes:
            if isinstance(c, str) and not c.isdigit():
                if c not in self.class_names:
                    raise ConfigError(f"类别过滤中的 '{c}' 不在类别名中：{'、'.join(self.class_names[:30])}。")
                ids.add(self.class_names.index(c))
            else:
                cid = int(c)
                if not 0 <= cid < self.num_classes:
                    raise ConfigError(f"类别过滤中的编号 {cid} 超出范围 0..{self.num_classes - 1}。")
                ids.add(cid)
        return ids

    # -- preprocessing
    def preprocess(self, images: Sequence[Image.Image]) -> tuple[torch.Tensor, torch.Tensor]:
        """RGB PIL images -> (batch at eval size, orig sizes ``[B,2]`` as (w,h)), in the form the backend reads.

        The batch is ``[B,3,H,W]`` float /255 in the layout of ``backend.memory_format`` (channels-last for the
        torch backend of the HGNetv2 variants, else contiguous NCHW), made in one copy from the uint8 pixels; a
        backend with ``pixels = True`` (OpenVINO) gets the resized ``uint8`` ``[B,H,W,3]`` pixels themselves and
        converts them inside its compiled graph (measured faster).
        """
        h, w = self.size_hw
        arrs = [np.asarray(im.resize((w, h), Image.BILINEAR) if im.size != (w, h) else im) for im in images]
        pixels = torch.from_numpy(np.stack(arrs)).to(self.device)  # uint8 [B,H,W,3], a fresh array
        sizes = torch.tensor([im.size for im in images], dtype=torch.int64, device=self.device)
        if getattr(self.backend, "pixels", False):
            return pixels, sizes
        pixels = pixels.permute(0, 3, 1, 2)  # channels-last strides
        fmt = getattr(self.backend, "memory_format", None) or torch.contiguous_format
        batch = torch.empty(pixels.shape, dtype=torch.float32, device=self.device, memory_format=fmt)
        return batch.copy_(pixels).div_(255.0), sizes

    # -- prediction
    def __call__(self, inputs: Any, **kwargs: Any):
        return self.predict(inputs, **kwargs)

    def predict(
        self,
        inputs: Any,
        conf: float | None = None,
        max_det: int | None = None,
        classes: Sequence[str | int] | None = None,
        keep_images: bool = True,
        tile: int | None = None,
        overlap: float | None = None,
    ):
        """Detect objects in one image or a list of images (run in batches of ``batch_size``).

        Args:
            inputs: an image, a list of images, or an ``(N, H, W, 3)`` array. An image is a path, PIL image,
                numpy array or torch tensor, read by the rules of :func:`deimv2.data.images.as_rgb_image`
                (numpy: RGB ``(H, W, 3)``, uint8 or float 0-1; torch: ``(3, H, W)``).
            conf: confidence threshold for this call; default the detector's.
            max_det: at most this many boxes per image; default the detector's.
            classes: keep only these classes (names or 0-based ids); default the detector's.
            keep_images: keep the decoded RGB image in each Prediction (for ``plot()``); pass False for long
                lists of paths to save memory (``plot()`` then reads the file again).
            tile: tiled inference for small objects in large images: ``tile × tile`` pieces, merged by class
                (:mod:`deimv2.infer.tiling`; needs the ``apps`` extra); default the detector's ``tile`` (None:
                no tiling); ``0``: no tiling.
            overlap: the share of a tile that overlaps its neighbour (default 0.2).

        Returns:
            One :class:`~deimv2.infer.results.Prediction` for one image, a list of them for a list (or array)
            of images. Boxes are ``xyxy`` pixels of the original image, sorted by score.

        Example:
            >>> import numpy as np
            >>> from deimv2 import Detector
            >>> det = Detector.from_config("atto", num_classes=3, overrides={"eval_spatial_size": [160, 160]})
            >>> images = [np.zeros((120, 200, 3), dtype=np.uint8), np.full((64, 64, 3), 255, dtype=np.uint8)]
            >>> preds = det.predict(images, conf=0.5, max_det=10)
            >>> [p.image_size for p in preds]
            [(200, 120), (64, 64)]
            >>> all(len(p) <= 10 and bool((p.scores >= 0.5).all()) for p in preds)
            True
            >>> sorted(preds[0].to_dict())
            ['boxes', 'category_ids', 'image_size', 'labels', 'names', 'path', 'scores']
        """
        tile = self.tile if tile is None else tile
        overlap = self.overlap if overlap is None else overlap
        items, is_list = _as_list(inputs)
        conf = self.conf if conf is None else check_conf(conf)
        max_det = self.max_det if max_det is None else check_max_det(max_det)
        keep = self.classes if classes is None else self._class_ids(classes)
        out: list[Prediction] = []
        for start in range(0, len(items), self.batch_size):
            chunk = items[start : start + self.batch_size]
            images = [as_rgb_image(it) for it in chunk]
            paths = [_source_path(it) for it in chunk]
            if tile:
                tiled = zip(images, paths)
                out.extend(self._run_tiled(im, p, conf, max_det, keep, keep_images, tile, overlap) for im, p in tiled)
                continue
            out.extend(self._run(images, paths, conf, max_det, keep, keep_images))
        return out if is_list else out[0]

    def detections(self, inputs: Any, **kwargs: Any):
        """As :meth:`predict`, but ``supervision.Detections`` (one, or a list) instead of :class:`Prediction`."""
        preds = self.predict(inputs, **kwargs)
        return [p.to_supervision() for p in preds] if isinstance(preds, list) else preds.to_supervision()

    def track(self, frames: Any, **kwargs: Any):
        """Track objects through video frames (an iterable of images or a video file) with ByteTrack: yields one
        ``supervision.Detections`` per frame with ``tracker_id``; see :func:`deimv2.infer.tracking.track_frames`."""
        return track_frames(self, frames, **kwargs)

    def _run_tiled(self, image, path, conf, max_det, keep, keep_image, tile, overlap) -> Prediction:
        def run(arrays):
            pieces = [Image.fromarray(np.ascontiguousarray(a)) for a in arrays]
            preds = self._run(pieces, [None] * len(pieces), conf, self.max_det, keep, False)
            for p in preds:  # inside the tile (the model may reach a little past its border)
                p.boxes[:, 0::2] = p.boxes[:, 0::2].clamp(0, p.image_size[0])
                p.boxes[:, 1::2] = p.boxes[:, 1::2].clamp(0, p.image_size[1])
            return [p.to_supervision() for p in preds]

        det = tiled_detections(np.asarray(image), run, tile=tile, overlap=overlap, batch_size=self.batch_size)[:max_det]
        ids = det.class_id.tolist()
        return Prediction(
            boxes=torch.as_tensor(det.xyxy, dtype=torch.float32).reshape(-1, 4),
            scores=torch.as_tensor(det.confidence, dtype=torch.float32).reshape(-1),
            labels=torch.as_tensor(det.class_id, dtype=torch.int64).reshape(-1),
            names=[self.class_names[j] for j in ids],
            category_ids=[self.category_ids[j] for j in ids],
            image_size=tuple(image.size),
            path=path,
            image=image if keep_image else None,
            class_names=self.class_names,
        )

    def _run(self, images, paths, conf, max_det, keep, keep_images) -> list[Prediction]:
        batch, sizes = self.preprocess(images)
        if self.backend.name == "torch" and (self.graph.training or self.graph.model.training):
            self.graph.eval()  # e.g. model.train() was called after the Detector was made (the walk costs ms)
        labels, boxes, scores = self.backend(batch, sizes)
        labels, boxes, scores = labels.cpu(), boxes.float().cpu(), scores.float().cpu()
        preds = []
        for i, im in enumerate(images):
            m = scores[i] >= conf
            if keep is not None:
                m &= torch.isin(labels[i], torch.tensor(sorted(keep), dtype=labels.dtype))
            idx = m.nonzero().flatten()[:max_det]  # already sorted by score (top-k)
            lab = labels[i][idx]
            ids = lab.tolist()
            preds.append(
                Prediction(
                    boxes=boxes[i][idx],
                    scores=scores[i][idx],
                    labels=lab,
                    names=[self.class_names[j] for j in ids],
                    category_ids=[self.category_ids[j] for j in ids],
                    image_size=tuple(im.size),
                    path=paths[i],
                    image=im if keep_images else None,
                    class_names=self.class_names,
                )
            )
        return preds


def _saved_conf(path, conf, meta: Mapping) -> float | None:
    """``conf`` if given, else the F1-best threshold saved with the weights (said once), else None."""
    if conf is None and isinstance(meta.get("conf_threshold"), (int, float)):
        conf = float(meta["conf_threshold"])
        _log.info(
            f"置信度阈值：使用 {path} 里保存的 {conf:.2f}（训练时验证集上 F1 最高的阈值）；"
            f"要换一个，请传 conf=…（命令行 --conf）。"
        )
    return conf


def _resolve_names(names, cfg: Config, num_classes: int) -> list[str]:
    """Class names: given > config (dataset) > COCO names for 80-class COCO configs > "0", "1", ..."""
    if names is not None:
        names = [str(n) for n in names]
        if len(names) != num_classes:
            raise ConfigError(
                f"给出了 {len(names)} 个类别名，但模型有 {num_classes} 个类别（num_classes={num_classes}）。"
                f"请提供恰好 {num_classes} 个类别名，按训练时的类别顺序，用逗号分隔。"
            )
        return names
    if cfg.class_names and len(cfg.class_names) == num_classes:
        return [str(n) for n in cfg.class_names]
    if num_classes == 80 and "coco" in cfg.name.lower():
        return list(MSCOCO_CATEGORY_NAMES)
    return [str(i) for i in range(num_classes)]


def _resolve_category_ids(ids, cfg: Config, num_classes: int, names: list[str]) -> list[int]:
    if ids is not None and len(ids) == num_classes:
        return [int(i) for i in ids]
    if num_classes == 80 and (cfg.remap_mscoco_category or tuple(names) == MSCOCO_CATEGORY_NAMES):
        return list(MSCOCO_CATEGORY_IDS)
    return list(range(num_classes))


def load_detector(path: str | Path, config: str | Path | Config | None = None) -> tuple[nn.Module, Config, dict]:
    """Read a detector checkpoint once and build the matching model (strict load).

    Returns ``(model, cfg, meta)``; ``meta`` holds ``class_names`` / ``category_ids`` when the file has them.
    """
    sd, fmt, obj = load_detector_state(path)
    meta = dict(obj) if isinstance(obj, Mapping) and not all(isinstance(v, torch.Tensor) for v in obj.values()) else {}
    nc = num_classes_of_state_dict(sd)
    variant = variant_of_state_dict(sd)
    if isinstance(config, Config):
        cfg = config if config.num_classes == nc else config.replace(num_classes=nc)
    elif config is not None:
        cfg = load_config(config, num_classes=nc)
    elif isinstance(meta.get("config"), Mapping) and meta["config"].get("DEIM"):
        cfg = load_config({"__name__": f"checkpoint_{variant or 'custom'}", **meta["config"]}, num_classes=nc)
    elif variant is not None:
        cfg = load_config(variant, num_classes=nc)
    else:
        raise WeightsError(f"无法从 {path} 判断模型变体（{fmt}）。请用 -c/--config 指定变体名（atto…x）或 YAML。")
    model = build_model_from_config(cfg)
    anchors = sd.get("decoder.anchors")
    if config is None and anchors is not None and anchors.shape != model.decoder.anchors.shape:
        side = _square_size_for_anchors(cfg, int(anchors.shape[1]))
        if side is not None:  # saved by a run with another eval size (official files carry no config)
            _log.info(f"提示：{path} 的锚点数对应输入尺寸 {side}x{side}，按此设置 eval_spatial_size。")
            cfg = cfg.replace(eval_spatial_size=[side, side])
            model = build_model_from_config(cfg)
    model.config = cfg
    load_state_strict(model, fill_shared_keys(sd, model), str(path), derived_from_model=False)
    return model, cfg, meta


def _square_size_for_anchors(cfg: Config, count: int) -> int | None:
    """The square eval size (multiple of 32, up to 2048) whose anchor count equals ``count``, if any."""
    strides = cfg.model.decoder.feat_strides
    for side in range(32, 2049, 32):
        if sum((side // st) ** 2 for st in strides) == count:
            return side
    return None
