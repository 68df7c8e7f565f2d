"""The package's logging: one ``tfclip_torchreid`` logger, shown by the command-line tools.

Every module logs through ``logging.getLogger(__name__)`` (a child of ``tfclip_torchreid``) and
never prints. A library user sees warnings only, unless they configure logging themselves (the
standard library's convention, as in fast-reid's ``setup_logger``). The command-line tools call
:func:`console_logging`, which for the time of the run

* writes the message of every INFO-or-higher record of the package to the *current*
  ``sys.stdout`` (so torchreid's console tee, which also writes the run's log file, sees the
  same lines torchreid's own ``print`` calls produce), warnings and errors with their level;
* routes Python warnings through the same handler (``logging.captureWarnings``), so they reach
  the log file too, and restores both on exit.

Example:
    >>> import io, sys, logging
    >>> out, sys.stdout = sys.stdout, io.StringIO()
    >>> with console_logging():
    ...     logging.getLogger("tfclip_torchreid.demo").info("=> hello")
    >>> text, sys.stdout = sys.stdout.getvalue(), out
    >>> text
    '=> hello\\n'
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Iterator

__all__ = ["LOGGER_NAME", "get_logger", "console_logging", "ConsoleHandler"]

#: the package's root logger
LOGGER_NAME = "tfclip_torchreid"


def get_logger(name: str = LOGGER_NAME) -> logging.Logger:
    """``logging.getLogger(name)``; modules pass ``__name__``."""
    return logging.getLogger(name)


class _Formatter(logging.Formatter):
    """The bare message for INFO and below, ``LEVEL: message`` above (Python warnings come
    already formatted by :func:`warnings.formatwarning`)."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno <= logging.INFO or record.name == "py.warnings":
            return text.rstrip("\n")
        return f"{record.levelname}: {text}"


class ConsoleHandler(logging.StreamHandler):
    """A StreamHandler bound to whatever ``sys.stdout`` is when a record is emitted."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)
        self.setFormatter(_Formatter("%(message)s"))

    @property
    def stream(self):  # type: ignore[override]
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler assigns it in __init__ / setStream
        pass

    def flush(self) -> None:
        with contextlib.suppress(ValueError, AttributeError):  # a closed or odd stdout
            sys.stdout.flush()


@contextlib.contextmanager
def console_logging(level: int = logging.INFO, enabled: bool = True) -> Iterator[logging.Logger]:
    """Show the package's log records (and Python warnings) on ``sys.stdout`` while inside.

    Args:
        level: the lowest level shown.
        enabled: False (e.g. on distributed ranks other than 0) shows nothing below WARNING.
    """
    logger = get_logger()
    handler = ConsoleHandler()
    handler.setLevel(level if enabled else logging.WARNING)
    warn_logger = logging.getLogger("py.warnings")
    old_level = logger.level
    logger.addHandler(handler)
    warn_logger.addHandler(handler)
    logger.setLevel(min(level, old_level) if old_level else level)
    logging.captureWarnings(True)
    try:
        yield logger
    finally:
        logging.captureWarnings(False)
        logger.removeHandler(handler)
        warn_logger.removeHandler(handler)
        logger.setLevel(old_level)
