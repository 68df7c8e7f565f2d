"""Sequence transforms: one flip per sequence, the authors' erasing (with its paste bug), norms."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from PIL import Image

from tfclip_torchreid import compat
from tfclip_torchreid.data.transforms import (
    CLIP_MEAN,
    CLIP_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PerFrame,
    RandomSizedErasing,
    SequenceRandomHorizontalFlip,
    build_sequence_transforms,
)


def _frames(n=8, h=24, w=12, seed=0):
    rs = np.random.RandomState(seed)
    return [Image.fromarray(rs.randint(0, 256, (h, w, 3), dtype=np.uint8)) for _ in range(n)]


def test_test_pipeline_is_resize_totensor_normalize():
    frames = _frames(3, 40, 20)
    out = build_sequence_transforms(32, 16, is_train=False)(frames)
    assert out.shape == (3, 3, 32, 16) and out.dtype == torch.float32
    ref = np.asarray(frames[1].resize((16, 32), Image.BILINEAR), dtype=np.float32) / 255.0
    ref = (ref - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(out[1].permute(1, 2, 0).numpy(), ref, atol=1e-5)


@pytest.mark.parametrize(
    "norm,mean,std", [("imagenet", IMAGENET_MEAN, IMAGENET_STD), ("clip", CLIP_MEAN, CLIP_STD)]
)
def test_normalisation_constants(norm, mean, std):
    img = Image.new("RGB", (8, 16), (255, 128, 0))
    out = build_sequence_transforms(16, 8, is_train=False, norm=norm)([img])
    expect = (torch.tensor([255, 128, 0]) / 255.0 - torch.tensor(mean)) / torch.tensor(std)
    torch.testing.assert_close(out[0, :, 5, 3], expect)
    assert IMAGENET_MEAN == (0.485, 0.456, 0.406) and IMAGENET_STD == (0.229, 0.224, 0.225)
    assert CLIP_MEAN == (0.48145466, 0.4578275, 0.40821073)
    assert CLIP_STD == (0.26862954, 0.26130258, 0.27577711)


def test_flip_is_one_decision_per_sequence():
    frames = _frames(8)
    plain = build_sequence_transforms(24, 12, is_train=False)(frames)
    tf = build_sequence_transforms(24, 12, is_train=True, flip=True, erasing=None)
    flipped_seen = kept_seen = 0
    for seed in range(20):
        random.seed(seed)
        out = tf(frames)
        per_frame = [torch.equal(out[t], plain[t].flip(-1)) for t in range(8)]
        same = [torch.equal(out[t], plain[t]) for t in range(8)]
        assert all(per_frame) or all(same), f"seed {seed}: mixed flip decisions"
        flipped_seen += all(per_frame)
        kept_seen += all(same)
    assert flipped_seen > 0 and kept_seen > 0
    seq = torch.arange(8 * 3 * 2 * 4, dtype=torch.uint8).view(8, 3, 2, 4)
    assert torch.equal(SequenceRandomHorizontalFlip(1.0)(seq), seq.flip(-1))
    assert torch.equal(SequenceRandomHorizontalFlip(0.0)(seq), seq)


def _expected_box(seed, height, width, at_sampled_location=False):
    """Replay the draws of one erased frame: p1, the box, then three colour channels."""
    random.seed(seed)
    er = RandomSizedErasing(p=1.0, at_sampled_location=at_sampled_location)
    random.uniform(0.0, 1.0)
    box = er.sample_box(height, width)
    colour = [random.randint(0, 255) for _ in range(3)]
    return box, colour


@pytest.mark.parametrize("height,width", [(256, 128), (32, 16)])
def test_authors_erasing_pastes_at_patch_size(height, width):
    base = torch.full((1, 3, height, width), 7, dtype=torch.uint8)
    for seed in range(30):
        random.seed(seed)
        out = RandomSizedErasing(p=1.0)(base)
        (top, left, h_e, w_e), colour = _expected_box(seed, height, width)
        assert (top, left) == (h_e, w_e)  # the released code pastes at (w_e, h_e)
        expect = base.clone()
        expect[0, :, h_e:2 * h_e, w_e:2 * w_e] = torch.tensor(colour, dtype=torch.uint8).view(3, 1, 1)
        assert torch.equal(out, expect)
        assert torch.equal(base, torch.full_like(base, 7))  # input untouched
        # sizes follow area U(0.02, 0.2) * H * W, aspect U(0.3, 1/0.3), box inside the image
        assert 0 < h_e < height and 0 < w_e < width
        assert (h_e * w_e) <= 0.2 * height * width + 1e-9
        assert (h_e + 1) * (w_e + 1) >= 0.02 * height * width
        # rows/cols before (h_e, w_e) are never erased
        assert torch.equal(out[..., :h_e, :], base[..., :h_e, :])
        assert torch.equal(out[..., :, :w_e], base[..., :, :w_e])


def test_erasing_fixed_variant_uses_sampled_location():
    height, width = 256, 128
    base = torch.zeros(1, 3, height, width, dtype=torch.uint8)
    lefts = set()
    for seed in range(30):
        random.seed(seed)
        out = RandomSizedErasing(p=1.0, at_sampled_location=True)(base)
        (top, left, h_e, w_e), colour = _expected_box(seed, height, width, True)
        expect = base.clone()
        expect[0, :, top:top + h_e, left:left + w_e] = torch.tensor(colour, dtype=torch.uint8).view(
            3, 1, 1
        )
        assert torch.equal(out, expect)
        assert top + h_e <= height and left + w_e <= width
        lefts.add(left != w_e)
    assert True in lefts
    # the string switch builds the same class
    tf = build_sequence_transforms(32, 16, is_train=True, erasing="authors_fixed")
    assert any(isinstance(t, RandomSizedErasing) and t.at_sampled_location for t in tf.transforms)


def test_erasing_is_per_frame_with_p_half():
    base = torch.zeros(8, 3, 64, 32, dtype=torch.uint8)
    random.seed(0)
    erased = []
    for _ in range(40):
        out = RandomSizedErasing()(base)
        erased += [bool(out[t].any()) for t in range(8)]
    frac = sum(erased) / len(erased)
    assert 0.4 < frac < 0.6
    random.seed(3)
    out = RandomSizedErasing()(base)
    flags = [bool(out[t].any()) for t in range(8)]
    assert 0 < sum(flags) < 8  # independent decisions within one sequence


def test_train_pipeline_deterministic_and_erasing_in_pixel_space():
    frames = _frames(8, 32, 16)
    tf = build_sequence_transforms(32, 16, is_train=True)
    random.seed(11)
    a = tf(frames)
    random.seed(11)
    b = tf(frames)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert a.shape == (8, 3, 32, 16)
    # an erased pixel holds (c/255 - mean)/std for an integer colour c
    plain = build_sequence_transforms(32, 16, is_train=False)(frames)
    changed = ~(torch.isclose(a, plain) | torch.isclose(a, plain.flip(-1)))
    assert changed.any()
    t, c, y, x = changed.nonzero()[0].tolist()
    value = a[t, c, y, x] * IMAGENET_STD[c] + IMAGENET_MEAN[c]
    assert math.isclose(value * 255, round(float(value * 255)), abs_tol=1e-3)


def test_torchreid_erasing_reuses_torchreid_class():
    tf = build_sequence_transforms(32, 16, is_train=True, erasing="torchreid")
    last = tf.transforms[-1]
    assert isinstance(last, PerFrame)
    assert isinstance(last.transform, compat.tr_module("data.transforms").RandomErasing)
    assert not any(isinstance(t, RandomSizedErasing) for t in tf.transforms)
    random.seed(0)
    out = tf(_frames(8, 32, 16))
    assert out.shape == (8, 3, 32, 16)


def test_repeated_frames_get_independent_erasing():
    img = _frames(1, 32, 16)[0]
    tf = build_sequence_transforms(32, 16, is_train=True, flip=False)
    random.seed(5)
    out = tf([img] * 8)  # one PIL object repeated (padding of a short tracklet)
    distinct = {out[t].numpy().tobytes() for t in range(8)}
    assert len(distinct) > 1


def test_bad_arguments():
    with pytest.raises(ValueError, match="norm"):
        build_sequence_transforms(32, 16, True, norm="coco")
    with pytest.raises(ValueError, match="erasing"):
        build_sequence_transforms(32, 16, True, erasing="zhong")
    with pytest.raises(ValueError, match="uint8"):
        RandomSizedErasing()(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="different sizes"):
        from tfclip_torchreid.data.transforms import SequenceToTensor

        SequenceToTensor()([Image.new("RGB", (4, 8)), Image.new("RGB", (5, 8))])
