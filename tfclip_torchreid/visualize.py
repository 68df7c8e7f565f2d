"""Pictures of video-ReID results: ranked tracklets as frame strips, and a t-SNE of features.

torchreid's ``visualize_ranked_results`` draws one picture per query for image ReID but, for video,
only copies the frames of each ranked tracklet into folders. Here every query tracklet becomes one
PNG: the query as a strip of evenly spaced frames, then its top-k gallery tracklets as strips
below it, framed green (same identity) or red (another identity), ranked as in evaluation
(gallery tracklets of the query's identity seen by the query's camera are skipped, like
torchreid's ``evaluate_rank``). :func:`draw_tsne` plots a t-SNE of test features coloured by
identity (:func:`identity_colours`: consecutive identities in clearly different colours), the kind
of picture of the TF-CLIP paper's Fig. 6; it needs matplotlib and scikit-learn,
the ``viz`` extra (``pip install "tfclip-torchreid[viz]"``), imported only when a t-SNE is drawn.

Geometry of a ranked picture (all in pixels): a strip is ``frames_per_strip * width + 2 * BORDER``
wide and ``height + 2 * BORDER`` tall; a text column of ``LABEL_WIDTH`` is on the left; strips are
stacked top to bottom with ``GAP`` between them and ``QUERY_GAP`` more after the query.

Example:
    >>> from tfclip_torchreid import visualize
    >>> visualize.strip_frame_indices(10, 4).tolist()
    [0, 3, 6, 9]
    >>> visualize.ranked_image_size(num_results=5, frames_per_strip=4, height=128, width=64)
    (352, 862)
    >>> paths = visualize.draw_ranked_video(distmat, query, gallery, "out/ranked")  # doctest: +SKIP
    >>> visualize.draw_tsne(features, pids, "out/tsne.png")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import json
import os
import os.path as osp
from types import ModuleType
from typing import Any, Dict, List, Mapping, NamedTuple, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .data.dataset import read_frame
from .engine.evaluation import distance_matrix

__all__ = [
    "BORDER", "GAP", "QUERY_GAP", "LABEL_WIDTH", "MATCH_COLOUR", "MISMATCH_COLOUR",
    "QUERY_COLOUR", "strip_frame_indices", "strip_size", "ranked_image_size", "draw_strip",
    "rank_gallery", "draw_ranked_video", "draw_tsne", "identity_colours", "FeatureSet",
    "load_feature_set", "read_feature_set", "feature_distances", "weights_differ",
    "settings_differ",
]

BORDER = 4
GAP = 6
QUERY_GAP = 16
LABEL_WIDTH = 88
MATCH_COLOUR = (0, 255, 0)
MISMATCH_COLOUR = (255, 0, 0)
QUERY_COLOUR = (0, 0, 0)
_BACKGROUND = (255, 255, 255)

ArrayLike = Union[np.ndarray, torch.Tensor, Sequence]


# ----------------------------------------------------------------------------------------------
# ranked tracklets
# ----------------------------------------------------------------------------------------------
def strip_frame_indices(num_frames: int, frames_per_strip: int) -> np.ndarray:
    """``frames_per_strip`` evenly spaced frame indices, first and last included (repeats
    frames of tracklets shorter than the strip)."""
    if num_frames < 1 or frames_per_strip < 1:
        raise ValueError(f"need num_frames >= 1 and frames_per_strip >= 1, got "
                         f"{num_frames}, {frames_per_strip}")
    return np.linspace(0, num_frames - 1, frames_per_strip).round().astype(np.int64)


def strip_size(frames_per_strip: int, height: int, width: int) -> Tuple[int, int]:
    """(width, height) of one framed strip."""
    return frames_per_strip * width + 2 * BORDER, height + 2 * BORDER


def ranked_image_size(num_results: int, frames_per_strip: int, height: int,
                      width: int) -> Tuple[int, int]:
    """(width, height) of a ranked picture with ``num_results`` gallery strips."""
    sw, sh = strip_size(frames_per_strip, height, width)
    n = num_results + 1
    return LABEL_WIDTH + sw, n * sh + (n - 1) * GAP + QUERY_GAP


def draw_strip(paths: Sequence[str], frames_per_strip: int, height: int, width: int,
               colour: Tuple[int, int, int]) -> Image.Image:
    """One tracklet as ``frames_per_strip`` frames side by side, framed in ``colour``.

    Frames are taken in file-name order (the order :class:`~.data.dataset.ClipDataset` uses).
    """
    frames = sorted(paths, key=lambda p: (osp.basename(p), p))
    canvas = Image.new("RGB", strip_size(frames_per_strip, height, width), colour)
    for i, j in enumerate(strip_frame_indices(len(frames), frames_per_strip)):
        img = read_frame(frames[j]).resize((width, height), Image.BILINEAR)
        canvas.paste(img, (BORDER + i * width, BORDER))
    return canvas


def rank_gallery(distances: ArrayLike, q_pid: int, q_camid: int, g_pids: ArrayLike,
                 g_camids: ArrayLike, topk: int) -> List[int]:
    """Gallery indices of the ``topk`` nearest tracklets, skipping same-identity-same-camera
    ones (the evaluation protocol). Ties keep gallery order."""
    d = np.asarray(distances, dtype=np.float64)
    g_pids, g_camids = np.asarray(g_pids), np.asarray(g_camids)
    order = np.argsort(d, kind="stable")
    keep = ~((g_pids[order] == q_pid) & (g_camids[order] == q_camid))
    return order[keep][:topk].tolist()


def _label(draw: ImageDraw.ImageDraw, xy: Tuple[int, int], lines: Sequence[str],
           colour: Tuple[int, int, int]) -> None:
    font = ImageFont.load_default()
    draw.multiline_text(xy, "\n".join(lines), fill=colour, font=font, spacing=2)


def _tracklet(item: Sequence[Any]) -> Tuple[Sequence[str], int, int]:
    paths, pid, camid = item[0], int(item[1]), int(item[2])
    if isinstance(paths, (str, bytes)):
        paths = [paths]
    return paths, pid, camid


def draw_ranked_video(
    distmat: ArrayLike,
    query: Sequence[Sequence[Any]],
    gallery: Sequence[Sequence[Any]],
    out_dir: str,
    topk: int = 5,
    frames_per_strip: int = 4,
    height: int = 128,
    width: int = 64,
    query_indices: Sequence[int] | None = None,
) -> List[str]:
    """One PNG per query tracklet: its strip, then its ``topk`` ranked gallery strips.

    Args:
        distmat: ``(num_query, num_gallery)`` distances (numpy or torch).
        query, gallery: torchreid tracklets ``(img_paths, pid, camid[, dsetid])``.
        out_dir: folder for the PNGs (created).
        topk: gallery strips per picture (fewer when fewer valid gallery tracklets exist).
        frames_per_strip: evenly spaced frames shown per tracklet.
        height, width: size of each frame in the picture.
        query_indices: which queries to draw (default: all).

    Returns:
        The written paths, ``<out_dir>/<query index, 5 digits>_<first frame name>.png``.

    Example:
        >>> draw_ranked_video(distmat, dm.query, dm.gallery, "log/ranked", topk=5)
        ... # doctest: +SKIP
    """
    d = distmat.detach().cpu().numpy() if isinstance(distmat, torch.Tensor) else np.asarray(distmat)
    if d.shape != (len(query), len(gallery)):
        raise ValueError(f"distmat has shape {d.shape}, expected (num_query, num_gallery) = "
                         f"({len(query)}, {len(gallery)})")
    g = [_tracklet(item) for item in gallery]
    g_pids = np.array([t[1] for t in g])
    g_camids = np.array([t[2] for t in g])
    os.makedirs(out_dir, exist_ok=True)
    sw, sh = strip_size(frames_per_strip, height, width)
    written = []
    for qi in (range(len(query)) if query_indices is None else query_indices):
        q_paths, q_pid, q_camid = _tracklet(query[qi])
        ranked = rank_gallery(d[qi], q_pid, q_camid, g_pids, g_camids, topk)
        canvas = Image.new("RGB", ranked_image_size(len(ranked), frames_per_strip, height, width),
                           _BACKGROUND)
        draw = ImageDraw.Draw(canvas)
        canvas.paste(draw_strip(q_paths, frames_per_strip, height, width, QUERY_COLOUR),
                     (LABEL_WIDTH, 0))
        _label(draw, (4, 4), ["query", f"pid {q_pid}", f"cam {q_camid}"], QUERY_COLOUR)
        for rank, gi in enumerate(ranked, start=1):
            g_paths, g_pid, g_camid = g[gi]
            colour = MATCH_COLOUR if g_pid == q_pid else MISMATCH_COLOUR
            y = rank * (sh + GAP) + QUERY_GAP
            canvas.paste(draw_strip(g_paths, frames_per_strip, height, width, colour),
                         (LABEL_WIDTH, y))
            text = (0, 140, 0) if g_pid == q_pid else (200, 0, 0)
            _label(draw, (4, y + 4),
                   [f"rank {rank}", f"pid {g_pid}", f"cam {g_camid}", f"d {d[qi, gi]:.3f}"], text)
        stem = osp.splitext(osp.basename(sorted(q_paths)[0]))[0]
        path = osp.join(out_dir, f"{qi:05d}_{stem}.png")
        canvas.save(path)
        written.append(path)
    return written


# ----------------------------------------------------------------------------------------------
# t-SNE
# ----------------------------------------------------------------------------------------------
def _as_numpy(x: ArrayLike, dtype=np.float32) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


#: distributions of the ``viz`` extra by the module name they are imported as
_VIZ_DISTRIBUTIONS = {"matplotlib": "matplotlib", "sklearn": "scikit-learn",
                      "threadpoolctl": "threadpoolctl"}


def _viz(name: str) -> ModuleType:
    """Module ``name`` of the ``viz`` extra; an ImportError that says how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError as err:
        dist = _VIZ_DISTRIBUTIONS[name.split(".")[0]]
        raise ImportError(
            f"the t-SNE picture needs {dist} ({err}): pip install \"tfclip-torchreid[viz]\" "
            "(matplotlib and scikit-learn)") from err


