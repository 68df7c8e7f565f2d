"""The run's checkpoint folder: files that survive crashes, retention, best, and the hook that
writes them.

The file IO (atomic writes, ``weights_only=True`` reads, the self-describing header) is
:mod:`tfclip_torchreid.utils.checkpoint`; here:

* :class:`Checkpointer` (the shape of fvcore's ``Checkpointer``) owns ``<save_dir>/checkpoints``:
  it checks the folder is writable and removes temporary files left by a killed write *before*
  training starts, writes ``latest.pth``, keeps the last ``keep_last`` ``epoch_NNN.pth`` files
  (hard links to ``latest.pth``, not second writes) and ``best.pth`` by a *validation* metric
  (never the test set);
* :class:`PeriodicCheckpointer` (the shape of fvcore's ``PeriodicCheckpointer``) is the engine's
  hook: it points the checkpointer at the run's folder before training and writes the engine's
  :meth:`~.v2m_engine.VideoV2MEngine.checkpoint_state` after every epoch.

Example:
    >>> import tempfile
    >>> ck = Checkpointer(tempfile.mkdtemp(), keep_last=1)
    >>> ck.save({"epoch": 1}, 1) == ck.latest_path
    True
"""

from __future__ import annotations

import glob
import os
import os.path as osp
import re
import tempfile
from typing import Any, Dict, List

from ..utils.checkpoint import save_checkpoint
from .hooks import HookBase

__all__ = ["Checkpointer", "PeriodicCheckpointer", "check_writable"]


def check_writable(folder: str, option: str = "--save-dir") -> None:
    """Create ``folder`` if needed and prove it is writable, or raise a PermissionError that
    names it and the ``option`` that picks another (before any compute is spent)."""
    try:
        os.makedirs(folder, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".tmp-probe-", dir=folder)
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        raise PermissionError(
            f"cannot write to {folder} ({err.strerror or err}): pick another {option} or fix "
            f"the folder's permissions"
        ) from err


class Checkpointer:
    """Owns ``<save_dir>/checkpoints``: writable check, stale temp files, retention, best.

    Args:
        save_dir: the run's output folder.
        keep_last: how many ``epoch_NNN.pth`` files to keep (0 keeps none; ``latest.pth`` is
            always written).
        enabled: False on ranks other than 0 (they never write).

    Example:
        >>> import tempfile
        >>> ck = Checkpointer(tempfile.mkdtemp(), keep_last=2)
        >>> ck.prepare()
        []
        >>> for epoch in range(4):
        ...     _ = ck.save({"epoch": epoch + 1}, epoch + 1)
        >>> [os.path.basename(p) for p in ck.epoch_files()]
        ['epoch_003.pth', 'epoch_004.pth']
    """

    def __init__(self, save_dir: str, keep_last: int = 2, enabled: bool = True) -> None:
        self.folder = osp.join(save_dir, "checkpoints")
        self.keep_last = max(0, int(keep_last))
        self.enabled = enabled
        self.best_metric: float | None = None

    @property
    def latest_path(self) -> str:
        return osp.join(self.folder, "latest.pth")

    @property
    def best_path(self) -> str:
        return osp.join(self.folder, "best.pth")

    def prepare(self) -> List[str]:
        """Check the folder is writable and delete temp files of killed writes; returns them."""
        if not self.enabled:
            return []
        check_writable(self.folder)
        stale = sorted(glob.glob(osp.join(self.folder, ".tmp-*")))
        for path in stale:
            os.remove(path)
        return stale

    def latest(self) -> str | None:
        """``latest.pth`` if it exists."""
        return self.latest_path if osp.isfile(self.latest_path) else None

    def epoch_files(self) -> List[str]:
        """``epoch_NNN.pth`` files, oldest first."""
        pattern = re.compile(r"epoch_(\d+)\.pth$")
        files = [f for f in glob.glob(osp.join(self.folder, "epoch_*.pth")) if pattern.search(f)]
        return sorted(files, key=lambda f: int(pattern.search(f).group(1)))

    def save(self, state: Dict[str, Any], epoch: int | None = None) -> str | None:
        """Write ``latest.pth`` (and, for an ``epoch``, ``epoch_NNN.pth`` while ``keep_last >
        0``), prune old epoch files."""
        if not self.enabled:
            return None
        path = save_checkpoint(state, self.latest_path)
        if epoch is not None and self.keep_last > 0:
            epoch_path = osp.join(self.folder, f"epoch_{int(epoch):03d}.pth")
            link = osp.join(self.folder, f".tmp-link-{int(epoch):03d}.pth")  # see prepare()
            try:
                os.link(path, link)  # same bytes, no second write
                os.replace(link, epoch_path)
            except OSError:  # file systems without hard links
                save_checkpoint(state, epoch_path)
            for old in self.epoch_files()[:-self.keep_last]:
                os.remove(old)
        return path

    def save_best(self, state: Dict[str, Any], metric: float) -> bool:
        """Write ``best.pth`` when ``metric`` (a validation score, higher is better) improves."""
        if not self.enabled or (self.best_metric is not None and metric <= self.best_metric):
            return False
        self.best_metric = float(metric)
        save_checkpoint(dict(state, best_metric=self.best_metric), self.best_path)
        return True


class PeriodicCheckpointer(HookBase):
    """Before training: the run's ``<save_dir>/checkpoints``, checked and cleaned
    (:meth:`Checkpointer.prepare`). After every epoch: one checkpoint of
    ``trainer.checkpoint_state`` (``latest.pth`` and the retained ``epoch_NNN.pth``).

    Args:
        checkpointer: the engine's :class:`Checkpointer` (CLIP-ReID's stage 1 and the
            validation hook write through it too).
    """

    def __init__(self, checkpointer: Checkpointer) -> None:
        self.checkpointer = checkpointer

    def before_train(self) -> None:
        self.checkpointer.folder = osp.join(self.trainer.save_dir, "checkpoints")
        self.checkpointer.prepare()

    def after_epoch(self) -> None:
        t = self.trainer
        self.checkpointer.save(t.checkpoint_state(t.epoch), t.epochs_done)
