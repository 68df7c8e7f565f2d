"""Where the tracklets' features are computed: PyTorch, or the model exported to ONNX Runtime.

An :class:`Embedder` turns tracklets of crops into their test features with
:func:`~tfclip_torchreid.embedding.embed_tracklets` (the dense protocol and the weights' own
preprocessing: input size, mean and std); only the forward pass differs by backend:

* ``"pytorch"``: the model itself (eager, float32);
* ``"onnxruntime"``: the model's test forward exported to ONNX
  (:func:`~tfclip_torchreid.export.export_model`, TorchScript-based exporter, a fixed clip
  length of ``seq_len`` frames and a dynamic batch) and run by ONNX Runtime on the CPU. An export
  is checked against PyTorch when it is made (:func:`~tfclip_torchreid.export.verify_export`:
  largest feature difference at most :data:`ONNX_TOLERANCE`, else it is refused) and cached in
  ``cache_dir`` under a key of the weights, the model's options, the clip length and the torch
  version, so later runs with the same weights load it at once;
* ``"onnxruntime-int8"``: that ONNX model with its weights quantised to int8 by ONNX Runtime's
  dynamic quantisation (``quantize_dynamic``; activations quantised per batch at run time).
  Smaller and on many CPUs faster, but not the same features: ``tools/bench_video.py`` measures
  their cosine similarity to float32 (README), and the pipeline logs a warning when it is used.

ONNX Runtime runs with as many threads as PyTorch (``torch.get_num_threads()``).

Example:
    >>> from tfclip_torchreid.export import load_inference_model
    >>> model = load_inference_model("tfclip_tiny", camera_num=0, layers=1)
    >>> embedder = Embedder(model, "pytorch", seq_len=2)
    >>> from PIL import Image
    >>> from tfclip_torchreid.utils.feature_files import Tracklet
    >>> crops = tuple(Image.new("RGB", (20, 40), (i * 40, 0, 0)) for i in range(3))
    >>> embedder([Tracklet("t", crops, -1, 0)]).shape == (1, model.feature_dim)
    True
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import os.path as osp
import tempfile
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..embedding import embed_tracklets, weights_digest
from ..export import OUTPUT_NAME, export_model, uses_cameras, verify_export
from ..utils.feature_files import Tracklet
from ..utils.optional import import_optional

logger = logging.getLogger(__name__)

__all__ = ["BACKENDS", "ONNX_TOLERANCE", "Embedder", "default_cache_dir", "onnx_model",
           "onnx_forward"]

BACKENDS = ("pytorch", "onnxruntime", "onnxruntime-int8")
#: largest feature difference an ONNX export may have from PyTorch
ONNX_TOLERANCE = 1e-4


def default_cache_dir() -> str:
    """``$TFCLIP_CACHE/onnx``, or ``~/.cache/tfclip_torchreid/onnx`` (the package's caches share
    one root: docs/environment.md)."""
    root = os.environ.get("TFCLIP_CACHE", osp.join(osp.expanduser("~"), ".cache", "tfclip_torchreid"))
    return osp.join(root, "onnx")


def _cache_key(model: nn.Module, seq_len: int) -> str:
    h = hashlib.sha256()
    h.update(weights_digest(model).encode())
    h.update(json.dumps(model.cfg.to_dict(), sort_keys=True, default=str).encode())
    h.update(f"|{int(seq_len)}|{torch.__version__}".encode())
    return h.hexdigest()[:16]


def _ort() -> Any:
    return import_optional("onnxruntime", "export", "the onnxruntime backend")


def _quantization() -> Any:
    """``onnxruntime.quantization``; importing it calls ``logging.basicConfig`` (in its
    ``matmul_nbits_quantizer``), which would print every log record of the process a second
    time: the root logger is put back as it was."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        return import_optional("onnxruntime.quantization", "export", "int8 quantisation",
                               distribution="onnxruntime")
    finally:
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
        root.setLevel(level)


