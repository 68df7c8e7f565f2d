"""TF-CLIP: text-free CLIP for video person ReID (Yu et al., AAAI 2024), the full model.

Paper: CLIP visual encoder (Eq. 2-3) -> sequence feature v (TAP of projected CLS) -> V2M loss
against the CLIP-Memory updated by SSP (Eq. 4-5, 10); TMD (Eq. 6-9) gives v_hat; losses Eq. 11;
test feature v (512) ⊕ v_hat (768).

Released code (spec sections 1-5), the defaults here:

* SIE camera embedding (coefficient 1.0) on the CLS token of every frame of a clip, at train
  **and** test time (broadcast to every clip of a tracklet, fixing the authors' crash B1);
* three ID heads [CLS 768, projected CLS 512, TMD 768] + TMD frame head, features pre-BN;
* SSP key/value = each sample's frame-averaged projected token map; ``M'_b = M + P_b``;
  V2M logits = raw dot products with the projected CLS mean;
* TMD on the detached final tokens;
* test feature ``released`` = [CLS 768, projected CLS 512, TMD 768] = 2048-d pre-BN;
  ``paper`` = [projected 512, temporal]; ``after`` = [BN(CLS) 768, BN(projected) 512].

Example:
    >>> import torch
    >>> from tfclip_torchreid.models import build_tfclip
    >>> model = build_tfclip("tfclip_tiny", num_classes=4, camera_num=2)
    >>> model.memory.set(torch.randn(4, model.embed_dim))
    >>> out = model(torch.randn(2, 3, 3, *model.cfg.image_size), cam_label=torch.tensor([0, 1]))
    >>> [t.shape[1] for t in out.id_logits], tuple(out.v2m_logits.shape)
    ([4, 4, 4], (2, 4))
    >>> _ = model.eval()
    >>> model(torch.randn(5, 3, *model.cfg.image_size)).shape == (5, model.feature_dim)
    True
"""

from __future__ import annotations

from typing import List, NamedTuple, Tuple

import torch
import torch.nn as nn

from .backbone import CLIPVisualBackbone
from .clip_memory import CLIPMemory
from .config import TFCLIPConfig
from .heads import bn_neck, id_classifier
from .ssp import SequenceSpecificPrompt, v2m_logits
from .temporal import FUSION_CHOICES, build_temporal_fusion
from .tmd import TemporalMemoryDiffusion

__all__ = ["TFCLIP", "TFCLIPConfig", "TFCLIPOutput"]

class TFCLIPOutput(NamedTuple):
    """Training-mode output of :class:`TFCLIP`."""

    id_logits: List[torch.Tensor]  # [cls, proj, temporal], each (B, Y)
    features: List[torch.Tensor]  # pre-BN [B x 768, B x 512, B x temporal]
    frame_logits: torch.Tensor | None  # (B*T, Y) for temporal="tmd", else None
    v2m_logits: torch.Tensor | None  # (B, Y) or None


