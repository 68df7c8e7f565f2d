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

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

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


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module: on a busy 2-core machine two spinning OpenMP threads make
    the tiny test models about 10x slower (use with ``pytest.mark.usefixtures``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
