"""From camera videos to identities: tracks of several cameras embedded and linked.

Given videos and the MOTChallenge track file of each (from any multi-object tracker),
:func:`run_video_reid` streams the frames, crops every track's boxes into a tracklet, embeds the
tracklets with a TF-CLIP model (the dense test protocol and the weights' own preprocessing, in
PyTorch or ONNX Runtime), links the tracks of all cameras into global identities and writes
``identities.csv``, a self-contained ``report.html`` and, with a ground truth, pairwise
precision / recall / F1 (``tools/video_reid.py`` is its command line).

One module per step:

* :mod:`.decoding`: videos checked up front, then decoded one frame at a time (PyAV);
* :mod:`.cropping`: boxes clipped to the frame, or counted and skipped with their reason;
* :mod:`.tracklets`: crops gathered per track and embedded in parts (bounded memory);
* :mod:`.backends`: PyTorch, ONNX Runtime (float32; int8 dynamic quantisation);
* :mod:`.linking`: constrained average-linkage clustering and its data-driven threshold;
* :mod:`.metrics`: pairwise precision / recall / F1 over cross-camera track pairs;
* :mod:`.report`: ``identities.csv``, ``report.html`` and its screenshot;
* :mod:`.pipeline`: :func:`run_video_reid`.

Synthetic test videos: :func:`tfclip_torchreid.testing.make_synthetic_videos`.

Example:
    >>> from tfclip_torchreid.video import run_video_reid
    >>> result = run_video_reid(["cam1.mp4", "cam2.mp4"], ["cam1.txt", "cam2.txt"], "out",
    ...                         weights="log/demo/checkpoints/latest.pth", gt="gt.csv")  # doctest: +SKIP
    >>> result.metrics["pairwise_f1"]  # doctest: +SKIP
    0.8
"""

from .backends import BACKENDS, Embedder
from .decoding import VideoError, probe_video
from .linking import auto_threshold, cannot_link, link_tracks
from .metrics import pairwise_scores
from .pipeline import VideoReIDResult, run_video_reid
from .report import screenshot

__all__ = ["run_video_reid", "VideoReIDResult", "BACKENDS", "Embedder", "VideoError",
           "probe_video", "auto_threshold", "cannot_link", "link_tracks", "pairwise_scores",
           "screenshot"]
