"""Evaluation metrics: fast CMC / mAP / mINP ranking (:func:`evaluate_rank`).

Example:
    >>> from tfclip_torchreid.metrics import evaluate_rank
"""

from .rank import evaluate_rank

__all__ = ["evaluate_rank"]
