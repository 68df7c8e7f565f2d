"""tfclip_torchreid.metrics.evaluate_rank against torchreid's Python ranker and a plain reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tfclip_torchreid import compat
from tfclip_torchreid.metrics import evaluate_rank
from tfclip_torchreid.metrics import rank as rank_module

tr_market1501 = compat.tr_module("metrics.rank").eval_market1501


def make_problem(seed, num_q=40, num_g=160, num_ids=12, num_cams=4, ties=False, levels=6):
    """Random problem with distractors (pid 0), junk (-1), single-camera ids, unmatched queries."""
    rng = np.random.default_rng(seed)
    q_pids = rng.integers(1, num_ids + 1, num_q)
    q_pids[:3] = num_ids + 5  # three queries whose id is absent from the gallery
    g_pids = rng.integers(1, num_ids + 1, num_g)
    g_pids[rng.random(num_g) < 0.15] = 0  # distractors
    g_pids[rng.random(num_g) < 0.05] = -1  # junk-like label, ranked like any other id
    q_camids = rng.integers(0, num_cams, num_q)
    g_camids = rng.integers(0, num_cams, num_g)
    single = 1  # an identity seen by one camera only: its queries lose every match
    q_camids[q_pids == single] = 0
    g_camids[g_pids == single] = 0
    if ties:  # integer-valued distances: many exact ties between matches and non-matches
        distmat = rng.integers(0, levels, (num_q, num_g)).astype(np.float32)
    else:
        distmat = rng.random((num_q, num_g))
    return distmat, q_pids, g_pids, q_camids, g_camids


def stable_ranks(distmat):
    """Distances replaced by their position in the stable ascending order: tie-free, same order."""
    order = np.argsort(distmat, axis=1, kind="stable")
    out = np.empty(distmat.shape, dtype=np.float64)
    np.put_along_axis(out, order, np.broadcast_to(np.arange(distmat.shape[1]), out.shape), 1)
    return out


def reference(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    """Plain per-query loop: stable order, junk removed, CMC/AP/INP from the match positions."""
    num_q, num_g = distmat.shape
    length = min(max_rank, num_g)
    cmc, aps, inps = np.zeros(length), [], []
    for i in range(num_q):
        order = np.argsort(distmat[i], kind="stable")
        junk = (g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i])
        hits = np.flatnonzero(g_pids[order][~junk] == q_pids[i])
        if hits.size == 0:
            continue
        cmc += np.arange(length) >= hits[0]
        aps.append(np.mean(np.arange(1, hits.size + 1) / (hits + 1.0)))
        inps.append(hits.size / (hits[-1] + 1.0))
    return cmc / len(aps), float(np.mean(aps)), float(np.mean(inps))


@pytest.mark.parametrize("seed", range(4))
def test_equals_torchreid_without_ties(seed):
    args = make_problem(seed)
    cmc_tr, map_tr = tr_market1501(*args, 50)
    cmc, mAP = evaluate_rank(*args)
    assert cmc.dtype == np.float32 and cmc.shape == (50,)
    np.testing.assert_array_equal(cmc, cmc_tr)
    assert abs(mAP - map_tr) < 1e-12
    assert isinstance(mAP, float)


@pytest.mark.parametrize("seed", range(4))
def test_ties_follow_the_stable_order(seed):
    args = make_problem(seed, ties=True)
    distmat, rest = args[0], args[1:]
    cmc, mAP, mINP = evaluate_rank(*args, return_mINP=True)
    # torchreid on the tie-free distmat with the same (stable) order: exactly the same metrics.
    cmc_tr, map_tr = tr_market1501(stable_ranks(distmat), *rest, 50)
    np.testing.assert_array_equal(cmc, cmc_tr)
    assert abs(mAP - map_tr) < 1e-12
    cmc2, mAP2, mINP2 = evaluate_rank(stable_ranks(distmat), *rest, return_mINP=True)
    np.testing.assert_array_equal(cmc, cmc2)
    assert (mAP, mINP) == (mAP2, mINP2)


def test_torchreid_differs_only_on_match_nonmatch_ties():
    """torchreid's unstable argsort can only change queries where a true match ties a kept item."""
    distmat, q_pids, g_pids, q_camids, g_camids = make_problem(7, num_q=60, ties=True, levels=300)
    critical = np.zeros(len(q_pids), dtype=bool)
    for i in range(len(q_pids)):
        junk = (g_pids == q_pids[i]) & (g_camids == q_camids[i])
        match = (g_pids == q_pids[i]) & ~junk
        other = ~junk & ~match
        critical[i] = np.isin(distmat[i, match], distmat[i, other]).any()
    keep = ~critical
    assert keep.sum() >= 10 and critical.sum() >= 10
    sub = (distmat[keep], q_pids[keep], g_pids, q_camids[keep], g_camids)
    cmc_tr, map_tr = tr_market1501(*sub, 50)
    cmc, mAP = evaluate_rank(*sub)
    np.testing.assert_array_equal(cmc, cmc_tr)
    assert abs(mAP - map_tr) < 1e-12


