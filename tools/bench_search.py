"""Benchmark tracklet search (tfclip_torchreid.search) on a synthetic identity-clustered gallery.

Features (:class:`SyntheticReID`): each identity belongs to one of 300 appearance types (people
who dress alike: the hard negatives), each camera adds a bias and each tracklet its own view, all
in a ``dim / 4``-dimensional subspace with a power-law spectrum (component j carries variance
~ 1/j) mapped into ``dim`` dimensions by a random orthonormal basis, plus a mean vector shared by
every feature and isotropic noise; then L2-normalised. Variance shares (:data:`SHARES`): mean
0.30, type 0.20, identity 0.18, camera 0.05, view 0.17, noise 0.10: two tracklets of one identity
have cosine ~0.69, of two identities ~0.31, and at MARS size (10k tracklets) the evaluation gives
mAP ~0.91 and rank-1 ~0.99 (TF-CLIP on MARS: 89.4 / 93.0). Identities have ``1 + Poisson(15)``
tracklets (16 on average, as in MARS), cameras are uniform over 6. Queries are new views of
gallery identities on random cameras. The JSON's ``data`` reports the measured cosines.

The gallery is generated and added in chunks (bounded memory); a compressed index is first
trained on ``--train-size`` random gallery items. The ground truth of ``recall_at_10`` (the
fraction of the exact top 10 found in the top 10) is an exact search written here in numpy over
the same chunks, with the same filter (same identity + same camera left out). ``queries_per_s``:
all queries in one batched ``GalleryIndex.search`` (k = 10, filtered), the best of 3
(``queries_per_cpu_s``: per second of CPU time of all the process's threads, which other jobs on
the machine inflate less than the wall-clock time; ``load_avg`` says how busy the machine was).
``index_gb``: faiss's serialisation of the index, what it holds in memory (the metadata is
another 16 bytes per item); ``store_gb``: the features kept on disk for re-ranking.
``peak_rss_gb``: the process's peak resident memory (importing torch and the package is ~0.8 GB
of it). ``--exact`` benchmarks the exact index and adds ``exact_equal``: its full-ranking CMC and
mAP (:meth:`~tfclip_torchreid.search.GalleryIndex.evaluate`) equal :func:`rank_metrics` on the
index's distances (CMC identical, mAP and mINP within 1e-12), and ``evaluation``: the same
comparison with the evaluation's own distances (torchreid's, which differ by float32 rounding:
``distance_max_diff``). It holds a queries x gallery distance matrix: use few ``--queries`` at
large sizes.

The last line printed is one JSON object.

Examples:
    python tools/bench_search.py --gallery 1000000 --json
    python tools/bench_search.py --gallery 200000 --queries 100 --exact --json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from typing import Any, Dict, Iterator, Tuple

import numpy as np
import torch

from tfclip_torchreid.engine.evaluation import distance_matrix
from tfclip_torchreid.metrics.rank import rank_metrics
from tfclip_torchreid.search import (
    EXACT,
    GalleryIndex,
    factory_string,
    require_faiss,
)

#: variance shares of the synthetic features' parts (see the module notes)
SHARES = {"mean": 0.30, "type": 0.20, "identity": 0.18, "camera": 0.05, "view": 0.17,
          "noise": 0.10}
TYPES = 300  # appearance types: identities of one type are each other's hard negatives
CHUNK = 8192  # gallery items generated at a time
_ID_BLOCK = 1024  # identities whose latents are drawn together


class SyntheticReID:
    """An identity-clustered gallery of ``num_gallery`` features (see the module notes).

    Item ``i`` is the same on every call (chunks are seeded by their position).

    Example:
        >>> gen = SyntheticReID(100, dim=64, seed=0)
        >>> feats, pids, camids = gen.chunk(0, 100)
        >>> feats.shape, bool(np.allclose(np.linalg.norm(feats, axis=1), 1, atol=1e-5))
        ((100, 64), True)
        >>> bool((gen.chunk(40, 60)[0] == feats[40:60]).all())
        True
    """

    def __init__(self, num_gallery: int, dim: int = 2048, seed: int = 0, views: float = 16.0,
                 cameras: int = 6) -> None:
        self.num_gallery, self.dim, self.seed = int(num_gallery), int(dim), int(seed)
        self.cameras = int(cameras)
        self.rank = max(2, self.dim // 4)
        rng = np.random.default_rng([self.seed, 0])
        sizes = []
        while sum(sizes) < self.num_gallery:
            sizes += (1 + rng.poisson(views - 1, size=1024)).tolist()
        self.starts = np.concatenate([[0], np.cumsum(sizes)])  # identity i: items starts[i]..
        self.num_ids = int(np.searchsorted(self.starts, self.num_gallery, side="left"))
        weight = 1.0 / np.arange(1, self.rank + 1)
        self.spectrum = np.sqrt(weight / weight.sum()).astype(np.float32)
        basis, _ = np.linalg.qr(rng.standard_normal((self.dim, self.rank)))
        self.basis = np.ascontiguousarray(basis.T, dtype=np.float32)  # (rank, dim), orthonormal
        mean = rng.standard_normal(self.dim)
        self.mean = (mean / np.linalg.norm(mean) * np.sqrt(SHARES["mean"])).astype(np.float32)
        self.camera_latent = self._latent(rng, self.cameras, "camera")
        self.type_latent = self._latent(rng, TYPES, "type")
        self._block: Tuple[int, np.ndarray] | None = None

    def _latent(self, rng: np.random.Generator, n: int, part: str) -> np.ndarray:
        scale = self.spectrum * np.float32(np.sqrt(SHARES[part]))
        return rng.standard_normal((n, self.rank), dtype=np.float32) * scale

    def _identity_latent(self, pids: np.ndarray) -> np.ndarray:
        out = np.empty((len(pids), self.rank), dtype=np.float32)
        for block in np.unique(pids // _ID_BLOCK):
            if self._block is None or self._block[0] != block:
                rng = np.random.default_rng([self.seed, 1, int(block)])
                types = rng.integers(0, len(self.type_latent), size=_ID_BLOCK)
                self._block = (int(block), self._latent(rng, _ID_BLOCK, "identity")
                               + self.type_latent[types])
            rows = pids // _ID_BLOCK == block
            out[rows] = self._block[1][pids[rows] % _ID_BLOCK]
        return out

    def _features(self, rng: np.random.Generator, pids: np.ndarray, camids: np.ndarray
                  ) -> np.ndarray:
        latent = self._identity_latent(pids)
        latent += self.camera_latent[camids]
        latent += self._latent(rng, len(pids), "view")
        x = latent @ self.basis
        x += self.mean
        noise = rng.standard_normal(x.shape, dtype=np.float32)
        noise *= np.float32(np.sqrt(SHARES["noise"] / self.dim))
        x += noise
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x

    def pids_of(self, start: int, stop: int) -> np.ndarray:
        """Identity of gallery items ``start .. stop - 1``."""
        return np.searchsorted(self.starts, np.arange(start, stop), side="right") - 1

    def chunk(self, start: int, stop: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(features, pids, camids)`` of gallery items ``start .. stop - 1``."""
        parts = []
        for c in range(start // CHUNK, (stop - 1) // CHUNK + 1):
            lo, hi = c * CHUNK, min((c + 1) * CHUNK, self.num_gallery)
            rng = np.random.default_rng([self.seed, 2, c])
            pids = self.pids_of(lo, hi)
            camids = rng.integers(0, self.cameras, size=hi - lo)
            feats = self._features(rng, pids, camids)
            a, b = max(start, lo) - lo, min(stop, hi) - lo
            parts.append((feats[a:b], pids[a:b], camids[a:b]))
        return tuple(np.concatenate(p) for p in zip(*parts))  # type: ignore[return-value]

    def chunks(self) -> Iterator[Tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
        """``(start, features, pids, camids)`` of the whole gallery, chunk by chunk."""
        for start in range(0, self.num_gallery, CHUNK):
            yield (start, *self.chunk(start, min(start + CHUNK, self.num_gallery)))

    def training_sample(self, size: int) -> np.ndarray:
        """Features of ``size`` random gallery items, drawn from 4x as many whole chunks (at
        most all of them) as ``size`` fills, a quarter of each."""
        size = min(int(size), self.num_gallery)
        num_chunks = -(-self.num_gallery // CHUNK)
        rng = np.random.default_rng([self.seed, 3])
        picked = np.sort(rng.choice(num_chunks, min(num_chunks, 4 * -(-size // CHUNK)),
                                    replace=False))
        per_chunk = -(-size // len(picked))
        out = np.empty((size, self.dim), dtype=np.float32)
        row = 0
        for c in picked:  # filled chunk by chunk: no second copy of the sample
            feats = self.chunk(c * CHUNK, min((c + 1) * CHUNK, self.num_gallery))[0]
            take = min(per_chunk, len(feats), size - row)
            out[row:row + take] = feats[np.sort(rng.choice(len(feats), take, replace=False))]
            row += take
        return out[:row]

    def queries(self, num: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(features, pids, camids)`` of ``num`` new views of random gallery identities."""
        rng = np.random.default_rng([self.seed, 4])
        pids = rng.integers(0, self.num_ids, size=num)
        camids = rng.integers(0, self.cameras, size=num)
        return self._features(rng, pids, camids), pids, camids


class ExactTopK:
    """The filtered exact top-k of the queries, merged chunk by chunk (numpy matmul)."""

    def __init__(self, queries: np.ndarray, q_pids: np.ndarray, q_camids: np.ndarray, k: int
                 ) -> None:
        faiss = require_faiss()
        self.q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        self.q_pids, self.q_camids = q_pids, q_camids
        self.q_sq = (self.q * self.q).sum(axis=1)
        self.heap = faiss.ResultHeap(len(queries), k)
        self.same_id = np.zeros(2)  # sum and count of same-identity cosines
        self.other_id = np.zeros(2)

    def add(self, start: int, feats: np.ndarray, pids: np.ndarray, camids: np.ndarray) -> None:
        g = feats / np.linalg.norm(feats, axis=1, keepdims=True)
        scores = self.q @ g.T
        same = self.q_pids[:, None] == pids[None, :]
        self.same_id += (scores[same].sum(), same.sum())
        self.other_id += (scores[~same].sum(), (~same).sum())
        dist = (self.q_sq[:, None] + (g * g).sum(axis=1)[None, :]) - 2 * scores
        dist[same & (self.q_camids[:, None] == camids[None, :])] = np.inf
        ids = np.broadcast_to(np.arange(start, start + len(g), dtype=np.int64), dist.shape)
        self.heap.add_result(np.ascontiguousarray(dist), np.ascontiguousarray(ids))

    def result(self) -> Tuple[np.ndarray, np.ndarray]:
        self.heap.finalize()
        return self.heap.D, self.heap.I


def _serialized_bytes(index: Any) -> int:
    faiss = require_faiss()
    total = [0]

    def count(buf: bytes) -> int:
        total[0] += len(buf)
        return len(buf)

    faiss.write_index(index, faiss.PyCallbackIOWriter(count))
    return total[0]


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def recall_at(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Mean fraction of each query's true top-k found in its returned top-k.

    Example:
        >>> recall_at(np.array([[1, 2, 3]]), np.array([[3, 2, 9]]), 3)
        0.6666666666666666
    """
    hits = [len(set(f[:k].tolist()) & set(t[:k].tolist()) - {-1}) for f, t in zip(found, truth)]
    sizes = [max(1, int((t[:k] >= 0).sum())) for t in truth]
    return float(np.mean(np.array(hits) / np.array(sizes)))


def _metrics_equal(a: Any, b: Any) -> bool:
    return (a.num_valid == b.num_valid and np.array_equal(a.cmc, b.cmc)
            and abs(a.mAP - b.mAP) <= 1e-12 and abs(a.mINP - b.mINP) <= 1e-12)


def run(gallery: int, queries: int = 1000, dim: int = 2048, exact: bool = False,
        index: str = "compressed", params: str | None = None, train_size: int = 65536,
        k: int = 10, seed: int = 0) -> Dict[str, Any]:
    """Build, query and measure one index; returns the JSON's fields."""
    factory = EXACT if exact else factory_string(index)
    gen = SyntheticReID(gallery, dim, seed)
    qf, qp, qc = gen.queries(queries)
    idx = GalleryIndex(dim, factory, params)
    truth = ExactTopK(qf, qp, qc, k)
    distmat = np.empty((queries, gallery), dtype=np.float32) if exact else None
    g_pids = np.empty(gallery, dtype=np.int64)
    g_camids = np.empty(gallery, dtype=np.int64)
    build_s = 0.0
    if not idx.is_trained:
        sample = gen.training_sample(train_size)
        start = time.perf_counter()
        idx.train(sample)
        build_s += time.perf_counter() - start
        del sample
    for start_row, feats, pids, camids in gen.chunks():
        start = time.perf_counter()
        idx.add(feats, pids, camids)
        build_s += time.perf_counter() - start
        truth.add(start_row, feats, pids, camids)
        g_pids[start_row:start_row + len(feats)] = pids
        g_camids[start_row:start_row + len(feats)] = camids
        if distmat is not None:
            distmat[:, start_row:start_row + len(feats)] = distance_matrix(
                torch.from_numpy(qf), torch.from_numpy(feats), normalize=True)
    true_scores, true_ids = truth.result()
    times, cpu = [], []
    for _ in range(3):
        start, start_cpu = time.perf_counter(), time.process_time()
        res = idx.search(qf, k, qp, qc)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    out: Dict[str, Any] = {
        "gallery": gallery, "dim": dim, "index": factory, "params": idx.params,
        "queries": queries, "build_s": round(build_s, 2),
        "index_gb": round(_serialized_bytes(idx.index) / 2**30, 4),
        "store_gb": round((idx.store.rows * idx.store.row_bytes if idx.store else 0) / 2**30, 4),
        "queries_per_s": round(queries / min(times), 1),
        "queries_per_cpu_s": round(queries / min(cpu), 1),
        "recall_at_10": round(recall_at(res.ids, true_ids, 10), 4),
        "data": {"identities": gen.num_ids,
                 "same_id_cos": round(truth.same_id[0] / max(truth.same_id[1], 1), 3),
                 "other_id_cos": round(truth.other_id[0] / max(truth.other_id[1], 1), 3)},
        "threads": require_faiss().omp_get_max_threads(),
        "load_avg": [round(v, 2) for v in os.getloadavg()],
    }
    if distmat is not None:
        start = time.perf_counter()
        ours = idx.evaluate(qf, qp, qc)
        out["evaluate_s"] = round(time.perf_counter() - start, 2)
        own = np.empty_like(distmat)  # the index's own distances, for the ranker
        for row, dist, ids in idx.rankings(qf):
            np.put_along_axis(own[row:row + len(ids)], ids, dist, axis=1)
        out["exact_equal"] = _metrics_equal(ours, rank_metrics(own, qp, g_pids, qc, g_camids))
        ref = rank_metrics(distmat, qp, g_pids, qc, g_camids)
        out["evaluation"] = {"cmc_equal": bool(np.array_equal(ours.cmc, ref.cmc)),
                             "mAP_diff": float(ours.mAP - ref.mAP), "mAP": ref.mAP,
                             "distance_max_diff": float(np.abs(own - distmat).max())}
        del own
    out["peak_rss_gb"] = round(_peak_rss_gb(), 3)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--gallery", type=int, required=True, help="gallery tracklets")
    p.add_argument("--queries", type=int, default=1000, help="query tracklets")
    p.add_argument("--dim", type=int, default=2048, help="feature dimension (TF-CLIP: 2048)")
    p.add_argument("--exact", action="store_true",
                   help="benchmark the exact index and check it against the ranker")
    p.add_argument("--index", default="compressed",
                   help="exact, compressed or a faiss index_factory string")
    p.add_argument("--params", default=None, help="faiss search parameters (nprobe=32,...)")
    p.add_argument("--train-size", type=int, default=65536,
                   help="gallery items a compressed index is trained on")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print only the JSON line")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = run(args.gallery, args.queries, args.dim, args.exact, args.index, args.params,
              args.train_size, seed=args.seed)
    if not args.json:
        for key, value in out.items():
            print(f"{key:>15}: {value}")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    from tfclip_torchreid import cli

    sys.exit(cli.run(main))