#: hue step of the colour walk beyond 20 identities: the golden ratio's fraction of the circle
#: (consecutive hues 137.5 degrees apart, no two hues ever the same)
_GOLDEN = 0.6180339887498949
#: (saturation, value) levels the walk cycles through, so that hues close on the circle differ
_SHADES = ((0.85, 0.9), (0.55, 0.95), (0.9, 0.6))


def identity_colours(n: int) -> List[Tuple[float, float, float]]:
    """RGB colours (0..1) of ``n`` identities in order, consecutive identities in clearly
    different colours: matplotlib's tab10 for up to 10; for up to 20, tab20's dark shades and
    then its light ones (tab20 pairs a dark and a light shade of one hue, which consecutive
    identities would otherwise get); beyond, a golden-ratio walk round the hue circle with three
    saturation / value levels.

    Example:
        >>> [tuple(round(v, 3) for v in c) for c in identity_colours(2)]
        [(0.122, 0.467, 0.706), (1.0, 0.498, 0.055)]
    """
    mpl = _viz("matplotlib")
    if n <= 10:
        colours = list(mpl.colormaps["tab10"].colors[:n])
    elif n <= 20:
        tab20 = list(mpl.colormaps["tab20"].colors)
        colours = (tab20[0::2] + tab20[1::2])[:n]
    else:
        hsv = [((k * _GOLDEN) % 1.0, *_SHADES[k % len(_SHADES)]) for k in range(n)]
        colours = [tuple(c) for c in mpl.colors.hsv_to_rgb(np.array(hsv))]
    return [tuple(float(v) for v in c[:3]) for c in colours]


