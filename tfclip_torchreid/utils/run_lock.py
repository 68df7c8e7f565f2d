"""One run per output folder: ``<save_dir>/run.lock`` names the run that writes there.

Two trainings writing into the same folder at once interleave their logs and overwrite each
other's checkpoints and results. A run takes the folder's lock before it writes anything and
gives it back when it ends (also after an error or Ctrl-C); a second run is refused with the
holder's process id, host, command and start time. A lock whose process has ended without giving
it back (killed, crashed machine) is taken over with a note, when that can be established: the
holder ran on this host and its process is gone (or its id now belongs to a process started
later). A holder on another host is never presumed dead: the message says which file to delete
once that run is known to be over.

The lock file is JSON (``pid``, ``host``, ``command``, ``started``, ``process_start``); the
short check-and-write is serialised by a ``filelock`` lock beside it (``.run.lock.guard``, left
in place: removing a lock file others may wait on is racy), so two runs starting at the same
moment cannot both take the folder.

Example:
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with RunLock(folder):
    ...     try:
    ...         RunLock(folder).acquire()
    ...     except FolderInUseError as err:
    ...         print(str(err).split(":")[0])
    another run is writing to this folder
    >>> os.path.exists(os.path.join(folder, LOCK_NAME))
    False
"""

from __future__ import annotations

import json
import logging
import os
import os.path as osp
import shlex
import socket
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from filelock import FileLock

logger = logging.getLogger(__name__)

__all__ = ["LOCK_NAME", "FolderInUseError", "Holder", "RunLock"]

#: the lock file in the run's folder
LOCK_NAME = "run.lock"


class FolderInUseError(RuntimeError):
    """Another run holds the folder's lock."""


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from ``/proc``), or None where
    that cannot be read: tells a live holder from a later process that got its id."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


@dataclass
class Holder:
    """Who holds a lock: process id, host, command line, start time (local, ISO 8601)."""

    pid: int
    host: str
    command: str
    started: str
    process_start: str | None = None

    @classmethod
    def this_process(cls) -> Holder:
        return cls(os.getpid(), socket.gethostname(), shlex.join([sys.executable, *sys.argv]),
                   time.strftime("%Y-%m-%dT%H:%M:%S%z"), _process_start(os.getpid()))

    def describe(self) -> str:
        return (f"pid {self.pid} on {self.host}, started {self.started}, command: "
                f"{self.command}")

    def ended(self) -> bool:
        """True when the holder is known to have ended: it ran on this host and its process is
        gone, or its id belongs to a process started after it. Unknown (another host): False."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's
            pass
        now = _process_start(self.pid)
        return self.process_start is not None and now is not None and now != self.process_start


class RunLock:
    """The lock of a run's output folder (created if needed); a context manager.

    Args:
        folder: the run's folder (``data.save_dir``).
        timeout: seconds to wait for the short check-and-write of another run starting at the
            same moment (not for a run that holds the folder: that one is refused at once).
    """

    def __init__(self, folder: str, timeout: float = 30.0) -> None:
        self.folder = folder
        self.path = osp.join(folder, LOCK_NAME)
        self.timeout = timeout
        self.holder: Holder | None = None

    def _guard(self) -> FileLock:
        return FileLock(osp.join(self.folder, f".{LOCK_NAME}.guard"), timeout=self.timeout)

    def _read(self) -> Holder | None:
        try:
            with open(self.path) as f:
                data: dict[str, Any] = json.load(f)
            return Holder(**{k: data.get(k) for k in Holder.__dataclass_fields__})
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError):  # half-written or foreign: nobody to name
            return Holder(-1, "?", "?", "?")

    def acquire(self) -> None:
        """Take the folder, or raise :class:`FolderInUseError` naming the run that has it."""
        os.makedirs(self.folder, exist_ok=True)
        me = Holder.this_process()
        with self._guard():
            other = self._read()
            if other is not None and other.pid == -1:
                logger.warning(f"=> {self.path} cannot be read: taking the folder over")
            elif other is not None and not other.ended():
                raise FolderInUseError(
                    f"another run is writing to this folder: {osp.abspath(self.folder)} is held "
                    f"by {other.describe()}. Wait for it to end, or give this run another "
                    f"--save-dir (if that run is over, delete {osp.abspath(self.path)})")
            elif other is not None:
                logger.info(f"=> {self.path}: the run that held this folder ({other.describe()}) "
                            f"has ended without releasing it; this run takes the folder over")
            tmp = f"{self.path}.{me.pid}.tmp"
            with open(tmp, "w") as f:
                json.dump(asdict(me), f)
            os.replace(tmp, self.path)
        self.holder = me

    def release(self) -> None:
        """Give the folder back (only if this process still holds it)."""
        if self.holder is None:
            return
        with self._guard():
            current = self._read()
            if current is not None and (current.pid, current.started) == (
                    self.holder.pid, self.holder.started):
                os.remove(self.path)
        self.holder = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
