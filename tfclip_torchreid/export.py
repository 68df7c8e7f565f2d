"""Deployable TF-CLIP models: the eval-mode test forward exported to ONNX or TorchScript.

The exported graph is :class:`ExportWrapper`: clips ``(B, T, 3, H, W)`` float32 (normalised
frames, as the test loaders give them) and, only when the model uses the SIE camera embedding
(``model.cv_embed`` is not None), camera ids ``(B,)`` int64 in ``0..camera_num - 1``; it returns
the ``(B, feature_dim)`` test feature, exactly ``model.eval()(clips, cam_label)``. The batch axis
is always dynamic; the frame axis is fixed at ``frames`` unless ``dynamic_frames=True``.

Formats:

* ``"onnx"``: by default torch's ``torch.export``-based exporter (``dynamo=True``, torch's
  recommended path since 2.9; needs ``onnxscript``), which can also make the frame axis dynamic.
  ``dynamo=False`` selects torch's deprecated TorchScript-based exporter: much faster to export,
  no ``onnxscript``, but fixed frames only (``nn.MultiheadAttention``'s reshapes freeze the
  sequence length). Models under 2 GB are written as one self-contained ``.onnx`` file.
* ``"torchscript"``: ``torch.jit.trace`` under ``torch.no_grad()`` (attention takes PyTorch's
  fused inference kernels), saved with ``torch.jit.save``; load it with ``torch.jit.load``. The
  trace reads sizes from the input, so other batch sizes (and usually frame counts) run.

:func:`verify_export` runs the exported file (onnxruntime on the CPU for ONNX, ``torch.jit.load``
for TorchScript) and PyTorch on the same random clips, at a batch size other than the one
exported with (and, for ``dynamic_frames``, another frame count), and returns the largest
absolute difference.

Example:
    >>> from tfclip_torchreid.models import build_tfclip
    >>> model = build_tfclip("tfclip_tiny", num_classes=4, camera_num=2, layers=1)
    >>> path = export_model(model, "/tmp/tiny.pt", "torchscript", frames=4)  # doctest: +SKIP
    >>> verify_export(model, path, "torchscript", frames=4) < 1e-4  # doctest: +SKIP
    True
"""

from __future__ import annotations

import contextlib
import os
import os.path as osp
import warnings
from typing import Any, Callable, Dict, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from .engine.checkpoint import check_writable
from .models import DEFAULT_CAMERA_NUM, build_tfclip, zoo
from .models.weights import Weights, resolve_weights

__all__ = ["FORMATS", "INPUT_NAMES", "OUTPUT_NAME", "DEFAULT_EXPORT_DIR", "ExportWrapper",
           "uses_cameras", "example_inputs", "export_model", "verify_export", "run_exported",
           "exported_files", "load_inference_model", "default_export_path",
           "default_export_dir", "check_export_folder"]

FORMATS = ("onnx", "torchscript")
#: graph input names (``cam_ids`` only for models with SIE) and output name
INPUT_NAMES = ("clips", "cam_ids")
OUTPUT_NAME = "feature"
#: the exported graph's sample batch (torch.export specialises sizes 0 and 1)
EXPORT_BATCH = 2
#: ONNX protobuf limit: larger models keep their weights in a side file
_ONNX_SINGLE_FILE_BYTES = 2 * 1024**3
#: where exports of random or zoo weights go when no folder is given (weights files: beside them)
DEFAULT_EXPORT_DIR = osp.join("log", "export")
#: torch's deprecation notices of the TorchScript calls this module makes on purpose (TorchScript
#: is a format users ask for); only these are silenced, only around those calls
_JIT_DEPRECATED = r"`torch\.jit\.(trace|trace_method|save|load)` is deprecated"


def uses_cameras(model: nn.Module) -> bool:
    """Whether ``model`` takes camera ids (SIE camera embedding present)."""
    return getattr(model, "cv_embed", None) is not None


