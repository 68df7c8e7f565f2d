"""BN-neck + ID classifier heads of TF-CLIP (the L_ce term of paper Eq. 11).

Paper: a label-smoothed cross-entropy on the sequence features (Eq. 11); heads unspecified.

Released code (docs/released_vs_paper.md#heads): every feature goes through a BatchNorm1d "bottleneck" (weight 1, bias 0
and **frozen**, ``requires_grad=False``) and a **bias-free** linear classifier initialised
N(0, 0.001^2). Authors' names, kept so their checkpoints load and name-based lr rules apply:

=========================  ================================  ================================
BN                          on                                classifier
=========================  ================================  ================================
``bottleneck``              CLS, 768                          ``classifier2`` (768 -> Y)
``bottleneck_proj``         projected CLS, 512                ``classifier_proj`` (512 -> Y)
``bottleneck_proj_temp``    TMD frame features, 768 (B*T)     ``classifier_proj_temp``
``bottleneck_proj_temp2``   TMD sequence feature, 768         ``classifier_proj_temp`` (shared!)
=========================  ================================  ================================

The sequence-level TMD logits reuse the frame-level classifier (a quirk of the released code);
``classifier_proj_temp2`` is defined there but never used: it is kept (frozen) so parameter
counts and authors' checkpoints match. The alternative temporal fusions of supplement Table 5
get their own ``bottleneck_temporal`` / ``classifier_temporal`` (512 -> Y), as in those runs.

Example:
    >>> import torch
    >>> bn, fc = bn_neck(8), id_classifier(8, 3)
    >>> fc(bn(torch.randn(4, 8))).shape
    torch.Size([4, 3])
"""

from __future__ import annotations

import torch.nn as nn

__all__ = ["bn_neck", "id_classifier"]


def bn_neck(dim: int) -> nn.BatchNorm1d:
    """BatchNorm1d with weight 1 and a frozen zero bias (BNNeck)."""
    bn = nn.BatchNorm1d(dim)
    nn.init.ones_(bn.weight)
    nn.init.zeros_(bn.bias)
    bn.bias.requires_grad_(False)
    return bn


def id_classifier(dim: int, num_classes: int) -> nn.Linear:
    """Bias-free linear classifier, weights N(0, 0.001^2)."""
    fc = nn.Linear(dim, num_classes, bias=False)
    nn.init.normal_(fc.weight, std=0.001)
    return fc
