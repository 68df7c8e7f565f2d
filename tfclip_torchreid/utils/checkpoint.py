"""Reading and writing checkpoint files: atomic, weights-only, self-describing.

* :func:`save_checkpoint` writes to a temporary file in the target folder, fsyncs it and renames
  it over the destination (atomic on POSIX), and keeps only tensors and plain Python values;
* :func:`load_checkpoint` loads with ``weights_only=True``; for old torchreid checkpoints (numpy
  ``rank1``) it allow-lists the numpy globals they need (``docs/torchreid.md``); a file it cannot
  load raises :class:`CheckpointFileError`, which says what the file is (empty, text, a web page,
  truncated, damaged, a TorchScript archive, pickled Python objects, not a torch file) and what
  to do, instead of torch's advice on ``weights_only``;
* :func:`checkpoint_header` is what makes a file self-describing (architecture, model
  configuration, package version and the preprocessing of its training data: input size, mean,
  std); :func:`read_header` gives it back (None for other files);
* :func:`unwrap_state_dict` is the one place that finds the state dict inside a checkpoint
  (a ``state_dict`` / ``model`` / ``model_state_dict`` entry or the dict itself, without the
  ``module.`` and ``_orig_mod.`` prefixes of DataParallel/DDP and ``torch.compile``).

Every reader of weights goes through :func:`tfclip_torchreid.models.weights.resolve_weights`,
which reads a file once with :func:`load_checkpoint`.

Example:
    >>> import torch, tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> _ = save_checkpoint({"state_dict": {"w": torch.ones(2)}, "epoch": 1}, os.path.join(d, "a.pth"))
    >>> load_checkpoint(os.path.join(d, "a.pth"))["epoch"]
    1
"""

from __future__ import annotations

import contextlib
import json
import os  # noqa: F401  (the docstring examples use it)
import os.path as osp
import pickle
import re
import warnings
import zipfile
from typing import Any, Dict, Iterator, List, Mapping, Sequence, Tuple

import numpy as np
import torch
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from ..version import __version__
from .atomic import atomic_file

__all__ = ["save_checkpoint", "load_checkpoint", "save_json", "checkpoint_header", "read_header",
           "preprocess_entry", "unwrap_state_dict", "CheckpointFileError", "check_torch_file",
           "FORMAT",
           "HEADER_KEYS", "STATE_DICT_KEYS"]

