"""config/checks.py: input sizes that leave the decoder too few feature-map positions for its queries."""

import pytest

from deimv2.config.checks import check_enough_queries
from deimv2.config.loader import load_config
from deimv2.engine.api import prepare_trainer
from deimv2.errors import ConfigError
from deimv2.models.build import build_model


def test_positions_are_counted_per_feature_level():
    cfg = load_config("atto")  # 100 queries on strides 16 and 32
    check_enough_queries(cfg, (160, 160))  # 10*10 + 5*5 = 125 positions
    with pytest.raises(ConfigError) as e:
        check_enough_queries(cfg, (128, 128))  # 8*8 + 4*4 = 80 < 100
    msg = str(e.value)
    assert "eval_spatial_size=[128, 128]" in msg and "80 个位置" in msg and "num_queries=100" in msg
    assert "[160, 160]" in msg and "N ≤ 80" in msg  # the smallest square size that fits, and the other way out
    check_enough_queries(load_config("atto", {"DEIMTransformer.num_queries": 80}), (128, 128))
    with pytest.raises(ConfigError, match="num_queries=300"):
        check_enough_queries(load_config("s"), (128, 96))  # strides 8/16/32: 16*12 + 8*6 + 4*3 = 252 < 300


def test_a_model_too_small_for_its_queries_is_refused_before_it_is_built():
    with pytest.raises(ConfigError, match=r"eval_spatial_size=\[96, 96\] 太小"):
        build_model("atto", eval_spatial_size=[96, 96])
    model = build_model("atto", eval_spatial_size=[96, 96], overrides={"DEIMTransformer.num_queries": 45})
    assert model.config.model.decoder.num_queries == 45  # 6*6 + 3*3 = 45 positions: exactly enough


def test_the_smallest_multiscale_size_is_checked_before_training(tiny_coco, tmp_path):
    """N trains at sizes down to about 0.75x base_size: 288 fits its 300 queries, its smallest scale does not."""
    overrides = {
        "HGNetv2.pretrained": False,
        "eval_spatial_size": [288, 288],  # 18*18 + 9*9 = 405 positions: enough
        "train_dataloader.collate_fn.base_size": 288,  # scales from 192: 12*12 + 6*6 = 180 < 300
        "train_dataloader.collate_fn.base_size_repeat": 3,  # multi-scale on
        "num_workers": 0,
        "val_dataloader.num_workers": 0,
    }
    with pytest.raises(ConfigError, match=r"多尺度训练的最小尺寸（.*）=\[192, 192\]"):
        prepare_trainer("n", data=tiny_coco, output_dir=tmp_path / "o", overrides=overrides, progress=False)
