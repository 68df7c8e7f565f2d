"""A validation split carved out of the training identities, for checkpoint selection.

No ReID benchmark ships a validation split (MARS, LS-VID, iLIDS-VID, Market-1501, ...), and the
released TF-CLIP code picks its best checkpoint on the test set. Here a model is never selected on
the test set: with ``data.val_ids N`` the data manager holds ``N`` training identities out of
training (the others are relabelled ``0..Y-1``), splits their tracklets into a validation query
(one tracklet per identity) and gallery (the rest), and the engine evaluates on them every
``test.eval_freq`` epochs, keeping ``checkpoints/best.pth`` by validation mAP.

Which identities: those with tracklets from at least two cameras (so every validation query has a
true match in another camera), ``N`` of them drawn by a generator of their own seeded with the
run's seed (the same split on every rank and on resume; the global random streams are untouched).
The query is the identity's first tracklet; the gallery keeps its other tracklets.

Example:
    >>> items = [((f"{p}_{c}_{i}.jpg",), p, c, 0) for p in range(4) for c in range(2)
    ...          for i in range(2)]
    >>> train, query, gallery = hold_out_identities(items, 1, seed=0)
    >>> len(train), len(query), len(gallery)
    (12, 1, 3)
    >>> {it[1] for it in query} == {it[1] for it in gallery}
    True
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import List, Sequence, Tuple

__all__ = ["hold_out_identities"]


def hold_out_identities(items: Sequence[tuple], num_ids: int, seed: int = 0
                        ) -> Tuple[List[tuple], List[tuple], List[tuple]]:
    """Split torchreid train items ``(paths, pid, camid, dsetid)`` into (train, val query,
    val gallery) by holding out ``num_ids`` identities seen by two or more cameras.

    Raises:
        ValueError: ``num_ids`` is negative, or larger than the number of such identities less
            one (training needs identities too); the message gives the number available.
    """
    if isinstance(num_ids, bool) or not isinstance(num_ids, int) or num_ids < 0:
        raise ValueError(f"data.val_ids must be an int >= 0, got {num_ids!r}")
    if num_ids == 0:
        return list(items), [], []
    cameras = defaultdict(set)
    for item in items:
        cameras[item[1]].add(item[2])
    pids = sorted(cameras)
    eligible = [pid for pid in pids if len(cameras[pid]) >= 2]
    if num_ids > min(len(eligible), len(pids) - 1):
        raise ValueError(
            f"data.val_ids {num_ids}: the training set has {len(pids)} identities, "
            f"{len(eligible)} of them seen by two or more cameras; hold out at most "
            f"{min(len(eligible), len(pids) - 1)} (or set data.val_ids 0)")
    held = set(random.Random(seed).sample(eligible, num_ids))
    train = [it for it in items if it[1] not in held]
    query, gallery, seen = [], [], set()
    for item in items:
        if item[1] not in held:
            continue
        (gallery if item[1] in seen else query).append(item)
        seen.add(item[1])
    return train, query, gallery
