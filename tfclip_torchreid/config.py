"""Default configuration (yacs), in the style of torchreid's ``scripts/default_config.py``.

Defaults follow the released TF-CLIP code (see ``docs/released_vs_paper.md``): ViT-B/16 at 256x128, 8-frame clips with
the authors' restricted random sampling, 4 ids x 4 tracklets, Adam 5e-6 with a 10-epoch warm-up
and steps at 30/50 over 60 epochs (the paper's schedule), dense test on the 2048-d feature.

Example:
    >>> cfg = get_default_config()
    >>> cfg.model.ssp_form is None  # None: the architecture's default
    True
"""

from __future__ import annotations

import importlib.resources
import os.path as osp
from typing import Tuple

from yacs.config import CfgNode
from yacs.config import CfgNode as CN

from .models.config import yacs_defaults

#: key of a yaml config naming the file it extends (relative to itself)
BASE_KEY = "_BASE_"


def configs_path(*parts: str) -> str:
    """Path of ``configs/<parts>``: the configs shipped with the package (demos, datasets,
    ``paper/`` with the paper's numbers).

    Installed from a wheel (``pip install .``), ``configs/`` is package data, installed as
    ``tfclip_torchreid/configs`` (setup.py maps the top-level folder there); in a checkout or an
    editable install it is the top-level ``configs/`` beside the package.

    Example:
        >>> osp.isfile(configs_path("paper", "t2_b1.yaml"))
        True
    """
    installed = importlib.resources.files("tfclip_torchreid") / "configs"
    if installed.is_dir():
        return osp.join(str(installed), *parts)
    return osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), "configs", *parts)


