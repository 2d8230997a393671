"""Shared fixtures: tiny COCO datasets made on the fly (nothing is downloaded)."""

import logging

import pytest
from helpers.tinydata import make_coco_dataset

from deimv2.utils.log import install_console_handler


@pytest.fixture
def tiny_coco(tmp_path):
    return make_coco_dataset(tmp_path / "数据 集")


@pytest.fixture(autouse=True)
def deimv2_messages_on_stdout():
    """Every test sees deimv2's messages on stdout, as a user does: a library that calls ``dictConfig`` (the
    import-linter CLI in test_architecture.py does) disables every existing logger, ours included."""
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if name == "deimv2" or name.startswith("deimv2."):
            if isinstance(logger, logging.Logger):
                logger.disabled = False
    install_console_handler()
    yield
