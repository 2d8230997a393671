"""Wall time of the slow notebook tests (tests/notebooks/test_notebooks_run.py, marker ``slow_notebooks``).

Runs them once through pytest, reads each test's duration from a JUnit XML report and each notebook's
duration from the tests themselves, and writes benchmarks/results/notebooks_run_cpu2.json
(machine, threads, date and load average before/after inside: the machine may be shared).

    python benchmarks/notebooks_run.py [--out benchmarks/results/notebooks_run_cpu2.json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "notebooks_run_cpu2.json"))
    p.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of the notebook kernels")
    p.add_argument("-k", dest="select", help="run only the tests matching this pytest -k expression")
    a = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="deimv2_nbrun_"))
    junit, times = tmp / "junit.xml", tmp / "notebooks.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "DEIMV2_NOTEBOOK_TIMES": str(times)}
    load_before, t0 = os.getloadavg(), time.time()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-m",
            "slow_notebooks",
            "tests/notebooks/test_notebooks_run.py",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={junit}",
            *(["-k", a.select] if a.select else []),
        ],
        check=False,
        cwd=ROOT,
        env=env,
    )
    wall = time.time() - t0
    tests = {
        case.get("name"): {
            "seconds": round(float(case.get("time")), 1),
            "passed": not any(child.tag in ("failure", "error") for child in case),
        }
        for case in ET.parse(junit).iter("testcase")
    }
    runs = [json.loads(line) for line in times.read_text(encoding="utf-8").splitlines()] if times.is_file() else []
    result = {
        "what": "pytest -m slow_notebooks tests/notebooks/test_notebooks_run.py"
        + (f" -k {a.select}" if a.select else ""),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "threads": a.threads,
        "rounds": 1,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "exit_code": proc.returncode,
        "wall_s": round(wall, 1),
        "tests": tests,
        "notebooks": {r["run"]: r["seconds"] for r in runs},
    }
    Path(a.out).write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result, ensure_ascii=False, indent=1))
    return result


if __name__ == "__main__":
    main()
