"""The gallery index: ReID features in faiss, searched with the evaluation's distance and filters.

Distance: the evaluation ranks a gallery by the squared Euclidean distance between L2-normalised
features (:func:`~tfclip_torchreid.engine.evaluation.distance_matrix`: torchreid's
``|q|^2 + |g|^2 - 2 q.g``). The index searches the same distance: faiss's ``METRIC_L2`` (the same
formula) on features normalised here, on add and on query; for unit vectors it is
``2 - 2 cos(q, g)``. (L2 rather than inner product because PCA centres the data, which keeps
Euclidean distances and changes inner products.)

Kinds (:data:`INDEX_KINDS`):

* **exact** (:data:`EXACT`, faiss ``"Flat"``): every feature in memory as float32 (4 x dim
  bytes: 8 GB for 1M tracklets at 2048-d), compared by brute force.
* **compressed** (:data:`COMPRESSED` with :data:`DEFAULT_PARAMS`): faiss's ``PCAMatrix`` to 256
  dimensions, an inverted file (k-means cells, ``nprobe`` of them scanned per query) of 8-bit
  scalar-quantised codes (256 bytes per tracklet in memory), and the best ``rerank`` candidates
  re-scored exactly from the full features, kept as float16 on disk
  (:class:`~.store.FeatureStore`). Learned from a sample (:meth:`GalleryIndex.train`).
  ``tools/bench_search.py`` measured these choices; docs/search.md gives the figures.

Any faiss ``index_factory`` string works too, with faiss ``ParameterSpace`` settings plus our
``rerank=R`` in ``params`` (``"nprobe=64,rerank=50"``).

Order: ascending distance, equal distances in gallery order (the order items were added): the
order of :func:`~tfclip_torchreid.metrics.rank.rank_metrics` (a stable sort). faiss keeps the
lowest ids among tied candidates at the k-th place, and every result row is re-sorted by
(distance, id). faiss and torch compute the float32 distances with different BLAS libraries
(summation orders), so the exact index's ranking and the evaluation's can only differ between
gallery items whose distances to a query lie within float32 rounding (~1e-7) of each other.

Filters (torchreid's protocol): a query of known identity (pid >= 0) never gets gallery items
of the same identity seen by the same camera; queries with pid < 0 are not filtered and gallery
items with pid < 0 never match. A query whose (pid, camera) is shared by ``j`` gallery items
needs at most ``j`` results more, so one batched search for ``k + max j`` that then drops them
is exact: the top k of the filtered ranking (faiss's ``IDSelector`` needs one search per query,
since each query excludes other items; docs/search.md compares the two).

Files (:meth:`GalleryIndex.save`, :meth:`GalleryIndex.load`): one file, written atomically: a
JSON header (factory string, parameters, dim, each item's pid, camera and name), faiss's own
serialisation of the index, then the stored features of a re-ranking index.

Example:
    >>> rng = np.random.default_rng(0)
    >>> gallery = rng.standard_normal((6, 8)).astype(np.float32)
    >>> index = GalleryIndex(8)  # exact
    >>> index.add(gallery, pids=[1, 1, 2, 2, 3, 3], camids=[0, 1, 0, 1, 0, 1])
    >>> res = index.search(gallery[:1], k=3, q_pids=[1], q_camids=[0])
    >>> 0 in res.ids[0].tolist()  # the query's own tracklet: same pid and camera, left out
    False
"""

from __future__ import annotations

import json
import logging
import os
import os.path as osp
import struct
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any, Dict, Iterator, List, NamedTuple, Sequence, Tuple

import numpy as np

from ..metrics.rank import RankMetrics
from ..utils.atomic import atomic_file
from ..utils.feature_files import load_embeddings
from .store import FeatureStore

logger = logging.getLogger(__name__)

__all__ = ["INSTALL_HINT", "EXACT", "COMPRESSED", "DEFAULT_PARAMS", "INDEX_KINDS",
           "require_faiss", "factory_string", "SearchResult", "GalleryIndex", "build_index",
           "merge_results", "read_feature_file"]

