"""Data made for tests and demos (like ``numpy.testing`` / ``torch.testing``): synthetic ReID
datasets in the real on-disk layouts, read by the unmodified loaders.

Nothing of the runtime (models, data pipeline, losses, engine) imports this package; the runner
uses it for ``data.synthetic`` (the demo configs) and ``tools/make_synthetic_dataset.py`` is its
command line.

* :mod:`.synthetic`: :func:`make_synthetic_dataset`, :func:`synthetic_info`;
* :mod:`.plan`: identities, cameras, tracklet lengths and queries of each format;
* :mod:`.render`: the procedural pedestrian renderer;
* :mod:`.videos`: :func:`make_synthetic_videos`, camera videos of the same pedestrians with their
  MOTChallenge track files and ground truth (``tools/make_synthetic_videos.py``).

The files of each layout are written by the dataset's own module
(:mod:`tfclip_torchreid.data.datasets`: ``mars.write``, ``ilidsvid.write``, ``lsvid.write``,
``market1501.write``).

Example:
    >>> from tfclip_torchreid.testing import FORMATS, make_synthetic_dataset
    >>> FORMATS
    ('mars', 'ilidsvid', 'lsvid', 'market1501')
    >>> make_synthetic_dataset("mars", "/tmp/reid-data", seed=0)  # doctest: +SKIP
    '/tmp/reid-data/mars'
"""

from .render import render_figure, render_tracklet
from .synthetic import DATASET_DIRS, FORMATS, MARKER, make_synthetic_dataset, synthetic_info
from .videos import SyntheticVideos, make_synthetic_videos

__all__ = ["FORMATS", "DATASET_DIRS", "MARKER", "make_synthetic_dataset", "synthetic_info",
           "render_tracklet", "render_figure", "make_synthetic_videos", "SyntheticVideos"]