def get_default_config() -> CN:
    """The default configuration tree (model options generated from ``TFCLIPConfig``)."""
    cfg = CN()

    cfg.model = CN()
    cfg.model.name = ""  # "" = tfclip_vitb16, or the architecture the weights describe
    cfg.model.pretrained = "openai"  # "openai" (open_clip cache), a local file, or "" for random
    cfg.model.load_weights = ""  # weights to load before training/evaluation (--weights)
    cfg.model.load_strict = True  # False: skip weights whose name or shape does not fit
    cfg.model.compile = False  # torch.compile the training model
    # Every TFCLIPConfig option (models/config.py), None = the architecture's default.
    for name, default in yacs_defaults().items():
        setattr(cfg.model, name, default)

    cfg.data = CN()
    cfg.data.root = "reid-data"
    cfg.data.sources = ["mars"]
    cfg.data.targets = []
    cfg.data.synthetic = False  # generate a synthetic dataset under root if absent
    # sizes for the synthetic generator (num_train_ids, num_test_ids, height, width, ...)
    cfg.data.synthetic_sizes = CN(new_allowed=True)
    cfg.data.workers = 4
    cfg.data.split_id = 0
    cfg.data.all_splits = False  # iLIDS-VID/PRID: run every split and report mean and each
    cfg.data.height = 256
    cfg.data.width = 128
    cfg.data.seq_len = 8
    cfg.data.train_sample_method = "rrs"
    cfg.data.test_sample_method = "dense"  # dense | rrs_test
    cfg.data.norm = "imagenet"  # imagenet (the authors') | clip
    cfg.data.erasing = "authors"  # authors | torchreid | none
    cfg.data.flip = True
    cfg.data.pad = 10  # image datasets: pad + random crop (CLIP-ReID's augmentation)
    cfg.data.check_frames = True  # check every frame once before training (cached)
    cfg.data.allow_unseen_test_cameras = False  # SIE: test cameras never seen in training
    cfg.data.gallery_includes_query = "auto"  # auto (MARS, LS-VID: yes) | yes | no
    cfg.data.val_ids = 0  # training ids held out for validation: eval_freq + best.pth use them
    cfg.data.save_dir = "log"

    cfg.sampler = CN()
    cfg.sampler.num_instances = 4

    cfg.train = CN()
    cfg.train.lr = 5e-6
    cfg.train.weight_decay = 1e-4
    cfg.train.weight_decay_bias = 1e-4
    cfg.train.bias_lr_factor = 2.0
    cfg.train.large_fc_lr = True
    cfg.train.fc_lr_factor = 10.0
    cfg.train.temporal_lr_factor = 1.0
    cfg.train.max_epoch = 60
    cfg.train.start_epoch = 0
    cfg.train.batch_size = 16
    cfg.train.warmup_epochs = 10
    cfg.train.warmup_factor = 0.1
    cfg.train.milestones = [30, 50]
    cfg.train.gamma = 0.1
    # where the schedule steps (optim.STEP_AT): auto = the method's reference, CLIP-ReID's stage 2
    # (models with model.memory_source text) at the top of each epoch, TF-CLIP's after it
    cfg.train.lr_step_at = "auto"
    cfg.train.print_freq = 20
    cfg.train.seed = 1234
    cfg.train.amp = "auto"  # auto (bf16 on GPU, fp32 on CPU) | bf16 | fp16 | off
    cfg.train.grad_clip = 0.0
    cfg.train.resume = ""  # a checkpoint path, or "auto" for <save_dir>/checkpoints/latest.pth
    cfg.train.keep_last = 2  # epoch_NNN.pth files kept besides latest.pth
    cfg.train.memory_cache_dir = ""  # "" = ~/.cache/tfclip_torchreid/clip_memory; "none" = off

    # CLIP-ReID's first stage (models with model.memory_source text): prompts learned on frozen
    # encoders (reference: 120 epochs for ViT, 60 for RN50; Adam; warm-up cosine)
    cfg.stage1 = CN()
    cfg.stage1.max_epoch = 120
    cfg.stage1.batch_size = 64
    cfg.stage1.lr = 3.5e-4
    cfg.stage1.weight_decay = 1e-4
    cfg.stage1.warmup_epochs = 5
    cfg.stage1.warmup_lr = 1e-5
    cfg.stage1.min_lr = 1e-6
    cfg.stage1.print_freq = 50

    cfg.loss = CN()
    cfg.loss.id_weight = 0.25
    cfg.loss.triplet_weight = 1.0
    cfg.loss.v2m_weight = 1.0
    cfg.loss.frame_weight = 1.0
    cfg.loss.margin = 0.3
    cfg.loss.label_smooth = True

    cfg.test = CN()
    cfg.test.batch_size = 32
    cfg.test.max_clips_per_forward = 64
    cfg.test.dist_metric = "euclidean"
    cfg.test.normalize_feature = True
    cfg.test.ranks = [1, 5, 10, 20]
    cfg.test.evaluate = False
    cfg.test.eval_freq = -1
    cfg.test.start_eval = 0
    cfg.test.eval_before_train = False
    cfg.test.rerank = False
    cfg.test.visrank = False
    cfg.test.visrank_topk = 10
    cfg.test.save_features = False  # write <save_dir>/features/*.npy/json (tools/visualize.py)

    cfg.use_gpu = True
    return cfg


def merge_config_file(cfg: CfgNode, path: str, _chain: Tuple[str, ...] = ()) -> CfgNode:
    """Merge a yaml config into ``cfg``, its ``_BASE_`` (relative to the file) first.

    Example:
        >>> cfg = merge_config_file(get_default_config(), "configs/paper/s6_n4.yaml")  # doctest: +SKIP
        >>> cfg.model.ssp_layers, cfg.model.ssp_form, cfg.data.sources  # doctest: +SKIP
        (4, 'paper', ['mars'])
    """
    path = osp.abspath(path)
    if path in _chain:
        raise ValueError(f"config files include each other: {' -> '.join(_chain + (path,))}")
    if not osp.isfile(path):
        where = f" (the {BASE_KEY} of {_chain[-1]})" if _chain else ""
        raise FileNotFoundError(f"config file not found: {path}{where}")
    with open(path) as f:
        node = CfgNode.load_cfg(f)
    base = node.pop(BASE_KEY, None)
    if base:
        merge_config_file(cfg, osp.join(osp.dirname(path), base), _chain + (path,))
    try:
        cfg.merge_from_other_cfg(node)
    except (KeyError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from err
    return cfg