class ExportWrapper(nn.Module):
    """The graph that gets exported: ``forward(clips, cam_ids=None)`` -> test feature.

    Camera ids are passed to the model only when it has an SIE table; a model without SIE is
    exported with the clips as its only input.

    Example:
        >>> from tfclip_torchreid.models import build_tfclip
        >>> m = build_tfclip("tfclip_tiny", num_classes=3, camera_num=0, layers=1)
        >>> w = ExportWrapper(m.eval())
        >>> w(torch.randn(2, 3, 3, *m.cfg.image_size)).shape == (2, m.feature_dim)
        True
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.with_cameras = uses_cameras(model)

    def forward(self, clips: torch.Tensor, cam_ids: torch.Tensor | None = None) -> torch.Tensor:
        if self.model.training:
            raise RuntimeError("the exported graph is the test forward: call model.eval() first")
        return self.model(clips, cam_ids if self.with_cameras else None)


def _device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def example_inputs(model: nn.Module, batch: int = EXPORT_BATCH, frames: int = 8,
                   seed: int = 0) -> Tuple[torch.Tensor, ...]:
    """Random ``(clips,)`` or ``(clips, cam_ids)`` for ``model`` on its device (seeded).

    Example:
        >>> from tfclip_torchreid.models import build_tfclip
        >>> m = build_tfclip("tfclip_tiny", num_classes=3, camera_num=4, layers=1)
        >>> [tuple(t.shape) for t in example_inputs(m, batch=3, frames=2)]
        [(3, 2, 3, 128, 64), (3,)]
    """
    g = torch.Generator().manual_seed(seed)
    h, w = model.cfg.image_size
    clips = torch.randn(batch, frames, 3, h, w, generator=g).to(_device(model))
    if not uses_cameras(model):
        return (clips,)
    cams = torch.randint(0, int(model.cfg.camera_num), (batch,), generator=g)
    return clips, cams.to(_device(model))


def default_export_path(arch: str, fmt: str) -> str:
    """``<arch>.onnx`` or ``<arch>.pt`` (TorchScript)."""
    return f"{arch}.onnx" if fmt == "onnx" else f"{arch}.pt"


def default_export_dir(weights: str | None) -> str:
    """Where an export goes without a folder: beside a weights file, else (random weights, a
    zoo name) :data:`DEFAULT_EXPORT_DIR`.

    Example:
        >>> default_export_dir("log/mars/checkpoints/latest.pth")
        'log/mars/checkpoints'
        >>> default_export_dir("zoo:clipreid_vitb16_market1501"), default_export_dir(None)
        ('log/export', 'log/export')
    """
    if weights is None or zoo.is_zoo(weights):
        return DEFAULT_EXPORT_DIR
    return osp.dirname(osp.expanduser(weights)) or "."


def check_export_folder(folder: str) -> None:
    """Create ``folder`` if needed and prove it is writable, before the model is loaded and
    traced; a PermissionError names it and ``--out``."""
    check_writable(folder, option="--out")


def exported_files(path: str) -> List[str]:
    """The files an export wrote: ``path`` and an ONNX external-data file if there is one."""
    files = [path]
    data = path + ".data"
    if path.endswith(".onnx") and osp.isfile(data):
        files.append(data)
    return files


@contextlib.contextmanager
def _eval(model: nn.Module):
    training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(training)


@contextlib.contextmanager
def _quiet_tracer():
    # The models check their inputs (shape, camera range) with Python comparisons; a tracer
    # evaluates them once on the example and warns that they are not recorded. They are checks,
    # not computation, so nothing of the feature is frozen.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        yield


@contextlib.contextmanager
def _jit_on_purpose():
    """Silences torch's deprecation notices of ``torch.jit.trace`` / ``trace_method`` / ``save``
    / ``load`` (4 per export) around our own calls; every other warning still shows."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_JIT_DEPRECATED, category=FutureWarning)
        yield


def _check_args(model: nn.Module, fmt: str, frames: int, dynamic_frames: bool,
                dynamo: bool) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    if not hasattr(model, "cfg") or not hasattr(model.cfg, "image_size"):
        raise TypeError(f"expected a TF-CLIP model (with .cfg.image_size), got "
                        f"{type(model).__name__}")
    if int(frames) < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    if dynamic_frames and int(frames) < 2:
        raise ValueError("a dynamic frame axis needs an example with frames >= 2 (torch.export "
                         "specialises sizes 0 and 1); pass frames=8")
    if fmt == "onnx" and dynamic_frames and not dynamo:
        raise ValueError(
            "the TorchScript-based ONNX exporter (dynamo=False) freezes the number of frames in "
            "the attention reshapes: use dynamo=True (default) for a dynamic frame axis, or "
            "export with a fixed frame count")


