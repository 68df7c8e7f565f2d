"""Clip samplers: the authors' exact rules (docs/released_vs_paper.md#sampling) and torchreid's methods."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tfclip_torchreid.data.sampling import SAMPLE_METHODS, num_clips, sample_clip_indices


def s(num, method, seq_len=8, rng=None):
    return sample_clip_indices(num, seq_len, method, rng=rng).tolist()


# ---- worked examples of the authors' rules -----------------------------------------------------------
def test_rrs_test_examples():
    assert s(20, "rrs_test") == [[0, 3, 6, 9, 12, 15, 18, 19]]
    assert s(64, "rrs_test") == [[0, 8, 16, 24, 32, 40, 48, 56]]
    assert s(3, "rrs_test") == [[0, 1, 2, 2, 2, 2, 2, 2]]
    assert s(9, "rrs_test") == [[0, 2, 4, 6, 8, 8, 8, 8]]
    assert s(8, "rrs_test") == [[0, 1, 2, 3, 4, 5, 6, 7]]


def test_rrs_short_tracklet_repeats_last_frame():
    for seed in range(5):
        assert s(3, "rrs", rng=np.random.default_rng(seed)) == [[0, 1, 2, 2, 2, 2, 2, 2]]
    assert s(1, "rrs", rng=np.random.default_rng(0)) == [[0] * 8]


def test_rrs_num9_chunk_structure():
    # chunks [0,1][2,3][4,5][6,7][8,8][8,8][8,8][8,8]
    seen = [set() for _ in range(8)]
    rng = np.random.default_rng(0)
    for _ in range(200):
        (idx,) = s(9, "rrs", rng=rng)
        for k, i in enumerate(idx):
            seen[k].add(i)
    assert seen[:4] == [{0, 1}, {2, 3}, {4, 5}, {6, 7}]
    assert seen[4:] == [{8}] * 4


def test_rrs_num20_tail_chunks():
    # c=3, padded list 0..19,19,19,19 -> chunks [0,1,2] ... [15,16,17] [18,19,19] [19,19,19]:
    # pick 6 is 18 w.p. 1/3 and 19 w.p. 2/3; pick 7 is always 19 (the documented "last chunk
    # [18,19,19]" is the last chunk holding a distinct frame).
    rng = np.random.default_rng(1)
    picks = np.array([s(20, "rrs", rng=rng)[0] for _ in range(3000)])
    assert set(picks[:, 6].tolist()) == {18, 19}
    assert abs((picks[:, 6] == 19).mean() - 2 / 3) < 0.04
    assert set(picks[:, 7].tolist()) == {19}
    assert set(picks[:, 0].tolist()) == {0, 1, 2}


@pytest.mark.parametrize("num", [8, 9, 15, 16, 17, 20, 31, 64, 100, 333])
def test_rrs_picks_within_chunks_and_in_order(num):
    c = math.ceil(num / 8)
    rng = np.random.default_rng(num)
    for _ in range(50):
        (idx,) = s(num, "rrs", rng=rng)
        assert idx == sorted(idx)
        for k, i in enumerate(idx):
            assert min(k * c, num - 1) <= i <= min(k * c + c - 1, num - 1)


def test_rrs_covers_every_frame_and_is_seed_deterministic():
    rng = np.random.default_rng(0)
    hits = set()
    for _ in range(300):
        hits.update(s(64, "rrs", rng=rng)[0])
    assert hits == set(range(64))
    a = sample_clip_indices(100, 8, "rrs", rng=np.random.default_rng(7))
    b = sample_clip_indices(100, 8, "rrs", rng=np.random.default_rng(7))
    c = sample_clip_indices(100, 8, "rrs", rng=np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert s(20, "rrs_train", rng=np.random.default_rng(7)) == s(
        20, "rrs", rng=np.random.default_rng(7)
    )


def test_dense_examples():
    assert s(19, "dense") == [
        list(range(8)),
        list(range(8, 16)),
        [16, 17, 18, 16, 17, 18, 16, 17],
    ]
    assert s(25, "dense")[-1] == [24] * 8
    assert len(s(25, "dense")) == 4
    assert s(3, "dense") == [[0, 1, 2, 0, 1, 2, 0, 1]]
    assert s(8, "dense") == [list(range(8))]
    assert s(16, "dense") == [list(range(8)), list(range(8, 16))]


@pytest.mark.parametrize("num", [1, 2, 7, 8, 9, 16, 17, 23, 64, 65])
def test_dense_shape_and_coverage(num):
    idx = sample_clip_indices(num, 8, "dense")
    assert idx.shape == (math.ceil(num / 8), 8) == (num_clips(num, 8, "dense"), 8)
    assert set(idx.ravel().tolist()) == set(range(num))
    assert idx.dtype == np.int64


# ---- torchreid's methods ---------------------------------------------------------------------
def _torchreid_evenly(num, seq_len):
    # the formula of torchreid's VideoDataset.__getitem__ ("evenly")
    if num >= seq_len:
        num -= num % seq_len
        return [int(i) for i in np.arange(0, num, num / seq_len)]
    return list(range(num)) + [num - 1] * (seq_len - num)


@pytest.mark.parametrize("num", [1, 3, 8, 9, 15, 16, 20, 64, 101])
def test_evenly_matches_torchreid(num):
    assert s(num, "evenly") == [_torchreid_evenly(num, 8)]


def test_random_and_all():
    rng = np.random.default_rng(0)
    for num in (3, 8, 30):
        (idx,) = s(num, "random", rng=rng)
        assert len(idx) == 8 and idx == sorted(idx) and max(idx) < num
        if num >= 8:
            assert len(set(idx)) == 8  # without replacement
    assert s(5, "all") == [[0, 1, 2, 3, 4]]
    assert sample_clip_indices(12, 4, "all").shape == (1, 12)
    assert set(SAMPLE_METHODS) == {"rrs", "rrs_test", "dense", "evenly", "random", "all"}


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown sample method"):
        sample_clip_indices(10, 8, "rrs_dense")
    with pytest.raises(ValueError, match="at least one frame"):
        sample_clip_indices(0, 8, "dense")
    with pytest.raises(ValueError, match="seq_len"):
        sample_clip_indices(10, 0, "rrs")
    with pytest.raises(ValueError, match="num_frames must be an int"):
        sample_clip_indices(10.0, 8, "rrs")
    with pytest.raises(ValueError, match="Generator"):
        sample_clip_indices(10, 8, "rrs", rng=np.random.RandomState(0))
