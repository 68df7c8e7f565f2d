"""CLIP visual encoder of TF-CLIP (paper Eq. 2-3), built from open_clip's ``VisionTransformer``.

Paper Eq. 2: ``z_t = [CLS_t, E_emb^T I_t,1 ... E_emb^T I_t,Np] + e_sp``; Eq. 3: ``z_t = V(z_t)``;
the frame representation is ``f_t = VP(z_t,0)`` with the visual projection ``VP = proj``.

What the released code computes (spec section 1), reproduced here on open_clip's public submodules
(``conv1``, ``class_embedding``, ``positional_embedding``, ``ln_pre``, ``transformer.resblocks``,
``ln_post``, ``proj``):

* input 256x128, patch 16, stride 16 by default (grid 16x8, 129 tokens). A stride smaller than the
  patch gives overlapping patches: grid ``((H - P) // S + 1, (W - P) // S + 1)`` (stride 12: 21x10);
* the SIE camera embedding is added to the CLS token **only**, before the positional embedding;
* ``ln_post`` is applied to **all** tokens and **all** tokens are projected (open_clip applies
  them to the pooled CLS only); the forward returns ``(tokens, tokens @ proj)``;
* QuickGELU (OpenAI weights), pre-LN blocks, no dropout;
* the 14x14 positional table of the 224 weights is resized once at load time with **bilinear,
  align_corners=False, no antialias** (open_clip's loader uses bicubic + antialias).

Example:
    >>> import torch
    >>> m = CLIPVisualBackbone(image_size=(64, 32), width=32, layers=2, heads=4, output_dim=16)
    >>> tokens, tokens_proj = m(torch.randn(2, 3, 64, 32))
    >>> tuple(tokens.shape), tuple(tokens_proj.shape)
    ((2, 9, 32), (2, 9, 16))
"""

from __future__ import annotations

import os
import os.path as osp
import socket
import threading
import types
import warnings
import zipfile
from typing import Dict, Sequence, Tuple, Union

import torch
import torch.nn as nn
from open_clip.model import resize_pos_embed
from open_clip.transformer import QuickGELU, VisionTransformer

__all__ = [
    "CLIPVisualBackbone",
    "grid_size_for",
    "resize_positional_embedding",
    "read_clip_checkpoint",
    "resolve_openai_weights",
    "network_available",
]

# Meta keys of OpenAI's TorchScript CLIP archives (not parameters).
_JIT_META_KEYS = ("input_resolution", "context_length", "vocab_size")
_OPENAI_HINT = (
    "Download the OpenAI CLIP weights once on a machine with internet access "
    "(ViT-B-16.pt from {url}) and pass the file: pretrained='/path/to/ViT-B-16.pt' "
    "(an open_clip state dict or HF 'open_clip_pytorch_model.bin' works too), "
    "or use pretrained=None for a random initialisation."
)


def grid_size_for(image_size: Sequence[int], patch_size: int, stride: int) -> Tuple[int, int]:
    """Token grid of a patch conv: ``((H - P) // S + 1, (W - P) // S + 1)``.

    Example:
        >>> grid_size_for((256, 128), 16, 12)
        (21, 10)
    """
    h, w = int(image_size[0]), int(image_size[1])
    if h < patch_size or w < patch_size:
        raise ValueError(f"image size {h}x{w} is smaller than the patch size {patch_size}")
    if not 0 < stride <= patch_size:
        raise ValueError(f"stride must be in 1..patch_size ({patch_size}), got {stride}")
    return (h - patch_size) // stride + 1, (w - patch_size) // stride + 1


