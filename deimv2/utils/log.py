"""Logging: library code reports through ``logging.getLogger("deimv2…")``; a console handler shows it.

Every module writes ``_log = logging.getLogger(__name__)`` and ``_log.info("…")`` (Chinese messages, as the CLI
prints them). ``import deimv2`` installs one handler on the ``deimv2`` logger that writes each message as it is
(no level or time prefix) to the *current* ``sys.stdout`` (warnings: ``sys.stderr``), so scripts, notebooks and the CLI show exactly what a
``print`` would. Code that embeds ``deimv2`` silences it with one line::

    import logging
    logging.getLogger("deimv2").setLevel(logging.WARNING)   # only warnings and errors

or removes the handler (:func:`remove_console_handler`) to route the messages through its own logging set-up
(they then propagate to the root logger).
"""

from __future__ import annotations

import logging
import sys

__all__ = ["ConsoleHandler", "install_console_handler", "remove_console_handler"]

ROOT = "deimv2"


class ConsoleHandler(logging.Handler):
    """Writes the bare message to whatever ``sys.stdout`` is at the time (pytest and Jupyter replace it);
    warnings and errors to ``sys.stderr``."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # noqa: BLE001 - logging must never break the caller
            self.handleError(record)


def install_console_handler(level: int = logging.INFO) -> logging.Logger:
    """Give the ``deimv2`` logger its console handler (once) and ``level``; messages do not propagate further."""
    log = logging.getLogger(ROOT)
    if not any(isinstance(h, ConsoleHandler) for h in log.handlers):
        handler = ConsoleHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    if log.level == logging.NOTSET:
        log.setLevel(level)
    log.propagate = False
    return log


def remove_console_handler() -> None:
    """Take the console handler away again; messages then go to the root logger's handlers."""
    log = logging.getLogger(ROOT)
    for h in [h for h in log.handlers if isinstance(h, ConsoleHandler)]:
        log.removeHandler(h)
    log.propagate = True
