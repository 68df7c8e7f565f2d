"""Benchmark tfclip_torchreid.metrics.evaluate_rank against torchreid's rankers.

Random re-id problems shaped like real test sets: identities seen
by several cameras, one query per chosen (identity, camera), at least one gallery item per
(identity, camera) plus extras, features = identity centre N(0, 1) + noise N(0, sigma^2), and
distances from torchreid's ``compute_distance_matrix`` (squared Euclidean, float32).

Rankers timed (min over repeats): torchreid's Python ``evaluate_rank`` (the PyPI package's only
ranker), upstream's Cython ``evaluate_cy`` when importable, and ours with a numpy distmat and
with a torch tensor (``--device cuda`` adds a GPU run), single-threaded (the default,
``rank.CPU_NUM_THREADS = 1``) and with all of torch's threads. CMC must be identical to torchreid's;
the mAP differences are printed.

Example:
    python tools/bench_rank.py --sizes mars --repeats 5
    python tools/bench_rank.py --sizes msmt17 --repeats 2          # ours only at MSMT17 size
    python tools/bench_rank.py --sizes mars --cython-dir /tmp/cybuild  # + a standalone rank_cy
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import warnings
from typing import Callable, Dict, List, Tuple

import numpy as np
import torch

from tfclip_torchreid import cli, compat
from tfclip_torchreid.metrics import evaluate_rank
from tfclip_torchreid.metrics import rank as rank_mod

# name: (num_query, num_gallery, num_ids, num_query_ids, num_cams, cams_per_id, gallery_has_query)
SIZES = {
    "mars": (1980, 9330, 636, 628, 6, (2, 6), False),
    # LS-VID: 3,504 queries + 7,829 gallery, 2,730 ids, 15 cameras; the evaluated gallery is
    # query + gallery (11,333), as in TF-CLIP's evaluator.
    "lsvid": (3504, 7829, 2730, 2730, 15, (1, 4), True),
    "msmt17": (11659, 82161, 3060, 3060, 15, (3, 6), False),
}


def make_problem(
    num_q: int,
    num_g: int,
    num_ids: int,
    num_q_ids: int,
    num_cams: int,
    cams_per_id: Tuple[int, int] = (2, 6),
    gallery_has_query: bool = False,
    dim: int = 512,
    noise: float = 2.0,
    seed: int = 0,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A random ranking problem: ``(distmat, q_pids, g_pids, q_camids, g_camids)``.

    Example:
        >>> d, qp, gp, qc, gc = make_problem(20, 80, 10, 10, 3, (2, 3))
        >>> d.shape, d.dtype
        ((20, 80), dtype('float32'))
    """
    rng = np.random.default_rng(seed)
    pids = np.arange(1, num_ids + 1)
    lo, hi = cams_per_id
    pairs = np.array(
        [
            (p, c)
            for p in pids
            for c in rng.choice(num_cams, size=int(rng.integers(lo, min(hi, num_cams) + 1)),
                                replace=False)
        ]
    )
    if len(pairs) > num_g:
        raise ValueError(f"{len(pairs)} (id, camera) pairs do not fit a gallery of {num_g}")
    q_ids = rng.choice(pids, size=num_q_ids, replace=False)
    q_pairs = pairs[np.isin(pairs[:, 0], q_ids)]
    if len(q_pairs) < num_q:
        raise ValueError(f"only {len(q_pairs)} query (id, camera) pairs for {num_q} queries")
    q = q_pairs[rng.choice(len(q_pairs), size=num_q, replace=False)]
    g = np.concatenate([pairs, pairs[rng.integers(0, len(pairs), size=num_g - len(pairs))]])
    centres = rng.standard_normal((num_ids + 1, dim), dtype=np.float32)
    qf = centres[q[:, 0]] + noise * rng.standard_normal((num_q, dim), dtype=np.float32)
    gf = centres[g[:, 0]] + noise * rng.standard_normal((len(g), dim), dtype=np.float32)
    if gallery_has_query:
        gf, g = np.concatenate([qf, gf]), np.concatenate([q, g])
    qf_t, gf_t = torch.from_numpy(qf), torch.from_numpy(gf)
    distmat = np.empty((num_q, len(g)), dtype=np.float32)
    step = max(1, 2**27 // max(1, len(g)))  # bounded temporaries for MSMT17-sized problems
    with torch.inference_mode():
        for s in range(0, num_q, step):
            distmat[s : s + step] = compat.compute_distance_matrix(
                qf_t[s : s + step], gf_t, "euclidean"
            ).numpy()
    return distmat, q[:, 0].copy(), g[:, 0].copy(), q[:, 1].copy(), g[:, 1].copy()


def _cython_ranker(cython_dir: str | None = None) -> Callable | None:
    """Upstream's Cython ``evaluate_cy``: from torchreid, or a standalone build in cython_dir."""
    try:
        return compat.tr_module("metrics.rank_cylib.rank_cy").evaluate_cy
    except ImportError:
        pass
    if cython_dir:
        sys.path.insert(0, cython_dir)
        try:
            return importlib.import_module("rank_cy").evaluate_cy
        except ImportError as err:
            raise SystemExit(f"--cython-dir {cython_dir}: cannot import rank_cy ({err})") from err
        finally:
            sys.path.remove(cython_dir)
    return None


def _time(fn: Callable, repeats: int) -> Tuple[float, tuple]:
    best, out = float("inf"), None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def bench(name: str, args: argparse.Namespace) -> dict:
    nq, ng, nid, nqid, ncam, cpi, with_q = SIZES[name]
    t0 = time.perf_counter()
    d, qp, gp, qc, gc = make_problem(nq, ng, nid, nqid, ncam, cpi, with_q, seed=args.seed)
    same = None if d.shape[1] > 20000 else gp[None, :] == qp[:, None]
    print(
        f"\n== {name}: {d.shape[0]} queries x {d.shape[1]} gallery ({nid} ids, {ncam} cameras"
        f"{', gallery includes query' if with_q else ''}); problem built in "
        f"{time.perf_counter() - t0:.1f} s"
        + (
            ""
            if same is None
            else f"; per query {same.sum(1).mean():.1f} same-id gallery items, "
            f"{(same & (gc[None, :] == qc[:, None])).sum(1).mean():.1f} of them same camera"
        )
    )
    rows: List[Tuple[str, float, tuple]] = []
    run_ref = args.all or name != "msmt17"
    mr = args.max_rank
    if run_ref:
        py = compat.evaluate_rank_torchreid
        t, out = _time(lambda: py(d, qp, gp, qc, gc, mr, use_cython=False), args.ref_repeats)
        rows.append(("torchreid Python evaluate_rank", t, out))
    cy = _cython_ranker(args.cython_dir)
    if cy is not None and run_ref:
        t, out = _time(lambda: cy(d, qp, gp, qc, gc, mr, False), args.repeats)
        rows.append(("upstream Cython evaluate_cy", t, out))
    if run_ref:  # 8 bytes per cell: 7.7 GB at MSMT17 size
        t, _ = _time(lambda: np.argsort(d, axis=1), args.repeats)
        rows.append(("(np.argsort(distmat) alone)", t, ()))
    cs = args.chunk_size
    t, out = _time(
        lambda: evaluate_rank(d, qp, gp, qc, gc, mr, return_mINP=True, chunk_size=cs), args.repeats
    )
    rows.append(("ours, numpy distmat", t, out))
    dt = torch.from_numpy(d)
    t, out = _time(
        lambda: evaluate_rank(dt, qp, gp, qc, gc, mr, return_mINP=True, chunk_size=cs),
        args.repeats,
    )
    rows.append(("ours, torch CPU tensor", t, out))
    if torch.get_num_threads() > 1 and run_ref:
        rank_mod.CPU_NUM_THREADS, saved = None, rank_mod.CPU_NUM_THREADS
        try:
            t, out = _time(
                lambda: evaluate_rank(d, qp, gp, qc, gc, mr, return_mINP=True, chunk_size=cs),
                args.repeats,
            )
        finally:
            rank_mod.CPU_NUM_THREADS = saved
        rows.append((f"ours, numpy, {torch.get_num_threads()} torch threads", t, out))
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            print("   (CUDA not available: skipping the GPU run)")
        else:
            dg = dt.to(args.device)

            def on_gpu():
                out = evaluate_rank(dg, qp, gp, qc, gc, mr, return_mINP=True, chunk_size=cs)
                torch.cuda.synchronize()
                return out

            on_gpu()
            t, out = _time(on_gpu, args.repeats)
            rows.append((f"ours, torch {args.device} tensor", t, out))

    timed: Dict[str, float] = {r[0]: r[1] for r in rows}
    ref = rows[0] if run_ref else None
    cy_t = timed.get("upstream Cython evaluate_cy")
    header = f"{'implementation':34s} {'time (s)':>9s} {'mAP':>12s} {'R1':>8s} {'R5':>8s} " \
             f"{'R10':>8s} {'R20':>8s} {'torchreid/x':>11s} {'cython/x':>9s}"
    print(header)
    print("-" * len(header))
    for label, t, out in rows:
        if out:
            cmc, mAP = out[0], float(out[1])
            ranks = " ".join(f"{cmc[r - 1]:8.5f}" if r <= len(cmc) else f"{'-':>8s}"
                             for r in (1, 5, 10, 20))
            res = f"{mAP:12.10f} {ranks}"
        else:
            res = f"{'':12s} {'':8s} {'':8s} {'':8s} {'':8s}"
        vs_ref = f"{ref[1] / t:10.1f}x" if ref else f"{'-':>11s}"
        vs_cy = f"{cy_t / t:8.2f}x" if cy_t else f"{'-':>9s}"
        print(f"{label:34s} {t:9.3f} {res} {vs_ref} {vs_cy}")
    ours = [r for r in rows if r[0].startswith("ours")]
    cmc0, map0, minp0 = ours[0][2]
    for label, _, out in ours[1:]:
        same_all = np.array_equal(out[0], cmc0) and out[1] == map0 and out[2] == minp0
        print(f"   {label}: {'identical to' if same_all else 'DIFFERS from'} the numpy run")
    print(f"   mINP (ours): {minp0:.10f}")
    result = {"size": name, "num_query": int(d.shape[0]), "num_gallery": int(d.shape[1]),
              "seconds": {label: t for label, t, _ in rows}}
    for label, _, out in rows:
        if out and not label.startswith("ours"):
            eq = np.array_equal(np.asarray(out[0], dtype=np.float32), cmc0)
            print(
                f"   vs {label}: CMC {'identical' if eq else 'DIFFERENT'}, "
                f"|mAP diff| = {abs(float(out[1]) - map0):.2e}"
                + ("" if abs(float(out[1]) - map0) <= 1e-6 else "  (> 1e-6!)")
            )
    return result


def main(argv: List[str] | None = None) -> List[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["mars", "lsvid"], choices=list(SIZES))
    parser.add_argument("--repeats", type=int, default=5, help="repeats of the fast rankers")
    parser.add_argument("--ref-repeats", type=int, default=1,
                        help="repeats of torchreid's Python ranker (~1 ms per query each)")
    parser.add_argument("--chunk-size", type=int, default=None,
                        help="queries per chunk (default: from the memory budget)")
    parser.add_argument("--device", default="cpu", help="also run ours on this device (cuda)")
    parser.add_argument("--max-rank", type=int, default=50)
    parser.add_argument("--all", action="store_true",
                        help="also run torchreid's rankers at MSMT17 size (slow, ~15 GB RAM)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cython-dir", default=None,
                        help="folder with a standalone build of upstream's rank_cy.pyx, used when "
                        "torchreid has no Cython ranker (the PyPI package has none)")
    args = parser.parse_args(argv)
    print(
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), numpy {np.__version__}, "
        f"torchreid layout {compat.LAYOUT}, Cython ranker "
        f"{'importable' if _cython_ranker(args.cython_dir) else 'not importable'}, "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    )
    results = []
    for name in args.sizes:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results.append(bench(name, args))
    return results


if __name__ == "__main__":
    sys.exit(cli.run(main))
