"""tfclip_torchreid: TF-CLIP (Yu et al., AAAI 2024) as a torchreid plugin.

Importing the package registers its models (``tfclip_vitb16``, ...) with
``torchreid.models.build_model`` and its video datasets (``lsvid``, ...) with torchreid's
data managers.

Example:
    >>> import tfclip_torchreid  # registers everything
    >>> from tfclip_torchreid import compat
    >>> model = compat.build_model("tfclip_tiny", num_classes=10, pretrained=False)
"""

from .version import __version__  # noqa: F401

# isort: split
from . import compat  # noqa: E402,F401  (first: every other module goes through it)

# isort: split
from . import data, losses, metrics, models  # noqa: E402,F401
