"""TF-CLIP losses: the V2M loss (paper Eq. 10) and the full objective (Eq. 11, released form).

Example:
    >>> from tfclip_torchreid.losses import TFCLIPLoss, V2MLoss
    >>> criterion = TFCLIPLoss(num_classes=625)
"""

from tfclip_torchreid.losses.cross_entropy import SmoothedCrossEntropy
from tfclip_torchreid.losses.tfclip_loss import TFCLIPLoss
from tfclip_torchreid.losses.v2m import V2M_FORMS, V2MLoss

__all__ = ["TFCLIPLoss", "V2MLoss", "V2M_FORMS", "SmoothedCrossEntropy"]