INSTALL_HINT = 'pip install "tfclip-torchreid[search]"'
#: the exact index: float32 features, brute force
EXACT = "Flat"
#: the compressed index's faiss part (docs/search.md: the measurements behind it)
COMPRESSED = "PCA256,IVF4096,SQ8"
#: search settings of the named indices: faiss ``ParameterSpace`` names plus ``rerank``
DEFAULT_PARAMS = {EXACT: "", COMPRESSED: "nprobe=64,rerank=50"}
#: names accepted for the two indices (``tools/search.py build --index``)
INDEX_KINDS = {"exact": EXACT, "compressed": COMPRESSED}

_MAGIC = b"TFCLIP-REID-GALLERY-INDEX\n"
_FORMAT = 1
_ADD_CHUNK = 16384  # rows normalised and added at a time (bounded extra memory)
_WORK_BYTES = 32 * 2**20  # per-chunk memory of full rankings
_RERANK_BYTES = 4 * 2**20  # per-block memory of re-ranking (fits the CPU caches)


def require_faiss() -> ModuleType:
    """The ``faiss`` module, or an ImportError saying how to install it.

    Example:
        >>> require_faiss().__name__
        'faiss'
    """
    try:
        import faiss
    except ImportError as err:
        raise ImportError(
            f"tracklet search needs faiss, which is not installed: {INSTALL_HINT} "
            "(or pip install faiss-cpu)") from err
    return faiss


def factory_string(kind: str) -> str:
    """The faiss ``index_factory`` string of ``kind``: ``exact``, ``compressed`` (see
    :data:`INDEX_KINDS`) or a factory string, returned as is.

    Example:
        >>> factory_string("exact"), factory_string("IVF64,SQ8")
        ('Flat', 'IVF64,SQ8')
    """
    return INDEX_KINDS.get(kind, kind)


class SearchResult(NamedTuple):
    """Top-k results, one row per query, nearest first: gallery positions (``-1`` past the end
    of a short result) and squared Euclidean distances between the normalised features, the
    evaluation's distances (``inf`` past the end)."""

    ids: np.ndarray  # (Q, k) int64
    distances: np.ndarray  # (Q, k) float32

    @property
    def similarities(self) -> np.ndarray:
        """Cosine similarities, ``1 - distance / 2``."""
        return 1.0 - self.distances / 2.0


def _as_features(x: Any, dim: int | None, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array (num_items, dim), got shape {x.shape}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{what} have {x.shape[1]} dimensions, the index {dim}: embed them with "
                         "the model that built the index")
    if x.dtype.kind not in "fiu":
        raise ValueError(f"{what} must be real numbers, got dtype {x.dtype}")
    return x


def _normalised(x: np.ndarray, what: str) -> np.ndarray:
    """``x`` as float32 C-contiguous rows of unit length (zero rows stay zero); ``x`` itself
    when it already is, else a copy."""
    faiss = require_faiss()
    out = np.ascontiguousarray(x, dtype=np.float32)
    bad = ~np.isfinite(out).all(axis=1)
    if bad.any():
        raise ValueError(f"{what}: row {int(np.flatnonzero(bad)[0])} has NaN or inf values")
    norms = np.sqrt(np.einsum("ij,ij->i", out, out))
    if bool((np.abs(norms - 1) <= 1e-6).all()):
        return out
    if np.may_share_memory(out, x):
        out = out.copy()
    faiss.normalize_L2(out)
    return out


