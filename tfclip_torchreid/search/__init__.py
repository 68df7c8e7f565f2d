"""Tracklet search on faiss: gallery indices of ReID features with the evaluation's filters.

:class:`GalleryIndex` (:mod:`.index`) holds the features of a gallery in a faiss index, exact or
compressed, with each item's identity, camera and name; it adds incrementally, saves and loads
atomically, and answers top-k queries with torchreid's protocol (the same identity seen by the
same camera left out). :class:`FeatureStore` (:mod:`.store`) keeps the full features of a
compressed index on disk to re-rank its candidates. ``tools/search.py`` builds, extends and
queries indices from feature files (``tools/embed.py``, ``test.save_features``);
``tools/bench_search.py`` measures them; docs/search.md explains the choices and how to shard
an index over machines.

faiss is an optional dependency: ``pip install "tfclip-torchreid[search]"`` (faiss-cpu),
imported when an index is made or loaded. This subpackage is application level: nothing below
the tools imports it.

Example:
    >>> import numpy as np
    >>> index = GalleryIndex(4)
    >>> index.add(np.eye(4), pids=[1, 1, 2, 2], camids=[0, 1, 0, 1])
    >>> index.search(np.eye(4)[:1], k=2, q_pids=[1], q_camids=[0]).ids.tolist()
    [[1, 2]]
"""

from .index import (
    COMPRESSED,
    DEFAULT_PARAMS,
    EXACT,
    INDEX_KINDS,
    INSTALL_HINT,
    GalleryIndex,
    SearchResult,
    build_index,
    factory_string,
    merge_results,
    read_feature_file,
    require_faiss,
)
from .store import FeatureStore

__all__ = ["COMPRESSED", "DEFAULT_PARAMS", "EXACT", "INDEX_KINDS", "INSTALL_HINT",
           "GalleryIndex", "SearchResult", "build_index", "factory_string", "merge_results",
           "read_feature_file", "require_faiss", "FeatureStore"]