class CLIPVisualBackbone(VisionTransformer):
    """open_clip's CLIP ``VisionTransformer`` with the TF-CLIP forward (all tokens, SIE on CLS).

    Args:
        image_size: (H, W) of the input frames.
        patch_size: patch (conv kernel) size.
        stride: patch stride; ``stride < patch_size`` gives overlapping patches.
        width, layers, heads, mlp_ratio: transformer size (ViT-B/16: 768, 12, 12, 4.0).
        output_dim: size of the joint CLIP space (``proj`` is width x output_dim).
        quick_gelu: QuickGELU (OpenAI CLIP) instead of ``nn.GELU``.

    Example:
        >>> import torch
        >>> m = CLIPVisualBackbone(image_size=(64, 32), width=32, layers=1, heads=2, output_dim=8)
        >>> m(torch.randn(1, 3, 64, 32), cls_embed=torch.randn(1, 32))[1].shape
        torch.Size([1, 9, 8])
    """

    def __init__(
        self,
        image_size: Sequence[int] = (256, 128),
        patch_size: int = 16,
        stride: int | None = None,
        width: int = 768,
        layers: int = 12,
        heads: int = 12,
        mlp_ratio: float = 4.0,
        output_dim: int = 512,
        quick_gelu: bool = True,
    ) -> None:
        image_size = (int(image_size[0]), int(image_size[1]))
        stride = patch_size if stride is None else int(stride)
        grid = grid_size_for(image_size, patch_size, stride)
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        super().__init__(
            image_size=image_size,
            patch_size=patch_size,
            width=width,
            layers=layers,
            heads=heads,
            mlp_ratio=mlp_ratio,
            output_dim=output_dim,
            act_layer=QuickGELU if quick_gelu else nn.GELU,
            pool_type="none",
            output_tokens=True,
        )
        self.stride = stride
        self.width = width
        if stride != patch_size or tuple(self.grid_size) != grid:
            # open_clip's conv1 uses stride = patch size; overlapping patches need their own conv
            # and a positional table sized for the larger grid.
            self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=stride, bias=False)
            self.grid_size = grid
            self.positional_embedding = nn.Parameter(
                width**-0.5 * torch.randn(grid[0] * grid[1] + 1, width)
            )

    @property
    def num_tokens(self) -> int:
        """1 (CLS) + number of patches."""
        return self.grid_size[0] * self.grid_size[1] + 1

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each transformer block in backward (``torch.utils.checkpoint``)."""
        self.transformer.grad_checkpointing = bool(enable)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear error if ``x`` is not (N, 3, H, W) at the configured size."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(
                f"the CLIP visual encoder takes frames (N, 3, H, W), got shape {tuple(x.shape)}"
            )
        if tuple(x.shape[-2:]) != tuple(self.image_size):
            h, w = self.image_size
            raise ValueError(
                f"this model expects {h}x{w} (HxW) frames, got {x.shape[-2]}x{x.shape[-1]}: resize "
                f"the input to {h}x{w} (e.g. height={h}, width={w} in the data manager) or build "
                f"the model with image_size=({x.shape[-2]}, {x.shape[-1]})"
            )

    def forward(
        self,
        x: torch.Tensor,
        cls_embed: torch.Tensor | None = None,
        project: bool = True,
    ) -> Union[Tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
        """Encode frames.

        Args:
            x: frames (N, 3, H, W).
            cls_embed: optional (N, width) added to the CLS token before the positional
                embedding (SIE camera embedding, already scaled by its coefficient).
            project: also return ``tokens @ proj``.

        Returns:
            ``(tokens, tokens_proj)``: (N, L, width) after ``ln_post`` on every token and
            (N, L, output_dim); only ``tokens`` when ``project=False``.
        """
        self.check_input(x)
        x = self.conv1(x).flatten(2).transpose(1, 2)  # (N, gh*gw, width), row-major grid
        cls = self.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], 1, -1)
        if cls_embed is not None:
            cls = cls + cls_embed.to(x.dtype).unsqueeze(1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.ln_pre(x)
        x = self.transformer(x)  # open_clip's blocks (activation checkpointing included)
        tokens = self.ln_post(x)
        if not project:
            return tokens
        return tokens, tokens @ self.proj

    # ------------------------------------------------------------------ weights
    def load_pretrained(self, source: str, cache_dir: str | None = None,
                        openai_model: str = "ViT-B-16-quickgelu") -> None:
        """Load CLIP visual weights: ``'openai'`` (open_clip cache / download) or a local file.

        Local files may be an OpenAI TorchScript archive (``ViT-B-16.pt``), an open_clip / full
        CLIP state dict (``visual.`` keys), a visual-only state dict, a ``.safetensors`` file, or
        an authors' TF-CLIP checkpoint (``image_encoder.`` keys). The positional embedding is
        resized bilinearly (align_corners=False, no antialias) to this model's grid.
        """
        if source == "openai":
            source = resolve_openai_weights(openai_model, cache_dir=cache_dir)
        state = visual_state_dict(read_clip_checkpoint(source))
        self.load_visual_state_dict(state, source=str(source))

    def load_visual_state_dict(self, state: Dict[str, torch.Tensor], source: str = "") -> None:
        """Load a visual-tower state dict (open_clip key names), resizing the pos-embed."""
        state = dict(state)
        for k in _JIT_META_KEYS:
            state.pop(k, None)
        where = f" from {source}" if source else ""
        own = self.state_dict()
        for key in ("conv1.weight", "proj"):
            if key in state and key in own and tuple(state[key].shape) != tuple(own[key].shape):
                raise ValueError(
                    f"the CLIP weights{where} do not fit this architecture: {key} has shape "
                    f"{tuple(state[key].shape)} in the checkpoint but {tuple(own[key].shape)} in "
                    f"the model (width {self.width}, output_dim {self.output_dim}, patch "
                    f"{self.patch_size[0]}); pick the arch that matches the checkpoint"
                )
        if "positional_embedding" in state:
            state["positional_embedding"] = resize_positional_embedding(
                state["positional_embedding"], self.grid_size
            )
        missing, unexpected = self.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"the CLIP weights{where} do not match the visual encoder: missing "
                f"{sorted(missing)[:8]}{'...' if len(missing) > 8 else ''}, unexpected "
                f"{sorted(unexpected)[:8]}{'...' if len(unexpected) > 8 else ''} "
                f"(layers in model: {len(self.transformer.resblocks)})"
            )


def resize_positional_embedding(posemb: torch.Tensor, grid_size: Sequence[int]) -> torch.Tensor:
    """Resize a (1 + g*g, C) positional table to ``grid_size`` as the authors do.

    Bilinear, ``align_corners=False``, no antialias; the CLS row is kept. Uses open_clip's
    ``resize_pos_embed`` (which takes a square source grid).

    Example:
        >>> resize_positional_embedding(torch.zeros(197, 8), (16, 8)).shape
        torch.Size([129, 8])
    """
    grid = (int(grid_size[0]), int(grid_size[1]))
    if posemb.shape[0] == grid[0] * grid[1] + 1:
        return posemb
    side = int(round((posemb.shape[0] - 1) ** 0.5))
    if side * side != posemb.shape[0] - 1:
        raise ValueError(
            f"cannot resize a positional embedding of {posemb.shape[0]} rows to the {grid[0]}x"
            f"{grid[1]} grid: only square source grids (1 + g*g rows, e.g. the 224x224 CLIP "
            f"weights) can be resized; build the model with the checkpoint's image size/stride"
        )
    sd = {"visual.positional_embedding": posemb}
    shim = types.SimpleNamespace(visual=types.SimpleNamespace(grid_size=grid))
    resize_pos_embed(sd, shim, interpolation="bilinear", antialias=False)
    return sd["visual.positional_embedding"]


def _is_torchscript(path: str) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("constants.pkl") for n in z.namelist())


def read_clip_checkpoint(path: str) -> Dict[str, torch.Tensor]:
    """Read a CLIP checkpoint file into a flat state dict (any of the supported formats)."""
    path = osp.expanduser(str(path))
    if not osp.isfile(path):
        raise FileNotFoundError(
            f"CLIP weights file not found: {path!r}; pass pretrained='openai' (download), "
            f"a path to ViT-B-16.pt / an open_clip state dict, or None"
        )
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return dict(load_file(path, device="cpu"))
    if _is_torchscript(path):
        with warnings.catch_warnings():  # torch.jit is deprecated, still the only reader
            warnings.simplefilter("ignore", FutureWarning)
            state = torch.jit.load(path, map_location="cpu").state_dict()
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - re-raised with context
            raise RuntimeError(
                f"cannot read CLIP weights from {path}: {err}. Expected an OpenAI TorchScript "
                f"archive, a state dict saved with torch.save, or a .safetensors file"
            ) from err
    if isinstance(state, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"{path} does not contain a state dict of tensors")
    return {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}


def visual_state_dict(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Keep the visual tower of a full CLIP / TF-CLIP state dict, with open_clip key names."""
    for prefix in ("visual.", "image_encoder.", "backbone."):
        sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if sub:
            return sub
    return {k: v for k, v in state.items() if k not in _JIT_META_KEYS}


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def network_available(host: str = "huggingface.co", port: int = 443, timeout: float = 3.0) -> bool:
    """True if a TCP connection to ``host`` opens within ``timeout`` s (DNS included)."""
    result = [False]

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result[0] = True
        except OSError:
            pass

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return result[0]


