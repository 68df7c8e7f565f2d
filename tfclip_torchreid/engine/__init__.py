"""Training and evaluation: the VideoV2M engine (a torchreid Engine), checkpoints, distributed."""

from .v2m_engine import VideoV2MEngine

__all__ = ["VideoV2MEngine"]
