"""Both torchreid layouts: the PyPI package (torchreid.reid.*) and upstream (torchreid.*).

The installed layout is tested as it is. When the PyPI package is installed, the upstream layout
is also simulated in a subprocess: every ``torchreid.reid.X`` module is aliased as
``torchreid.X`` and ``torchreid.reid`` is made unimportable, which is exactly what an upstream
source install looks like to an importer.
"""

from __future__ import annotations

import importlib.util
import os
import os.path as osp
import re
import subprocess
import sys

import pytest

from tfclip_torchreid import compat

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

UPSTREAM_SIM = r'''
import importlib, pkgutil, sys, types, warnings
warnings.filterwarnings("ignore")
import torchreid.reid as R
for info in pkgutil.walk_packages(R.__path__, "torchreid.reid."):
    try:
        importlib.import_module(info.name)
    except Exception:
        pass
fake = types.ModuleType("torchreid")
fake.__path__ = []
aliases = {}
for name, mod in list(sys.modules.items()):
    if name.startswith("torchreid.reid.") and mod is not None:
        aliases["torchreid." + name[len("torchreid.reid."):]] = mod
for name in [n for n in sys.modules if n == "torchreid" or n.startswith("torchreid.")]:
    del sys.modules[name]
sys.modules["torchreid"] = fake
sys.modules.update(aliases)
for name, mod in aliases.items():
    if name.count(".") == 1:
        setattr(fake, name.split(".")[1], mod)
sys.modules["torchreid.reid"] = None  # upstream has no torchreid.reid

import tfclip_torchreid
from tfclip_torchreid import compat
assert compat.ROOT == "torchreid" and compat.LAYOUT == "upstream", compat.ROOT
import torchreid
assert "tfclip_tiny" in vars(torchreid.models)["__model_factory"]
m = torchreid.models.build_model("tfclip_tiny", num_classes=5, loss="softmax", pretrained=False)
import torch
m.eval()
with torch.no_grad():
    f = m(torch.randn(2, 3, 3, 128, 64))
assert f.shape[0] == 2
assert "lsvid" in vars(torchreid.data.datasets)["__video_datasets"]
assert compat.VideoDataset is torchreid.data.datasets.dataset.VideoDataset
assert compat.Engine is torchreid.engine.Engine
from tfclip_torchreid.engine import VideoV2MEngine
assert issubclass(VideoV2MEngine, torchreid.engine.Engine)
from tfclip_torchreid.models import FeatureExtractor
assert torchreid.utils.FeatureExtractor is FeatureExtractor
assert torchreid.utils.load_pretrained_weights.__module__ == "torchreid.reid.utils.torchtools"
print("UPSTREAM-LAYOUT-OK", f.shape[1])
'''


PYPI_INSTALLED = importlib.util.find_spec("torchreid.reid") is not None


def test_installed_layout_is_detected():
    import torchreid

    root = torchreid.reid if PYPI_INSTALLED else torchreid
    assert compat.LAYOUT == ("pypi" if PYPI_INSTALLED else "upstream")
    assert compat.ROOT == root.__name__
    assert compat.Engine is root.engine.Engine
    assert "tfclip_vitb16" in vars(root.models)["__model_factory"]
    assert "lsvid" in vars(root.data.datasets)["__video_datasets"]


@pytest.mark.skipif(not PYPI_INSTALLED, reason="the simulation is built from the PyPI layout; "
                    "an upstream install is tested directly by the rest of the suite")
def test_upstream_layout_simulated():
    env = dict(os.environ, HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="", PYTHONPATH=REPO)
    proc = subprocess.run([sys.executable, "-c", UPSTREAM_SIM], env=env, capture_output=True,
                          text=True, timeout=240)
    assert "UPSTREAM-LAYOUT-OK" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-4000:]


def test_registration_is_idempotent():
    import importlib

    import tfclip_torchreid.data.datasets as ds
    import tfclip_torchreid.models as models

    names_before = set(compat.model_factory())
    importlib.reload(models)
    importlib.reload(ds)
    assert set(compat.model_factory()) == names_before  # re-registered in place, nothing added
    model = compat.build_model("tfclip_tiny", num_classes=3, pretrained=False)
    assert isinstance(model, models.TFCLIP)  # the entry is the reloaded module's factory
    try:
        compat.register_video_dataset("mars", object)
    except ValueError as err:
        assert "already taken" in str(err)
    else:  # pragma: no cover
        raise AssertionError("overriding a torchreid dataset must fail")


def test_package_reaches_torchreid_only_through_compat():
    pattern = re.compile(r"^\s*(from\s+torchreid[\.\s]|import\s+torchreid\b)", re.M)
    offenders = []
    for folder in ("tfclip_torchreid", "tools"):
        for dirpath, _, files in os.walk(osp.join(REPO, folder)):
            for fn in files:
                if fn.endswith(".py") and fn != "compat.py":
                    with open(osp.join(dirpath, fn)) as f:
                        if pattern.search(f.read()):
                            offenders.append(osp.join(dirpath, fn))
    assert not offenders, offenders


def test_the_plugin_changes_only_the_registries_and_the_feature_extractor():
    """torchreid's functions stay its own; ``torchreid.utils.FeatureExtractor`` is our subclass
    of torchreid's, which keeps torchreid's behaviour for torchreid's models."""
    import torchreid

    import tfclip_torchreid  # noqa: F401
    from tfclip_torchreid.models import FeatureExtractor

    root = torchreid.reid if PYPI_INSTALLED else torchreid
    tools = importlib.import_module(f"{root.__name__}.utils.tools")
    torchtools = importlib.import_module(f"{root.__name__}.utils.torchtools")
    extractor_module = importlib.import_module(f"{root.__name__}.utils.feature_extractor")
    for module in (root.utils, torchtools, extractor_module):
        assert module.load_pretrained_weights is torchtools.load_pretrained_weights
        assert module.load_pretrained_weights.__module__ == torchtools.__name__
        assert not hasattr(module.load_pretrained_weights, "__wrapped__")
    assert extractor_module.check_isfile is tools.check_isfile
    assert tools.check_isfile.__module__ == tools.__name__
    assert root.utils.FeatureExtractor is FeatureExtractor
    assert FeatureExtractor.__bases__ == (extractor_module.FeatureExtractor,)
    assert compat.FeatureExtractor is extractor_module.FeatureExtractor


def test_feature_extractor_is_torchreids_for_torchreid_models(tmp_path, capsys):
    import numpy as np
    import torch

    torch.manual_seed(0)
    model = compat.build_model("osnet_x0_25", num_classes=1, pretrained=False, use_gpu=False)
    path = str(tmp_path / "osnet.pth")
    torch.save({"state_dict": model.state_dict()}, path)
    ours = compat.utils.FeatureExtractor(model_name="osnet_x0_25", model_path=path,
                                         device="cpu", verbose=False)
    theirs = compat.FeatureExtractor(model_name="osnet_x0_25", model_path=path, device="cpu",
                                     verbose=False)
    assert repr(ours.preprocess) == repr(theirs.preprocess)  # torchreid's defaults: ImageNet
    image = np.random.default_rng(0).integers(0, 256, (256, 128, 3), dtype=np.uint8)
    torch.testing.assert_close(ours(image), theirs(image))
    assert "Successfully loaded" in capsys.readouterr().out  # torchreid's own loader ran
