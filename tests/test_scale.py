"""Scale: the frame check's JPEG fast path agrees with PIL; a MARS-size run's start-up (slow).

The slow test runs ``tools/bench_scale.py`` at fraction 0.1 of MARS (119,100 frames, 2,048
tracklets): the cached frame check must cost <= 0.2x the cold one and the run's process tree
must stay within 4 GB (issue 17).
"""

from __future__ import annotations

import io
import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tfclip_torchreid.data import frame_checks

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

JPEGS = [  # (width, height, mode, save options): what cameras and PIL write
    (64, 128, "RGB", {}), (8, 16, "RGB", {}), (32, 32, "L", {}), (40, 20, "CMYK", {}),
    (64, 128, "RGB", {"progressive": True}), (64, 128, "RGB", {"exif": b"Exif\x00\x00MM\x00*"}),
    (64, 128, "RGB", {"optimize": True, "comment": b"hi"}),
    (64, 128, "RGB", {"quality": 100, "subsampling": 0}),
]


def _jpeg(rng: np.random.Generator, w: int, h: int, mode: str, opts: dict) -> bytes:
    shape = (h, w) if mode == "L" else (h, w, len(mode))
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode=mode).save(buf, "JPEG", **opts)
    return buf.getvalue()


def _pil_size(head: bytes):
    try:
        with Image.open(io.BytesIO(head), formats=["JPEG"]) as im:
            return im.size
    except Exception:  # noqa: BLE001 - any failure: PIL does not accept the header
        return None


def test_jpeg_fast_path_accepts_only_what_pil_reads_the_same():
    """Corrupted headers (random bytes changed, cut short): whenever the fast path accepts one,
    PIL opens it with the same size; plain JPEGs are accepted, odd ones left to PIL."""
    rng = np.random.default_rng(0)
    accepted = 0
    for w, h, mode, opts in JPEGS:
        good = _jpeg(rng, w, h, mode, opts)
        fast = frame_checks._jpeg_size(good)
        assert fast in (None, (w, h)) and _pil_size(good) == (w, h)
        if mode == "RGB" and not opts:
            assert fast == (w, h)
        for _ in range(1500):
            head = bytearray(good[:2000])
            for _ in range(int(rng.integers(1, 4))):
                head[int(rng.integers(0, min(len(head), 700)))] = int(rng.integers(0, 256))
            if rng.random() < 0.3:
                head = head[:int(rng.integers(2, len(head)))]
            size = frame_checks._jpeg_size(bytes(head))
            if size is not None:
                accepted += 1
                assert _pil_size(bytes(head)) == size, bytes(head[:200]).hex()
    assert accepted > 1000


def test_frame_problem_fast_path_still_finds_truncation(tmp_path):
    data = _jpeg(np.random.default_rng(1), 8, 16, "RGB", {})
    assert frame_checks._jpeg_size(data) == (8, 16)
    good, cut = tmp_path / "good.jpg", tmp_path / "cut.jpg"
    good.write_bytes(data)
    cut.write_bytes(data[:-2])
    assert frame_checks.frame_problem(str(good)) is None
    assert frame_checks.frame_problem(str(cut)).startswith("truncated")


@pytest.mark.slow
def test_mars_tenth_frame_check_cache_and_memory(tmp_path):
    """fraction 0.1 of MARS: cached frame check <= 0.2x the cold one, peak RSS <= 4 GB."""
    root = os.environ.get("TFCLIP_SCALE_ROOT", str(tmp_path / "scale"))
    out = subprocess.run(
        [sys.executable, osp.join(REPO, "tools", "bench_scale.py"), "--dataset", "mars",
         "--fraction", "0.1", "--root", root, "--rate-batches", "2", "--json"],
        check=True, capture_output=True, text=True, cwd=REPO,
        env=dict(os.environ, PYTHONPATH=REPO)).stdout
    res = json.loads(out.strip().splitlines()[-1])
    assert res["frames"] == 119_100 and res["tracklets"] == 2_048
    assert res["frame_check_cached_s"] <= 0.2 * res["frame_check_s"], res
    assert res["peak_rss_gb"] <= 4.0, res


def test_sorted_frames_is_file_name_order():
    """The one-folder shortcut gives the order of (file name, path) on any mix of folders."""
    from tfclip_torchreid.data.dataset import _sorted_frames

    rng = np.random.default_rng(0)
    folders = ["a", "b", "a/x", "", "ab", "a.b", "/abs/a"]
    names = ["1.jpg", "2.jpg", "10.jpg", "x/1.jpg", "a"]
    for _ in range(5000):
        paths = [osp.join(str(rng.choice(folders)), str(rng.choice(names)))
                 for _ in range(int(rng.integers(1, 7)))]
        assert _sorted_frames(paths) == tuple(sorted(paths, key=lambda p: (osp.basename(p), p)))
