"""Installs tfclip_torchreid: TF-CLIP (AAAI 2024) as a torchreid plugin."""

import os.path as osp

from setuptools import find_packages, setup


def read_version() -> str:
    here = osp.dirname(osp.abspath(__file__))
    with open(osp.join(here, "tfclip_torchreid", "__init__.py")) as f:
        for line in f:
            if line.startswith("__version__"):
                return line.split("=")[1].strip().strip("\"'")
    raise RuntimeError("no __version__ in tfclip_torchreid/__init__.py")


# torchreid on PyPI (0.2.5) declares no dependencies at all: everything it imports is listed
# here. No version pin on torchreid: the PyPI package is 0.2.5, an upstream install 1.4.x.
INSTALL_REQUIRES = [
    "torch>=2.1",
    "torchvision>=0.16",
    "torchreid",
    "open_clip_torch>=2.24",
    "gdown",  # >= 6.3 bounds timeouts and retries of zoo downloads; older releases work without
    "filelock",
    "requests",
    "tensorboard",
    "numpy",
    "scipy",
    "h5py",
    "matplotlib",
    "scikit-learn",
    "threadpoolctl",
    "opencv-python-headless",
    "Pillow",
    "yacs",
    "six",
    "tqdm",
]

# tools/export.py: ONNX files (torch's torch.export-based exporter needs onnxscript) checked
# with onnxruntime; TorchScript needs nothing more
EXPORT_REQUIRES = ["onnx", "onnxscript", "onnxruntime"]

setup(
    name="tfclip-torchreid",
    version=read_version(),
    description="TF-CLIP (Text-Free CLIP for video person ReID, AAAI 2024) as a torchreid plugin",
    long_description=open("README.md").read() if osp.exists("README.md") else "",
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.9",
    packages=find_packages(include=["tfclip_torchreid", "tfclip_torchreid.*"]),
    package_data={"tfclip_torchreid.models": ["model_configs/*.json"]},
    install_requires=INSTALL_REQUIRES,
    extras_require={"export": EXPORT_REQUIRES, "test": ["pytest>=7", "ruff", *EXPORT_REQUIRES]},
    keywords=["person re-identification", "video reid", "CLIP", "torchreid"],
)