def _cached_openai_file(cfg: dict, cache_dir: str | None) -> str | None:
    """Path of already-downloaded weights for an open_clip pretrained cfg, or None."""
    hub = cfg.get("hf_hub", "")
    if hub:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:  # pragma: no cover - open_clip depends on huggingface_hub
            try_to_load_from_cache = None
        if try_to_load_from_cache is not None:
            repo, filename = os.path.split(hub)  # 'org/model/' -> ('org/model', '')
            names = [filename] if filename else [
                "open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
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


def resolve_openai_weights(openai_model: str = "ViT-B-16-quickgelu",
                           cache_dir: str | None = None) -> str:
    """Local path of OpenAI's CLIP weights via open_clip (cache, else download); fails fast.

    Offline (``HF_HUB_OFFLINE=1`` or no connection within 3 s) and not cached: ``RuntimeError``
    naming the local-file alternative, instead of open_clip's 46 s of retries.
    """
    from open_clip.pretrained import download_pretrained, get_pretrained_cfg

    cfg = get_pretrained_cfg(openai_model, "openai")
    if not cfg:
        raise ValueError(f"open_clip has no 'openai' weights for {openai_model!r}")
    cached = _cached_openai_file(cfg, cache_dir)
    if cached:
        return cached
    hint = _OPENAI_HINT.format(url=cfg.get("url", "openaipublic.azureedge.net"))
    if _env_true("HF_HUB_OFFLINE"):
        raise RuntimeError(
            f"pretrained='openai': the CLIP weights are not in the local cache and "
            f"HF_HUB_OFFLINE=1 forbids downloading them. {hint}"
        )
    if not network_available():
        raise RuntimeError(
            f"pretrained='openai': the CLIP weights are not in the local cache and the network "
            f"is unreachable (no connection to huggingface.co within 3 s). {hint}"
        )
    try:
        return download_pretrained(cfg, cache_dir=cache_dir)
    except Exception as err:  # noqa: BLE001
        raise RuntimeError(f"pretrained='openai': download failed ({err}). {hint}") from err
