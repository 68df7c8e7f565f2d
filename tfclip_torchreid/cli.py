"""One error style for every command-line tool: a message, not a traceback.

The tools' ``main(argv)`` functions raise ordinary exceptions (so Python callers and tests see
them); a script runs them through :func:`run`, which turns a failure into one ``error: ...``
line on stderr and an exit status, and an interrupt (Ctrl-C) into a short note with what to do
next. ``--debug`` anywhere on the command line (or ``TFCLIP_DEBUG=1``) shows the full traceback
instead.

Exit statuses: 0 success (or what ``main`` returns, when it is an int), 1 a failure, 2 a usage
error (argparse's own), 130 interrupted.

Example:
    >>> def main(argv):
    ...     raise FileNotFoundError("weights file not found: w.pth")
    >>> import contextlib, io
    >>> err = io.StringIO()
    >>> with contextlib.redirect_stderr(err):
    ...     status = run(main, ["--weights", "w.pth"])
    >>> status, err.getvalue()
    (1, 'error: weights file not found: w.pth (run with --debug for the traceback)\\n')
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Sequence

__all__ = ["run", "DEBUG_FLAG"]

#: the flag that asks for tracebacks (removed from argv before ``main`` sees it)
DEBUG_FLAG = "--debug"


def _status(result: Any) -> int:
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def run(main: Callable[[list], Any], argv: Sequence[str] | None = None,
        interrupted_hint: str = "") -> int:
    """Run ``main(argv)`` as a command-line tool and return its exit status.

    Args:
        main: the tool's ``main(argv)``.
        argv: the arguments (default ``sys.argv[1:]``); ``--debug`` is taken out of them.
        interrupted_hint: what to say after Ctrl-C (e.g. how to resume), unless ``main`` says
            it: a ``KeyboardInterrupt`` raised with a message (``main`` knows the run's
            folders) is printed instead.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in args or os.environ.get("TFCLIP_DEBUG", "") not in ("", "0")
    args = [a for a in args if a != DEBUG_FLAG]
    try:
        return _status(main(args))
    except KeyboardInterrupt as err:
        if debug:
            raise
        hint = str(err) or interrupted_hint
        sys.stderr.write("\ninterrupted" + (f": {hint}" if hint else "") + "\n")
        return 130
    except SystemExit:
        raise
    except Exception as err:  # noqa: BLE001 - every failure becomes one message
        if debug:
            raise
        text = str(err) or type(err).__name__
        sys.stderr.write(f"error: {text} (run with {DEBUG_FLAG} for the traceback)\n")
        return 1