def _labels(values: Any, n: int, default: int, name: str) -> np.ndarray:
    if values is None:
        return np.full(n, default, dtype=np.int64)
    arr = np.asarray(values)
    if arr.shape != (n,):
        raise ValueError(f"{name} has shape {arr.shape}, expected ({n},): one label per row")
    if arr.size and arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and bool((arr == np.round(arr)).all()):
            arr = arr.astype(np.int64)
        else:
            raise ValueError(f"{name} must hold integer labels, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _keys(pids: np.ndarray, camids: np.ndarray) -> np.ndarray:
    """One int64 per (pid, camera) pair."""
    if camids.size and (camids.min() < 0 or camids.max() >= 2**20):
        raise ValueError("camera ids must lie in 0 .. 2**20 - 1")
    return (pids << 20) | camids


def _sort_rows(dist: np.ndarray, ids: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Rows ordered by ascending distance, ties by ascending id, missing results (-1) last."""
    missing = ids < 0
    dist = np.where(missing, np.inf, dist).astype(np.float32)
    order = np.lexsort((np.where(missing, np.iinfo(np.int64).max, ids), dist), axis=1)
    return np.take_along_axis(dist, order, axis=1), np.take_along_axis(ids, order, axis=1)


def _split_params(params: str) -> Tuple[str, int]:
    """``(faiss ParameterSpace string, rerank)`` of a params string."""
    faiss_params, rerank = [], 0
    for item in (p.strip() for p in params.split(",")):
        if item.startswith("rerank="):
            try:
                rerank = int(item.split("=", 1)[1])
            except ValueError:
                rerank = -1
            if rerank < 0:
                raise ValueError(f"rerank must be a number of candidates >= 0, got {item!r}")
        elif item:
            faiss_params.append(item)
    return ",".join(faiss_params), rerank


class GalleryIndex:
    """A faiss index of L2-normalised gallery features with each item's pid, camera and name.

    Args:
        dim: feature dimension.
        factory: ``"exact"``, ``"compressed"`` or a faiss ``index_factory`` string (built with
            the L2 metric).
        params: search settings: faiss ``ParameterSpace`` names (``nprobe=64``) and ``rerank=R``
            (re-score the best R candidates from the full features, kept on disk); None:
            :data:`DEFAULT_PARAMS` of the factory string.
        meta: free-form information saved with the index (sources, model, ...).

    Example:
        >>> index = GalleryIndex(4, "exact")
        >>> index.add(np.eye(4), pids=[0, 0, 1, 1], camids=[0, 1, 0, 1], names=list("abcd"))
        >>> res = index.search([[1.0, 0.1, 0.0, 0.0]], k=2)
        >>> [index.names[i] for i in res.ids[0]], res.distances.shape
        (['a', 'b'], (1, 2))
    """

    def __init__(self, dim: int, factory: str = EXACT, params: str | None = None,
                 meta: Dict[str, Any] | None = None) -> None:
        faiss = require_faiss()
        factory = factory_string(factory)
        try:
            index = faiss.index_factory(int(dim), factory, faiss.METRIC_L2)
        except RuntimeError as err:
            raise ValueError(f"faiss cannot build index {factory!r} at dim {dim}: "
                             f"{str(err).splitlines()[-1]}") from err
        ivf = faiss.try_extract_index_ivf(index)
        if ivf is not None and hasattr(faiss.downcast_index(ivf), "do_polysemous_training"):
            # polysemous codes serve only Hamming-filtered search, unused here; training them
            # took ~50 s of a PQ index's minute
            faiss.downcast_index(ivf).do_polysemous_training = False
        params = DEFAULT_PARAMS.get(factory, "") if params is None else params
        store = FeatureStore(int(dim)) if _split_params(params)[1] > 0 else None
        self._init(index, factory, params, meta, store)

    def _init(self, index: Any, factory: str, params: str, meta: Dict[str, Any] | None,
              store: FeatureStore | None) -> None:
        self.index = index
        self.factory = factory
        self.meta: Dict[str, Any] = dict(meta or {})
        self.store = store
        self.pids = np.empty(0, dtype=np.int64)
        self.camids = np.empty(0, dtype=np.int64)
        self.names: List[str] = []
        self._sorted_keys: np.ndarray | None = None
        self.set_params(params)

    # ------------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        """Feature dimension."""
        return int(self.index.d)

    @property
    def ntotal(self) -> int:
        """Number of gallery items."""
        return int(self.index.ntotal)

    @property
    def is_trained(self) -> bool:
        """False until a compressed index has learned its PCA, cells and codes (:meth:`train`)."""
        return bool(self.index.is_trained)

    def __len__(self) -> int:
        return self.ntotal

    def __repr__(self) -> str:
        params = f", {self.params}" if self.params else ""
        return f"GalleryIndex({self.factory!r}{params}, dim={self.dim}, items={self.ntotal})"

    def set_params(self, params: str) -> None:
        """Apply search settings (e.g. ``"nprobe=64,rerank=50"``, see the class notes)."""
        faiss_params, rerank = _split_params(params)
        if rerank and self.store is None:
            raise ValueError(f"index {self.factory!r} was built without its features, so it "
                             "cannot re-rank: build it with rerank in its params")
        if faiss_params:
            faiss = require_faiss()
            try:
                faiss.ParameterSpace().set_index_parameters(self.index, faiss_params)
            except RuntimeError as err:
                raise ValueError(f"index {self.factory!r} has no search parameter in "
                                 f"{faiss_params!r}: {str(err).splitlines()[-1]}") from err
        self.params = params
        self.rerank = rerank

    # ------------------------------------------------------------------ building
    def train(self, features: Any) -> None:
        """Learn a compressed index's PCA, IVF cells and codes from a sample of features (a
        no-op for the exact index). faiss wants >= 39 samples per IVF cell."""
        if self.is_trained:
            return
        x = _normalised(_as_features(features, self.dim, "training features"),
                        "training features")
        logger.info(f"training {self.factory} on {len(x)} features")
        self.index.train(x)

    def add(self, features: Any, pids: Any = None, camids: Any = None,
            names: Sequence[str] | None = None) -> None:
        """Append gallery items (their positions continue from :attr:`ntotal`).

        ``pids`` default to -1 (unknown: never filtered), ``camids`` to 0, ``names`` to "".
        """
        x = _as_features(features, self.dim, "gallery features")
        n = len(x)
        p = _labels(pids, n, -1, "pids")
        c = _labels(camids, n, 0, "camids")
        _keys(p, c)  # checks the camera range before anything is added
        if names is not None and len(names) != n:
            raise ValueError(f"names has {len(names)} entries, expected {n}")
        if not self.is_trained:
            raise ValueError(f"index {self.factory!r} is not trained: call train() on a sample "
                             "of features first (tools/search.py build does)")
        for s in range(0, n, _ADD_CHUNK):
            part = _normalised(x[s:s + _ADD_CHUNK], "gallery features")
            self.index.add(part)
            if self.store is not None:
                self.store.append(part)
        self.pids = np.concatenate([self.pids, p])
        self.camids = np.concatenate([self.camids, c])
        self.names += [str(v) for v in names] if names is not None else [""] * n
        self._sorted_keys = None

    # ------------------------------------------------------------------ searching
    def _junk_counts(self, q_pids: np.ndarray, q_camids: np.ndarray) -> np.ndarray:
        """Gallery items sharing each query's (pid, camera); 0 for unfiltered queries."""
        if self._sorted_keys is None:
            self._sorted_keys = np.sort(_keys(self.pids, self.camids))
        qk = _keys(q_pids, q_camids)
        counts = (np.searchsorted(self._sorted_keys, qk, side="right")
                  - np.searchsorted(self._sorted_keys, qk, side="left"))
        return np.where(q_pids >= 0, counts, 0)

    def _rescored(self, x: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Distances of the queries ``x`` to their candidates ``ids`` from the stored features,
        with the evaluation's formula ``|q|^2 + |g|^2 - 2 q.g``; blocks of queries small
        enough to stay in the CPU caches, on faiss's number of threads."""
        dist = np.full(ids.shape, np.inf, dtype=np.float32)
        step = max(1, _RERANK_BYTES // (4 * self.dim * max(1, ids.shape[1])))

        def block(s: int) -> None:
            cand = ids[s:s + step]
            g = self.store.gather(np.maximum(cand, 0).ravel()).reshape(*cand.shape, self.dim)
            q = x[s:s + step]
            d = ((q * q).sum(1)[:, None] + np.einsum("nrd,nrd->nr", g, g)
                 - 2 * np.einsum("nrd,nd->nr", g, q))
            dist[s:s + step] = np.where(cand >= 0, d, np.inf)

        threads = max(1, min(require_faiss().omp_get_max_threads(), -(-len(x) // step)))
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(block, range(0, len(x), step)))
        return dist

    def _ranked(self, x: np.ndarray, fetch: int) -> Tuple[np.ndarray, np.ndarray]:
        """``(distances, ids)`` of the ``fetch`` best candidates, re-scored when re-ranking."""
        dist, ids = self.index.search(x, fetch)
        if self.rerank:
            dist = self._rescored(x, ids)
        return _sort_rows(dist, ids)

    def search(self, queries: Any, k: int = 10, q_pids: Any = None, q_camids: Any = None
               ) -> SearchResult:
        """The ``k`` nearest gallery items of every query (see the module notes for the order
        and the filters). Without ``q_pids`` nothing is filtered.

        Example:
            >>> index = GalleryIndex(2)
            >>> index.add([[1, 0], [1, 0], [0, 1]], pids=[5, 5, 6], camids=[0, 1, 0])
            >>> index.search([[1, 0]], k=2).ids.tolist()  # a tie: gallery order
            [[0, 1]]
            >>> index.search([[1, 0]], k=2, q_pids=[5], q_camids=[0]).ids.tolist()
            [[1, 2]]
        """
        x = _normalised(_as_features(queries, self.dim, "query features"), "query features")
        if int(k) < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        k, nq = int(k), len(x)
        qp = qc = None
        extra = 0
        if q_pids is not None:
            if q_camids is None:
                raise ValueError("q_pids need q_camids: the filter leaves out the same identity "
                                 "seen by the same camera")
            qp = _labels(q_pids, nq, -1, "q_pids")
            qc = _labels(q_camids, nq, 0, "q_camids")
            extra = int(self._junk_counts(qp, qc).max()) if nq else 0
        fetch = min(max(k + extra, self.rerank), self.ntotal)
        if nq == 0 or fetch == 0:
            return SearchResult(np.full((nq, k), -1, dtype=np.int64),
                                np.full((nq, k), np.inf, dtype=np.float32))
        dist, ids = self._ranked(x, fetch)
        if qp is not None:
            safe = np.maximum(ids, 0)
            junk = ((ids >= 0) & (qp[:, None] >= 0) & (self.pids[safe] == qp[:, None])
                    & (self.camids[safe] == qc[:, None]))
            keep = np.argsort(junk, axis=1, kind="stable")  # kept columns first, in order
            dist = np.take_along_axis(dist, keep, axis=1)
            ids = np.take_along_axis(ids, keep, axis=1)
            dropped = np.take_along_axis(junk, keep, axis=1)
            ids = np.where(dropped, -1, ids)
            dist = np.where(dropped, np.inf, dist).astype(np.float32)
        if fetch < k:
            ids = np.pad(ids, ((0, 0), (0, k - fetch)), constant_values=-1)
            dist = np.pad(dist, ((0, 0), (0, k - fetch)), constant_values=np.inf)
        return SearchResult(np.ascontiguousarray(ids[:, :k]), np.ascontiguousarray(dist[:, :k]))

    def rankings(self, queries: Any, chunk_size: int | None = None
                 ) -> Iterator[Tuple[int, np.ndarray, np.ndarray]]:
        """Every gallery position of each query, nearest first and unfiltered, in chunks of
        queries: yields ``(first query row, distances, ids)``, both ``(n, ntotal)``. A
        compressed index ranks by its codes, scanning all of its cells, without re-ranking."""
        faiss = require_faiss()
        x = _normalised(_as_features(queries, self.dim, "query features"), "query features")
        g = self.ntotal
        step = int(chunk_size or max(1, 4 * _WORK_BYTES // (12 * max(g, 1))))
        ivf = faiss.try_extract_index_ivf(self.index)
        nprobe = ivf.nprobe if ivf is not None else None
        try:
            if ivf is not None:
                ivf.nprobe = ivf.nlist
            for s in range(0, len(x), step):
                dist, ids = _sort_rows(*self.index.search(x[s:s + step], g))
                if (ids < 0).any():
                    raise RuntimeError(f"index {self.factory!r} ranked fewer than its {g} items")
                yield s, dist, ids
        finally:
            if ivf is not None:
                ivf.nprobe = nprobe

    def evaluate(self, queries: Any, q_pids: Any, q_camids: Any, max_rank: int = 50,
                 chunk_size: int | None = None) -> RankMetrics:
        """CMC / mAP / mINP of the queries over :meth:`rankings`, under the protocol of
        :func:`~tfclip_torchreid.metrics.rank.rank_metrics` (same identity + same camera left
        out; queries without a true match, same pid on another camera, not counted). On the
        exact index this is the ranker's result on the index's distances; docs/search.md.

        Example:
            >>> index = GalleryIndex(2)
            >>> index.add([[1, 0], [0.9, 0.1], [0, 1]], pids=[1, 1, 2], camids=[0, 1, 1])
            >>> r = index.evaluate([[1, 0.05]], [1], [0], max_rank=3)
            >>> r.cmc.tolist(), r.mAP, r.num_valid
            ([1.0, 1.0, 1.0], 1.0, 1)
        """
        x = _as_features(queries, self.dim, "query features")
        nq, g = len(x), self.ntotal
        qp = _labels(q_pids, nq, -1, "q_pids")
        qc = _labels(q_camids, nq, 0, "q_camids")
        if nq == 0 or g == 0:
            raise ValueError(f"need queries and gallery items, got {nq} and {g}")
        max_rank = min(int(max_rank), g)
        first = np.full(nq, -1, dtype=np.int64)
        ap = np.zeros(nq)
        inp = np.zeros(nq)
        for s, _, ids in self.rankings(x, chunk_size):
            for row, order in enumerate(ids):
                qi = s + row
                same = self.pids[order] == qp[qi]
                kept = ~same | (self.camids[order] != qc[qi])  # junk: same pid and camera
                hits = np.flatnonzero(same[kept])  # kept-list ranks of the true matches
                if hits.size:
                    first[qi] = hits[0]
                    ap[qi] = np.mean(np.arange(1, hits.size + 1) / (hits + 1.0))
                    inp[qi] = hits.size / (hits[-1] + 1.0)
        valid = first >= 0
        num_valid = int(valid.sum())
        if num_valid == 0:
            raise ValueError(f"none of the {nq} queries has a true match in the gallery (same "
                             "pid, other camera)")
        counts = np.bincount(np.minimum(first[valid], max_rank), minlength=max_rank + 1)
        cmc = np.cumsum(counts[:max_rank]).astype(np.float32) / np.float32(num_valid)
        return RankMetrics(cmc, float(np.mean(ap[valid])), float(np.mean(inp[valid])), nq,
                           num_valid)

    # ------------------------------------------------------------------ files
    def _header(self) -> Dict[str, Any]:
        faiss = require_faiss()
        return {"format": _FORMAT, "factory": self.factory, "params": self.params,
                "dim": self.dim, "ntotal": self.ntotal, "faiss": faiss.__version__,
                "stored_features": self.store is not None, "meta": self.meta,
                "pids": self.pids.tolist(), "camids": self.camids.tolist(), "names": self.names}

    def save(self, path: str) -> str:
        """Write the index, its items' metadata and stored features to ``path`` atomically (a
        temporary file in the same folder, fsync, rename): readers see the old file or the new
        one."""
        faiss = require_faiss()
        path = osp.abspath(path)
        header = json.dumps(self._header()).encode()
        with atomic_file(path, "wb") as f:
            f.write(_MAGIC + struct.pack("<Q", len(header)) + header)
            at = f.tell()
            f.write(struct.pack("<Q", 0))  # the index's length, filled in below
            faiss.write_index(self.index, faiss.PyCallbackIOWriter(f.write))
            end = f.tell()
            f.seek(at)
            f.write(struct.pack("<Q", end - at - 8))
            f.seek(end)
            if self.store is not None:
                self.store.write_to(f)
        return path

    @classmethod
    def load(cls, path: str) -> GalleryIndex:
        """The index :meth:`save` wrote to ``path`` (stored features stay on disk)."""
        faiss = require_faiss()
        if not osp.isfile(path):
            raise FileNotFoundError(f"gallery index {path} does not exist: build it with "
                                    "tools/search.py build")
        f = open(path, "rb")
        try:
            if f.read(len(_MAGIC)) != _MAGIC:
                raise ValueError(f"{path} is not a gallery index (written by GalleryIndex.save "
                                 "or tools/search.py build)")
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size).decode())
            if header.get("format") != _FORMAT:
                raise ValueError(f"{path}: index format {header.get('format')}, this version "
                                 f"reads {_FORMAT}")
            (size,) = struct.unpack("<Q", f.read(8))
            start, left = f.tell(), [size]

            def read(n: int) -> bytes:
                block = f.read(min(n, left[0]))
                left[0] -= len(block)
                return block

            index = faiss.read_index(faiss.PyCallbackIOReader(read))
            store = None
            if header["stored_features"]:
                store = FeatureStore(header["dim"])
                store.attach(f, start + size, header["ntotal"])
                end = start + size + header["ntotal"] * store.row_bytes
                if os.fstat(f.fileno()).st_size < end:
                    raise ValueError(f"{path} is truncated: its stored features end early")
            else:
                f.close()
        except BaseException:
            f.close()
            raise
        out = cls.__new__(cls)
        out._init(index, header["factory"], header["params"], header["meta"], store)
        out.pids = np.asarray(header["pids"], dtype=np.int64)
        out.camids = np.asarray(header["camids"], dtype=np.int64)
        out.names = list(header["names"])
        if not out.ntotal == header["ntotal"] == len(out.pids) == len(out.names):
            raise ValueError(f"{path} is inconsistent: {out.ntotal} indexed items, "
                             f"{len(out.pids)} labels: write it again")
        return out


def merge_results(results: Sequence[SearchResult], sizes: Sequence[int], k: int | None = None
                  ) -> SearchResult:
    """One result from the results of the same queries on several shards of a gallery.

    ``sizes`` are the shards' item counts, in gallery order (shard ``i``'s ids are shifted by
    the items before it). Filtered top-k lists merge exactly: the best ``k`` of the union of
    each shard's best ``k`` are the best ``k`` of the whole gallery, ties in gallery order.

    Example:
        >>> a = SearchResult(np.array([[1, 0]]), np.array([[0.1, 0.5]], dtype=np.float32))
        >>> b = SearchResult(np.array([[0, -1]]), np.array([[0.3, np.inf]], dtype=np.float32))
        >>> merge_results([a, b], sizes=[2, 4]).ids.tolist()
        [[1, 2]]
    """
    if len(results) != len(sizes):
        raise ValueError(f"{len(results)} results but {len(sizes)} shard sizes")
    k = int(k or results[0].ids.shape[1])
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    ids = np.concatenate([np.where(r.ids >= 0, r.ids + o, -1) for r, o in zip(results, offsets)],
                         axis=1)
    dist, ids = _sort_rows(np.concatenate([r.distances for r in results], axis=1), ids)
    return SearchResult(np.ascontiguousarray(ids[:, :k]), np.ascontiguousarray(dist[:, :k]))


def read_feature_file(path: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray, List[str],
                                          Dict[str, Any]]:
    """``(features, pids, camids, names, source)`` of a feature file (``tools/embed.py``,
    ``test.save_features``: :mod:`~tfclip_torchreid.utils.feature_files`); ``source`` records
    the file, its root and its item count for an index's ``meta``."""
    feats, index = load_embeddings(path)
    items = index["items"]
    pids = np.array([int(it["pid"]) for it in items], dtype=np.int64)
    camids = np.array([int(it["camid"]) for it in items], dtype=np.int64)
    names = [str(it["name"]) for it in items]
    source = {"file": osp.abspath(path), "root": index.get("root", ""), "items": len(items),
              "meta": index.get("meta", {})}
    return feats, pids, camids, names, source


def build_index(features: Any, pids: Any = None, camids: Any = None,
                names: Sequence[str] | None = None, factory: str = EXACT,
                params: str | None = None, train_size: int = 65536, seed: int = 0,
                meta: Dict[str, Any] | None = None) -> GalleryIndex:
    """A :class:`GalleryIndex` of ``features``: a compressed index is first trained on a random
    sample of at most ``train_size`` of them (seeded), then every row is added in order.

    Example:
        >>> feats = np.random.default_rng(0).standard_normal((50, 16)).astype(np.float32)
        >>> build_index(feats, factory="IVF4,Flat", params="nprobe=4")
        GalleryIndex('IVF4,Flat', nprobe=4, dim=16, items=50)
    """
    x = _as_features(features, None, "gallery features")
    index = GalleryIndex(x.shape[1], factory, params, meta)
    if not index.is_trained:
        n = min(len(x), int(train_size))
        rows = np.sort(np.random.default_rng(seed).choice(len(x), size=n, replace=False))
        index.train(x[rows])
    index.add(x, pids, camids, names)
    return index
