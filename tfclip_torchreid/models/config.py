"""Every option of a TF-CLIP model, declared once (the one source of truth).

:class:`TFCLIPConfig` is the model's configuration. Each field carries its help text, its choices
and its group in ``dataclasses.field(metadata=...)``; from these the yacs ``model`` section of
:mod:`tfclip_torchreid.config` is generated (:func:`yacs_defaults`), the command line sets any of
them (``model.<field> VALUE``), the README's option table is generated (:func:`markdown_table`)
and :func:`~tfclip_torchreid.models.factory.build_tfclip` takes them as keywords. Architecture
JSON files (``model_configs/<arch>.json``) set the architecture fields and per-arch defaults.

Groups: ``switch`` (what the paper ablates and where the released code and the paper differ; see
``docs/released_vs_paper.md``), ``arch`` (the size of the network, normally from the JSON file)
and ``data`` (set from the dataset, not from a config file: ``num_classes``, ``camera_num``,
``image_size`` = ``data.height`` x ``data.width``, ``arch`` = ``model.name``).

Example:
    >>> cfg = TFCLIPConfig(num_classes=625, camera_num=6)
    >>> cfg.temporal, cfg.ssp_form
    ('tmd', 'released')
    >>> field_info("ssp_form")["choices"]
    ('released', 'paper')
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Tuple

__all__ = ["TFCLIPConfig", "field_info", "option_fields", "yacs_defaults", "markdown_table",
           "DATA_FIELDS", "PEFT_MODES", "LORA_MODULES"]

#: fields set from the data (and ``model.name``), never from the yacs ``model`` section
DATA_FIELDS = ("num_classes", "camera_num", "arch", "image_size")
#: ``peft`` modes (:mod:`.peft`): ``none`` is full fine-tuning, the paper's
PEFT_MODES = ("none", "lora", "prompt", "adapter")
#: what ``lora_modules`` may name (:mod:`.peft.lora`)
LORA_MODULES = ("qkv", "mlp")


def _opt(default: Any, help: str, choices: Tuple[Any, ...] | None = None,
         group: str = "switch") -> Any:
    meta = {"help": help, "choices": choices, "group": group}
    if isinstance(default, (list, tuple)):
        return dataclasses.field(default_factory=lambda: default, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass
class TFCLIPConfig:
    """Architecture and switches of a :class:`~tfclip_torchreid.models.tfclip.TFCLIP`."""

    num_classes: int = dataclasses.field(
        metadata={"help": "training identities Y (classifier and memory rows)", "choices": None,
                  "group": "data"})
    camera_num: int = _opt(0, "training cameras (SIE table rows; 0 disables SIE)", group="data")
    arch: str = _opt("custom", "architecture name (model.name)", group="data")
    image_size: Tuple[int, int] = _opt((256, 128), "input H, W (data.height, data.width)",
                                       group="data")
    # ---------------------------------------------------------------- architecture
    backbone: str = _opt("vit", "visual tower: CLIP ViT or CLIP ModifiedResNet (RN50)",
                         ("vit", "resnet"), group="arch")
    patch_size: int = _opt(16, "ViT patch size", group="arch")
    width: int = _opt(768, "ViT width; ResNet stem width (RN50: 64)", group="arch")
    layers: int = _opt(12, "ViT blocks", group="arch")
    resnet_layers: Tuple[int, ...] = _opt((3, 4, 6, 3), "ResNet blocks per stage", group="arch")
    heads: int = _opt(12, "ViT attention heads; ResNet attention-pool heads (RN50: 32)",
                      group="arch")
    last_stride: int = _opt(1, "ResNet layer4 stride (1 for ReID; 2 is CLIP's)", group="arch")
    mlp_ratio: float = _opt(4.0, "ViT MLP expansion", group="arch")
    embed_dim: int = _opt(512, "CLIP joint space (projection, memory, SSP width)", group="arch")
    quick_gelu: bool = _opt(True, "QuickGELU activations, as OpenAI CLIP", group="arch")
    openai_model: str = _opt("ViT-B-16-quickgelu",
                             "open_clip model whose 'openai' weights fit ('' = none)",
                             group="arch")
    text_width: int = _opt(512, "CLIP text transformer width (memory_source text)", group="arch")
    text_layers: int = _opt(12, "CLIP text transformer blocks", group="arch")
    text_heads: int = _opt(8, "CLIP text transformer heads", group="arch")
    context_length: int = _opt(77, "CLIP text context length", group="arch")
    # ---------------------------------------------------------------- switches
    stride: int = _opt(16, "patch stride; 12 gives overlapping patches (OLP)")
    sie_coe: float = _opt(1.0, "SIE camera-embedding coefficient")
    use_sie: bool = _opt(True, "camera embedding on the CLS token (SIE)")
    use_memory: bool = _opt(True, "identity bank + V2M loss (off: the unimodal baseline)")
    memory_source: str = _opt("clip", "where the identity bank comes from: clip = CLIP-Memory "
                              "(TF-CLIP), text = learned text prompts (CLIP-ReID)",
                              ("clip", "text"))
    prompt_template: str = _opt("A photo of a X X X X person.",
                                "CLIP-ReID's prompt; each X is a learned context vector")
    use_ssp: bool = _opt(True, "Sequence-Specific Prompt updating the memory")
    ssp_form: str = _opt("released", "released: self-attn + cross-attn + MLP per layer; "
                         "paper: cross-attn + MLP (Eq. 4)", ("released", "paper"))
    ssp_layers: int = _opt(2, "SSP layers N")
    ssp_kv: str = _opt("tokens", "SSP keys/values: tokens = each clip's own token map "
                       "(released); batch = the batch's sequence features (paper)",
                       ("tokens", "batch"))
    ssp_dropout: float = _opt(0.1, "SSP dropout")
    temporal: str = _opt("tmd", "temporal fusion (supplement Table 5)",
                         ("tmd", "tap", "conv1d", "transf", "transf_cls"))
    temporal_layers: int = _opt(6, "layers of the transf / transf_cls fusions")
    tmd_detach: bool = _opt(True, "TMD on detached tokens (released) or training the "
                            "backbone (paper)")
    tmd_diffusion: bool = _opt(True, "TMD's memory diffusion (MD); off: TMC only "
                               "(supplement Table 3)")
    penultimate_triplet: bool = _opt(False, "CLIP-ReID's triplet on the CLS before the last "
                                     "block too")
    test_feature: str = _opt("released", "released: CLS 768 + proj 512 + TMD 768 (pre-BN); "
                             "paper: proj 512 + TMD 768; after: BN(CLS) + BN(proj)",
                             ("released", "paper", "after"))
    v2m: str = _opt("released", "released: label-smoothed CE on dot products; paper: Eq. 10 "
                    "(cosine, memory -> video)", ("released", "paper"))
    grad_checkpointing: bool = _opt(False, "activation checkpointing of the encoder blocks")
    # ---------------------------------------------------------------- parameter-efficient tuning
    peft: str = _opt("none", "parameter-efficient fine-tuning (the supplement's future work, "
                     "models/peft/): none = full fine-tuning (the paper); lora, prompt (VPT), "
                     "adapter (AdaptFormer) freeze the CLIP ViT and train only what they add, "
                     "with SIE, CLIP-Memory, SSP, TMD and the heads",
                     PEFT_MODES)
    peft_layers: Tuple[int, ...] = _opt((), "ViT blocks (0-based) that take LoRA or adapters "
                                        "(empty: every block)")
    lora_rank: int = _opt(8, "LoRA rank r")
    lora_alpha: float = _opt(8.0, "LoRA alpha: the update B A is scaled by alpha / r")
    lora_dropout: float = _opt(0.0, "dropout on the input of LoRA's mlp updates (peft has "
                               "none for qkv)")
    lora_modules: Tuple[str, ...] = _opt(("qkv", "mlp"), "what LoRA adapts in each block: qkv "
                                         "= attention's fused in-projection (q, k, v), mlp = "
                                         "c_fc and c_proj", LORA_MODULES)
    prompt_tokens: int = _opt(10, "VPT: learnable tokens per prompted block")
    prompt_depth: str = _opt("deep", "VPT: deep = new tokens before every block, shallow = "
                             "before the first block only", ("deep", "shallow"))
    adapter_width: int = _opt(64, "adapter bottleneck width")
    adapter_scale: float = _opt(0.1, "adapter output scale s (AdaptFormer's 0.1)")

    def __post_init__(self) -> None:
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        self.resnet_layers = tuple(int(n) for n in self.resnet_layers)
        self.peft_layers = tuple(int(n) for n in self.peft_layers)
        self.lora_modules = tuple(str(n) for n in self.lora_modules)
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            value = getattr(self, f.name)
            for item in value if isinstance(value, tuple) else (value,):
                if choices and item not in choices:
                    raise ValueError(f"{f.name} must be one of {choices}, got {item!r}")
        for name, low in (("num_classes", 1), ("camera_num", 0), ("ssp_layers", 1),
                          ("temporal_layers", 1), ("layers", 1), ("last_stride", 1)):
            if getattr(self, name) < low:
                raise ValueError(f"{name} must be >= {low}, got {getattr(self, name)}")
        if self.backbone == "resnet" and self.grad_checkpointing:
            raise ValueError("grad_checkpointing is not available for the ResNet backbone "
                             "(recomputed BatchNorm would update its statistics twice)")
        if self.peft != "none":
            self._check_peft()

    def _check_peft(self) -> None:
        """The PEFT options of a ``peft`` mode other than ``none`` (see :mod:`.peft`)."""
        if self.backbone == "resnet":
            raise ValueError(
                f"model.peft {self.peft} is for the CLIP ViT: {self.arch} is a ResNet (RN50), "
                f"which has no tokens to prompt and whose only attention is the final pooling "
                f"(see docs/peft.md); use model.peft none (full fine-tuning) or a ViT "
                f"architecture (tfclip_vitb16, tfclip_vitb16_s12, clipreid_vitb16)")
        for name, low in (("lora_rank", 1), ("prompt_tokens", 1), ("adapter_width", 1)):
            if getattr(self, name) < low:
                raise ValueError(f"{name} must be >= {low}, got {getattr(self, name)}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if not self.lora_modules:
            raise ValueError(f"lora_modules must name at least one of {LORA_MODULES}")
        wrong = [i for i in self.peft_layers if not 0 <= i < self.layers]
        if wrong:
            raise ValueError(f"peft_layers {list(wrong)} are not blocks of this {self.layers}-block "
                             f"ViT (0..{self.layers - 1}; empty: every block)")

    def to_dict(self) -> Dict[str, Any]:
        """Plain values (lists for tuples), e.g. to store in a checkpoint."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> TFCLIPConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise a TypeError naming them."""
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise TypeError(f"unknown TF-CLIP option(s) {unknown}")
        return cls(**values)


