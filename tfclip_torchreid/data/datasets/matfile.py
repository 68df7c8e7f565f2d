"""MATLAB files of the benchmarks: read for the checks, written (byte-stable) by the writers.

MARS' ``info/*.mat`` and iLIDS-VID's ``train_test_splits_ilidsvid.mat`` are MATLAB v5 files
(torchreid reads them with ``scipy.io.loadmat``); LS-VID's ``info_test.mat`` is MATLAB v7.3, an
HDF5 file (read with h5py by :mod:`.lsvid`). The writers stamp a fixed header text where scipy
would stamp the current time, so the same seed writes the same bytes.

Example:
    >>> load_array("/no/such/file.mat", "ls_set", "iLIDS-VID")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tfclip_torchreid.data.errors.DataValidationError: iLIDS-VID: cannot read /no/such/file.mat...
"""

from __future__ import annotations

from typing import Dict

import numpy as np

from ..errors import DataValidationError

__all__ = ["load_array", "load_int_array", "savemat", "write_matlab_v73"]


def load_array(path: str, key: str, title: str) -> np.ndarray:
    """Variable ``key`` of the MATLAB v5 file ``path``; a :class:`DataValidationError` naming
    the file if it cannot be read or lacks the variable."""
    from scipy.io import loadmat

    try:
        mat = loadmat(path)
    except NotImplementedError:
        raise DataValidationError(
            f"{title}: {path} is a MATLAB v7.3 (HDF5) file; torchreid reads it with "
            "scipy.io.loadmat, which cannot. Fix: re-save it as a v7 MAT-file (MATLAB "
            "`save(..., '-v7')`, or scipy.io.savemat) or re-download it.") from None
    except (OSError, ValueError, TypeError) as err:
        raise DataValidationError(f"{title}: cannot read {path} with scipy.io.loadmat "
                                  f"({type(err).__name__}: {err}). Fix: re-download it.") from None
    if key not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise DataValidationError(f"{title}: {path} has no variable '{key}' (found {found}); "
                                  "torchreid reads exactly this name. Fix: re-download the file.")
    return np.asarray(mat[key])


def load_int_array(path: str, key: str, title: str) -> np.ndarray:
    """Like :func:`load_array`, for arrays torchreid uses as indices and slice bounds (which
    must hold integers)."""
    arr = load_array(path, key, title)
    if not np.issubdtype(arr.dtype, np.integer):
        raise DataValidationError(
            f"{title}: '{key}' in {path} holds {arr.dtype} values; torchreid uses them as indices "
            "and slice bounds, which must be integers. Fix: save the array as integers "
            "(e.g. int32) or re-download the file.")
    return arr


def savemat(path: str, variables: Dict[str, np.ndarray]) -> None:
    """scipy's MATLAB v5 writer, with a fixed header text (scipy stamps the current time)."""
    from scipy.io import savemat as scipy_savemat

    scipy_savemat(path, variables)
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 5.0 MAT-file, written by tfclip_torchreid synthetic".ljust(116, b" "))


def write_matlab_v73(path: str, datasets: Dict[str, np.ndarray]) -> None:
    """A MATLAB v7.3 MAT-file: HDF5 with MATLAB's 512-byte header in the user block."""
    import h5py

    with h5py.File(path, "w", userblock_size=512) as fh:
        for name, arr in datasets.items():
            d = fh.create_dataset(name, data=arr)
            d.attrs["MATLAB_class"] = np.bytes_("double")
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: synthetic HDF5 schema 1.00 ."
    header = header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    with open(path, "r+b") as fh:
        fh.write(header.ljust(512, b"\x00"))