def onnx_model(model: nn.Module, seq_len: int, cache_dir: str | None = None,
               int8: bool = False) -> str:
    """The cached ONNX file of ``model``'s test forward on ``seq_len``-frame clips (exported,
    checked and cached on first use; ``int8``: its dynamically quantised copy)."""
    folder = cache_dir or default_cache_dir()
    os.makedirs(folder, exist_ok=True)
    stem = osp.join(folder, f"{model.cfg.arch}-{_cache_key(model, seq_len)}")
    path = stem + ".onnx"
    if not osp.isfile(path):
        _ort()
        fd, tmp = tempfile.mkstemp(prefix=".export-", suffix=".onnx", dir=folder)
        os.close(fd)
        try:
            export_model(model, tmp, "onnx", frames=int(seq_len), dynamo=False)
            worst = verify_export(model, tmp, "onnx", frames=int(seq_len))
            if worst > ONNX_TOLERANCE:
                raise RuntimeError(
                    f"the ONNX export of {model.cfg.arch} differs from PyTorch by {worst:.2e} "
                    f"(more than {ONNX_TOLERANCE:g}): use the pytorch backend")
            os.replace(tmp, path)
        finally:
            if osp.exists(tmp):
                os.remove(tmp)
        logger.info(f"=> exported {model.cfg.arch} to ONNX for {seq_len}-frame clips: {path} "
                    f"(largest difference to PyTorch {worst:.1e})")
    if not int8:
        return path
    qpath = stem + "-int8.onnx"
    if not osp.isfile(qpath):
        quant = _quantization()
        fd, tmp = tempfile.mkstemp(prefix=".int8-", suffix=".onnx", dir=folder)
        os.close(fd)
        try:
            quant.quantize_dynamic(path, tmp, weight_type=quant.QuantType.QInt8)
            os.replace(tmp, qpath)
        finally:
            if osp.exists(tmp):
                os.remove(tmp)
        logger.info(f"=> quantised the ONNX model to int8 (dynamic): {qpath}")
    return qpath


def onnx_forward(path: str, threads: int | None = None
                 ) -> Callable[[torch.Tensor, Any], torch.Tensor]:
    """``forward(clips, cam_ids or None) -> features`` running ``path`` in ONNX Runtime (CPU,
    ``threads`` intra-op threads, default PyTorch's)."""
    ort = _ort()
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def forward(clips: torch.Tensor, cams: Any = None) -> torch.Tensor:
        feed = {names[0]: np.ascontiguousarray(clips.detach().cpu().numpy(), np.float32)}
        if len(names) > 1:
            feed[names[1]] = cams.detach().cpu().numpy().astype(np.int64)
        return torch.from_numpy(session.run([OUTPUT_NAME], feed)[0])

    return forward


class Embedder:
    """Test features of tracklets of crops with one backend (see the module notes).

    Args:
        model: the TF-CLIP model in eval mode (on the CPU for the ONNX backends).
        backend: one of :data:`BACKENDS`.
        seq_len: frames per clip.
        norm: the frames' ``(mean, std)`` (the weights' ``Weights.preprocess.norm``), a name, or
            None (the arch's default).
        batch_size, max_clips: tracklets per loader batch, clips per forward pass.
        device: where the PyTorch backend runs.
        cache_dir: where ONNX exports are cached (:func:`default_cache_dir`).
    """

    def __init__(self, model: nn.Module, backend: str = "pytorch", seq_len: int = 8,
                 norm: Any = None, batch_size: int = 8, max_clips: int = 32,
                 device: str | torch.device = "cpu", cache_dir: str | None = None) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.model, self.backend, self.seq_len = model.eval(), backend, int(seq_len)
        self.norm, self.batch_size, self.max_clips = norm, int(batch_size), int(max_clips)
        self.device = torch.device(device)
        self.cameras = uses_cameras(model)
        self.forward = None
        self.path = None
        if backend != "pytorch":
            if self.device.type != "cpu":
                raise ValueError(f"the {backend} backend runs on the CPU, not {self.device}")
            self.path = onnx_model(model, self.seq_len, cache_dir, int8=backend.endswith("int8"))
            self.forward = onnx_forward(self.path)
            if backend.endswith("int8"):
                logger.warning("=> int8 features are an approximation of the float32 ones "
                               "(README: cosine similarity measured by tools/bench_video.py)")

    def __call__(self, tracklets: Sequence[Tracklet]) -> np.ndarray:
        return embed_tracklets(self.model, tracklets, seq_len=self.seq_len,
                               batch_size=self.batch_size, norm=self.norm, device=self.device,
                               workers=0, max_clips=self.max_clips, progress=False,
                               desc=f"embedding ({self.backend})", forward=self.forward)
