"""Multi-process training with torchrun on CPU (gloo backend, 2 processes): DDP, DistributedSampler, rank-0 writes."""

import json
import os
import subprocess
import sys
import textwrap

from helpers.tinydata import make_coco_dataset

SCRIPT = textwrap.dedent("""
    import json, sys, torch
    torch.set_num_threads(1)
    from deimv2.engine import dist
    from deimv2.engine.api import train
    data, out = sys.argv[1], sys.argv[2]
    m = train("atto", data=data, output_dir=out, epochs=2, max_iters_per_epoch=2, progress=False, check_data=False,
              overrides={"HGNetv2.pretrained": False, "eval_spatial_size": [96, 96], "batch_size": 4,
                         "num_workers": 0, "val_dataloader.num_workers": 0, "val_dataloader.total_batch_size": 4,
                         "DEIMTransformer.num_queries": 30, "PostProcessor.num_top_queries": 30})
    print("RESULT", json.dumps({"rank": dist.get_rank(), "world": dist.get_world_size(), "AP": m["AP"]}))
""")


def test_torchrun_two_cpu_processes(tmp_path):
    data = make_coco_dataset(tmp_path / "data", n_train=8, n_val=4)
    script = tmp_path / "run_ddp.py"
    script.write_text(SCRIPT, encoding="utf-8")
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            "29533",
            str(script),
            str(data),
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(line.split("RESULT", 1)[1]) for line in proc.stdout.splitlines() if "RESULT" in line]
    assert sorted(r["rank"] for r in results) == [0, 1] and all(r["world"] == 2 for r in results)
    assert results[0]["AP"] == results[1]["AP"]  # evaluation is gathered across ranks
    assert (out / "last.pth").is_file() and (out / "best.pth").is_file()
    assert len((out / "log.jsonl").read_text(encoding="utf-8").splitlines()) == 2  # only rank 0 writes
