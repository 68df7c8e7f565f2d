"""Bottleneck adapters (Houlsby et al., "Parameter-Efficient Transfer Learning for NLP", ICML
2019) in AdaptFormer's parallel form (Chen et al., "AdaptFormer: Adapting Vision Transformers
for Scalable Visual Recognition", NeurIPS 2022) for the CLIP ViT.

Houlsby et al. insert a bottleneck (down-projection to a small width, a non-linearity,
up-projection, a skip connection) after each sub-layer of a frozen transformer. AdaptFormer's
AdaptMLP puts one bottleneck per block beside the MLP instead, on the MLP's input, scaled by s
(Chen et al. Sec. 3.2):
``x_l = MLP(LN(x'_l)) + s * ReLU(LN(x'_l) W_down) W_up + x'_l``, where x'_l is the block's
stream after attention. Options: ``adapter_width`` (the bottleneck, AdaptFormer's 64) and
``adapter_scale`` s (0.1); ``peft_layers`` picks the blocks.

In open_clip's block (``x = x + ls_2(mlp(ln_2(x)))``, ``ls_2`` the identity) the block's
``mlp`` becomes :class:`AdaptedMLP`, which returns ``mlp(h) + s * adapter(h)`` for ``h =
ln_2(x)``: exactly the equation above, with the MLP's own weights under their own names
(``mlp.c_fc``, ``mlp.c_proj``) and the adapter's under ``mlp.adapter``. The up-projection starts
at zero (AdaptFormer's initialisation; the down-projection is PyTorch's Linear default), so the
model starts equal to its base.

Example:
    >>> from collections import OrderedDict
    >>> mlp = nn.Sequential(OrderedDict(c_fc=nn.Linear(8, 32), gelu=nn.GELU(),
    ...                                 c_proj=nn.Linear(32, 8)))
    >>> adapted = AdaptedMLP(mlp, Adapter(8, 4), scale=0.1)
    >>> h = torch.randn(3, 8)
    >>> torch.equal(adapted(h), mlp(h)), sorted(adapted.state_dict())[:2]
    (True, ['adapter.down.bias', 'adapter.down.weight'])
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["Adapter", "AdaptedMLP"]


class Adapter(nn.Module):
    """The bottleneck ``up(ReLU(down(h)))``, its up-projection zero at the start."""

    def __init__(self, width: int, bottleneck: int) -> None:
        super().__init__()
        self.down = nn.Linear(width, bottleneck)
        self.act = nn.ReLU()
        self.up = nn.Linear(bottleneck, width)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.up(self.act(self.down(h)))


class AdaptedMLP(nn.Sequential):
    """A block's MLP (``c_fc``, activation, ``c_proj``: its children, under their names) with
    a parallel :class:`Adapter` (the child ``adapter``): ``mlp(h) + scale * adapter(h)``."""

    def __init__(self, mlp: nn.Sequential, adapter: Adapter, scale: float = 0.1) -> None:
        super().__init__()
        for name, child in mlp.named_children():
            self.add_module(name, child)
        self.add_module("adapter", adapter)
        self.scale = float(scale)
        self.active = True  # False: the plain MLP (peft.base_only)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out = h
        for name, child in self.named_children():
            if name != "adapter":
                out = child(out)
        return out + self.scale * self.adapter(h) if self.active else out

    def extra_repr(self) -> str:
        return f"scale={self.scale}"
