"""deimv2 — DEIMv2 中文教程的 Python 包."""
__version__ = "0.1.0"
