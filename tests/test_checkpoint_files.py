"""Files that are not checkpoints: one message that names the file, says what it is and what to
do, from the one read point (``load_checkpoint``) through the weights resolver, torchreid's
FeatureExtractor and the tools, instead of torch's advice on ``weights_only``."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from tfclip_torchreid import compat
from tfclip_torchreid.models import build_tfclip, resolve_weights
from tfclip_torchreid.utils.checkpoint import (
    CheckpointFileError,
    check_torch_file,
    checkpoint_header,
    load_checkpoint,
    save_checkpoint,
)

#: torch's words that must not reach the user for these files
TORCH_ADVICE = ("Re-running", "weights_only` set to `False`", "file an issue",
                "internal miniz error", "Unsupported operand", "allowlist")


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> str:
    model = build_tfclip("tfclip_tiny", num_classes=2, layers=1, image_size=(64, 32))
    path = str(tmp_path_factory.mktemp("ckpt") / "good.pth")
    return save_checkpoint({**checkpoint_header(model), "state_dict": model.state_dict()}, path)


def _write(path, data: bytes) -> str:
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


def _bad_files(tmp_path, good: str):
    """(name, path, kind, words the message must hold)."""
    data = open(good, "rb").read()
    script = str(tmp_path / "script.pt")
    torch.jit.script(torch.nn.Linear(2, 2)).save(script)
    module = str(tmp_path / "module.pth")
    torch.save(torch.nn.Linear(2, 2), module)
    damaged = bytearray(data)
    damaged[len(data) // 2: len(data) // 2 + 64] = bytes(64)  # inside a tensor's bytes
    return [
        ("empty", _write(tmp_path / "empty.pth", b""), "empty", ["empty (0 bytes)"]),
        ("text", _write(tmp_path / "notes.pth", b"epoch 12, mAP 0.81\n"), "text",
         ["a text file", "epoch 12"]),
        ("truncated", _write(tmp_path / "cut.pth", data[: len(data) // 2]), "truncated",
         ["truncated", "central directory", "again"]),
        ("damaged", _write(tmp_path / "damaged.pth", bytes(damaged)), "damaged",
         ["damaged", "CRC-32"]),
        ("random", _write(tmp_path / "random.pth", bytes(np.random.default_rng(0).integers(
            1, 127, 4096, dtype=np.uint8) | 0x80)), "unknown", ["not a torch file"]),
        ("html", _write(tmp_path / "page.pth", b"<!DOCTYPE html><html>Quota exceeded</html>"),
         "html", ["web page"]),
        ("pickle", _write(tmp_path / "plain.pkl", pickle.dumps({"a": 1}, protocol=4)), "pickle",
         ["a Python pickle"]),
        ("torchscript", script, "torchscript", ["TorchScript archive", "pretrained"]),
        ("module", module, "objects", ["torch.nn.modules.linear.Linear", "state_dict()"]),
    ]


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.script of the fixture
def test_each_kind_of_bad_file_is_named(tmp_path, good):
    for name, path, kind, words in _bad_files(tmp_path, good):
        if kind == "damaged":  # torch does not check CRC-32 on loading (check_torch_file does)
            continue
        with pytest.raises(CheckpointFileError) as err:
            load_checkpoint(path)
        msg = str(err.value)
        assert err.value.kind == kind and err.value.path == path, name
        assert msg.startswith(f"{path} is "), (name, msg)
        assert all(w in msg for w in words), (name, msg)
        assert not any(t in msg for t in TORCH_ADVICE), (name, msg)
        if kind != "torchscript":
            assert "TorchScript" not in msg, (name, msg)
        if kind != "objects":  # only for a pickle of objects is loading it unsafely the advice
            assert "weights_only=False" not in msg, (name, msg)


def test_the_resolver_and_feature_extractor_say_the_same(tmp_path, good):
    path = _write(tmp_path / "cut.pth", open(good, "rb").read()[:5000])
    with pytest.raises(CheckpointFileError, match=f"^{path} is a truncated torch file"):
        resolve_weights(path)
    with pytest.raises(CheckpointFileError, match=f"^{path} is a truncated torch file"):
        compat.utils.FeatureExtractor(model_name="tfclip_tiny", model_path=path, device="cpu",
                                      verbose=False)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_check_torch_file_reads_bytes_only(tmp_path, good):
    check_torch_file(good)  # complete
    for name, path, kind, words in _bad_files(tmp_path, good):
        if kind == "objects":  # a complete archive: only unpickling tells
            check_torch_file(path)
            continue
        with pytest.raises(CheckpointFileError) as err:
            check_torch_file(path)
        assert err.value.kind == kind and all(w in str(err.value) for w in words), name


def test_torchreid_checkpoint_with_numpy_rank1_still_loads(tmp_path):
    """torchreid's Engine.save_model stores ``rank1`` as a numpy float: allow-listed."""
    path = str(tmp_path / "model.pth.tar-10")
    torch.save({"state_dict": {"w": torch.ones(2)}, "epoch": 10,
                "rank1": np.float64(0.5)}, path)
    state = load_checkpoint(path)
    assert state["epoch"] == 10 and float(state["rank1"]) == 0.5
    assert os.path.getsize(path) > 0
