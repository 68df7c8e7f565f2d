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


def read_requirements(name: str) -> list:
    """Requirement lines of ``requirements/<name>`` (comments stripped)."""
    here = osp.dirname(osp.abspath(__file__))
    with open(osp.join(here, "requirements", name)) as f:
        lines = (line.split("#", 1)[0].strip() for line in f)
        return [line for line in lines if line]


# base.txt: our own needs; pypi-torchreid.txt: the PyPI torchreid and what it imports but does not
# declare. An upstream torchreid install uses base.txt and `pip install -e . --no-deps` instead.
INSTALL_REQUIRES = read_requirements("base.txt") + read_requirements("pypi-torchreid.txt")

# tools/export.py: ONNX files (torch's torch.export-based exporter needs onnxscript) checked
# with onnxruntime; TorchScript needs nothing more
EXPORT_REQUIRES = ["onnx", "onnxscript", "onnxruntime"]
# tfclip_torchreid.search and tools/search.py: gallery indices on faiss (CPU build; tested with
# faiss-cpu 1.15.1)
SEARCH_REQUIRES = ["faiss-cpu"]

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
    extras_require={"export": EXPORT_REQUIRES, "search": SEARCH_REQUIRES,
                    "test": ["pytest>=7", "ruff", *EXPORT_REQUIRES, *SEARCH_REQUIRES]},
    keywords=["person re-identification", "video reid", "CLIP", "torchreid"],
)