def draw_tsne(
    features: ArrayLike,
    pids: ArrayLike,
    out_path: str,
    max_ids: int = 20,
    seed: int = 0,
    ignore_pids: Sequence[int] = (-1,),
    perplexity: float = 30.0,
    title: str | None = None,
) -> str:
    """t-SNE (scikit-learn) of L2-normalised ``features``, one colour per identity, as PNG.

    Args:
        features: ``(N, D)`` features.
        pids: ``(N,)`` identity labels.
        out_path: PNG file to write (folders created).
        max_ids: identities drawn; more are subsampled (seeded) so colours stay distinct.
        seed: subsampling and t-SNE seed.
        ignore_pids: labels left out (junk ``-1``; add ``0`` for MARS's distractors).
        perplexity: t-SNE perplexity, lowered to ``(n - 1) / 3`` for few points.
        title: figure title.

    Returns:
        ``out_path``.

    Raises:
        ImportError: the ``viz`` extra (matplotlib, scikit-learn) is not installed; the message
            says ``pip install "tfclip-torchreid[viz]"``.

    Example:
        >>> draw_tsne(np.random.rand(60, 8), np.repeat(np.arange(6), 10), "/tmp/t.png")
        ... # doctest: +SKIP
    """
    FigureCanvasAgg = _viz("matplotlib.backends.backend_agg").FigureCanvasAgg
    Figure = _viz("matplotlib.figure").Figure
    TSNE = _viz("sklearn.manifold").TSNE
    threadpool_limits = _viz("threadpoolctl").threadpool_limits

    x = _as_numpy(features)
    p = _as_numpy(pids, np.int64).reshape(-1)
    if x.ndim != 2 or len(x) != len(p):
        raise ValueError(f"features must be (N, D) with N = len(pids); got {x.shape} and {len(p)}")
    ids = np.array(sorted(set(p.tolist()) - set(ignore_pids)))
    if len(ids) > max_ids:
        ids = np.sort(np.random.default_rng(seed).choice(ids, max_ids, replace=False))
    keep = np.isin(p, ids)
    x, p = x[keep], p[keep]
    if len(x) < 4:
        raise ValueError(f"t-SNE needs at least 4 points, got {len(x)} from identities {ids.tolist()}")
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    tsne = TSNE(n_components=2, perplexity=min(perplexity, (len(x) - 1) / 3), init="pca",
                learning_rate="auto", random_state=seed)
    # OpenMP threads cost more than they gain below a few thousand points (and spin on busy cores)
    with threadpool_limits(1 if len(x) < 5000 else None, user_api="openmp"):
        emb = tsne.fit_transform(x)

    fig = Figure(figsize=(6.4, 6.4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for colour, pid in zip(identity_colours(len(ids)), ids):
        sel = p == pid
        ax.scatter(emb[sel, 0], emb[sel, 1], s=14, color=colour, label=str(pid))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"t-SNE of {len(x)} features, {len(ids)} identities")
    if len(ids) <= 20:
        ax.legend(title="pid", fontsize=7, title_fontsize=8, loc="center left",
                  bbox_to_anchor=(1.0, 0.5), frameon=False)
    os.makedirs(osp.dirname(osp.abspath(out_path)), exist_ok=True)
    fig.savefig(out_path, bbox_inches="tight")
    return out_path


# ----------------------------------------------------------------------------------------------
# feature files
# ----------------------------------------------------------------------------------------------
class FeatureSet(NamedTuple):
    """Features with their tracklets and the index's ``meta`` (:func:`load_feature_set`)."""

    features: np.ndarray  # (N, D) float32
    items: List[Tuple[Tuple[str, ...], int, int]]  # (frame paths, pid, camid) per row
    meta: Dict[str, Any]  # the index's meta ({} for a bare list of items)


_NPY_MAGIC = b"\x93NUMPY"


def _head(path: str, n: int = 64) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def _check_pair(features: Any, index: Any) -> None:
    """Swapped or wrong files, named before numpy / json read them."""
    f_json = isinstance(features, (str, os.PathLike)) and (
        _head(features).lstrip()[:1] in (b"{", b"["))
    i_npy = isinstance(index, (str, os.PathLike)) and _head(index).startswith(_NPY_MAGIC)
    if f_json and i_npy:
        raise ValueError(f"the features and index files are swapped: {features} is a JSON "
                         f"index and {index} a numpy array; pass {index} as the features and "
                         f"{features} as the index")
    if f_json:
        raise ValueError(f"{features} is a JSON index, not a feature array (.npy): pass the .npy "
                         "file written with it as the features")
    if i_npy:
        raise ValueError(f"{index} is a numpy array (.npy), not a JSON index: pass the .json "
                         "file written with it as the index")


def _index_items(index: Any) -> Tuple[List[Any], str | None, Dict[str, Any]]:
    if isinstance(index, (str, os.PathLike)):
        with open(index) as f:
            index = json.load(f)
    root, meta = None, {}
    if isinstance(index, Mapping):
        root = index.get("root")
        meta = dict(index.get("meta") or {})
        index = index["items"]
    return list(index), root, meta


def _parse_item(item: Any, i: int, root: str | None) -> Tuple[Tuple[str, ...], int, int]:
    if isinstance(item, Mapping):
        paths, pid, camid = item.get("paths", item.get("img_paths")), item["pid"], item["camid"]
    else:
        paths, pid, camid = item[0], item[1], item[2]
    if isinstance(paths, str):
        paths = [paths]
    if not paths:
        raise ValueError(f"index item {i} has no frame paths: {item!r:.200}")
    if root:
        paths = [p if osp.isabs(p) else osp.join(root, p) for p in paths]
    return tuple(paths), int(pid), int(camid)


def load_feature_set(
    features: Union[str, ArrayLike],
    index: Union[str, Sequence[Any], Mapping[str, Any]],
    root: str | None = None,
) -> FeatureSet:
    """Features, their tracklets and the index's ``meta``, from files or from memory.

    Args:
        features: ``.npy`` file or array ``(N, D)``.
        index: ``.json`` file, or its content: a list of items ``{"paths": [...], "pid": int,
            "camid": int}`` (extra keys ignored; torchreid tuples ``(paths, pid, camid, ...)``
            work too), or ``{"items": [...], "root": "...", "meta": {...}}``.
        root: folder that relative frame paths are relative to (overrides the index's
            ``root``).

    Raises:
        ValueError: the two files are swapped or not a pair (another number of rows than of
            items); the message names the files.

    Example:
        >>> fs = load_feature_set(np.zeros((1, 4)), {"items": [{"paths": ["a.jpg"], "pid": 3,
        ...                       "camid": 0}], "meta": {"arch": "tfclip_tiny"}})
        >>> fs.features.shape, fs.items, fs.meta
        ((1, 4), [(('a.jpg',), 3, 0)], {'arch': 'tfclip_tiny'})
    """
    _check_pair(features, index)
    feats = np.load(features) if isinstance(features, (str, os.PathLike)) else features
    feats = _as_numpy(feats)
    raw, index_root, meta = _index_items(index)
    root = root or index_root
    items = [_parse_item(item, i, root) for i, item in enumerate(raw)]
    if feats.ndim != 2 or len(feats) != len(items):
        where = (f"{features} holds features of shape {feats.shape}"
                 if isinstance(features, (str, os.PathLike))
                 else f"features have shape {feats.shape}")
        what = f"{index} lists" if isinstance(index, (str, os.PathLike)) else "the index has"
        raise ValueError(f"{where} but {what} {len(items)} items; expected (num_items, dim): "
                         "the two files are not a pair (tools/embed.py writes OUT.npy with "
                         "OUT.json)")
    return FeatureSet(feats, items, meta)


def read_feature_set(
    features: Union[str, ArrayLike],
    index: Union[str, Sequence[Any], Mapping[str, Any]],
    root: str | None = None,
) -> Tuple[np.ndarray, List[Tuple[Tuple[str, ...], int, int]]]:
    """``(features float32 (N, D), [(paths, pid, camid), ...])`` of :func:`load_feature_set`.

    Example:
        >>> f, items = read_feature_set(np.zeros((1, 4)), [{"paths": ["a.jpg"], "pid": 3,
        ...                                                   "camid": 0}])
        >>> f.shape, items
        ((1, 4), [(('a.jpg',), 3, 0)])
    """
    fs = load_feature_set(features, index, root)
    return fs.features, fs.items


def _weights_of(meta: Mapping[str, Any]) -> str:
    return (f"{meta.get('weights') or 'weights not named'} ({meta.get('arch', 'arch ?')}, "
            f"digest {meta.get('weights_digest', '?')})")


def weights_differ(meta_a: Mapping[str, Any], meta_b: Mapping[str, Any]) -> str | None:
    """How two feature indexes' ``meta`` show different weights (another architecture or
    another :func:`~tfclip_torchreid.embedding.weights_digest`), or None when they show the
    same or too little to tell.

    Example:
        >>> weights_differ({"weights": "a.pth", "arch": "x", "weights_digest": "1"},
        ...                {"weights": "b.pth", "arch": "x", "weights_digest": "2"})
        'a.pth (x, digest 1) vs b.pth (x, digest 2)'
    """
    differ = any(k in meta_a and k in meta_b and meta_a[k] != meta_b[k]
                 for k in ("arch", "weights_digest"))
    return f"{_weights_of(meta_a)} vs {_weights_of(meta_b)}" if differ else None


def settings_differ(meta_a: Mapping[str, Any], meta_b: Mapping[str, Any]) -> List[str]:
    """The embedding settings two indexes' ``meta`` disagree on (the weights as given when
    there is no digest to compare, normalisation, input size, clip length, protocol).

    Example:
        >>> settings_differ({"seq_len": 8}, {"seq_len": 4, "norm": "x"})
        ['seq_len 8 vs 4']
    """
    keys = ["norm", "image_size", "seq_len", "protocol"]
    if not ("weights_digest" in meta_a and "weights_digest" in meta_b):
        keys.insert(0, "weights")
    return [f"{k} {meta_a[k]} vs {meta_b[k]}" for k in keys
            if k in meta_a and k in meta_b and meta_a[k] != meta_b[k]]


def feature_distances(query_features: ArrayLike, gallery_features: ArrayLike) -> np.ndarray:
    """The evaluation's distances (:func:`~.engine.evaluation.distance_matrix`): torchreid's
    Euclidean ``compute_distance_matrix`` on L2-normalised features (numpy)."""
    return distance_matrix(torch.as_tensor(_as_numpy(query_features)),
                           torch.as_tensor(_as_numpy(gallery_features)), "euclidean",
                           normalize=True)
