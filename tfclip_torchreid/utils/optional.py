"""Optional third-party modules of the extras, imported when first needed.

The package's base install does not pull in what only one feature needs: PyAV for the camera
videos (the ``video`` extra), onnxruntime for ONNX inference (``export``), ... A feature imports
such a module through :func:`import_optional`, which turns a missing module into an ImportError
that names the feature, the extra and the command that installs it.

Example:
    >>> import_optional("json", "video", "reading videos").__name__
    'json'
    >>> import_optional("no_such_module_xyz", "video", "reading videos")
    Traceback (most recent call last):
    ...
    ImportError: reading videos needs no_such_module_xyz (No module named 'no_such_module_xyz'): pip install "tfclip-torchreid[video]"
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["import_optional"]


def import_optional(name: str, extra: str, purpose: str,
                    distribution: str | None = None) -> ModuleType:
    """Module ``name``, or an ImportError saying that ``purpose`` needs it and how to install
    it (``pip install "tfclip-torchreid[<extra>]"``); ``distribution`` is its name on PyPI
    when that differs from the module's (``av``: ``av``, ``sklearn``: ``scikit-learn``)."""
    try:
        return importlib.import_module(name)
    except ImportError as err:
        dist = distribution or name.split(".")[0]
        raise ImportError(f"{purpose} needs {dist} ({err}): pip install "
                          f"\"tfclip-torchreid[{extra}]\"") from err
