"""Installs tfclip_torchreid: TF-CLIP (AAAI 2024) as a torchreid plugin."""

import os.path as osp

from setuptools import find_packages, setup


def read_version() -> str:
    here = osp.dirname(osp.abspath(__file__))
    with open(osp.join(here, "tfclip_torchreid", "version.py")) as f:
        for line in f:
            if line.startswith("__version__"):
                return line.split("=")[1].strip().strip("\"'")
    raise RuntimeError("no __version__ in tfclip_torchreid/version.py")


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
# tools/video_reid.py, tools/make_synthetic_videos.py (tfclip_torchreid.video, testing.videos):
# PyAV reads and writes the videos (its wheels bring FFmpeg)
VIDEO_REQUIRES = ["av"]
# tools/visualize.py --tsne (tfclip_torchreid.visualize.draw_tsne); the ranked pictures need none
VIZ_REQUIRES = ["matplotlib", "scikit-learn", "threadpoolctl"]
# model.peft lora: LoRA through Hugging Face's peft (imported only when a LoRA model is built);
# 0.17 added target_parameters, which adapts nn.MultiheadAttention's fused q/k/v
# (tfclip_torchreid/models/peft/lora.py)
PEFT_REQUIRES = ["peft>=0.17"]

# configs/ (demo, dataset and paper configs, the paper's numbers in configs/paper/tables.json)
# stays at the top level of the repository and is installed as the package data
# tfclip_torchreid/configs; tfclip_torchreid.config.configs_path finds either.
CONFIGS = "tfclip_torchreid.configs"

setup(
    name="tfclip-torchreid",
    version=read_version(),
    description="TF-CLIP (Text-Free CLIP for video person ReID, AAAI 2024) as a torchreid plugin",
    long_description=open("README.md").read() if osp.exists("README.md") else "",
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.9",
    packages=find_packages(include=["tfclip_torchreid", "tfclip_torchreid.*"]) + [CONFIGS],
    package_dir={CONFIGS: "configs"},
    package_data={"tfclip_torchreid.models": ["model_configs/*.json"],
                  CONFIGS: ["*.yaml", "paper/*.yaml", "paper/*.json"]},
    install_requires=INSTALL_REQUIRES,
    extras_require={"export": EXPORT_REQUIRES, "search": SEARCH_REQUIRES, "viz": VIZ_REQUIRES,
                    "video": VIDEO_REQUIRES, "peft": PEFT_REQUIRES,
                    # setuptools, wheel: tests/test_paper_tables.py builds the package offline;
                    # import-linter: tests/test_layers.py checks the layers of pyproject.toml
                    "test": ["pytest>=7", "ruff", "import-linter>=2.1", "setuptools>=61", "wheel",
                             *EXPORT_REQUIRES, *SEARCH_REQUIRES, *VIZ_REQUIRES, *VIDEO_REQUIRES,
                             *PEFT_REQUIRES]},
    keywords=["person re-identification", "video reid", "CLIP", "torchreid"],
)
