"""GPU readiness on CPU: the trainer's autocast path (bf16) trains, and gpu_check.py refuses CPU clearly."""

import importlib.util
import math
from pathlib import Path

import torch

from deimv2.engine.api import prepare_trainer

TINY = {
    "HGNetv2.pretrained": False,
    "eval_spatial_size": [96, 96],
    "batch_size": 2,
    "num_workers": 0,
    "val_dataloader.num_workers": 0,
    "val_dataloader.total_batch_size": 4,
    "DEIMTransformer.num_queries": 30,
    "PostProcessor.num_top_queries": 30,
}


def test_autocast_bf16_training_steps_on_cpu(tiny_coco, tmp_path):
    """``Trainer.train_one_epoch`` with AMP switched on (bf16 autocast on CPU, as on a GPU without GradScaler)."""
    torch.manual_seed(0)
    t = prepare_trainer(
        "atto", data=tiny_coco, output_dir=tmp_path / "amp", overrides=TINY, epochs=40, progress=False, warmup_iter=1
    )
    t.amp, t.amp_dtype = True, torch.bfloat16  # amp_settings() enables AMP only on CUDA
    batch = next(iter(t.data.train_loader))
    t.data.train_loader = [batch] * 3
    dtypes = set()
    first_linear = next(m for m in t.model.decoder.modules() if isinstance(m, torch.nn.Linear))
    first_linear.register_forward_hook(lambda m, i, o: dtypes.add(o.dtype))
    t.scheduler.step(0)
    losses = [t.train_one_epoch(0)["loss"] for _ in range(5)]
    assert torch.bfloat16 in dtypes  # the model really ran under autocast
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0], losses
    assert all(p.dtype == torch.float32 for p in t.model.parameters())  # master weights stay fp32


def test_gpu_check_refuses_cpu_with_a_clear_message(monkeypatch, capsys, tmp_path):
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "gpu.json"
    assert mod.main(["--json", str(out)]) == 2
    err = capsys.readouterr().err
    assert "CUDA" in err and "torch.cuda.is_available() 为 False" in err and not out.exists()
