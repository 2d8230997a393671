"""Wall time of the browser test (``pytest -m browser``: JupyterLab + headless Chromium run every notebook).

Runs the test in a subprocess (fast mode, as the test sets it), times it, and writes machine, date, load average,
versions, the pytest outcome and the per-notebook times (from ``outputs/browser/report.json``) to a JSON file.

    python benchmarks/browser_test.py                       # -> benchmarks/results/browser_test.json
    python benchmarks/browser_test.py --rounds 2 --out outputs/browser_test.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REPORT = REPO / "outputs" / "browser" / "report.json"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine_info(chromium: str = "/usr/bin/chromium") -> dict:
    cpu = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        models = re.findall(
            r"^model name\s*:\s*(.+)$", cpuinfo.read_text(encoding="utf-8", errors="replace"), re.MULTILINE
        )
        cpu = models[0] if models else cpu
    try:
        browser = subprocess.run(
            [chromium, "--version"], capture_output=True, text=True, timeout=60, check=False
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        browser = None
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "chromium": browser,
        "jupyterlab": _version("jupyterlab"),
        "ipywidgets": _version("ipywidgets"),
        "playwright": _version("playwright"),
        "torch": _version("torch"),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "1 (set by the test)"),
    }


def git_state() -> dict:
    """Which code was measured: HEAD, its parents (a merge shows both branches) and uncommitted changes."""

    def git(*args):
        r = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return r.stdout.strip() if r.returncode == 0 else None

    head = git("log", "-1", "--format=%H %P")
    return {
        "head": head.split()[0] if head else None,
        "parents": head.split()[1:] if head else [],
        "subject": git("log", "-1", "--format=%s"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


def summary_line(output: str) -> str:
    """pytest's last line, e.g. ``9 passed in 480.2s``."""
    lines = [ln.strip("= ") for ln in output.strip().splitlines() if re.search(r"\b(passed|failed|error)", ln)]
    return lines[-1] if lines else ""


def run_once(pytest_args: list[str], timeout: float) -> dict:
    cmd = [sys.executable, "-m", "pytest", "-m", "browser", "-q", "-p", "no:cacheprovider", *pytest_args]
    load_before = os.getloadavg()
    t0 = time.monotonic()
    proc = subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        stdout, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:  # Ctrl-C lets pytest stop the JupyterLab server and the browser
        os.killpg(proc.pid, signal.SIGINT)
        try:
            stdout, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, _ = proc.communicate()
    wall = time.monotonic() - t0
    report = json.loads(REPORT.read_text(encoding="utf-8")) if REPORT.is_file() else {}
    return {
        "wall_s": round(wall, 1),
        "exit_code": proc.returncode,
        "passed": proc.returncode == 0,
        "pytest_summary": summary_line(stdout),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "notebook_seconds": {name: nb.get("seconds") for name, nb in report.get("notebooks", {}).items()},
        "output_tail": stdout[-3000:] if proc.returncode else "",
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=1, help="how many times to run the whole browser test")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per round")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "browser_test.json"))
    p.add_argument("pytest_args", nargs="*", help="extra pytest arguments, e.g. -k 04_")
    a = p.parse_args(argv)
    rounds = []
    for k in range(a.rounds):
        r = run_once(a.pytest_args, a.timeout)
        rounds.append(r)
        print(f"第 {k + 1}/{a.rounds} 轮：{r['wall_s']:.0f} 秒，{r['pytest_summary']}，负载 {r['loadavg_before']}")
    walls = sorted(r["wall_s"] for r in rounds)
    result = {
        "what": "pytest -m browser (JupyterLab 'Run All Cells' of every notebook in headless Chromium, DEIMV2_FAST=1)",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "git": git_state(),
        "rounds": a.rounds,
        "pytest_args": a.pytest_args,
        "all_passed": all(r["passed"] for r in rounds),
        "median_wall_s": walls[len(walls) // 2],
        "median_wall_min": round(walls[len(walls) // 2] / 60, 1),
        "runs": rounds,
    }
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(
        f"已写入 {out}：中位数 {result['median_wall_s']:.0f} 秒（{result['median_wall_min']} 分钟），"
        f"{'全部通过' if result['all_passed'] else '有失败'}"
    )
    return result


if __name__ == "__main__":
    main()
