"""Feature files: tracklet features with the index that says which tracklet each row is.

One format for every writer (``tools/embed.py`` through :mod:`tfclip_torchreid.embedding`, the
engine's ``test.save_features``) and every reader (:func:`~tfclip_torchreid.visualize.read_feature_set`,
``tools/visualize.py``):

* ``FILE.npy`` (N, D) float32 + ``FILE.json``, or one ``FILE.h5`` holding the datasets
  ``features``, ``pid``, ``camid``, ``num_frames`` and ``index`` (the JSON text);
* the index is ``{"root": DIR, "items": [{"name", "paths", "pid", "camid", "num_frames"}, ...],
  "meta": {...}}`` with frame paths relative to ``root``, one item per feature row.

Example:
    >>> import tempfile
    >>> t = Tracklet("a", ("/d/a/1.jpg", "/d/a/2.jpg"), 3, 1)
    >>> path = os.path.join(tempfile.mkdtemp(), "f.npy")
    >>> save_embeddings(path, np.ones((1, 4)), feature_index([t], "/d"))[0] == path
    True
    >>> feats, index = load_embeddings(path)
    >>> feats.shape, index["items"][0]["paths"]
    ((1, 4), ['a/1.jpg', 'a/2.jpg'])
"""

from __future__ import annotations

import json
import os
import os.path as osp
from typing import Any, Dict, List, NamedTuple, Sequence, Tuple

import numpy as np

__all__ = ["H5_EXTENSIONS", "Tracklet", "feature_index", "dataset_index", "save_embeddings",
           "load_embeddings"]

H5_EXTENSIONS = (".h5", ".hdf5")


class Tracklet(NamedTuple):
    """One input tracklet: ``name`` (its folder or image, relative to the input folder), its
    frame ``paths`` (sorted by file name), ``pid`` (-1 = unknown) and 0-based ``camid``."""

    name: str
    paths: Tuple[str, ...]
    pid: int
    camid: int


def feature_index(tracklets: Sequence[Tracklet], root: str,
                  meta: Dict[str, Any] | None = None) -> Dict[str, Any]:
    """The JSON index of embedded ``tracklets`` found under ``root`` (paths relative to it).

    Example:
        >>> t = Tracklet("a", ("/d/a/1.jpg", "/d/a/2.jpg"), 3, 1)
        >>> feature_index([t], "/d")["items"]
        [{'name': 'a', 'paths': ['a/1.jpg', 'a/2.jpg'], 'pid': 3, 'camid': 1, 'num_frames': 2}]
    """
    root = osp.abspath(root)
    items = [{"name": t.name, "paths": [osp.relpath(osp.abspath(p), root) for p in t.paths],
              "pid": int(t.pid), "camid": int(t.camid), "num_frames": len(t.paths)}
             for t in tracklets]
    return {"root": root, "items": items, "meta": dict(meta or {})}


def dataset_index(items: Sequence[Sequence[Any]], meta: Dict[str, Any] | None = None
                  ) -> Dict[str, Any]:
    """The index of a torchreid split (``(paths or path, pid, camid, ...)`` items): the root is
    the folder common to every item, each item named by its first frame relative to it.

    Example:
        >>> index = dataset_index([(("/d/1/a.jpg", "/d/1/b.jpg"), 1, 0), ("/d/2/c.jpg", 2, 1)])
        >>> index["root"], [it["name"] for it in index["items"]]
        ('/d', ['1/a.jpg', '2/c.jpg'])
    """
    paths = [(it[0],) if isinstance(it[0], str) else tuple(it[0]) for it in items]
    root = osp.commonpath([p[0] for p in paths])
    tracklets = [Tracklet(osp.relpath(p[0], root), p, int(it[1]), int(it[2]))
                 for p, it in zip(paths, items)]
    return feature_index(tracklets, root, meta)


def _npy_json_paths(path: str) -> Tuple[str, str]:
    stem, ext = osp.splitext(path)
    if ext not in (".npy", ".json"):
        stem = path
    return stem + ".npy", stem + ".json"


def save_embeddings(path: str, features: np.ndarray, index: Dict[str, Any]) -> List[str]:
    """Write ``features`` and their ``index``: ``.h5``/``.hdf5`` one file, else ``.npy`` +
    ``.json`` (``path`` with or without either extension). Returns the written files."""
    features = np.asarray(features, dtype=np.float32)
    items = index["items"]
    if features.ndim != 2 or len(features) != len(items):
        raise ValueError(f"features have shape {features.shape} but the index has {len(items)} "
                         "items; expected (num_items, dim)")
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if path.lower().endswith(H5_EXTENSIONS):
        import h5py

        with h5py.File(path, "w") as f:
            f.create_dataset("features", data=features)
            for key in ("pid", "camid", "num_frames"):
                f.create_dataset(key, data=np.array([it[key] for it in items], dtype=np.int64))
            f.create_dataset("index", data=json.dumps(index))
            f.attrs["root"] = index.get("root", "")
        return [path]
    npy, js = _npy_json_paths(path)
    np.save(npy, features)
    with open(js, "w") as f:
        json.dump(index, f, indent=1)
    return [npy, js]


def load_embeddings(path: str) -> Tuple[np.ndarray, Dict[str, Any]]:
    """``(features, index)`` from :func:`save_embeddings`'s files (``.h5`` or ``.npy``/``.json``).

    Pass them on to :func:`~tfclip_torchreid.visualize.read_feature_set` for absolute frame
    paths.
    """
    if path.lower().endswith(H5_EXTENSIONS):
        import h5py

        with h5py.File(path, "r") as f:
            return f["features"][()], json.loads(f["index"].asstr()[()])
    npy, js = _npy_json_paths(path)
    with open(js) as f:
        return np.load(npy), json.load(f)
