"""Shared test setup: offline, CPU, deterministic, small."""

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# caches (identity banks, frame checks) of the test runs stay out of the user's home
os.environ.setdefault("TFCLIP_CACHE", tempfile.mkdtemp(prefix="tfclip-test-cache-"))

import pytest  # noqa: E402
import torch  # noqa: E402
from train_helpers import TINY_MARS  # noqa: E402

from tfclip_torchreid.testing import make_synthetic_dataset  # noqa: E402

# One intra-op thread: the test models are tiny, and on a busy 2-core machine two spinning
# OpenMP threads make them about 10x slower. Subprocesses (CLI, torchrun) inherit OMP_NUM_THREADS.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)

PARITY_DIR = os.environ.get(
    "TFCLIP_PARITY_DIR",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "parity"),
)


@pytest.fixture(scope="session")
def parity_dir() -> str:
    """Folder of the reference vectors computed with the authors' modules.

    ``tests/data/parity`` (described in its README.md); ``$TFCLIP_PARITY_DIR`` overrides it.
    """
    if not os.path.isdir(PARITY_DIR):
        pytest.fail(
            f"parity vectors not found at {PARITY_DIR}: restore tests/data/parity from git "
            "or point TFCLIP_PARITY_DIR at a folder holding tmd.pt, ssp.pt and backbone.pt"
        )
    return PARITY_DIR


@pytest.fixture(scope="module")
def mars_root(tmp_path_factory) -> str:
    """A synthetic MARS (``TINY_MARS``) per test module: the modules may damage their copy."""
    root = str(tmp_path_factory.mktemp("data"))
    make_synthetic_dataset("mars", root, seed=0, verbose=False, **TINY_MARS)
    return root


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