def _export_torchscript(wrapper: ExportWrapper, args: Tuple[torch.Tensor, ...],
                        path: str) -> None:
    with torch.no_grad(), _quiet_tracer(), _jit_on_purpose():
        traced = torch.jit.trace(wrapper, args, check_trace=False)
        torch.jit.save(traced, path)


def _onnx_names(args: Sequence[torch.Tensor]) -> List[str]:
    return list(INPUT_NAMES[: len(args)])


def _export_onnx_dynamo(wrapper: ExportWrapper, args: Tuple[torch.Tensor, ...], path: str,
                        dynamic_frames: bool, opset: int | None) -> None:
    dyn = torch.export.Dim.DYNAMIC
    clip_dims = {0: dyn, 1: dyn} if dynamic_frames else {0: dyn}
    shapes = (clip_dims, {0: dyn})[: len(args)]
    try:
        program = torch.export.export(wrapper, args, dynamic_shapes=shapes, strict=False)
    except Exception as err:  # noqa: BLE001 - re-raised with what to do
        what = "batch and frame axes" if dynamic_frames else "batch axis"
        hint = (" Export with a fixed number of frames (no dynamic_frames / --dynamic-frames)."
                if dynamic_frames else "")
        raise RuntimeError(f"torch.export cannot make the {what} of this model dynamic: "
                           f"{type(err).__name__}: {err}.{hint}") from err
    onnx_program = torch.onnx.export(program, args, input_names=_onnx_names(args),
                                     output_names=[OUTPUT_NAME], opset_version=opset,
                                     dynamo=True, verbose=False)
    size = sum(p.numel() * p.element_size() for p in wrapper.parameters())
    onnx_program.save(path, external_data=size >= _ONNX_SINGLE_FILE_BYTES)


def _export_onnx_legacy(wrapper: ExportWrapper, args: Tuple[torch.Tensor, ...], path: str,
                        opset: int | None) -> None:
    names = _onnx_names(args)
    axes: Dict[str, Dict[int, str]] = {name: {0: "batch"} for name in names + [OUTPUT_NAME]}
    # grad mode on: under no_grad nn.MultiheadAttention takes a fused kernel ONNX has no op for
    with torch.enable_grad(), _quiet_tracer():
        torch.onnx.export(wrapper, args, path, input_names=names, output_names=[OUTPUT_NAME],
                          dynamic_axes=axes, opset_version=opset, dynamo=False)


def export_model(model: nn.Module, path: str, format: str = "onnx", frames: int = 8,
                 dynamic_frames: bool = False, opset: int | None = None,
                 dynamo: bool = True) -> str:
    """Export the test forward of ``model`` (see the module notes) to ``path``.

    Args:
        model: a TF-CLIP model (any architecture of :func:`~.models.list_archs`); exported in
            eval mode, on its device (the CPU gives files that run anywhere), and left in the
            mode it was in.
        path: output file (folders are created).
        format: ``"onnx"`` or ``"torchscript"``.
        frames: frames per clip of the example input (the fixed frame count of the graph).
        dynamic_frames: also make the frame axis dynamic (ONNX: needs ``dynamo=True``).
        opset: ONNX opset (None: the exporter's default).
        dynamo: ONNX exporter: ``torch.export``-based (True) or TorchScript-based (False).

    Returns:
        ``path``.

    Raises:
        RuntimeError: the frame (or batch) axis cannot be dynamic for this model.

    Example:
        >>> export_model(model, "tfclip_vitb16.onnx", "onnx", frames=8)  # doctest: +SKIP
        'tfclip_vitb16.onnx'
    """
    _check_args(model, format, frames, dynamic_frames, dynamo)
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    wrapper = ExportWrapper(model)
    with _eval(model):
        args = example_inputs(model, EXPORT_BATCH, int(frames))
        if format == "torchscript":
            _export_torchscript(wrapper, args, path)
        elif dynamo:
            _export_onnx_dynamo(wrapper, args, path, dynamic_frames, opset)
        else:
            _export_onnx_legacy(wrapper, args, path, opset)
    return path


