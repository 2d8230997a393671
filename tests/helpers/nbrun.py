"""Execute notebooks like JupyterLab's "Run All": in order, in one folder, each in a fresh kernel.

Used by tests/notebooks/test_notebooks_run.py, often under another interpreter (a fresh venv holding the wheel):

    python tests/helpers/nbrun.py FOLDER [NAME ...]    # runs FOLDER/*.ipynb (or the NAMEs) in place, saves the outputs

The kernel is the interpreter running this script (``sys.executable``) and inherits its environment.
Prints a line when each notebook starts and ends (with its wall time); exits 1 at the first cell that raises,
runs longer than ``DEIMV2_CELL_TIMEOUT`` seconds (default 1800: a hang becomes a failure that names the notebook
and the cell, not a CI time-out), or whose kernel dies. The partly executed notebook is saved either way.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

CELL_TIMEOUT_S = int(os.environ.get("DEIMV2_CELL_TIMEOUT", "1800"))
POLL_SLICE_S = 1.0


def _sliced(channel) -> None:
    """Make ``channel.get_msg(timeout)`` poll its ZMQ socket in slices of at most ``POLL_SLICE_S`` seconds.

    Seen on this machine in several runs (e.g. the ``interact`` cell of notebook 05): the kernel had long sent
    its execute reply and sat idle, but the client's single long ``socket.poll`` only returned when its time-out
    ran out (a missed wake-up; the whole cell time-out, 1800 s by default), and then found the reply waiting. A
    CI run that met this a few times ran past its limit. Short polls find a waiting message within a second; an
    empty socket still waits out the caller's whole time-out.
    """
    from queue import Empty

    poll_once = channel.get_msg

    async def get_msg(timeout: float | None = None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = POLL_SLICE_S if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return await poll_once(timeout=min(POLL_SLICE_S, left))
            except Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    channel.get_msg = get_msg


def _current_cell(nb) -> str:
    """Index and first line of the last code cell that started executing."""
    started = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.get("execution_count") is not None]
    if not started:
        return "(no cell started)"
    i, cell = started[-1]
    return f"cell {i}: {cell.source.strip().splitlines()[0] if cell.source.strip() else ''}"


def run_folder(folder: Path, names: list[str] | None = None, cell_timeout: int = CELL_TIMEOUT_S) -> dict[str, float]:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    class Client(NotebookClient):
        async def async_start_new_kernel_client(self):
            kc = await super().async_start_new_kernel_client()
            _sliced(kc.shell_channel)
            _sliced(kc.iopub_channel)
            return kc

    folder = Path(folder).resolve()
    paths = [folder / n for n in names] if names else sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    seconds = {}
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        client = Client(
            nb,
            timeout=cell_timeout,
            startup_timeout=900,
            kernel_name="python3",
            resources={"metadata": {"path": str(folder)}},
        )
        print(f"start {path.name}", flush=True)
        t0 = time.perf_counter()
        try:
            client.execute()
        except (CellExecutionError, CellTimeoutError, DeadKernelError) as e:
            nbformat.write(nb, path)
            kind = {CellTimeoutError: f"TIMEOUT after {cell_timeout} s", DeadKernelError: "KERNEL DIED"}.get(
                type(e), "ERROR"
            )
            took = time.perf_counter() - t0
            print(f"FAILED {path.name} ({kind}, {took:.0f} s, {_current_cell(nb)}):\n{e}", flush=True)
            raise SystemExit(1) from None
        seconds[path.name] = round(time.perf_counter() - t0, 1)
        nbformat.write(nb, path)
        print(f"ok {path.name} {seconds[path.name]} s", flush=True)
    return seconds


if __name__ == "__main__":
    result = run_folder(Path(sys.argv[1]), sys.argv[2:] or None)
    print("SECONDS " + json.dumps(result))
