"""Multi-node training as docs/training.md launches it: two torchrun "nodes" on localhost (gloo, CPU), one
process each, joined through ``--nnodes 2 --node_rank k --rdzv_endpoint host:port`` and running ``-m deimv2 train``."""

import os
import socket
import subprocess
import sys

from helpers.tinydata import make_coco_dataset


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_command(node_rank: int, port: int, data, out) -> list[str]:
    """The documented multi-node command (docs/training.md), one process per node, tiny settings for a CPU."""
    return [
        sys.executable, "-m", "torch.distributed.run",
        "--nnodes", "2", "--node_rank", str(node_rank), "--nproc_per_node", "1",
        "--rdzv_endpoint", f"127.0.0.1:{port}",
        "-m", "deimv2", "train", "-c", "atto", "--data", str(data), "--output-dir", str(out), "--no-check",
        "-u", "HGNetv2.pretrained=false", "eval_spatial_size=[96,96]", "batch_size=4", "epochs=2",
        "num_workers=0", "val_dataloader.num_workers=0", "val_dataloader.total_batch_size=4",
        "DEIMTransformer.num_queries=30", "PostProcessor.num_top_queries=30",
    ]  # fmt: skip


def test_two_nodes_on_localhost(tmp_path):
    data = make_coco_dataset(tmp_path / "数据 集", n_train=8, n_val=4)
    out, port = tmp_path / "输出", _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    nodes = [
        subprocess.Popen(
            node_command(k, port, data, out), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        for k in (0, 1)
    ]
    logs = [p.communicate(timeout=600)[0] for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    # rank 0 (node 0) prints and writes; 2 processes in all, 2 images each per step
    assert "2 卡 = 4" in logs[0], logs[0][-3000:]
    assert (out / "last.pth").is_file() and (out / "best.pth").is_file()
    assert len((out / "log.jsonl").read_text(encoding="utf-8").splitlines()) == 2
