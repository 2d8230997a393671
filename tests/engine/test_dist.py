"""Distributed helpers: no-ops in one process; a real 2-process gloo run on CPU."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from deimv2.engine import dist
from deimv2.errors import ConfigError


def test_single_process_defaults(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not dist.is_dist()
    assert dist.get_rank() == 0 and dist.get_world_size() == 1 and dist.is_main_process()
    assert dist.init_distributed() is False
    dist.barrier()
    dist.cleanup()
    out = dist.all_reduce_dict({"b": torch.tensor(2.5), "a": 1})
    assert out == {"a": 1.0, "b": 2.5}
    assert dist.all_gather_object({"x": 1}) == [{"x": 1}]
    m = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    assert dist.unwrap(nn.DataParallel(m)) is m
    assert dist.wrap_model(m) is m and dist.convert_sync_bn(m) is m


def test_missing_torchrun_env_is_reported(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    for k in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(ConfigError, match="torchrun"):
        dist.init_distributed()


WORKER = textwrap.dedent("""
    import json, os, sys
    import torch
    import torch.multiprocessing as mp
    from torch import nn

    def work(rank, world, port, out_dir, exit_barrier):
        torch.set_num_threads(1)
        os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        from deimv2.engine import dist
        from deimv2.engine.logger import MetricMeter
        assert dist.init_distributed(backend="gloo")
        avg = dist.all_reduce_dict({"a": torch.tensor(float(rank + 1)), "b": 2.0 * rank})
        tot = dist.all_reduce_dict({"a": rank + 1}, average=False)
        gathered = dist.all_gather_object({"rank": rank})
        meter = MetricMeter()
        meter.update(loss=float(rank + 1))       # rank 0: 1, rank 1: 2 (and 2 again below)
        if rank == 1:
            meter.update(loss=2.0)
        meter.synchronize_between_processes()
        model = dist.wrap_model(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)))
        info = dict(avg=avg, tot=tot, gathered=gathered, rank=dist.get_rank(), world=dist.get_world_size(),
                    main=dist.is_main_process(), meter=meter.global_averages(),
                    ddp=type(model).__name__, unwrapped=type(dist.unwrap(model)).__name__,
                    bn_cpu=type(dist.unwrap(model)[1]).__name__,
                    syncbn=type(dist.convert_sync_bn(nn.BatchNorm1d(2))).__name__)
        dist.barrier()
        dist.cleanup()
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump(info, f)
        # neither process exits while the other may still be tearing gloo down: a peer's exit during
        # destroy_process_group can abort the other one ("terminate called without an active exception")
        exit_barrier.wait(timeout=60)

    if __name__ == "__main__":
        port, out_dir = int(sys.argv[1]), sys.argv[2]
        exit_barrier = mp.get_context("spawn").Barrier(2)
        mp.spawn(work, args=(2, port, out_dir, exit_barrier), nprocs=2, join=True)
""")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gloo(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    proc = subprocess.run(
        [sys.executable, str(script), str(_free_port()), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    infos = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for r, info in enumerate(infos):
        assert info["rank"] == r and info["world"] == 2 and info["main"] == (r == 0)
        assert info["avg"] == {"a": 1.5, "b": 1.0}  # (1 + 2) / 2, (0 + 2) / 2
        assert info["tot"] == {"a": 3.0}
        assert info["gathered"] == [{"rank": 0}, {"rank": 1}]
        assert info["meter"]["loss"] == pytest.approx(5.0 / 3.0)  # (1 + 2 + 2) / 3
        assert info["ddp"] == "DistributedDataParallel" and info["unwrapped"] == "Sequential"
        assert info["syncbn"] == "SyncBatchNorm" and info["bn_cpu"] == "BatchNorm1d"
