"""TF-CLIP (Yu et al., AAAI 2024) and its baseline CLIP-ReID (Li et al., AAAI 2023): one model.

Paper (TF-CLIP): CLIP visual encoder (Eq. 2-3) -> sequence feature v (TAP of the projected CLS)
-> V2M loss against the CLIP-Memory updated by SSP (Eq. 4-5, 10); TMD (Eq. 6-9) gives v_hat;
losses Eq. 11; test feature v (512) + v_hat (768). Released code (``docs/released_vs_paper.md``),
the defaults here:

* SIE camera embedding (coefficient 1.0) on the CLS token of every frame of a clip, at train
  **and** test time (broadcast to every clip of a tracklet, fixing the authors' dense-test crash);
* three ID heads [CLS 768, projected CLS 512, TMD 768] + TMD frame head, features pre-BN;
* SSP key/value = each sample's frame-averaged projected token map; ``M'_b = M + P_b``;
  V2M logits = raw dot products with the projected CLS mean;
* TMD on the detached final tokens;
* test feature ``released`` = [CLS 768, projected CLS 512, TMD 768] = 2048-d pre-BN;
  ``paper`` = [projected 512, temporal]; ``after`` = [BN(CLS) 768, BN(projected) 512].

The identity bank and the baseline. TF-CLIP's claim is that a text-free bank (``memory_source
"clip"``: each identity's mean CLIP visual feature) replaces CLIP-ReID's learned text prompts.
With ``memory_source="text"`` the bank rows are CLIP-ReID's instead: the CLIP text encoder
(:mod:`.text_encoder`) on "A photo of a X X X X person." with 4 learned context vectors per
identity (:mod:`.prompt_learner`), trained in CLIP-ReID's first stage with both encoders frozen.
Everything else is shared, so the switches combine: CLIP-ReID on video = text bank + TAP (paper
Table 2's Model 1 / B1), B5 = text bank + TMD, B2..B6 = CLIP-Memory with / without SSP / TMD, and
``use_memory=False`` is the unimodal baseline. ``penultimate_triplet`` adds CLIP-ReID's third
triplet feature (the CLS token before the last block).

The visual tower is a ViT (:class:`~.backbone.CLIPVisualBackbone`) or the supplement's CNN, an
RN50 with last stride 1 (:class:`~.backbone_rn50.CLIPResNetBackbone`); the heads take their sizes
from the tower's :class:`~.backbone.VisualFeatures`. For RN50 the memory, SSP and the V2M logits
live in the 1024-d joint space and TMD runs on the 129 attention-pool tokens (1024-d, 16 heads):
they are the only per-location token map of the network that is CLIP-aligned (the 2048-channel
layer4 map is what attention pooling projects from), and the supplement's test feature v (1024)
+ v_hat (1024) says v_hat is 1024-d.

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

from .backbone import CLIPVisualBackbone, VisualFeatures
from .backbone_rn50 import CLIPResNetBackbone
from .clip_memory import CLIPMemory
from .config import TFCLIPConfig
from .heads import bn_neck, id_classifier
from .pretrained import load_clip_state_dict
from .prompt_learner import PromptLearner
from .ssp import SequenceSpecificPrompt, v2m_logits
from .temporal import FUSION_CHOICES, build_temporal_fusion
from .text_encoder import CLIPTextEncoder, text_state_dict
from .tmd import TemporalMemoryDiffusion

__all__ = ["TFCLIP", "TFCLIPConfig", "TFCLIPOutput", "build_backbone"]


class TFCLIPOutput(NamedTuple):
    """Training-mode output of :class:`TFCLIP` (read by :class:`~..losses.TFCLIPLoss`)."""

    id_logits: List[torch.Tensor]  # [cls, proj, temporal], each (B, Y)
    features: List[torch.Tensor]  # pre-BN [(penultimate,) global, proj, temporal]
    frame_logits: torch.Tensor | None  # (B*T, Y) for temporal="tmd", else None
    v2m_logits: torch.Tensor | None  # (B, Y) or None


def build_backbone(cfg: TFCLIPConfig) -> nn.Module:
    """The visual tower a configuration asks for (ViT or RN50)."""
    if cfg.backbone == "resnet":
        return CLIPResNetBackbone(
            image_size=cfg.image_size, layers=tuple(cfg.resnet_layers), width=cfg.width,
            heads=cfg.heads, output_dim=cfg.embed_dim, last_stride=cfg.last_stride)
    return CLIPVisualBackbone(
        image_size=cfg.image_size, patch_size=cfg.patch_size, stride=cfg.stride,
        width=cfg.width, layers=cfg.layers, heads=cfg.heads, mlp_ratio=cfg.mlp_ratio,
        output_dim=cfg.embed_dim, quick_gelu=cfg.quick_gelu)


class TFCLIP(nn.Module):
    """TF-CLIP / CLIP-ReID model; build it with :func:`~tfclip_torchreid.models.build_tfclip`.

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
        self.backbone = build_backbone(cfg)
        if cfg.grad_checkpointing:
            self.backbone.set_grad_checkpointing(True)
        self.width = self.backbone.global_dim  # the CLS / global feature
        self.embed_dim = self.backbone.embed_dim  # the CLIP joint space
        self.token_dim = self.backbone.token_dim  # the token map TMD runs on
        self.cv_embed: nn.Parameter | None = None
        if cfg.use_sie and cfg.camera_num > 0:
            self.cv_embed = nn.Parameter(torch.zeros(cfg.camera_num, self.backbone.sie_dim))
            nn.init.trunc_normal_(self.cv_embed, std=0.02)
        self._build_bank(cfg)
        self._build_heads(cfg)

    def _build_bank(self, cfg: TFCLIPConfig) -> None:
        self.memory: CLIPMemory | None = None
        self.ssp: SequenceSpecificPrompt | None = None
        if not cfg.use_memory:
            return
        self.memory = CLIPMemory(cfg.num_classes, self.embed_dim)
        if cfg.use_ssp:
            self.ssp = SequenceSpecificPrompt(self.embed_dim, cfg.ssp_layers, cfg.ssp_form,
                                              dropout=cfg.ssp_dropout)
        if cfg.memory_source == "text":
            self.text_encoder = CLIPTextEncoder(
                embed_dim=self.embed_dim, context_length=cfg.context_length,
                width=cfg.text_width, heads=cfg.text_heads, layers=cfg.text_layers,
                quick_gelu=cfg.quick_gelu)
            self.prompt_learner = PromptLearner(cfg.num_classes, width=cfg.text_width,
                                                template=cfg.prompt_template,
                                                context_length=cfg.context_length)
            # frozen: CLIP-ReID's stage 1 unfreezes the prompts while it trains them; the text
            # encoder and (in stage 2) the prompts never receive an update
            self.text_encoder.requires_grad_(False)
            self.prompt_learner.requires_grad_(False)

    def _build_heads(self, cfg: TFCLIPConfig) -> None:
        y, width, embed, tok = cfg.num_classes, self.width, self.embed_dim, self.token_dim
        self.bottleneck, self.classifier2 = bn_neck(width), id_classifier(width, y)
        self.bottleneck_proj = bn_neck(embed)
        self.classifier_proj = id_classifier(embed, y)
        self.temporal: nn.Module | None = None
        if cfg.temporal == "tmd":
            self.temporal = TemporalMemoryDiffusion(tok, max(1, tok // 64),
                                                    detach_input=cfg.tmd_detach,
                                                    diffusion=cfg.tmd_diffusion)
            self.bottleneck_proj_temp = bn_neck(tok)
            self.bottleneck_proj_temp2 = bn_neck(tok)
            self.classifier_proj_temp = id_classifier(tok, y)
            self.classifier_proj_temp2 = id_classifier(tok, y)  # unused, as released
            self.classifier_proj_temp2.requires_grad_(False)
        elif cfg.temporal in FUSION_CHOICES:
            self.temporal = build_temporal_fusion(cfg.temporal, embed, cfg.temporal_layers)
            self.bottleneck_temporal = bn_neck(embed)
            self.classifier_temporal = id_classifier(embed, y)

    # ------------------------------------------------------------------ properties
    @property
    def temporal_dim(self) -> int:
        """Size of the temporal sequence feature (0 for ``tap``)."""
        return {"tmd": self.token_dim, "tap": 0}.get(self.cfg.temporal, self.embed_dim)

    @property
    def feature_dim(self) -> int:
        """Size of the eval-mode test feature."""
        if self.cfg.test_feature == "released":
            return self.width + self.embed_dim + self.temporal_dim
        if self.cfg.test_feature == "paper":
            return self.embed_dim + self.temporal_dim
        return self.width + self.embed_dim

    @property
    def uses_text(self) -> bool:
        """True when the identity bank comes from CLIP-ReID's text prompts."""
        return self.memory is not None and self.cfg.memory_source == "text"

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Activation checkpointing of the backbone blocks."""
        self.backbone.set_grad_checkpointing(enable)
        self.cfg.grad_checkpointing = bool(enable)

    # ------------------------------------------------------------------ pieces
    def _clips(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(x):
            raise TypeError(f"TFCLIP takes a tensor, got {type(x).__name__}")
        if x.dim() == 4:
            x = x.unsqueeze(1)
        if x.dim() != 5 or x.shape[2] != 3:
            raise ValueError(
                f"TFCLIP takes clips (B, T, 3, H, W) or images (B, 3, H, W); got shape "
                f"{tuple(x.shape)}")
        if tuple(x.shape[-2:]) != self.cfg.image_size:
            h, w = self.cfg.image_size
            raise ValueError(
                f"this model expects {h}x{w} (HxW) frames, got {x.shape[-2]}x{x.shape[-1]}: "
                f"resize the input to {h}x{w} (data manager height={h}, width={w}) or build the "
                f"model with image_size=({x.shape[-2]}, {x.shape[-1]})")
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
        if not torch.compiler.is_compiling() and not torch.jit.is_tracing() and cam.numel() and (
                int(cam.min()) < 0 or int(cam.max()) >= self.cfg.camera_num):
            raise ValueError(
                f"camera ids must be in 0..{self.cfg.camera_num - 1} (camera_num="
                f"{self.cfg.camera_num}), got {cam.tolist()[:16]}; build the model with the "
                f"dataset's number of cameras")
        # row b*T + t takes camera b (expand + reshape: exportable with a dynamic frame count)
        embed = self.cfg.sie_coe * self.cv_embed[cam]
        return embed.unsqueeze(1).expand(-1, frames, -1).reshape(-1, embed.shape[-1]).to(dtype)

    def encode(self, x: torch.Tensor, cam_label: torch.Tensor | None = None,
               penultimate: bool = False) -> Tuple[VisualFeatures, int, int]:
        """Visual features of every frame of clips x (with SIE); returns (features, B, T)."""
        x = self._clips(x)
        b, t = x.shape[:2]
        frames = x.flatten(0, 1)
        feats = self.backbone.features(frames, self._sie(cam_label, b, t, frames.dtype),
                                       return_penultimate=penultimate)
        return feats, b, t

    def encode_memory(self, x: torch.Tensor) -> torch.Tensor:
        """CLIP-Memory feature of clips x (N, T, 3, H, W): projected CLS averaged over T, no SIE.

        Call it under ``torch.inference_mode()`` with the pretrained encoder (before training).
        """
        feats, b, t = self.encode(x, None)
        return feats.tokens_proj[:, 0].reshape(b, t, -1).mean(dim=1)

    def text_features(self, labels: torch.Tensor) -> torch.Tensor:
        """CLIP-ReID's text features of identities ``labels`` (B,) -> (B, embed_dim)."""
        if not self.uses_text:
            raise RuntimeError("text features need memory_source='text' (CLIP-ReID's prompts)")
        return self.text_encoder(self.prompt_learner(labels), self.prompt_learner.eot_index)

    def updated_memory(self, feats: VisualFeatures, b: int, t: int,
                       seq_feature: torch.Tensor) -> torch.Tensor:
        """M' = M + P (1 or B, Y, d), or M (1, Y, d) without SSP."""
        bank = self.memory.bank.to(seq_feature.dtype)
        if self.ssp is None:
            return bank.unsqueeze(0)
        if self.cfg.ssp_kv == "tokens":
            proj = feats.tokens_proj
            visual = proj.reshape(b, t, *proj.shape[1:]).mean(dim=1)
        else:  # the paper's key/value: the batch's sequence features V
            visual = seq_feature.unsqueeze(0)
        return bank.unsqueeze(0) + self.ssp(bank, visual)

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor, cam_label: torch.Tensor | None = None,
                full_output: bool = False):
        penultimate = self.training and self.cfg.penultimate_triplet
        feats, b, t = self.encode(x, cam_label, penultimate)
        cls_proj = feats.tokens_proj[:, 0]
        img_feature = feats.global_feature.reshape(b, t, -1).mean(dim=1)
        img_feature_proj = cls_proj.reshape(b, t, -1).mean(dim=1)
        if not self.training:
            return self._test_feature(feats, cls_proj, img_feature, img_feature_proj, b, t)

        id_logits = [
            self.classifier2(self.bottleneck(img_feature)),
            self.classifier_proj(self.bottleneck_proj(img_feature_proj)),
        ]
        features = [img_feature, img_feature_proj]
        if penultimate:  # CLIP-ReID's order: [penultimate, global, projected]
            features.insert(0, feats.penultimate.reshape(b, t, -1).mean(dim=1))
        frame_logits = self._temporal_heads(feats, cls_proj, b, t, id_logits, features)
        if self.loss == "softmax" and not full_output:  # torchreid's engines (DeepSupervision)
            return id_logits
        if self.loss == "triplet" and not full_output:
            return id_logits, features
        v2m = None
        if self.memory is not None and self.memory.initialized:
            memory = self.updated_memory(feats, b, t, img_feature_proj)
            v2m = v2m_logits(img_feature_proj, memory, self.cfg.v2m)
        return TFCLIPOutput(id_logits, features, frame_logits, v2m)

    def _temporal_heads(self, feats: VisualFeatures, cls_proj: torch.Tensor, b: int, t: int,
                        id_logits: list, features: list) -> torch.Tensor | None:
        """Append the temporal head's logits and feature; returns TMD's frame logits."""
        if self.cfg.temporal == "tmd":
            tmd = self.temporal(feats.tokens, t)
            id_logits.append(
                self.classifier_proj_temp(self.bottleneck_proj_temp2(tmd.sequence_feature)))
            features.append(tmd.sequence_feature)
            return self.classifier_proj_temp(self.bottleneck_proj_temp(tmd.frame_feature))
        if self.temporal is not None:
            fused = self.temporal(cls_proj.reshape(b, t, -1))
            id_logits.append(self.classifier_temporal(self.bottleneck_temporal(fused)))
            features.append(fused)
        return None

    def _temporal_feature(self, feats: VisualFeatures, cls_proj: torch.Tensor, b: int, t: int
                          ) -> torch.Tensor | None:
        if self.cfg.temporal == "tmd":
            return self.temporal(feats.tokens, t).sequence_feature
        if self.temporal is not None:
            return self.temporal(cls_proj.reshape(b, t, -1))
        return None

    def _test_feature(self, feats, cls_proj, img_feature, img_feature_proj, b, t) -> torch.Tensor:
        mode = self.cfg.test_feature
        if mode == "after":
            return torch.cat(
                [self.bottleneck(img_feature), self.bottleneck_proj(img_feature_proj)], dim=1)
        parts = [img_feature, img_feature_proj] if mode == "released" else [img_feature_proj]
        temporal = self._temporal_feature(feats, cls_proj, b, t)
        if temporal is not None:
            parts.append(temporal)
        return torch.cat(parts, dim=1)

    # ------------------------------------------------------------------ weights
    def load_clip_weights(self, source: str, cache_dir: str | None = None) -> None:
        """CLIP weights for the visual tower and, with a text bank, the text tower and the
        prompts' frozen token embeddings: ``'openai'`` or a local file (see
        :mod:`.pretrained`)."""
        parts = load_clip_state_dict(source, self.cfg.openai_model or "", cache_dir)
        self.backbone.load_visual_state_dict(parts.visual, source=str(source))
        if not self.uses_text:
            return
        text, table = text_state_dict(parts.text)
        if not text or table is None:
            raise ValueError(
                f"{source} holds no CLIP text tower (token_embedding, transformer, ...): "
                f"CLIP-ReID's text bank needs a full CLIP checkpoint ('openai', ViT-B-16.pt / "
                f"RN50.pt or an open_clip state dict)")
        self.text_encoder.load_text_state_dict(text, source=str(source))
        self.prompt_learner.load_token_embedding(table)
