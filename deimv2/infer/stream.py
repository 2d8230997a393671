"""Decoding inputs ahead of the model for ``deimv2 predict``: folders through a ``DataLoader``, video frames in a
background thread. Both keep the input order and give the same images as decoding one by one in the loop.

Folders: a :class:`torch.utils.data.DataLoader` over :class:`DecodedImages` yields batches of decoded images;
with ``num_workers > 0`` worker processes decode the next batches while the model runs on this one. A file
that cannot be read becomes an error entry of its batch (the folder goes on). The default is no workers: on the
2-core machine the model already uses the cores and workers measured slower (``folder_workers{0,1,2}_per_image``
in ``benchmarks/results/torch_speedups_cpu2.json``); they help where cores are idle (many cores, GPU inference).

Video: :func:`video_batches` reads frames with OpenCV in a thread (OpenCV releases the GIL while decoding)
into a small queue, so the next frames are decoded while the model runs.
Explained in notebook ``05_inference.ipynb``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deimv2.errors import DatasetError

__all__ = ["DecodedImages", "decoded_batches", "video_batches"]


class DecodedImages(torch.utils.data.Dataset):
    """Item ``i``: ``(i, image, None)`` or ``(i, None, error message)`` for ``paths[i]``.

    ``decode(path) -> RGB PIL image`` raises :class:`~deimv2.errors.DatasetError` for unreadable files
    (:func:`deimv2.data.images.as_rgb_image`); it must be a module-level function so that worker processes can use it.
    """

    def __init__(self, paths: Sequence[str | Path], decode: Callable[[Any], Any]):
        self.paths, self.decode = list(paths), decode

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            return i, self.decode(self.paths[i]), None
        except DatasetError as e:
            return i, None, str(e).split("\n")[0]


def _as_list(items):
    return list(items)


def decoded_batches(
    paths: Sequence[str | Path], decode: Callable[[Any], Any], batch_size: int, num_workers: int = 0
) -> Iterator[list[tuple]]:
    """Batches (lists) of :class:`DecodedImages` items in input order, decoded by ``num_workers`` processes."""
    workers = max(0, int(num_workers or 0))
    loader = torch.utils.data.DataLoader(
        DecodedImages(paths, decode),
        batch_size=max(1, int(batch_size)),
        shuffle=False,
        num_workers=workers,
        collate_fn=_as_list,
        prefetch_factor=2 if workers else None,
    )
    yield from loader


_END = object()


def video_batches(cap, batch_size: int, prefetch: int | None = None, threaded: bool = True) -> Iterator[list]:
    """Batches of RGB frames (contiguous ``uint8`` arrays) of an opened ``cv2.VideoCapture``, in order.

    ``threaded``: a background thread decodes up to ``prefetch`` frames (default ``2 * batch_size``) ahead;
    ``False`` reads them in this thread (the same frames). A read error in the thread is raised here.
    """
    batch_size = max(1, int(batch_size))
    if not threaded:
        yield from _batched(lambda: _read_rgb(cap), batch_size)
        return
    q: queue.Queue = queue.Queue(maxsize=prefetch or 2 * batch_size)
    stop = threading.Event()
    thread = threading.Thread(target=_decode_into, args=(cap, q, stop), name="deimv2-video-decode", daemon=True)
    thread.start()
    try:
        yield from _batched(lambda: _raised(q.get()), batch_size)
    finally:
        stop.set()
        thread.join(timeout=5)


def _read_rgb(cap) -> Any:
    """The next frame as a contiguous RGB array, or ``_END`` after the last one."""
    ok, frame = cap.read()
    return np.ascontiguousarray(frame[:, :, ::-1]) if ok else _END


def _batched(next_frame: Callable[[], Any], batch_size: int) -> Iterator[list]:
    """Lists of ``batch_size`` frames from ``next_frame()`` until it gives ``_END`` (the last list may be shorter)."""
    done = False
    while not done:
        batch = []
        while len(batch) < batch_size:
            item = next_frame()
            if item is _END:
                done = True
                break
            batch.append(item)
        if batch:
            yield batch


def _raised(item: Any) -> Any:
    """``item``, unless it is the decoding thread's error: then that error is raised here."""
    if isinstance(item, BaseException):
        raise item
    return item


def _decode_into(cap, q: queue.Queue, stop: threading.Event) -> None:
    """The decoding thread: frames into ``q`` up to ``_END``, until ``stop`` is set; an error goes into ``q`` too."""

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    try:
        while not stop.is_set():
            frame = _read_rgb(cap)
            if not put(frame) or frame is _END:
                return
    except BaseException as e:  # noqa: BLE001 - handed to the consumer and raised there
        put(e)
