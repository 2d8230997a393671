"""User-facing errors: a Chinese message naming the file, the problem and the fix."""

from __future__ import annotations


class DEIMv2Error(Exception):
    """An error caused by user input (bad file, bad value). The CLI prints only the message.

    Write the message in Chinese: what is wrong, which file/value, and how to fix it.
    """


class ConfigError(DEIMv2Error):
    """Invalid config file or override."""


class DatasetError(DEIMv2Error):
    """Invalid dataset (annotations, images, labels)."""


class WeightsError(DEIMv2Error):
    """Missing, corrupt or mismatched weights file."""


class ImageInputError(DatasetError, ValueError):
    """An in-memory image (array, tensor, object) that cannot be read as an RGB image."""
