"""Draw ranked video results (query strip + top-k gallery strips) and a t-SNE of test features.

Inputs are feature files: ``.npy`` arrays ``(N, D)`` with a ``.json`` index of the same order,
a list of ``{"paths": [frame, ...], "pid": int, "camid": int}`` (or ``{"items": [...],
"root": DIR}``; relative frame paths are taken relative to ``--root`` or the index's ``root``).
Distances are torchreid's Euclidean distances between L2-normalised features; ranking skips
gallery tracklets of the query's identity and camera, as the evaluation does.

Writes ``<out>/ranked/<query>.png`` (one per query: green frame = same identity, red = another)
and, with ``--tsne``, ``<out>/tsne.png``.

Query and gallery features must come from the same weights: each index written by
``tools/embed.py`` records its weights (architecture and a digest of the weights), and features
of different weights are refused (distances between them mean nothing) unless
``--allow-mixed-weights`` is given; other differences (normalisation, input size, clip length)
are warned about. A features file and an index file that are not a pair, or swapped, are named.

Example:
    python tools/visualize.py --query-features q.npy --query-index q.json \\
        --gallery-features g.npy --gallery-index g.json --out log/vis --topk 5 --tsne
"""

from __future__ import annotations

import argparse
import os.path as osp
import sys

import numpy as np

from tfclip_torchreid.visualize import (
    FeatureSet,
    draw_ranked_video,
    draw_tsne,
    feature_distances,
    load_feature_set,
    settings_differ,
    weights_differ,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--query-features", required=True, help=".npy (N_q, D)")
    p.add_argument("--query-index", required=True, help=".json index of the query features")
    p.add_argument("--gallery-features", required=True, help=".npy (N_g, D)")
    p.add_argument("--gallery-index", required=True, help=".json index of the gallery features")
    p.add_argument("--root", default=None, help="folder of relative frame paths")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--topk", type=int, default=5, help="gallery tracklets per query picture")
    p.add_argument("--frames", type=int, default=4, help="frames per tracklet strip")
    p.add_argument("--height", type=int, default=128, help="frame height in the pictures")
    p.add_argument("--width", type=int, default=64, help="frame width in the pictures")
    p.add_argument("--max-queries", type=int, default=20,
                   help="queries to draw, evenly spread over the query set (0 = all)")
    p.add_argument("--tsne", action="store_true", help="also draw <out>/tsne.png")
    p.add_argument("--tsne-on", choices=("query", "gallery", "both"), default="both",
                   help="features in the t-SNE (both: query and gallery, without duplicates)")
    p.add_argument("--tsne-ids", type=int, default=20, help="identities in the t-SNE")
    p.add_argument("--tsne-ignore-pids", type=int, nargs="*", default=[-1],
                   help="identities left out of the t-SNE (MARS distractors: add 0)")
    p.add_argument("--seed", type=int, default=0, help="t-SNE seed")
    p.add_argument("--allow-mixed-weights", action="store_true",
                   help="draw query and gallery features of different weights (refused by "
                        "default: their distances mean nothing)")
    return p


def _query_indices(num_query: int, max_queries: int) -> list:
    if max_queries <= 0 or max_queries >= num_query:
        return list(range(num_query))
    return sorted(set(np.linspace(0, num_query - 1, max_queries).round().astype(int).tolist()))


def _load(args: argparse.Namespace, split: str) -> FeatureSet:
    features, index = getattr(args, f"{split}_features"), getattr(args, f"{split}_index")
    try:
        return load_feature_set(features, index, root=args.root)
    except ValueError as err:
        raise ValueError(f"--{split}-features {features} / --{split}-index {index}: {err}") \
            from None


def _check_same_model(args: argparse.Namespace, q: FeatureSet, g: FeatureSet) -> None:
    """Refuse features of different weights (unless allowed); warn about other settings."""
    files = f"{args.query_index} vs {args.gallery_index}"
    if q.features.shape[1] != g.features.shape[1]:
        raise ValueError(f"query features are {q.features.shape[1]}-d ({args.query_features}), "
                         f"gallery features {g.features.shape[1]}-d ({args.gallery_features}): "
                         "they come from different models")
    mixed = weights_differ(q.meta, g.meta)
    if mixed and not args.allow_mixed_weights:
        raise ValueError(
            f"the query and gallery features come from different weights ({files}: {mixed}): "
            "distances between them mean nothing. Embed both with the same weights "
            "(tools/embed.py --query Q --gallery G), or pass --allow-mixed-weights to draw them "
            "anyway")
    if mixed:
        print(f"warning: the query and gallery features come from different weights ({files}: "
              f"{mixed}); drawn because of --allow-mixed-weights", file=sys.stderr)
    if ("weights_digest" in q.meta) != ("weights_digest" in g.meta):
        print(f"warning: only one of {files} records its weights: cannot tell whether the same "
              "weights made both", file=sys.stderr)
    for diff in settings_differ(q.meta, g.meta):
        print(f"warning: the query and gallery features were embedded with other settings "
              f"({files}): {diff}", file=sys.stderr)


def _tsne_set(args, q, g):
    (qf, qi), (gf, gi) = q, g
    if args.tsne_on == "query":
        return qf, [t[1] for t in qi]
    if args.tsne_on == "gallery":
        return gf, [t[1] for t in gi]
    seen = {t[0] for t in qi}
    extra = [k for k, t in enumerate(gi) if t[0] not in seen]  # gallery may include the queries
    return (np.concatenate([qf, gf[extra]]),
            [t[1] for t in qi] + [gi[k][1] for k in extra])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    qs, gs = _load(args, "query"), _load(args, "gallery")
    _check_same_model(args, qs, gs)
    q, g = (qs.features, qs.items), (gs.features, gs.items)
    distmat = feature_distances(q[0], g[0])
    written = draw_ranked_video(
        distmat, q[1], g[1], osp.join(args.out, "ranked"), topk=args.topk,
        frames_per_strip=args.frames, height=args.height, width=args.width,
        query_indices=_query_indices(len(q[1]), args.max_queries),
    )
    print(f"=> {len(written)} ranked pictures in {osp.join(args.out, 'ranked')}")
    if args.tsne:
        feats, pids = _tsne_set(args, q, g)
        path = draw_tsne(feats, pids, osp.join(args.out, "tsne.png"), max_ids=args.tsne_ids,
                         seed=args.seed, ignore_pids=args.tsne_ignore_pids)
        print(f"=> t-SNE in {path}")
    return 0


if __name__ == "__main__":
    from tfclip_torchreid import cli

    sys.exit(cli.run(main))
