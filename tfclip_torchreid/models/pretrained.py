"""CLIP weight sources for the visual towers (ViT and RN50) and, later, the CLIP text tower.

One home for everything that turns a ``pretrained=`` value into tensors:

* ``"openai"``: OpenAI's CLIP weights through open_clip's pretrained config (which names the
  Hugging Face hub repository, e.g. ``timm/vit_base_patch16_clip_224.openai``) and the hub client
  (cache, ``HF_ENDPOINT`` mirrors, ``HTTPS_PROXY``/``HTTP_PROXY``). See
  :func:`resolve_openai_weights` for the offline behaviour.
* local files (:func:`read_clip_checkpoint`): OpenAI's TorchScript archives (``ViT-B-16.pt``,
  ``RN50.pt``), open_clip / HF state dicts (``open_clip_pytorch_model.bin``, ``.safetensors``),
  visual-only state dicts and the authors' TF-CLIP checkpoints (``image_encoder.`` keys);
* :func:`split_clip_state_dict`: a full CLIP state dict -> its visual part (``visual.`` keys,
  prefix removed) and its text part (OpenAI names);
* :func:`resize_positional_embedding`: the grid resize of positional tables used by the authors
  (bilinear, ``align_corners=False``, no antialias, CLS row kept), e.g. the ViT-B/16 table
  14x14 -> 16x8 and the RN50 attention-pool table 7x7 -> 16x8;
* :func:`load_visual_weights`: load a visual state dict into a tower, resizing its tables, with
  errors that say which key does not fit.

Example:
    >>> import torch
    >>> full = {"visual.proj": torch.zeros(4, 2), "text_projection": torch.zeros(3, 2),
    ...         "positional_embedding": torch.zeros(77, 3), "logit_scale": torch.zeros(())}
    >>> parts = split_clip_state_dict(full)
    >>> sorted(parts.visual), sorted(parts.text)
    (['proj'], ['positional_embedding', 'text_projection'])
    >>> resize_positional_embedding(torch.zeros(50, 8), (16, 8)).shape
    torch.Size([129, 8])
"""

from __future__ import annotations

import os
import os.path as osp
import threading
import types
import warnings
import zipfile
from typing import Callable, Dict, List, Mapping, NamedTuple, Sequence, Tuple, TypeVar

import torch
import torch.nn as nn
from open_clip.model import resize_pos_embed

from .peft import is_peft_key

__all__ = [
    "CLIPStateDict",
    "DEFAULT_HUB_TIMEOUT",
    "JIT_META_KEYS",
    "TEXT_KEY_PREFIXES",
    "find_cached_openai_weights",
    "load_clip_state_dict",
    "load_visual_weights",
    "openai_weights_hint",
    "read_clip_checkpoint",
    "resize_positional_embedding",
    "resolve_openai_weights",
    "split_clip_state_dict",
    "visual_state_dict",
]

# Meta values stored in OpenAI's TorchScript archives (not parameters).
JIT_META_KEYS = ("input_resolution", "context_length", "vocab_size")
# The text tower of a full OpenAI / open_clip CLIP state dict (top-level names).
TEXT_KEY_PREFIXES = ("token_embedding.", "positional_embedding", "transformer.", "ln_final.",
                     "text_projection")
# Prefixes of the visual tower: open_clip/OpenAI, the authors' TF-CLIP model, our TF-CLIP model.
VISUAL_PREFIXES = ("visual.", "image_encoder.", "backbone.")
# Seconds for the first (metadata) request to the hub; HF_HUB_ETAG_TIMEOUT overrides it.
DEFAULT_HUB_TIMEOUT = 5.0

T = TypeVar("T")


class CLIPStateDict(NamedTuple):
    """A CLIP checkpoint split into its towers (keys relative to each tower)."""

    visual: Dict[str, torch.Tensor]
    text: Dict[str, torch.Tensor]


# ---------------------------------------------------------------------------- local files


def _is_torchscript(path: str) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("constants.pkl") for n in z.namelist())