class TFCLIP(nn.Module):
    """TF-CLIP model; build it with :func:`~tfclip_torchreid.models.build_tfclip`.

    Forward ``model(x, cam_label=None, full_output=False)``: x (B, T, 3, H, W) clips or
    (B, 3, H, W) images (single-frame clips); cam_label (B,) camera index per clip, or None (no
    SIE). Eval mode returns the (B, feature_dim) test feature. Training mode returns
    :class:`TFCLIPOutput` (every head, what :class:`~tfclip_torchreid.losses.TFCLIPLoss` and our
    engine use) unless the model was built for one of torchreid's own engines with
    ``loss="softmax"`` (then the list of ID logits) or ``loss="triplet"`` (ID logits and features,
    torchreid's ``(outputs, features)``); ``full_output=True`` always gives :class:`TFCLIPOutput`.

    Args:
        cfg: the model configuration.
        loss: torchreid's loss name (``build_model(..., loss=...)``) or None (full output).
    """

    TORCHREID_LOSSES = ("softmax", "triplet")

    def __init__(self, cfg: TFCLIPConfig, loss: str | None = None) -> None:
        super().__init__()
        if loss is not None and loss not in self.TORCHREID_LOSSES:
            raise ValueError(f"loss must be one of {self.TORCHREID_LOSSES} or None, got {loss!r}")
        self.loss = loss
        self.cfg = cfg
        self.num_classes = cfg.num_classes
        self.width, self.embed_dim = cfg.width, cfg.embed_dim
        self.backbone = CLIPVisualBackbone(
            image_size=cfg.image_size, patch_size=cfg.patch_size, stride=cfg.stride,
            width=cfg.width, layers=cfg.layers, heads=cfg.heads, mlp_ratio=cfg.mlp_ratio,
            output_dim=cfg.embed_dim, quick_gelu=cfg.quick_gelu,
        )
        if cfg.grad_checkpointing:
            self.backbone.set_grad_checkpointing(True)
        self.cv_embed: nn.Parameter | None = None
        if cfg.use_sie and cfg.camera_num > 0:
            self.cv_embed = nn.Parameter(torch.zeros(cfg.camera_num, cfg.width))
            nn.init.trunc_normal_(self.cv_embed, std=0.02)

        self.memory: CLIPMemory | None = None
        self.ssp: SequenceSpecificPrompt | None = None
        if cfg.use_memory:
            self.memory = CLIPMemory(cfg.num_classes, cfg.embed_dim)
            if cfg.use_ssp:
                self.ssp = SequenceSpecificPrompt(
                    cfg.embed_dim, cfg.ssp_layers, cfg.ssp_form, dropout=cfg.ssp_dropout
                )

        y = cfg.num_classes
        self.bottleneck, self.classifier2 = bn_neck(cfg.width), id_classifier(cfg.width, y)
        self.bottleneck_proj = bn_neck(cfg.embed_dim)
        self.classifier_proj = id_classifier(cfg.embed_dim, y)
        self.temporal: nn.Module | None = None
        if cfg.temporal == "tmd":
            self.temporal = TemporalMemoryDiffusion(
                cfg.width, max(1, cfg.width // 64), detach_input=cfg.tmd_detach
            )
            self.bottleneck_proj_temp = bn_neck(cfg.width)
            self.bottleneck_proj_temp2 = bn_neck(cfg.width)
            self.classifier_proj_temp = id_classifier(cfg.width, y)
            self.classifier_proj_temp2 = id_classifier(cfg.width, y)  # unused, as released
            self.classifier_proj_temp2.requires_grad_(False)
        elif cfg.temporal in FUSION_CHOICES:
            self.temporal = build_temporal_fusion(cfg.temporal, cfg.embed_dim, cfg.temporal_layers)
            self.bottleneck_temporal = bn_neck(cfg.embed_dim)
            self.classifier_temporal = id_classifier(cfg.embed_dim, y)

    # ------------------------------------------------------------------ properties
    @property
    def temporal_dim(self) -> int:
        """Size of the temporal sequence feature (0 for ``tap``)."""
        return {"tmd": self.width, "tap": 0}.get(self.cfg.temporal, self.embed_dim)

    @property
    def feature_dim(self) -> int:
        """Size of the eval-mode test feature."""
        if self.cfg.test_feature == "released":
            return self.width + self.embed_dim + self.temporal_dim
        if self.cfg.test_feature == "paper":
            return self.embed_dim + self.temporal_dim
        return self.width + self.embed_dim

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Activation checkpointing of the backbone blocks."""
        self.cfg.grad_checkpointing = bool(enable)
        self.backbone.set_grad_checkpointing(enable)

    # ------------------------------------------------------------------ pieces
    def _clips(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(x):
            raise TypeError(f"TFCLIP takes a tensor, got {type(x).__name__}")
        if x.dim() == 4:
            x = x.unsqueeze(1)
        if x.dim() != 5 or x.shape[2] != 3:
            raise ValueError(
                f"TFCLIP takes clips (B, T, 3, H, W) or images (B, 3, H, W); got shape "
                f"{tuple(x.shape)}"
            )
        if tuple(x.shape[-2:]) != self.cfg.image_size:
            h, w = self.cfg.image_size
            raise ValueError(
                f"this model expects {h}x{w} (HxW) frames, got {x.shape[-2]}x{x.shape[-1]}: "
                f"resize the input to {h}x{w} (data manager height={h}, width={w}) or build the "
                f"model with image_size=({x.shape[-2]}, {x.shape[-1]})"
            )
        return x

    def _sie(self, cam_label: torch.Tensor | None, batch: int, frames: int,
             dtype: torch.dtype) -> torch.Tensor | None:
        if cam_label is None or self.cv_embed is None:
            return None
        cam = torch.as_tensor(cam_label, device=self.cv_embed.device).long().reshape(-1)
        if cam.numel() == 1 and batch > 1:
            cam = cam.expand(batch)
        if cam.numel() != batch:
            raise ValueError(f"cam_label must have one camera per clip ({batch}), got {cam.numel()}")
        if not torch.compiler.is_compiling() and cam.numel() and (
            int(cam.min()) < 0 or int(cam.max()) >= self.cfg.camera_num
        ):
            raise ValueError(
                f"camera ids must be in 0..{self.cfg.camera_num - 1} (camera_num="
                f"{self.cfg.camera_num}), got {cam.tolist()[:16]}; build the model with the "
                f"dataset's number of cameras"
            )
        # row b*T + t takes camera b
        return (self.cfg.sie_coe * self.cv_embed[cam]).repeat_interleave(frames, dim=0).to(dtype)

    def encode_frames(self, x: torch.Tensor, cam_label: torch.Tensor | None = None
                      ) -> Tuple[torch.Tensor, int, int]:
        """Backbone tokens (B*T, L, width) of clips x, with SIE; returns (tokens, B, T)."""
        x = self._clips(x)
        b, t = x.shape[:2]
        frames = x.flatten(0, 1)
        tokens = self.backbone(frames, self._sie(cam_label, b, t, frames.dtype), project=False)
        return tokens, b, t

    def encode_memory(self, x: torch.Tensor) -> torch.Tensor:
        """CLIP-Memory feature of clips x (N, T, 3, H, W): projected CLS averaged over T, no SIE.

        Call it under ``torch.inference_mode()`` with the pretrained encoder (before training).
        """
        tokens, b, t = self.encode_frames(x, None)
        return (tokens[:, 0] @ self.backbone.proj).view(b, t, -1).mean(dim=1)

    def updated_memory(self, tokens: torch.Tensor, b: int, t: int,
                       seq_feature: torch.Tensor) -> torch.Tensor:
        """M' = M + P (1 or B, Y, d), or M (1, Y, d) without SSP."""
        bank = self.memory.bank.to(seq_feature.dtype)
        if self.ssp is None:
            return bank.unsqueeze(0)
        if self.cfg.ssp_kv == "tokens":
            visual = tokens.view(b, t, *tokens.shape[1:]).mean(dim=1) @ self.backbone.proj
        else:  # the paper's key/value: the batch's sequence features V
            visual = seq_feature.unsqueeze(0)
        return bank.unsqueeze(0) + self.ssp(bank, visual)

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor, cam_label: torch.Tensor | None = None,
                full_output: bool = False):
        tokens, b, t = self.encode_frames(x, cam_label)
        cls = tokens[:, 0]
        cls_proj = cls @ self.backbone.proj
        img_feature = cls.view(b, t, -1).mean(dim=1)
        img_feature_proj = cls_proj.view(b, t, -1).mean(dim=1)
        if not self.training:
            return self._test_feature(tokens, cls_proj, img_feature, img_feature_proj, b, t)

        id_logits = [
            self.classifier2(self.bottleneck(img_feature)),
            self.classifier_proj(self.bottleneck_proj(img_feature_proj)),
        ]
        features = [img_feature, img_feature_proj]
        frame_logits = None
        if self.cfg.temporal == "tmd":
            tmd = self.temporal(tokens, t)
            frame_logits = self.classifier_proj_temp(self.bottleneck_proj_temp(tmd.frame_feature))
            id_logits.append(
                self.classifier_proj_temp(self.bottleneck_proj_temp2(tmd.sequence_feature))
            )
            features.append(tmd.sequence_feature)
        elif self.temporal is not None:
            fused = self.temporal(cls_proj.view(b, t, -1))
            id_logits.append(self.classifier_temporal(self.bottleneck_temporal(fused)))
            features.append(fused)

        if self.loss == "softmax" and not full_output:  # torchreid's engines (DeepSupervision)
            return id_logits
        if self.loss == "triplet" and not full_output:
            return id_logits, features
        v2m = None
        if self.memory is not None and self.memory.initialized:
            memory = self.updated_memory(tokens, b, t, img_feature_proj)
            v2m = v2m_logits(img_feature_proj, memory, self.cfg.v2m)
        return TFCLIPOutput(id_logits, features, frame_logits, v2m)

    def _temporal_feature(self, tokens: torch.Tensor, cls_proj: torch.Tensor, b: int, t: int
                          ) -> torch.Tensor | None:
        if self.cfg.temporal == "tmd":
            return self.temporal(tokens, t).sequence_feature
        if self.temporal is not None:
            return self.temporal(cls_proj.view(b, t, -1))
        return None

    def _test_feature(self, tokens, cls_proj, img_feature, img_feature_proj, b, t) -> torch.Tensor:
        mode = self.cfg.test_feature
        if mode == "after":
            return torch.cat(
                [self.bottleneck(img_feature), self.bottleneck_proj(img_feature_proj)], dim=1
            )
        parts = [img_feature, img_feature_proj] if mode == "released" else [img_feature_proj]
        temporal = self._temporal_feature(tokens, cls_proj, b, t)
        if temporal is not None:
            parts.append(temporal)
        return torch.cat(parts, dim=1)