def field_info(name: str) -> Dict[str, Any]:
    """``{"name", "type", "default", "help", "choices", "group"}`` of one field."""
    for f in dataclasses.fields(TFCLIPConfig):
        if f.name == name:
            default = f.default
            if f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            return {"name": f.name, "type": f.type, "default": default, **f.metadata}
    raise KeyError(f"TFCLIPConfig has no field {name!r}")


def option_fields(groups: Tuple[str, ...] = ("switch", "arch")) -> List[Dict[str, Any]]:
    """:func:`field_info` of every field in ``groups``, in declaration order."""
    return [field_info(f.name) for f in dataclasses.fields(TFCLIPConfig)
            if f.metadata.get("group") in groups]


def yacs_defaults() -> Dict[str, Any]:
    """The yacs ``model`` entries: every option field, default None (= the arch's default)."""
    return {info["name"]: None for info in option_fields()}


def markdown_table(groups: Tuple[str, ...] = ("switch",)) -> str:
    """A markdown table of the options (README's switch table is generated from it)."""
    lines = ["| option | default | choices | what |", "|---|---|---|---|"]
    for info in option_fields(groups):
        choices = ", ".join(f"`{c}`" for c in info["choices"]) if info["choices"] else ""
        default = info["default"]
        lines.append(f"| `model.{info['name']}` | `{default}` | {choices} | {info['help']} |")
    return "\n".join(lines)