def read_clip_checkpoint(path: str) -> Dict[str, torch.Tensor]:
    """Read a CLIP checkpoint file into a flat state dict of tensors.

    TorchScript archives (OpenAI's ``ViT-B-16.pt`` / ``RN50.pt``) are read with ``torch.jit``
    (``torch.load(weights_only=True)`` refuses them) and lose their meta values
    (``input_resolution``, ``context_length``, ``vocab_size``). Everything else goes through
    open_clip's ``load_state_dict`` (weights-only ``torch.load`` or safetensors; it unwraps a
    ``state_dict`` entry and strips ``module.``).

    Example:
        >>> import os, tempfile, torch
        >>> path = os.path.join(tempfile.mkdtemp(), "clip.pt")
        >>> torch.save({"state_dict": {"module.visual.proj": torch.ones(2, 2)}}, path)
        >>> list(read_clip_checkpoint(path))
        ['visual.proj']
    """
    from open_clip.factory import load_state_dict

    path = osp.expanduser(str(path))
    if not osp.isfile(path):
        raise FileNotFoundError(
            f"CLIP weights file not found: {path!r}; pass pretrained='openai' (download), the "
            f"path of an OpenAI CLIP file (ViT-B-16.pt, RN50.pt) / an open_clip state dict, or None"
        )
    if _is_torchscript(path):
        with warnings.catch_warnings():  # torch.jit is deprecated, still the only reader
            warnings.simplefilter("ignore", FutureWarning)
            state = torch.jit.load(path, map_location="cpu").state_dict()
        state = {k: v for k, v in state.items() if k not in JIT_META_KEYS}
    else:
        try:
            state = load_state_dict(path, device="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - re-raised with context
            raise RuntimeError(
                f"cannot read CLIP weights from {path}: {err}. Expected an OpenAI TorchScript "
                f"archive, a state dict saved with torch.save, or a .safetensors file"
            ) from err
    if not isinstance(state, Mapping) or not state or not all(
        torch.is_tensor(v) for v in state.values()
    ):
        raise ValueError(
            f"{path} does not contain a state dict of tensors (a dict of tensors, or one under "
            f"'state_dict'); got {type(state).__name__}"
        )
    return dict(state)


def split_clip_state_dict(state: Mapping[str, torch.Tensor]) -> CLIPStateDict:
    """Split a CLIP state dict into its visual and text towers.

    The visual tower is taken from the first of the prefixes ``visual.`` (OpenAI / open_clip),
    ``image_encoder.`` (the authors' TF-CLIP model) or ``backbone.`` (ours) present in ``state``,
    with the prefix removed. The text tower is only defined next to ``visual.`` keys (a full
    OpenAI / open_clip CLIP): ``token_embedding.weight``, ``positional_embedding``,
    ``transformer.*``, ``ln_final.*``, ``text_projection`` (OpenAI names, unchanged). A state
    dict with none of those prefixes is a visual-only state dict: everything is visual (the
    ViT's own ``positional_embedding`` and ``transformer.*`` then belong to the visual tower).

    Example:
        >>> import torch
        >>> split_clip_state_dict({"conv1.weight": torch.zeros(1)}).visual.keys()
        dict_keys(['conv1.weight'])
    """
    for prefix in VISUAL_PREFIXES:
        visual = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if visual:
            text = (
                {k: v for k, v in state.items() if k.startswith(TEXT_KEY_PREFIXES)}
                if prefix == "visual." else {}
            )
            return CLIPStateDict(visual, text)
    return CLIPStateDict({k: v for k, v in state.items() if k not in JIT_META_KEYS}, {})


def visual_state_dict(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The visual tower of a CLIP / TF-CLIP state dict (see :func:`split_clip_state_dict`)."""
    return split_clip_state_dict(state).visual


# ---------------------------------------------------------------------------- positional tables


def resize_positional_embedding(posemb: torch.Tensor, grid_size: Sequence[int]) -> torch.Tensor:
    """Resize a ``(1 + g*g, C)`` positional table to a ``(1 + h*w, C)`` one, as the authors do.

    Bilinear, ``align_corners=False``, no antialias; the first (CLS / pooled-token) row is kept.
    The source grid must be square (CLIP's 224x224 weights: ViT-B/16 14x14, RN50 7x7); the
    target ``grid_size = (h, w)`` may be any. A table that already has ``1 + h*w`` rows is
    returned as it is. Uses open_clip's ``resize_pos_embed`` with the authors' mode (open_clip's
    own loader default is bicubic + antialias).

    Example:
        >>> resize_positional_embedding(torch.zeros(197, 8), (21, 10)).shape
        torch.Size([211, 8])
    """
    grid = (int(grid_size[0]), int(grid_size[1]))
    if posemb.dim() != 2:
        raise ValueError(f"a positional table is (rows, channels), got shape {tuple(posemb.shape)}")
    if posemb.shape[0] == grid[0] * grid[1] + 1:
        return posemb
    side = int(round((posemb.shape[0] - 1) ** 0.5))
    if side < 1 or side * side != posemb.shape[0] - 1:
        raise ValueError(
            f"cannot resize a positional table of {posemb.shape[0]} rows to the {grid[0]}x"
            f"{grid[1]} grid: only square source grids (1 + g*g rows, e.g. CLIP's 224x224 weights) "
            f"can be resized; build the model with the checkpoint's image size / stride"
        )
    sd = {"visual.positional_embedding": posemb}
    target = types.SimpleNamespace(visual=types.SimpleNamespace(grid_size=grid))
    resize_pos_embed(sd, target, interpolation="bilinear", antialias=False)
    return sd["visual.positional_embedding"]


# ---------------------------------------------------------------------------- loading into a tower


def load_visual_weights(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    tables: Mapping[str, Sequence[int]],
    source: str = "",
    architecture: str = "",
) -> None:
    """Load a visual-tower state dict into ``module`` (strict), resizing positional tables.

    Args:
        module: the visual tower.
        state: its state dict (tower-relative keys, e.g. from :func:`split_clip_state_dict`).
        tables: positional-table keys of ``module`` -> their (h, w) grid; each is resized with
            :func:`resize_positional_embedding` when the row count differs.
        source: where the weights come from (for error messages).
        architecture: a short description of ``module`` (for error messages).

    Raises:
        ValueError: a key whose shape does not fit (another architecture), or missing /
            unexpected keys.
    """
    state = {k: v for k, v in state.items() if k not in JIT_META_KEYS}
    for key, grid in tables.items():
        if key in state:
            state[key] = resize_positional_embedding(state[key], grid)
    where = f" from {source}" if source else ""
    arch = f" ({architecture})" if architecture else ""
    own = module.state_dict()
    wrong = [
        f"{k} has shape {tuple(v.shape)} in the checkpoint but {tuple(own[k].shape)} in the model"
        for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    if wrong:
        raise ValueError(
            f"the CLIP weights{where} do not fit this architecture{arch}: {'; '.join(wrong[:4])}"
            f"{' ...' if len(wrong) > 4 else ''}; pick the arch that matches the checkpoint"
        )
    missing, unexpected = module.load_state_dict(state, strict=False)
    missing = [k for k in missing if not is_peft_key(k)]  # LoRA / prompts / adapters: not CLIP's
    if missing or unexpected:
        raise ValueError(
            f"the CLIP weights{where} do not match the visual encoder{arch}: missing "
            f"{sorted(missing)[:8]}{'...' if len(missing) > 8 else ''}, unexpected "
            f"{sorted(unexpected)[:8]}{'...' if len(unexpected) > 8 else ''}"
        )


# ---------------------------------------------------------------------------- 'openai' weights


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _hub_offline() -> bool:
    """HF_HUB_OFFLINE as the hub client read it at import, or as the environment says now."""
    from huggingface_hub import constants

    return bool(getattr(constants, "HF_HUB_OFFLINE", False)) or _env_true("HF_HUB_OFFLINE")


def _hub_timeout(timeout: float | None) -> float:
    if timeout is not None:
        return float(timeout)
    env = os.environ.get("HF_HUB_ETAG_TIMEOUT", "").strip()
    try:
        return float(env) if env else DEFAULT_HUB_TIMEOUT
    except ValueError:
        return DEFAULT_HUB_TIMEOUT


def _openai_cfg(openai_model: str) -> dict:
    from open_clip.pretrained import get_pretrained_cfg

    cfg = get_pretrained_cfg(openai_model, "openai")
    if not cfg:
        raise ValueError(
            f"open_clip has no 'openai' weights for {openai_model!r}; use an open_clip model name "
            f"such as 'ViT-B-16-quickgelu' or 'RN50-quickgelu'"
        )
    return cfg


def _hub_files(cfg: dict) -> Tuple[str, List[str]]:
    """(repo id, file names in open_clip's order of preference) of an open_clip pretrained cfg."""
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    hub = cfg.get("hf_hub", "")
    if not hub:
        return "", []
    repo, filename = os.path.split(hub)  # 'org/model/' -> ('org/model', '')
    return repo, [filename] if filename else [HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME]


def openai_weights_hint(openai_model: str) -> str:
    """How to use OpenAI's weights without network access (named in every offline error).

    Example:
        >>> "pretrained='/path/to/RN50.pt'" in openai_weights_hint("RN50-quickgelu")
        True
    """
    cfg = _openai_cfg(openai_model)
    url = cfg.get("url", "")
    name = osp.basename(url) if url else f"{openai_model}.pt"
    repo, _ = _hub_files(cfg)
    hub = f" or https://huggingface.co/{repo}" if repo else ""
    return (
        f"Download the OpenAI CLIP weights once on a machine with internet access ({name} from "
        f"{url or 'OpenAI'}{hub}) and pass the file: pretrained='/path/to/{name}' (an open_clip "
        f"state dict or HF 'open_clip_pytorch_model.bin' works too), or use pretrained=None for a "
        f"random initialisation."
    )


def find_cached_openai_weights(openai_model: str, cache_dir: str | None = None) -> str | None:
    """Path of OpenAI's weights for ``openai_model`` if already downloaded, else None (no network).

    Looks in the Hugging Face hub cache (``cache_dir`` or ``HF_HUB_CACHE``) for the files
    open_clip downloads, then in open_clip's URL cache (``cache_dir`` or ``~/.cache/clip``).
    """
    from huggingface_hub import try_to_load_from_cache

    cfg = _openai_cfg(openai_model)
    repo, names = _hub_files(cfg)
    for name in names:
        found = try_to_load_from_cache(repo, name, cache_dir=cache_dir)
        if isinstance(found, str) and osp.isfile(found):
            return found
    url = cfg.get("url", "")
    if url:
        local = osp.join(cache_dir or osp.expanduser("~/.cache/clip"), osp.basename(url))
        if osp.isfile(local):
            return local
    return None


def _with_deadline(fn: Callable[[], T], seconds: float) -> T:
    """Run ``fn`` in a daemon thread; TimeoutError if it has not returned after ``seconds``.

    Bounds what the HTTP client's own timeouts do not cover (a hanging DNS lookup).
    """
    box: dict = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as err:  # noqa: BLE001 - handed to the caller
            box["error"] = err

    thread = threading.Thread(target=target, daemon=True, name="tfclip-hub-probe")
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {seconds:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _check_hub_reachable(repo: str, filename: str, timeout: float, what: str, hint: str) -> None:
    """One metadata (HEAD) request to the hub, no retries; RuntimeError if it gets no answer.

    Any HTTP answer below 500 (found, 404, 401...) means the endpoint is reachable: the download
    itself then reports what is missing. Connection errors, timeouts, proxy errors, offline mode
    and 5xx answers raise a RuntimeError with ``hint``, within about ``timeout`` seconds
    (instead of the hub client's retries with back-off).
    """
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url

    try:
        from huggingface_hub.errors import HfHubHTTPError
    except ImportError:  # pragma: no cover - huggingface_hub < 0.23
        from huggingface_hub.utils import HfHubHTTPError

    url = hf_hub_url(repo, filename)
    try:
        _with_deadline(lambda: get_hf_file_metadata(url, timeout=timeout), timeout + 1.0)
    except HfHubHTTPError as err:
        status = getattr(getattr(err, "response", None), "status_code", None)
        if status is not None and status < 500:
            return
        cause = f"HTTP {status}" if status else f"{type(err).__name__}: {err}"
    except Exception as err:  # noqa: BLE001 - transport errors of any hub client version
        cause = f"{type(err).__name__}: {err}"
    else:
        return
    raise RuntimeError(
        f"pretrained='openai': the {what} weights are not in the local cache and the Hugging Face "
        f"hub at {constants.ENDPOINT} is unreachable (HEAD {url} with a {timeout:g} s timeout: "
        f"{cause}). Set HF_ENDPOINT for a mirror or HTTPS_PROXY for a proxy, "
        f"HF_HUB_ETAG_TIMEOUT for a slow link, or work offline: {hint}"
    )


def resolve_openai_weights(openai_model: str = "ViT-B-16-quickgelu",
                           cache_dir: str | None = None,
                           timeout: float | None = None) -> str:
    """Local path of OpenAI's CLIP weights through open_clip and the HF hub client; fails fast.

    1. Already downloaded (HF cache or open_clip's URL cache): that file, without network.
    2. ``HF_HUB_OFFLINE=1``: ``RuntimeError`` at once, naming the local-file alternative.
    3. Otherwise one metadata request through the hub client (so ``HF_ENDPOINT`` mirrors and
       ``HTTPS_PROXY``/``HTTP_PROXY`` apply) with a ``timeout`` of a few seconds
       (``HF_HUB_ETAG_TIMEOUT`` or 5 s) and no retries; no answer -> the same ``RuntimeError``
       within seconds (open_clip alone retries for about 46 s). Then open_clip's
       ``download_pretrained`` downloads into ``cache_dir`` (default: the HF hub cache).

    Args:
        openai_model: open_clip model name with ``openai`` weights (``ViT-B-16-quickgelu``,
            ``RN50-quickgelu``).
        cache_dir: HF hub cache folder (default ``HF_HUB_CACHE``, ``~/.cache/huggingface/hub``).
        timeout: seconds for the first request (default: ``HF_HUB_ETAG_TIMEOUT`` or 5).

    Example:
        >>> resolve_openai_weights("RN50-quickgelu")  # doctest: +SKIP
        '/home/me/.cache/huggingface/hub/models--timm--resnet50_clip.openai/snapshots/.../open_clip_model.safetensors'
    """
    from open_clip.pretrained import download_pretrained

    cfg = _openai_cfg(openai_model)
    cached = find_cached_openai_weights(openai_model, cache_dir)
    if cached:
        return cached
    hint = openai_weights_hint(openai_model)
    url = cfg.get("url", "")
    what = osp.basename(url) if url else openai_model
    if _hub_offline():
        raise RuntimeError(
            f"pretrained='openai': the {what} weights are not in the local cache and "
            f"HF_HUB_OFFLINE=1 forbids downloading them. {hint}"
        )
    repo, names = _hub_files(cfg)
    if repo:
        _check_hub_reachable(repo, names[0], _hub_timeout(timeout), what, hint)
    try:
        return download_pretrained(cfg, cache_dir=cache_dir)
    except Exception as err:  # noqa: BLE001 - re-raised with the hint
        raise RuntimeError(
            f"pretrained='openai': downloading the {what} weights failed ({err}). {hint}"
        ) from err


def load_clip_state_dict(source: str, openai_model: str,
                         cache_dir: str | None = None) -> CLIPStateDict:
    """Read CLIP weights from ``'openai'`` or a local file and split them into towers.

    Example:
        >>> parts = load_clip_state_dict("/path/to/RN50.pt", "RN50-quickgelu")  # doctest: +SKIP
        >>> parts.visual["attnpool.positional_embedding"].shape  # doctest: +SKIP
        torch.Size([50, 2048])
    """
    path = resolve_openai_weights(openai_model, cache_dir) if source == "openai" else source
    return split_clip_state_dict(read_clip_checkpoint(path))
