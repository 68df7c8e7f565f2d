#!/usr/bin/env python
"""Train and evaluate TF-CLIP with torchreid (like torchreid's scripts/main.py).

Examples:
    python tools/train.py --config-file configs/demo.yaml
    python tools/train.py --config-file configs/tfclip_vitb16_mars.yaml --root /data/reid
    python tools/train.py --config-file configs/tfclip_vitb16_mars.yaml --root /data/reid \
        --evaluate-only --weights log/tfclip_mars/checkpoints/latest.pth
    torchrun --nproc_per_node=4 tools/train.py --config-file configs/tfclip_vitb16_mars.yaml ...
    python tools/train.py --arch tfclip_vitb16 --sources mars --root DIR train.max_epoch 80

Errors end in one line (exit status 1); --debug shows the traceback. Ctrl-C says how to resume.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tfclip_torchreid import cli  # noqa: E402
from tfclip_torchreid.runner import RESUME_HINT, main  # noqa: E402

if __name__ == "__main__":
    sys.exit(cli.run(main, interrupted_hint=RESUME_HINT))
