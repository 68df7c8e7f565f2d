"""Fast CMC / mAP / mINP evaluation with torchreid's market1501 protocol.

Protocol (torchreid ``eval_market1501``; TF-CLIP's ``utils/metrics.py``; docs/released_vs_paper.md#evaluation): for
each query, gallery items with the same pid *and* the same camera are removed ("junk"); the
query is skipped when no true match (same pid, other camera) is left. Over the valid queries:

* CMC@k = fraction whose first true match is within the top k of the kept ranking;
* AP = mean over the true matches of precision@(rank of the match);
* INP = |true matches| / (rank of the hardest true match) (Ye et al., "Deep Learning for
  Person Re-identification: A Survey and Outlook", TPAMI 2021), averaged into mINP.

Algorithm: the ranking is never sorted. AP, CMC and INP only need the kept-list rank of each
true match, which is the number of kept gallery items ranked before it. For a chunk of queries
the true-match distances are sorted (a handful per query), every gallery distance is located
among them with one batched ``torch.searchsorted`` and the counts come from one ``bincount``:
O(G log P) per query instead of O(G log G), vectorised and multi-threaded, and exact (the
same comparisons as a sort). Junk corrections are pairwise within the query's identity group.
Queries are processed in chunks sized from a memory budget, so LS-VID (3.5k x 11k) and
MSMT17-sized (11.7k x 82k) problems run in bounded memory. numpy inputs are wrapped with
``torch.from_numpy`` (no copy); tensors are evaluated on their own device (CPU or CUDA).
On CPU the work runs on :data:`CPU_NUM_THREADS` torch threads (1 by default; torch's setting is
restored afterwards): one thread takes ~0.2 s at MARS size, while torch's OpenMP threads gained
at most 1.5x on an idle 2-core machine and were 4-9x *slower* whenever other processes kept the
cores busy. Set it to None (torch's thread count) on a dedicated many-core machine.

Ties: the ranking is the *stable* ascending order of each distance row (equal distances are
ranked by gallery index), i.e. ``np.argsort(row, kind="stable")``. torchreid's Python ranker
uses ``np.argsort``'s default (unstable) quicksort, so on rows where a true match has exactly
the same distance as a kept non-match, its CMC/mAP may differ from ours by that tie's order;
without such ties (the usual case for float features) the CMC is identical and the mAP agrees
to ~1e-16. Ties among true matches, or with junk items, never change any metric.

Small galleries: the CMC has ``min(max_rank, num_gallery)`` entries, as torchreid intends.
torchreid's Python ranker crashes there when junk removal shortens some kept lists, and its
Cython ranker returns a stale, non-monotone tail; here a query whose kept list is shorter than
k counts as matched at k (it has a match, and all of its kept list is within the top k), so
the CMC is monotone and ends at 1.

``use_metric_cuhk03=True`` (single-gallery-shot CUHK03 classic protocol, random sampling) is
delegated to torchreid's implementation through :mod:`tfclip_torchreid.compat`; its mINP, when
requested, uses the standard protocol above (torchreid's cuhk03 AP also uses all kept items).
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple, Tuple, Union

import numpy as np
import torch

from .. import compat

__all__ = ["evaluate_rank", "rank_metrics", "RankMetrics", "default_chunk_size", "CHUNK_BYTES",
           "CPU_NUM_THREADS"]

ArrayLike = Union[np.ndarray, torch.Tensor, list, tuple]

#: Memory budget (bytes) of the per-chunk work arrays, by device type. Small on CPU, where the
#: work is cache-bound, larger on GPUs, where per-chunk launch overhead dominates.
CHUNK_BYTES = {"cpu": 32 * 2**20, "cuda": 1024 * 2**20}
_BYTES_PER_CELL = 24  # work bytes per (query, gallery) cell of a chunk, see _rank_chunk
#: torch intra-op threads used on CPU (None: ``torch.get_num_threads()``). See the module notes.
CPU_NUM_THREADS: int | None = 1


def default_chunk_size(
    num_gallery: int, device: Union[str, torch.device] = "cpu", group_size: int = 1
) -> int:
    """Number of queries per chunk for a gallery of ``num_gallery`` within :data:`CHUNK_BYTES`.

    ``group_size`` is the largest number of gallery items sharing one query's pid (the pairwise
    junk/tie corrections use group_size**2 cells per query).

    Example:
        >>> default_chunk_size(9330)
        149
    """
    budget = CHUNK_BYTES.get(torch.device(device).type, CHUNK_BYTES["cpu"])
    per_query = _BYTES_PER_CELL * max(1, num_gallery) + 8 * max(1, group_size) ** 2
    return int(max(1, budget // per_query))


def _as_1d(x: ArrayLike, name: str, length: int, device: torch.device) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.dim() != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(t.shape)}")
    if t.numel() != length:
        raise ValueError(
            f"{name} has {t.numel()} entries but distmat implies {length}: distmat must be "
            "(num_query, num_gallery) with rows in the order of q_pids/q_camids and columns in "
            "the order of g_pids/g_camids"
        )
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        if t.is_floating_point() and bool((t == t.round()).all()):
            t = t.long()
        else:
            raise ValueError(f"{name} must hold integer labels, got dtype {t.dtype}")
    return t.to(device=device, dtype=torch.long).contiguous()


def _as_distmat(distmat: Any) -> torch.Tensor:
    if isinstance(distmat, torch.Tensor):
        d = distmat.detach()
    else:
        arr = np.asarray(distmat)
        if arr.dtype.kind in "iu":
            if arr.size and int(np.abs(arr).max()) > 2**53:
                raise ValueError(
                    "integer distmat values above 2**53 cannot be ranked exactly: rescale them"
                )
            arr = arr.astype(np.float64)  # exact for |x| <= 2**53
        elif arr.dtype.kind != "f":
            raise ValueError(f"distmat must hold real distances, got dtype {arr.dtype}")
        elif not arr.dtype.isnative or arr.dtype.itemsize > 8:
            arr = arr.astype(np.float64)
        with warnings.catch_warnings():  # read-only arrays (memmaps): we never write into d
            warnings.filterwarnings("ignore", message=".*not writable.*")
            d = torch.from_numpy(arr)
    if d.dim() != 2:
        raise ValueError(
            f"distmat must be 2-D (num_query, num_gallery), got shape {tuple(d.shape)}"
        )
    if d.is_complex() or d.dtype == torch.bool:
        raise ValueError(f"distmat must hold real distances, got dtype {d.dtype}")
    if d.dtype in (torch.float16, torch.bfloat16):
        d = d.float()  # exact and order-preserving
    elif not d.is_floating_point():
        if d.numel() and int(d.abs().max()) > 2**53:
            raise ValueError(
                "integer distmat values above 2**53 cannot be ranked exactly: rescale them"
            )
        d = d.double()  # exact for |x| <= 2**53
    if d.numel() and d.stride(-1) != 1:
        d = d.contiguous()
    return d


def _rank_chunk(
    d: torch.Tensor,
    grp: torch.Tensor,
    gmask: torch.Tensor,
    is_pos: torch.Tensor,
) -> torch.Tensor:
    """Kept-list ranks (0-based, stable order) of the identity-group members of some queries.

    d: (n, G) float distances; grp: (n, K) gallery indices of each query's identity group
    (ascending, padded); gmask: (n, K) valid entries; is_pos: (n, K) true matches (valid, other
    camera). Returns (n, K) ranks, meaningful where ``is_pos``.
    """
    n = d.shape[0]
    device = d.device
    gd = d.gather(1, grp)  # (n, K) distances of the group members
    inf = torch.full_like(gd, float("inf"))
    # Sorted true-match distances v_0 <= ... <= v_{K-1} (padding +inf), interleaved with their
    # float predecessors: s = [p_0, v_0, p_1, v_1, ...], p_t = max(nextafter(v_t, -inf), v_{t-1}).
    # No float lies strictly between p_t and v_t, so with b = #{s < d} (left search):
    #   b <= 2t  <=>  d < v_t     and     b == 2t + 1  <=>  d == v_t (t the first index of v_t).
    # One searchsorted + one bincount give every "less than" count and every tie count.
    v, _ = torch.where(is_pos, gd, inf).sort(dim=1)
    k = v.shape[1]
    p = torch.nextafter(v, -inf)
    p[:, 1:] = torch.maximum(p[:, 1:], v[:, :-1])
    s = torch.stack((p, v), dim=2).view(n, 2 * k)
    b = torch.searchsorted(s, d, right=False, out_int32=True)
    nb = 2 * k + 1
    b += torch.arange(n, device=device, dtype=torch.int32).mul_(nb).unsqueeze(1)
    counts = torch.bincount(b.view(-1), minlength=n * nb).view(n, nb)
    del b
    # Every true match ties with its own value; any other tie (a non-match or a junk item at
    # exactly a true match's distance) sends the row to the exact path below.
    extra_ties = counts[:, 1::2].sum(dim=1) > is_pos.sum(dim=1)
    cum = counts.cumsum(dim=1)
    first = torch.searchsorted(v, gd.contiguous(), right=False).clamp_(max=k - 1)
    less_all = cum.gather(1, 2 * first)  # #{gallery j: d_j < gd}, exact for true matches
    # Pairwise within the group (K is small): junk ranked before each member (stable order), and
    # members with an equal distance and a smaller gallery index.
    eq_low = (gd.unsqueeze(1) == gd.unsqueeze(2)) & (grp.unsqueeze(1) < grp.unsqueeze(2))
    eq_low &= gmask.unsqueeze(1)  # eq_low[i, p, a]: member a ties with p and comes first
    before = (gd.unsqueeze(1) < gd.unsqueeze(2)) | eq_low
    junk_before = (before & (gmask & ~is_pos).unsqueeze(1)).sum(dim=2)
    tie_low = eq_low.sum(dim=2)
    if bool(extra_ties.any()):
        rows = extra_ties.nonzero().squeeze(1)
        tie_low[rows] = _eq_low_exact(d[rows], gd[rows], grp[rows])
    return less_all + tie_low - junk_before


def _eq_low_exact(d: torch.Tensor, gd: torch.Tensor, grp: torch.Tensor) -> torch.Tensor:
    """#{gallery j: d_j == gd[p], j < grp[p]} for rows with ties between groups and others."""
    n, num_g = d.shape
    k = gd.shape[1]
    out = torch.empty_like(grp)
    idx = torch.arange(num_g, device=d.device)
    step = max(1, (CHUNK_BYTES["cpu"] // 2) // max(1, k * num_g))
    for s in range(0, n, step):
        eq = d[s : s + step].unsqueeze(1) == gd[s : s + step].unsqueeze(2)  # (m, K, G)
        eq &= idx < grp[s : s + step].unsqueeze(2)
        out[s : s + step] = eq.sum(dim=2)
    return out


class RankMetrics(NamedTuple):
    """What :func:`rank_metrics` measures; ``num_valid`` queries have a true match."""

    cmc: np.ndarray
    mAP: float
    mINP: float
    num_query: int
    num_valid: int


def evaluate_rank(
    distmat: Union[np.ndarray, torch.Tensor],
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
    max_rank: int = 50,
    use_metric_cuhk03: bool = False,
    return_mINP: bool = False,
    chunk_size: int | None = None,
) -> Union[Tuple[np.ndarray, float], Tuple[np.ndarray, float, float]]:
    """CMC and mAP (and mINP) with torchreid's signature and market1501 protocol.

    Args:
        distmat: (num_query, num_gallery) distances (smaller = more similar), a numpy array or a
            torch tensor on any device (evaluated there, never copied to the CPU).
        q_pids, g_pids: integer person ids of the queries / gallery items.
        q_camids, g_camids: integer camera ids.
        max_rank: CMC length (clipped to num_gallery, as in torchreid).
        use_metric_cuhk03: CUHK03 classic single-shot protocol, delegated to torchreid.
        return_mINP: also return the mean inverse negative penalty (Ye et al. 2021).
        chunk_size: queries per chunk; None picks it from :data:`CHUNK_BYTES`.

    Returns:
        ``(cmc, mAP)`` or ``(cmc, mAP, mINP)``: cmc a float32 numpy array of length
        ``min(max_rank, num_gallery)``, mAP and mINP Python floats in [0, 1]. Queries without a
        true match are left out of the averages; :func:`rank_metrics` also says how many.

    Raises:
        ValueError: on shape/label mismatches, NaN or -inf distances, or when no query has a
            true match.

    Example:
        >>> import numpy as np
        >>> d = np.array([[0.1, 0.5, 0.3], [0.2, 0.1, 0.9]])
        >>> cmc, mAP = evaluate_rank(d, np.array([1, 2]), np.array([1, 2, 1]),
        ...                          np.array([0, 0]), np.array([1, 1, 0]), max_rank=3)
        >>> cmc.tolist(), round(mAP, 4)
        ([1.0, 1.0, 1.0], 1.0)
    """
    r = rank_metrics(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, use_metric_cuhk03,
                     chunk_size)
    return (r.cmc, r.mAP, r.mINP) if return_mINP else (r.cmc, r.mAP)


def rank_metrics(
    distmat: Union[np.ndarray, torch.Tensor],
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
    max_rank: int = 50,
    use_metric_cuhk03: bool = False,
    chunk_size: int | None = None,
) -> RankMetrics:
    """:func:`evaluate_rank`'s metrics plus the number of queries that count (``num_valid``).

    Example:
        >>> import numpy as np
        >>> d = np.array([[0.1, 0.5], [0.2, 0.1]])
        >>> r = rank_metrics(d, [1, 3], [1, 2], [0, 0], [1, 1], max_rank=2)
        >>> r.num_query, r.num_valid
        (2, 1)
    """
    d = _as_distmat(distmat)
    num_q, num_g = d.shape
    if num_q == 0 or num_g == 0:
        raise ValueError(f"distmat is empty (shape {tuple(d.shape)}): need queries and gallery")
    if int(max_rank) < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    device = d.device
    qp = _as_1d(q_pids, "q_pids", num_q, device)
    gp = _as_1d(g_pids, "g_pids", num_g, device)
    qc = _as_1d(q_camids, "q_camids", num_q, device)
    gc = _as_1d(g_camids, "g_camids", num_g, device)
    max_rank = min(int(max_rank), num_g)
    if chunk_size is not None and int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be >= 1 or None, got {chunk_size}")
    threads = torch.get_num_threads()
    wanted = threads if CPU_NUM_THREADS is None or device.type != "cpu" else CPU_NUM_THREADS
    if wanted != threads:
        torch.set_num_threads(max(1, int(wanted)))
    try:
        first_rank, ap, inp, valid = _market1501(d, qp, gp, qc, gc, chunk_size)
    finally:
        if wanted != threads:
            torch.set_num_threads(threads)

    num_valid = int(valid.sum())
    if num_valid == 0:
        raise ValueError(
            f"none of the {num_q} queries has a true match in the gallery (same pid, other "
            "camera): check that q_pids and g_pids use the same labels and that the gallery "
            "contains the query identities under other cameras"
        )
    mINP = float(np.mean(inp[valid].cpu().numpy()))
    if use_metric_cuhk03:
        cmc, mAP = _cuhk03(d, qp, gp, qc, gc, max_rank)
        return RankMetrics(cmc, mAP, mINP, num_q, num_valid)
    first = first_rank[valid].clamp(max=max_rank)
    counts = torch.bincount(first, minlength=max_rank + 1)[:max_rank].cumsum(0)
    cmc = counts.cpu().numpy().astype(np.float32) / np.float32(num_valid)
    mAP = float(np.mean(ap[valid].cpu().numpy()))
    return RankMetrics(cmc, mAP, mINP, num_q, num_valid)


def _market1501(
    d: torch.Tensor,
    qp: torch.Tensor,
    gp: torch.Tensor,
    qc: torch.Tensor,
    gc: torch.Tensor,
    chunk_size: int | None,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per query: rank of the first true match, AP, INP and validity (chunked over queries)."""
    num_q, num_g = d.shape
    device = d.device
    # Identity groups: gallery indices sorted by pid (stable, so ascending within a pid).
    gp_sorted, g_idx_sorted = torch.sort(gp, stable=True)
    start = torch.searchsorted(gp_sorted, qp, right=False)
    end = torch.searchsorted(gp_sorted, qp, right=True)
    size = end - start

    first_rank = torch.empty(num_q, dtype=torch.long, device=device)
    ap = torch.empty(num_q, dtype=torch.float64, device=device)
    inp = torch.empty(num_q, dtype=torch.float64, device=device)
    valid = torch.zeros(num_q, dtype=torch.bool, device=device)
    if chunk_size is None:
        step = default_chunk_size(num_g, device, int(size.max()))
    else:
        step = int(chunk_size)

    for s in range(0, num_q, step):
        e = min(num_q, s + step)
        dd = d[s:e]
        if not bool(torch.isfinite(dd.sum())):  # cheap screen; rare exact check below
            bad = torch.isnan(dd) | (dd == float("-inf"))
            if bool(bad.any()):
                row = s + int(bad.any(dim=1).nonzero()[0])
                raise ValueError(
                    f"distmat has NaN or -inf distances (query row {row}): check the features "
                    "for NaN/inf values"
                )
        n = e - s
        k = max(1, int(size[s:e].max()))
        offs = torch.arange(k, device=device)
        gmask = offs < size[s:e].unsqueeze(1)
        pos_sorted = (start[s:e].unsqueeze(1) + offs).clamp_(max=num_g - 1)
        grp = torch.where(gmask, g_idx_sorted[pos_sorted], torch.zeros_like(pos_sorted))
        is_pos = gmask & (gc[grp] != qc[s:e].unsqueeze(1))
        npos = is_pos.sum(dim=1)
        ranks = _rank_chunk(dd, grp, gmask, is_pos)
        ranks = torch.where(is_pos, ranks, torch.full_like(ranks, num_g + 1))
        ranks, _ = ranks.sort(dim=1)  # true-match ranks ascending, padding last
        hit = torch.arange(1, k + 1, device=device, dtype=torch.float64).expand(n, k)
        prec = hit / (ranks.to(torch.float64) + 1.0)
        prec = torch.where(offs < npos.unsqueeze(1), prec, torch.zeros_like(prec))
        nposf = npos.clamp(min=1).to(torch.float64)
        ap[s:e] = prec.sum(dim=1) / nposf
        last = ranks.gather(1, (npos - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
        inp[s:e] = nposf / (last.to(torch.float64) + 1.0)
        first_rank[s:e] = ranks[:, 0]
        valid[s:e] = npos > 0
        del ranks, prec, grp, gmask, is_pos

    return first_rank, ap, inp, valid


def _cuhk03(
    d: torch.Tensor,
    qp: torch.Tensor,
    gp: torch.Tensor,
    qc: torch.Tensor,
    gc: torch.Tensor,
    max_rank: int,
) -> Tuple[np.ndarray, float]:
    eval_cuhk03 = compat.tr_module("metrics.rank").eval_cuhk03
    cmc, mAP = eval_cuhk03(
        d.cpu().numpy(), qp.cpu().numpy(), gp.cpu().numpy(), qc.cpu().numpy(),
        gc.cpu().numpy(), max_rank,
    )
    return np.asarray(cmc, dtype=np.float32), float(mAP)