@pytest.mark.parametrize("ties", [False, True])
def test_matches_plain_reference_with_mINP(ties):
    args = make_problem(11, ties=ties)
    cmc_ref, map_ref, minp_ref = reference(*args, max_rank=30)
    cmc, mAP, mINP = evaluate_rank(*args, max_rank=30, return_mINP=True)
    np.testing.assert_allclose(cmc, cmc_ref, rtol=0, atol=1e-7)
    assert abs(mAP - map_ref) < 1e-12 and abs(mINP - minp_ref) < 1e-12
    assert 0.0 < mINP <= mAP <= 1.0


def test_chunking_numpy_and_torch_inputs_agree(monkeypatch):
    distmat, *rest = make_problem(3, ties=True)
    threads = torch.get_num_threads()
    base = evaluate_rank(distmat, *rest, return_mINP=True)
    assert torch.get_num_threads() == threads  # restored after the single-threaded run
    monkeypatch.setattr(rank_module, "CPU_NUM_THREADS", None)  # torch's threads
    threaded = evaluate_rank(distmat, *rest, return_mINP=True, chunk_size=3)
    monkeypatch.undo()
    read_only = distmat.copy()
    read_only.setflags(write=False)
    variants = [
        threaded,
        evaluate_rank(distmat, *rest, return_mINP=True, chunk_size=1),
        evaluate_rank(distmat, *rest, return_mINP=True, chunk_size=7),
        evaluate_rank(torch.from_numpy(distmat), *rest, return_mINP=True),
        evaluate_rank(
            torch.from_numpy(distmat), *(torch.from_numpy(x) for x in rest), return_mINP=True
        ),
        evaluate_rank(distmat.astype(np.float64), *rest, return_mINP=True, chunk_size=5),
        evaluate_rank(distmat.astype(np.int16), *rest, return_mINP=True),
        evaluate_rank(torch.from_numpy(distmat).half(), *rest, return_mINP=True),
        evaluate_rank(np.asfortranarray(distmat), *[list(x) for x in rest], return_mINP=True),
        evaluate_rank(read_only, *rest, return_mINP=True),
        evaluate_rank(torch.tensor(distmat, requires_grad=True), *rest, return_mINP=True),
    ]
    for cmc, mAP, mINP in variants:
        np.testing.assert_array_equal(cmc, base[0])
        assert (mAP, mINP) == (base[1], base[2])


def test_small_gallery_worked_example():
    """4 gallery items (< max_rank): torchreid's Python ranker crashes here, Cython is stale."""
    #               g0   g1   g2   g3
    distmat = np.array(
        [
            [0.1, 0.2, 0.3, 0.4],  # q0 (id 1, cam 0)
            [0.4, 0.3, 0.2, 0.1],  # q1 (id 2, cam 0)
            [0.5, 0.6, 0.7, 0.8],  # q2 (id 3, cam 1): no gallery item of id 3 -> skipped
        ]
    )
    q_pids, q_camids = np.array([1, 2, 3]), np.array([0, 0, 1])
    g_pids, g_camids = np.array([1, 2, 1, 2]), np.array([0, 1, 1, 0])
    # q0: g0 is junk (id 1, cam 0); kept order g1(x) g2(hit) g3(x): first hit at rank 2,
    #     AP = 1/2, INP = 1/2. Kept list has 3 items; the CMC still has 4 entries.
    # q1: g3 is junk; kept order g2(x) g1(hit) g0(x): first hit at rank 2, AP = 1/2, INP = 1/2.
    cmc, mAP, mINP = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids,
                                   return_mINP=True)
    np.testing.assert_array_equal(cmc, np.array([0.0, 1.0, 1.0, 1.0], dtype=np.float32))
    assert mAP == pytest.approx(0.5, abs=1e-15) and mINP == pytest.approx(0.5, abs=1e-15)
    # q1 with g2 pushed last: kept order g1(hit) g0(x) g2(x) -> rank 1; q0 unchanged.
    distmat[1, 2] = 0.9
    cmc, mAP = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids)
    np.testing.assert_array_equal(cmc, np.array([0.5, 1.0, 1.0, 1.0], dtype=np.float32))
    assert mAP == pytest.approx(0.75, abs=1e-15)


