"""Training and evaluation: the VideoV2M engine (a torchreid Engine) and its hooks, the dense
evaluator, checkpoints and precision (``tfclip_torchreid.runner`` builds it from a config)."""

from .hooks import HookBase
from .v2m_engine import VideoV2MEngine

__all__ = ["VideoV2MEngine", "HookBase"]
