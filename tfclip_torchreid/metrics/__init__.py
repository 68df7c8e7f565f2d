"""Evaluation metrics: fast CMC / mAP / mINP ranking (:func:`evaluate_rank`).

Example:
    >>> from tfclip_torchreid.metrics import evaluate_rank
"""

from .rank import RankMetrics, evaluate_rank, rank_metrics

__all__ = ["evaluate_rank", "rank_metrics", "RankMetrics"]
