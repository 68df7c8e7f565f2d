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

import difflib
import functools
import importlib.resources
import os.path as osp
import re
from typing import Any, Sequence, Tuple

from yacs.config import CfgNode
from yacs.config import CfgNode as CN

from .models.config import yacs_defaults

#: key of a yaml config naming the file it extends (relative to itself)
BASE_KEY = "_BASE_"

#: what ``model.pretrained`` says for a random initialisation besides ``""``, in any case (torchreid
#: users write ``pretrained=False``): ``none``, ``false``; ``True`` means ``openai``
RANDOM_INIT = ("", "none", "false")

_TRUTH = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}
_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")


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
    cfg.model.pretrained = "openai"  # "openai" (open_clip cache), a local file, "" / none: random
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


def _spelled(value: Any) -> str:
    """A value as it is written on the command line."""
    if isinstance(value, str):
        return value if value.strip() else '""'
    return repr(value)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "True or False"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, (list, tuple)):
        return "a list"
    return "a text" if isinstance(value, str) else type(value).__name__


def coerce_value(key: str, value: Any, current: Any) -> Any:
    """The value that config key ``key`` (now ``current``) takes from ``value`` (a string is read
    as yacs reads it: ``1`` is an int, ``1e-4`` a float, ``[30, 50]`` a list, ``None`` None).

    Besides values of the key's own type: an integer for a number key becomes a float
    (``train.lr 1``); a number or truth value for a text key is the text as written
    (``data.root 2024``); ``true/false/yes/no/on/off`` (any case) for a True/False key; one value
    for a list key a one-item list (``data.sources mars``); ``model.pretrained`` ``False``,
    ``None``, ``none`` or ``""`` mean a random initialisation (``""``), ``True`` means ``openai``.
    ``None`` is taken where yacs takes it. Anything else raises ``ValueError``, e.g. a fraction
    for a whole-number key (never rounded silently).

    Example:
        >>> coerce_value("train.lr", "1", 5e-6)
        1.0
        >>> coerce_value("model.pretrained", "False", "openai")
        ''
        >>> coerce_value("train.max_epoch", "1.5", 60)
        Traceback (most recent call last):
        ...
        ValueError: train.max_epoch takes a whole number (like 60), got 1.5
    """
    decoded = CfgNode._decode_cfg_value(value)
    if key == "model.pretrained":
        if decoded is None or decoded is False or (
                isinstance(decoded, str) and decoded.strip().lower() in RANDOM_INIT):
            return ""
        if decoded is True:
            return "openai"
    if current is None or decoded is None or type(decoded) is type(current):
        return decoded
    if isinstance(current, float) and isinstance(decoded, int) and not isinstance(decoded, bool):
        return float(decoded)
    if isinstance(current, str) and isinstance(decoded, (int, float)):
        return value if isinstance(value, str) else str(decoded)
    if isinstance(current, bool) and isinstance(decoded, str) and decoded.lower() in _TRUTH:
        return _TRUTH[decoded.lower()]
    if isinstance(current, (list, tuple)):
        if isinstance(decoded, (list, tuple)):
            return type(current)(decoded)
        if isinstance(decoded, (str, int, float)) and not isinstance(decoded, bool):
            return type(current)([decoded])
    raise ValueError(f"{key} takes {_kind(current)} (like {_spelled(current)}), got "
                     f"{_spelled(value)}")


def _keys(node: CfgNode, prefix: str = "") -> list[str]:
    out = []
    for name, value in node.items():
        out.extend(_keys(value, f"{prefix}{name}.") if isinstance(value, CfgNode)
                   else [prefix + name])
    return out


def looks_like_key(token: str) -> bool:
    """Whether a command-line word is a config key (``train.batch_size``, ``use_gpu``) rather
    than a value: a dotted name, or a top-level key of the default config.

    Example:
        >>> looks_like_key("train.batch_size"), looks_like_key("use_gpu"), looks_like_key("mars")
        (True, True, False)
    """
    return bool(_DOTTED.fullmatch(token)) or token in _top_level_keys()


@functools.lru_cache(maxsize=1)
def _top_level_keys() -> frozenset:
    return frozenset(get_default_config())


def merge_options(cfg: CfgNode, opts: Sequence[Any]) -> CfgNode:
    """Merge ``KEY VALUE`` pairs (the command line's) into ``cfg``, each value coerced to its
    key's type (:func:`coerce_value`); raises ``ValueError`` naming the key and the fix.

    Example:
        >>> cfg = merge_options(get_default_config(), ["train.lr", "1", "data.sources", "mars"])
        >>> cfg.train.lr, cfg.data.sources
        (1.0, ['mars'])
        >>> merge_options(get_default_config(), ["train.max_epochs", "3"])
        Traceback (most recent call last):
        ...
        ValueError: bad config option train.max_epochs: no such key (did you mean train.max_epoch?)
    """
    opts = list(opts)
    if len(opts) % 2:
        raise ValueError(f"config options must be KEY VALUE pairs, got {opts}")
    for key, value in zip(opts[0::2], opts[1::2]):
        node, *path = cfg, *str(key).split(".")
        for name in path[:-1]:
            node = node.get(name) if isinstance(node, CfgNode) else None
        if not isinstance(node, CfgNode) or (path[-1] not in node and not node.is_new_allowed()):
            close = difflib.get_close_matches(str(key), _keys(cfg), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ValueError(f"bad config option {key}: no such key{hint}")
        node[path[-1]] = coerce_value(key, value, node.get(path[-1]))
    return cfg


def _coerce_file_values(cfg: CfgNode, node: CfgNode, prefix: str = "") -> None:
    """Coerce the values of a loaded yaml node in place (:func:`coerce_value`) where ``cfg`` has
    the key; unknown keys are left to yacs' merge (which names them)."""
    for name, value in node.items():
        if name not in cfg:
            continue
        if isinstance(value, dict):
            if isinstance(cfg[name], CfgNode):
                _coerce_file_values(cfg[name], value, f"{prefix}{name}.")
        elif not isinstance(cfg[name], CfgNode):
            node[name] = coerce_value(prefix + name, value, cfg[name])


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
        _coerce_file_values(cfg, node)
        cfg.merge_from_other_cfg(node)
    except (KeyError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from err
    return cfg