#: ``format`` entry of every checkpoint this package writes
FORMAT = "tfclip_torchreid.checkpoint/1"
#: the entries :func:`checkpoint_header` writes (``preprocess``: older files lack it), and
#: ``base``: where the frozen base of a parameter-efficient model comes from (``models/peft``)
HEADER_KEYS = ("format", "version", "arch", "model_cfg", "preprocess", "base")
#: entries that hold the state dict of a checkpoint, in the order they are looked for
STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict")
#: wrapper prefixes: DataParallel / DDP and ``torch.compile``
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def _plain(obj: Any) -> Any:
    """Convert numpy scalars/arrays nested in ``obj`` into weights-only-loadable values."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def save_checkpoint(state: dict, fpath: str) -> str:
    """Atomically write ``state`` to ``fpath`` (temp file + fsync + rename); returns ``fpath``."""
    fpath = osp.abspath(fpath)
    with atomic_file(fpath, "wb") as f:
        torch.save(_plain(state), f)
    return fpath


def save_json(obj: Any, fpath: str, indent: int | None = 2) -> str:
    """Atomically write ``obj`` as JSON to ``fpath`` (temp file in the same folder + rename), so
    a reader never sees half a file; returns ``fpath``.

    Example:
        >>> import tempfile, json
        >>> path = save_json({"mAP": 0.5}, os.path.join(tempfile.mkdtemp(), "results.json"))
        >>> json.load(open(path))
        {'mAP': 0.5}
    """
    with atomic_file(fpath, "w", fsync=False) as f:
        json.dump(obj, f, indent=indent)
    return fpath


class CheckpointFileError(ValueError):
    """A file that :func:`load_checkpoint` cannot load; the message names it, says what it is
    and what to do.

    Attributes:
        path: the file.
        kind: ``"empty"``, ``"html"``, ``"text"``, ``"truncated"``, ``"damaged"``,
            ``"torchscript"``, ``"objects"``, ``"legacy"``, ``"pickle"`` (a plain Python
            pickle), ``"zip"`` (a zip archive that is not a torch file) or ``"unknown"``.
    """

    def __init__(self, message: str, path: str, kind: str) -> None:
        super().__init__(message)
        self.path, self.kind = path, kind


#: the first bytes of a file written by torch.save before torch 1.6 (a pickled magic number)
_LEGACY_MAGIC = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19."
_AGAIN = ("Copy or download it again (a training run writes its checkpoints to "
          "<save_dir>/checkpoints/)")


def _is_text(head: bytes) -> bool:
    if b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as err:  # a multi-byte character cut at the end is fine
        return err.start >= len(head) - 3
    return True


def _refused_global(err: BaseException) -> str | None:
    """The global that a weights-only load refused (``torch.nn.modules.linear.Linear``)."""
    m = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
    return m.group(1) if m else None


def _zip_kind(path: str, size: int) -> Tuple[str, str, str]:
    if not zipfile.is_zipfile(path):
        return ("truncated", f"a truncated torch file: {size:,} bytes, and the end of the zip "
                "archive that torch.save writes (its central directory) is missing",
                f"The copy or download that wrote it stopped early. {_AGAIN}")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        return "damaged", f"a damaged torch file (zip: {err})", _AGAIN
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        return ("torchscript", "a TorchScript archive (torch.jit.save), not a checkpoint",
                "If it is OpenAI's CLIP (ViT-B-16.pt), pass it as the CLIP weights "
                "(model.pretrained PATH, build_tfclip(pretrained=PATH)); a model exported by "
                "tools/export.py is for deployment: load the checkpoint it was exported from")
    if not any(n.endswith("data.pkl") for n in names):
        return ("zip", f"a zip archive, not a torch file (it holds {names[:3]})",
                "Pass the .pth file written by torch.save")
    if bad is not None:
        return ("damaged", f"a damaged torch file: its part {bad} fails its checksum (CRC-32)",
                _AGAIN)
    return "", "", ""


def _kind_from_bytes(path: str) -> Tuple[str, str, str]:
    """``(kind, what, fix)`` of a file from its bytes alone (nothing is unpickled); kind ``""``
    for a complete torch zip archive (every part's CRC-32 intact), ``"legacy"`` for the format
    before torch 1.6, which only loading can check."""
    size = osp.getsize(path)
    with open(path, "rb") as f:
        head = f.read(4096)
    if size == 0:
        return ("empty", "empty (0 bytes)",
                f"The copy or download that wrote it did not finish. {_AGAIN}")
    if head.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html")):
        return ("html", "a web page (HTML), not a checkpoint",
                "A download saved the server's page (e.g. Google Drive's quota or sign-in "
                "page) instead of the file: download it again (in a browser: the file's "
                "download button)")
    if head.startswith(b"PK\x03\x04"):
        return _zip_kind(path, size)
    if head.startswith(_LEGACY_MAGIC):
        return ("legacy", f"a torch file of the format before torch 1.6 ({size:,} bytes), "
                "whose completeness only loading can check", "")
    if _is_text(head):
        first = head.decode("utf-8", "replace").strip().splitlines()[:1] or [""]
        return ("text", f"a text file, not a checkpoint (it starts with {first[0][:60]!r})",
                "Pass the .pth file written by torch.save")
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return ("pickle", f"a Python pickle (protocol {head[1]}), not a file written by "
                "torch.save", "Pass the .pth file written by torch.save")
    return ("unknown", f"not a torch file ({size:,} bytes starting with {head[:8].hex(' ')}): "
            "neither the zip archive torch.save writes nor a pickle",
            f"Pass the .pth file written by torch.save; {_AGAIN[0].lower()}{_AGAIN[1:]}")


def check_torch_file(path: str) -> None:
    """Check from its bytes alone (nothing is unpickled) that ``path`` is a complete file of
    torch.save's zip format: not empty, text or a web page, not truncated (the archive's central
    directory is there), every part intact (CRC-32), not a TorchScript archive. Reads the whole
    file.

    Raises:
        CheckpointFileError: what the file is and what to do (kind ``"legacy"`` for the format
            before torch 1.6, which cannot be checked without loading it).

    Example:
        >>> import tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "a.pth")
        >>> torch.save({"w": torch.ones(2)}, path)
        >>> check_torch_file(path)
        >>> with open(path, "r+b") as f:
        ...     _ = f.truncate(100)
        >>> check_torch_file(path)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        tfclip_torchreid.utils.checkpoint.CheckpointFileError: /.../a.pth is a truncated torch file...
    """
    kind, what, fix = _kind_from_bytes(path)
    if kind:
        raise CheckpointFileError(f"{path} is {what}." + (f" {fix}." if fix else ""), path, kind)


def _unreadable(path: str, err: BaseException) -> CheckpointFileError:
    """What the file that torch could not load is, and what to do (see
    :class:`CheckpointFileError`)."""
    kind, what, fix = _kind_from_bytes(path)
    refused = _refused_global(err)
    if kind == "legacy":
        what = (what.replace(", whose completeness only loading can check", "")
                + " that a weights-only load cannot read: it is truncated or holds Python "
                f"objects{f' ({refused})' if refused else ''}")
        fix = ("If you trust it, re-save it with this torch: torch.save(torch.load(PATH, "
               "weights_only=False), NEW_PATH); else copy or download it again")
    elif not kind and refused:
        kind, what, fix = ("objects", f"a pickle of Python objects ({refused}), which a safe "
                           "(weights_only) load refuses: a whole pickled model or other "
                           "objects, not tensors",
                           "If you trust it, save its weights as a state dict: "
                           "torch.save(torch.load(PATH, weights_only=False).state_dict(), "
                           "NEW_PATH)")
    elif not kind:
        kind, what, fix = ("unknown", f"not a checkpoint torch can read "
                           f"({type(err).__name__}: {str(err).splitlines()[0][:200]})", _AGAIN)
    return CheckpointFileError(f"{path} is {what}. {fix}.", path, kind)


@contextlib.contextmanager
def _quiet_load() -> Iterator[None]:
    """Without torch's warnings about files it then fails on (a TorchScript archive, a pickle of
    another protocol): the error says what the file is."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*looks like a TorchScript archive")
        warnings.filterwarnings("ignore", message="Detected pickle protocol")
        yield


