"""Training and evaluation: the VideoV2M engine (a torchreid Engine) and its hooks, the dense
evaluator, checkpoints, precision and the runner behind ``tools/train.py``."""

from .hooks import HookBase
from .v2m_engine import VideoV2MEngine

__all__ = ["VideoV2MEngine", "HookBase"]
