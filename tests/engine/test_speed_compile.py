"""``compile=true`` with torch inductor (the default backend): the compiled Atto training step keeps losses and
gradients on the golden batch (tolerances: tests/engine/test_speed.py), and a second process compiling the same step
loads it from the on-disk cache instead of compiling again. Minutes and a C++ compiler: ``pytest -m compile``."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent  # tests/engine: test_speed.py sits beside this file

SCRIPT = """
import json, sys, torch
sys.path.insert(0, {tests!r})
from torch._dynamo.utils import counters
from test_speed import SpeedOptions, check_exact_maths, golden_step
torch.set_num_threads(1)
ref = golden_step(SpeedOptions()), golden_step(SpeedOptions(), torch.float64)
check_exact_maths(golden_step(SpeedOptions(compile=True)), ref)
print(json.dumps(dict(counters["inductor"])))
"""


@pytest.mark.compile
def test_inductor_step_keeps_the_maths_and_is_cached(tmp_path):
    cache = tmp_path / "编译缓存"  # no space: see deimv2.engine.speed.compile_cache_dir
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1"}
    runs = []
    for _ in range(2):
        r = subprocess.run(
            [sys.executable, "-c", SCRIPT.format(tests=str(HERE))], env=env, capture_output=True, text=True
        )
        assert r.returncode == 0, r.stderr[-3000:]
        runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    first, second = runs
    assert first.get("fxgraph_cache_miss", 0) > 0
    assert second.get("fxgraph_cache_hit", 0) > 0 and second.get("fxgraph_cache_miss", 0) == 0