def run_exported(path: str, format: str, device: str | torch.device = "cpu"
                 ) -> Callable[..., np.ndarray]:
    """A function ``f(clips[, cam_ids]) -> (B, D) numpy`` running the exported file.

    ONNX runs in onnxruntime on the CPU; TorchScript on ``device`` (a trace keeps the device
    it was made on: export on the CPU for a file that runs anywhere).

    Example:
        >>> f = run_exported("tfclip_vitb16.onnx", "onnx")  # doctest: +SKIP
        >>> f(clips, cam_ids).shape  # doctest: +SKIP
        (4, 2048)
    """
    if format == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]

        def run_onnx(*inputs: torch.Tensor) -> np.ndarray:
            if len(inputs) != len(names):
                raise ValueError(f"{path} takes inputs {names}, got {len(inputs)} tensors")
            feed = {n: t.detach().cpu().numpy() for n, t in zip(names, inputs)}
            return session.run([OUTPUT_NAME], feed)[0]

        return run_onnx
    if format == "torchscript":
        with _jit_on_purpose():
            module = torch.jit.load(path, map_location=device)

        def run_script(*inputs: torch.Tensor) -> np.ndarray:
            with torch.no_grad():
                return module(*(t.to(device) for t in inputs)).float().cpu().numpy()

        return run_script
    raise ValueError(f"format must be one of {FORMATS}, got {format!r}")


def verify_export(model: nn.Module, path: str, format: str, frames: int = 8,
                  batch: int = 3, dynamic_frames: bool = False, seed: int = 0) -> float:
    """Largest ``|exported - PyTorch|`` of the test feature on random clips.

    Checks ``batch`` clips of ``frames`` frames (``batch`` differs from the exported example's
    2, which exercises the dynamic batch axis) and, with ``dynamic_frames``, also ``frames + 3``
    frames and a single frame.

    Raises:
        RuntimeError: the exported model fails on one of the inputs (with the shape named).

    Example:
        >>> verify_export(model, "tfclip_vitb16.onnx", "onnx")  # doctest: +SKIP
        2.1e-06
    """
    run = run_exported(path, format, _device(model))
    counts = [int(frames)] + ([int(frames) + 3, 1] if dynamic_frames else [])
    worst = 0.0
    with _eval(model), torch.no_grad():
        for k, t in enumerate(counts):
            inputs = example_inputs(model, batch, t, seed + k)
            expected = ExportWrapper(model)(*inputs).float().cpu().numpy()
            try:
                got = run(*inputs)
            except Exception as err:  # noqa: BLE001 - re-raised with the input named
                raise RuntimeError(
                    f"the exported {format} model {path} fails on clips of shape "
                    f"{tuple(inputs[0].shape)}: {type(err).__name__}: {err}"
                    + (" (the frame axis is not dynamic in this graph: export with a fixed "
                       "frame count)" if t != frames else "")) from err
            if got.shape != expected.shape:
                raise RuntimeError(f"{path} returned shape {got.shape}, PyTorch {expected.shape}")
            worst = max(worst, float(np.abs(got - expected).max()))
    return worst


def load_inference_model(arch: str | None = None, weights: str | Weights | None = None,
                         camera_num: int | None = None, device: str | torch.device = "cpu",
                         **overrides: Any) -> nn.Module:
    """The model to export or embed with, in eval mode on ``device``.

    ``weights`` (a file, ``"zoo:NAME"`` or already resolved :class:`~.models.weights.Weights`)
    are resolved once (:func:`~.models.weights.resolve_weights`): the model they describe is
    built (identities, cameras and switches from the file, its zoo entry or its tensor shapes;
    ``arch``, if given, must match a file that names its architecture and is needed for one
    that does not), and the weights the test feature needs are loaded. Without weights, ``arch``
    is built with random weights and ``camera_num`` SIE cameras (default 6, MARS), e.g. to try
    an export. ``overrides`` are model options (e.g. ``test_feature="paper"``; each change of
    an option the weights decide is logged).

    Example:
        >>> m = load_inference_model("tfclip_tiny", camera_num=0, layers=1)
        >>> m.training, m.cv_embed is None
        (False, True)
    """
    if weights is None:
        if arch is None:
            raise ValueError("give --arch (random weights) or --weights (a checkpoint)")
        cams = DEFAULT_CAMERA_NUM if camera_num is None else int(camera_num)
        model = build_tfclip(arch, num_classes=1, camera_num=cams, pretrained=None, **overrides)
    else:
        model = resolve_weights(weights, arch).build(inference=True, **overrides)
    return model.to(device).eval()