def load_checkpoint(fpath: str, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``.

    Accepts our checkpoints, plain state dicts, and checkpoints written by torchreid's
    ``Engine.save_model`` (numpy ``rank1``), for which the needed numpy globals are allow-listed.

    Raises:
        FileNotFoundError: no such file.
        CheckpointFileError: the file cannot be loaded; the message says what it is (empty,
            truncated, text, ...) and what to do.

    Example:
        >>> import tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "empty.pth")
        >>> open(path, "wb").close()
        >>> load_checkpoint(path)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        tfclip_torchreid.utils.checkpoint.CheckpointFileError: /.../empty.pth is empty (0 bytes)...
    """
    if not osp.isfile(fpath):
        raise FileNotFoundError(f"checkpoint not found: {fpath}")
    try:
        with _quiet_load():
            return torch.load(fpath, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - re-raised below with context
        first = err
    if _refused_global(first) and osp.getsize(fpath) > 0:  # torchreid's numpy rank1
        safe: List[Any] = [np.dtype]
        core = getattr(np, "_core", None) or getattr(np, "core", None)
        scalar = getattr(getattr(core, "multiarray", None), "scalar", None)
        if scalar is not None:
            safe.append(scalar)
        safe += [getattr(np.dtypes, n) for n in ("Float32DType", "Float64DType")
                 if hasattr(np, "dtypes")]
        try:
            with torch.serialization.safe_globals(safe), _quiet_load():
                return torch.load(fpath, map_location=map_location, weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
            first = err
    raise _unreadable(fpath, first) from first


def preprocess_entry(image_size: Sequence[int], mean: Sequence[float],
                     std: Sequence[float]) -> Dict[str, List]:
    """The ``preprocess`` entry of a checkpoint: ``{"image_size": [H, W], "mean": [3],
    "std": [3]}`` (plain lists), checked.

    Example:
        >>> preprocess_entry((256, 128), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))["image_size"]
        [256, 128]
    """
    entry = {"image_size": [int(v) for v in image_size], "mean": [float(v) for v in mean],
             "std": [float(v) for v in std]}
    if len(entry["image_size"]) != 2 or min(entry["image_size"]) < 1:
        raise ValueError(f"preprocess image_size must be (H, W) > 0, got {image_size}")
    if len(entry["mean"]) != 3 or len(entry["std"]) != 3 or min(entry["std"]) <= 0:
        raise ValueError(f"preprocess needs 3 means and 3 positive stds, got mean={mean}, "
                         f"std={std}")
    return entry


def checkpoint_header(model: torch.nn.Module,
                      preprocess: Mapping[str, Sequence] | None = None) -> Dict[str, Any]:
    """What makes a file self-describing: format, package version, architecture, model config
    and, when given, the ``preprocess`` entry (:func:`preprocess_entry`: input size, mean and
    std of the frames the model was trained on)."""
    cfg = getattr(model, "cfg", None)
    header = {
        "format": FORMAT,
        "version": __version__,
        "arch": getattr(cfg, "arch", type(model).__name__),
        "model_cfg": cfg.to_dict() if hasattr(cfg, "to_dict") else {},
    }
    if preprocess is not None:
        header["preprocess"] = preprocess_entry(preprocess["image_size"], preprocess["mean"],
                                                preprocess["std"])
    return header


def read_header(checkpoint: Mapping[str, Any]) -> Dict[str, Any] | None:
    """``{"arch", "model_cfg", "version", "preprocess", "base"}`` of a self-describing
    checkpoint (``preprocess`` is None in files written before it was recorded, ``base`` in
    files of models trained in full), else None."""
    if not isinstance(checkpoint, Mapping) or checkpoint.get("format") != FORMAT:
        return None
    return {k: checkpoint.get(k) for k in ("arch", "model_cfg", "version", "preprocess", "base")}


def unwrap_state_dict(checkpoint: Mapping[str, Any]) -> Dict[str, Any]:
    """The state dict of a checkpoint: its ``state_dict`` / ``model`` / ``model_state_dict``
    entry (the first that is a dict) or the checkpoint itself, without the ``module.`` and
    ``_orig_mod.`` prefixes (a new dict; the tensors are shared).

    Example:
        >>> list(unwrap_state_dict({"state_dict": {"module.fc.weight": 0}, "epoch": 3}))
        ['fc.weight']
    """
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f"a checkpoint must be a dict, got {type(checkpoint).__name__}")
    state = checkpoint
    for key in STATE_DICT_KEYS:
        if isinstance(checkpoint.get(key), Mapping):
            state = checkpoint[key]
            break
    state = dict(state)
    for prefix in _WRAPPER_PREFIXES:
        consume_prefix_in_state_dict_if_present(state, prefix)
    return state
