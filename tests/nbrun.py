"""Execute notebooks like JupyterLab's "Run All": in order, in one folder, each in a fresh kernel.

Used by tests/test_notebooks_run.py, often under another interpreter (a fresh venv holding the wheel):

    python tests/nbrun.py FOLDER [NAME ...]    # runs FOLDER/*.ipynb (or the NAMEs) in place, saves the outputs

The kernel is the interpreter running this script (``sys.executable``) and inherits its environment.
Prints one line per notebook with its wall time; exits 1 at the first cell that raises.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def run_folder(folder: Path, names: list[str] | None = None) -> dict[str, float]:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    folder = Path(folder).resolve()
    paths = [folder / n for n in names] if names else sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    seconds = {}
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(
            nb, timeout=None, startup_timeout=900, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
        )
        t0 = time.perf_counter()
        try:
            client.execute()
        except CellExecutionError as e:
            nbformat.write(nb, path)
            print(f"FAILED {path.name}:\n{e}", flush=True)
            raise SystemExit(1) from None
        seconds[path.name] = round(time.perf_counter() - t0, 1)
        nbformat.write(nb, path)
        print(f"ok {path.name} {seconds[path.name]} s", flush=True)
    return seconds


if __name__ == "__main__":
    result = run_folder(Path(sys.argv[1]), sys.argv[2:] or None)
    print("SECONDS " + json.dumps(result))