@pytest.mark.parametrize("seed", range(3))
def test_small_random_galleries_are_monotone_and_match_reference(seed):
    args = make_problem(seed, num_q=25, num_g=20, num_ids=4, num_cams=2, ties=seed == 2)
    cmc_ref, map_ref, minp_ref = reference(*args)
    cmc, mAP, mINP = evaluate_rank(*args, return_mINP=True)
    assert cmc.shape == (20,) and cmc[-1] == 1.0 and np.all(np.diff(cmc) >= 0)
    np.testing.assert_allclose(cmc, cmc_ref, rtol=0, atol=1e-7)
    assert abs(mAP - map_ref) < 1e-12 and abs(mINP - minp_ref) < 1e-12


def test_cuhk03_is_delegated_to_torchreid():
    args = make_problem(5)
    np.random.seed(0)
    cmc_tr, map_tr = compat.tr_module("metrics.rank").eval_cuhk03(*args, 20)
    np.random.seed(0)
    cmc, mAP, mINP = evaluate_rank(*args, max_rank=20, use_metric_cuhk03=True, return_mINP=True)
    np.testing.assert_array_equal(cmc, cmc_tr)
    assert mAP == float(map_tr)
    assert mINP == evaluate_rank(*args, max_rank=20, return_mINP=True)[2]


def test_clear_errors():
    distmat, q_pids, g_pids, q_camids, g_camids = make_problem(0)
    with pytest.raises(ValueError, match="none of the 40 queries has a true match"):
        evaluate_rank(distmat, q_pids + 1000, g_pids, q_camids, g_camids)
    with pytest.raises(ValueError, match="none of the 2 queries"):  # same camera only
        evaluate_rank(np.zeros((2, 3)), [1, 1], [1, 1, 2], [0, 0], [0, 0, 1])
    with pytest.raises(ValueError, match="q_pids has 39 entries but distmat implies 40"):
        evaluate_rank(distmat, q_pids[:-1], g_pids, q_camids, g_camids)
    with pytest.raises(ValueError, match="g_camids has 161 entries but distmat implies 160"):
        evaluate_rank(distmat, q_pids, g_pids, q_camids, np.r_[g_camids, 0])
    with pytest.raises(ValueError, match="must be 2-D"):
        evaluate_rank(distmat[0], q_pids[:1], g_pids, q_camids[:1], g_camids)
    with pytest.raises(ValueError, match="integer labels"):
        evaluate_rank(distmat, q_pids + 0.5, g_pids, q_camids, g_camids)
    bad = distmat.copy()
    bad[5, 7] = np.nan
    with pytest.raises(ValueError, match="NaN or -inf distances \\(query row 5\\)"):
        evaluate_rank(bad, q_pids, g_pids, q_camids, g_camids)
    with pytest.raises(ValueError, match="max_rank"):
        evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=0)
    with pytest.raises(ValueError, match="chunk_size"):
        evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, chunk_size=0)


def test_infinite_distances_rank_last():
    distmat, *rest = make_problem(2)
    distmat[:, ::3] = np.inf  # e.g. masked pairs
    cmc_ref, map_ref, minp_ref = reference(distmat, *rest)
    cmc, mAP, mINP = evaluate_rank(distmat, *rest, return_mINP=True)
    np.testing.assert_allclose(cmc, cmc_ref, rtol=0, atol=1e-7)
    assert abs(mAP - map_ref) < 1e-12 and abs(mINP - minp_ref) < 1e-12
