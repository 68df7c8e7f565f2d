"""Tracks of several cameras linked into global identities.

:func:`link_tracks` is agglomerative clustering with average linkage (UPGMA, Sokal & Michener
1958) on the cosine distance between the tracks' L2-normalised features, under a *cannot-link*
constraint (Wagstaff et al., "Constrained K-means clustering with background knowledge", ICML
2001, for the constraint's name): two tracks of one camera that overlap in time are two people
(one tracker does not follow one person twice at once), so no cluster may hold both
(:func:`cannot_link`). Tracks of one camera that do not overlap may be one person walking
through the view twice.

The clusters start as single tracks; the two clusters with the smallest average pairwise
distance that the constraint allows are merged, and distances to the merged cluster are the
size-weighted averages of the two (Lance & Williams 1967), until no allowed pair is closer than
the threshold: a cluster's tracks are at most ``threshold`` apart on average. Without
constraints this is exactly SciPy's ``linkage(method="average")`` cut with
``fcluster(criterion="distance")`` (tested). It takes O(N^3) time for N tracks (a second for a
few hundred).

Before the distances, each camera's bias is taken out of the features
(:func:`remove_camera_bias`): every track of a camera shares its colour cast, light, background
and viewpoint, which pull the tracks of one camera together and push those of different
cameras apart (on the synthetic set, the demo model put two *different* people of one camera
closer, in the median, than one person in two cameras). The features are L2-normalised and the
mean feature of the camera's tracks is subtracted (the mean of all tracks for a camera with
fewer than :data:`MIN_CAMERA_TRACKS`, whose mean would be mostly its few people's). README
("From camera videos to identities") gives the distances and F1 measured with and without it.

The threshold (:func:`auto_threshold`) is chosen from the data unless given. The tracks that
cannot be one person are known negatives: the model's distances between *different* people in
this very footage, on its own distance scale. Those whose boxes intersect in a shared frame
(people crossing, one occluding the other) are left out of this reference (:func:`boxes_touch`):
their crops share pixels, which makes them look alike -- on the synthetic sets most of the
smallest known-negative distances were such pairs. The threshold is the
:data:`NEGATIVE_QUANTILE` quantile of the remaining pairs' distances: tracks are linked when they
are closer, on average, than 90 % of the pairs known to be two people. It needs no labels and
adapts to any model (a trained model's distances and a random one's live on different scales).
Under :data:`MIN_NEGATIVES` such pairs, all the pairs of overlapping tracks stand in, and under
as many of those, all pairs of tracks (most of them different people when there are more than a
handful of identities). README ("From camera videos to identities") compares it with the best
threshold in hindsight on the synthetic sets.

Example:
    >>> feats = np.array([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [0.05, 1.0]])
    >>> dist = cosine_distances(feats)
    >>> cannot = np.zeros((4, 4), bool); cannot[2, 3] = cannot[3, 2] = True
    >>> link_tracks(dist, cannot, threshold=0.1).tolist()
    [0, 0, 1, 2]
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from ..data.mot import Box

__all__ = ["NEGATIVE_QUANTILE", "MIN_NEGATIVES", "MIN_CAMERA_TRACKS", "Span", "Threshold",
           "remove_camera_bias", "cosine_distances", "cannot_link", "boxes_touch",
           "auto_threshold", "link_tracks"]

#: quantile of the known-different pairs' distances used as the threshold
NEGATIVE_QUANTILE = 0.1
#: fewest known-different pairs for them to set the threshold
MIN_NEGATIVES = 10
#: fewest tracks of a camera for its own mean to be its bias
MIN_CAMERA_TRACKS = 5


class Span(NamedTuple):
    """When a track was seen: its camera and its first and last frame (inclusive)."""

    camera: str
    first: int
    last: int


class Threshold(NamedTuple):
    """The distance threshold and how it was chosen."""

    value: float
    rule: str
    pairs: int  # pairs it was computed from (0 when given)


def cosine_distances(features: np.ndarray) -> np.ndarray:
    """``1 - cos`` between the rows (float64, zero diagonal).

    Example:
        >>> cosine_distances(np.array([[1.0, 0.0], [0.0, 2.0]])).tolist()
        [[0.0, 1.0], [1.0, 0.0]]
    """
    f = np.asarray(features, dtype=np.float64)
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    d = np.clip(1.0 - f @ f.T, 0.0, 2.0)
    np.fill_diagonal(d, 0.0)
    return d


def remove_camera_bias(features: np.ndarray, cameras: Sequence[str],
                       min_tracks: int = MIN_CAMERA_TRACKS) -> np.ndarray:
    """L2-normalised ``features`` less the mean of their camera's rows (the mean of all rows
    for a camera with fewer than ``min_tracks`` rows); see the module notes.

    Example:
        >>> f = np.array([[1.0, 0.1], [1.0, -0.1], [0.1, 1.0], [-0.1, 1.0]])
        >>> remove_camera_bias(f, ["a", "a", "b", "b"], min_tracks=2).round(3).tolist()
        [[0.0, 0.1], [0.0, -0.1], [0.1, 0.0], [-0.1, 0.0]]
    """
    f = np.asarray(features, dtype=np.float64)
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    cams = np.asarray(cameras)
    out = f - f.mean(axis=0)
    for cam in np.unique(cams):
        rows = cams == cam
        if rows.sum() >= min_tracks:
            out[rows] = f[rows] - f[rows].mean(axis=0)
    return out


def cannot_link(spans: Sequence[Span]) -> np.ndarray:
    """``(N, N)`` bool: True for two tracks of one camera whose frame spans overlap.

    Example:
        >>> cannot_link([Span("a", 1, 10), Span("a", 10, 20), Span("a", 21, 30),
        ...              Span("b", 1, 30)]).astype(int).tolist()
        [[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    """
    cams = np.array([s.camera for s in spans])
    first = np.array([s.first for s in spans])
    last = np.array([s.last for s in spans])
    out = ((cams[:, None] == cams[None, :]) & (first[:, None] <= last[None, :])
           & (first[None, :] <= last[:, None]))
    np.fill_diagonal(out, False)
    return out


def boxes_touch(a: Sequence[Box], b: Sequence[Box]) -> bool:
    """Whether two tracks of one camera have intersecting boxes in a frame they share.

    Example:
        >>> boxes_touch([Box(1, 0, 0, 10, 20), Box(2, 5, 0, 10, 20)], [Box(2, 12, 0, 10, 20)])
        True
        >>> boxes_touch([Box(1, 0, 0, 10, 20)], [Box(1, 10, 0, 10, 20), Box(2, 0, 0, 10, 20)])
        False
    """
    mine = {box.frame: box for box in a}
    for y in b:
        x = mine.get(y.frame)
        if x is not None and (min(x.x + x.w, y.x + y.w) > max(x.x, y.x)
                              and min(x.y + x.h, y.y + y.h) > max(x.y, y.y)):
            return True
    return False


def auto_threshold(dist: np.ndarray, cannot: np.ndarray, touching: np.ndarray | None = None,
                   quantile: float = NEGATIVE_QUANTILE) -> Threshold:
    """The threshold of the module notes: the ``quantile`` of the distances of the cannot-link
    pairs whose boxes never touch (``touching``: :func:`boxes_touch` of each pair), else of all
    cannot-link pairs, else of all pairs (each when there are at least :data:`MIN_NEGATIVES`).

    Example:
        >>> d = np.array([[0, .2, .9], [.2, 0, .5], [.9, .5, 0]])
        >>> auto_threshold(d, np.zeros((3, 3), bool), quantile=0.5)
        Threshold(value=0.5, rule='0.5 quantile of all 3 track pairs', pairs=3)
    """
    upper = np.triu(np.ones_like(cannot, dtype=bool), k=1)
    touching = np.zeros_like(cannot) if touching is None else np.asarray(touching, dtype=bool)
    what = "pairs of tracks that overlap in time in one camera"
    for mask, name in ((cannot & ~touching, f"{what}, their boxes apart"), (cannot, what)):
        negatives = dist[mask & upper]
        if len(negatives) >= MIN_NEGATIVES:
            return Threshold(float(np.quantile(negatives, quantile)),
                             f"{quantile:g} quantile of the {len(negatives)} {name}",
                             len(negatives))
    pairs = dist[upper]
    if len(pairs) == 0:
        return Threshold(0.0, "a single track", 0)
    return Threshold(float(np.quantile(pairs, quantile)),
                     f"{quantile:g} quantile of all {len(pairs)} track pairs", len(pairs))


def link_tracks(dist: np.ndarray, cannot: np.ndarray, threshold: float) -> np.ndarray:
    """Cluster labels ``0..G-1`` (numbered in order of each cluster's first track) of
    constrained average-linkage clustering cut at ``threshold`` (see the module notes)."""
    n = len(dist)
    if dist.shape != (n, n) or cannot.shape != (n, n):
        raise ValueError(f"dist {dist.shape} and cannot {cannot.shape} must both be (N, N)")
    d = np.asarray(dist, dtype=np.float64).copy()
    blocked = np.asarray(cannot, dtype=bool).copy()
    np.fill_diagonal(blocked, True)
    size = np.ones(n)
    owner = np.arange(n)
    active = np.ones(n, dtype=bool)
    work = np.where(blocked, np.inf, d)
    while n > 1:
        i, j = np.unravel_index(int(np.argmin(work)), work.shape)
        if not work[i, j] <= threshold:
            break
        i, j = min(i, j), max(i, j)  # j joins i
        d[i] = d[:, i] = (size[i] * d[i] + size[j] * d[j]) / (size[i] + size[j])
        blocked[i] = blocked[:, i] = blocked[i] | blocked[j]
        size[i] += size[j]
        owner[owner == j] = i
        active[j] = False
        work[i] = work[:, i] = np.where(blocked[i] | ~active, np.inf, d[i])
        work[i, i] = np.inf
        work[j] = work[:, j] = np.inf
    _, first_seen, labels = np.unique(owner, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first_seen))
    return order[labels].astype(np.int64)
