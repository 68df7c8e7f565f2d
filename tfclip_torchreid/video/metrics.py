"""How well tracks were linked across cameras: pairwise precision, recall and F1.

The pairs are the unordered pairs of tracks *in different cameras* among the tracks of the
ground truth (``gt.csv``, :func:`~tfclip_torchreid.data.mot.read_ground_truth`). A pair is

* *true* when the ground truth gives both tracks the same person,
* *predicted* when the linking gave both the same global identity (a ground-truth track that
  was not embedded -- no box could be cropped -- is linked to nothing).

With TP the pairs both true and predicted, FP predicted but not true, FN true but not predicted:

* ``pairwise_precision = TP / (TP + FP)`` (0 when no pair is predicted),
* ``pairwise_recall = TP / (TP + FN)`` (0 when no pair is true),
* ``pairwise_f1 = 2 P R / (P + R)`` (0 when P + R = 0).

Pairs of tracks in one camera are left out: they measure the tracker, not the cross-camera
linking. Linked tracks that the ground truth does not list are left out too (and counted as
``unlabelled_tracks``).

Example:
    >>> gt = {("a", 1): "p", ("b", 1): "p", ("b", 2): "q", ("c", 1): "q"}
    >>> ids = {("a", 1): 1, ("b", 1): 1, ("b", 2): 1, ("c", 1): 2}
    >>> m = pairwise_scores(ids, gt)
    >>> m["true_positives"], m["false_positives"], m["false_negatives"]
    (1, 1, 1)
    >>> round(m["pairwise_precision"], 3), round(m["pairwise_recall"], 3)
    (0.5, 0.5)
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Tuple

__all__ = ["pairwise_scores"]

Key = Tuple[str, int]


def pairwise_scores(identities: Mapping[Key, int], truth: Mapping[Key, str]) -> Dict[str, Any]:
    """The scores of the module notes for ``identities`` (``{(camera, track_id): global_id}``)
    against ``truth`` (``{(camera, track_id): person}``), with the pair counts."""
    keys = sorted(truth)
    tp = fp = fn = pairs = 0
    for a in range(len(keys)):
        for b in range(a + 1, len(keys)):
            ka, kb = keys[a], keys[b]
            if ka[0] == kb[0]:
                continue
            pairs += 1
            true = truth[ka] == truth[kb]
            linked = ka in identities and kb in identities and identities[ka] == identities[kb]
            tp += true and linked
            fp += linked and not true
            fn += true and not linked
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"pairwise_precision": precision, "pairwise_recall": recall, "pairwise_f1": f1,
            "true_positives": tp, "false_positives": fp, "false_negatives": fn,
            "cross_camera_pairs": pairs, "true_pairs": tp + fn,
            "unlabelled_tracks": len(set(identities) - set(truth)),
            "unembedded_tracks": len(set(truth) - set(identities))}
