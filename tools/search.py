"""Build, extend and query a gallery index of tracklet features (faiss; tfclip_torchreid.search).

Feature files are the ones ``tools/embed.py`` writes (``OUT.npy`` + ``OUT.json`` or ``OUT.h5``;
``OUT_gallery.*`` / ``OUT_query.*`` with ``--query/--gallery``) and the engine's
``test.save_features``; each row keeps its name, identity and camera in the index.

* ``build``: a new index from one or more feature files (``--index exact``: float32, brute
  force; ``compressed``: PCA + IVF + 8-bit codes in memory and the full features on disk to
  re-rank; or any faiss ``index_factory`` string). A compressed index is trained on a random
  sample of ``--train-size`` rows first.
* ``add``: append feature files to an existing index (rewritten atomically).
* ``query``: the top-k gallery tracklets of every query as a CSV table (query, rank, gallery,
  distance, match: the columns of ``tools/embed.py``'s table); queries of known identity skip
  gallery tracklets of the same identity and camera (``--no-filter``: they do not).
  ``--metrics`` adds CMC / mAP over the index's full ranking (the evaluation's numbers on the
  exact index).

Requires faiss: ``pip install "tfclip-torchreid[search]"``.

Examples:
    python tools/search.py build --features out/mars_gallery.npy --out out/mars.index
    python tools/search.py build --features g1.h5 g2.h5 --index compressed --out big.index
    python tools/search.py add out/mars.index --features out/new_gallery.npy
    python tools/search.py query out/mars.index --features out/mars_query.npy --topk 10 \\
        --out out/mars_topk.csv --metrics
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from tfclip_torchreid.embedding import RANK_TABLE_COLUMNS, write_rank_table
from tfclip_torchreid.search import (
    INDEX_KINDS,
    GalleryIndex,
    build_index,
    read_feature_file,
    require_faiss,
)
from tfclip_torchreid.utils.logger import console_logging


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="a new index from feature files")
    b.add_argument("--features", nargs="+", required=True, help="gallery feature files")
    b.add_argument("--out", required=True, help="index file to write")
    b.add_argument("--index", default="exact",
                   help=f"{' or '.join(INDEX_KINDS)} or a faiss index_factory string")
    b.add_argument("--params", default=None,
                   help="search settings, e.g. nprobe=64,rerank=50 (default: the index's own)")
    b.add_argument("--train-size", type=int, default=65536,
                   help="rows a compressed index is trained on (a random sample)")
    b.add_argument("--seed", type=int, default=0, help="seed of the training sample")
    a = sub.add_parser("add", help="append feature files to an index")
    a.add_argument("index", help="index file (rewritten)")
    a.add_argument("--features", nargs="+", required=True, help="gallery feature files")
    q = sub.add_parser("query", help="top-k gallery tracklets of query features")
    q.add_argument("index", help="index file")
    q.add_argument("--features", required=True, help="query feature file")
    q.add_argument("--topk", type=int, default=10, help="gallery tracklets per query")
    q.add_argument("--out", default=None, help="CSV table to write (default: print the table)")
    q.add_argument("--no-filter", action="store_true",
                   help="keep gallery tracklets of the query's identity and camera")
    q.add_argument("--params", default=None, help="search settings for this query")
    q.add_argument("--metrics", action="store_true",
                   help="CMC / mAP over the index's full ranking (labelled queries)")
    return p


def _read_all(paths: Sequence[str]) -> Tuple[np.ndarray, np.ndarray, np.ndarray, List[str],
                                               List[Dict[str, Any]]]:
    parts = [read_feature_file(path) for path in paths]
    dims = {part[0].shape[1] for part in parts}
    if len(dims) > 1:
        raise ValueError(f"the feature files {', '.join(paths)} have different dimensions "
                         f"{sorted(dims)}: embed them with one model")
    names = [name for part in parts for name in part[3]]
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]), names, [p[4] for p in parts])


def _sources(sources: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [{k: v for k, v in s.items() if k != "meta"} | {"model": s["meta"].get("arch")}
            for s in sources]


def _build(args: argparse.Namespace) -> int:
    feats, pids, camids, names, sources = _read_all(args.features)
    start = time.time()
    index = build_index(feats, pids, camids, names, args.index, args.params, args.train_size,
                        args.seed, meta={"sources": _sources(sources)})
    index.save(args.out)
    print(f"=> {index!r} from {len(args.features)} file(s) in {time.time() - start:.1f} s: "
          f"{args.out}")
    return 0


def _add(args: argparse.Namespace) -> int:
    index = GalleryIndex.load(args.index)
    feats, pids, camids, names, sources = _read_all(args.features)
    before = index.ntotal
    index.add(feats, pids, camids, names)
    index.meta.setdefault("sources", []).extend(_sources(sources))
    index.save(args.index)
    print(f"=> added {index.ntotal - before} items: {index!r} -> {args.index}")
    return 0


def _query(args: argparse.Namespace) -> int:
    index = GalleryIndex.load(args.index)
    if args.params is not None:
        index.set_params(args.params)
    feats, pids, camids, names, _ = read_feature_file(args.features)
    start = time.time()
    if args.no_filter:
        res = index.search(feats, args.topk)
    else:
        res = index.search(feats, args.topk, pids, camids)
    seconds = time.time() - start
    rows = []
    for qi, name in enumerate(names):
        for rank, (gi, dist) in enumerate(zip(res.ids[qi], res.distances[qi]), start=1):
            if gi < 0:
                break
            known = pids[qi] >= 0 and index.pids[gi] >= 0
            rows.append({"query": name, "rank": rank, "gallery": index.names[gi],
                         "distance": float(dist),
                         "match": int(index.pids[gi] == pids[qi]) if known else ""})
    print(f"=> {len(names)} queries on {index!r} in {seconds:.2f} s")
    if args.out:
        print(f"=> top-{args.topk} table ({len(rows)} rows): {write_rank_table(args.out, rows)}")
    else:
        print(",".join(RANK_TABLE_COLUMNS))
        for row in rows:
            print(",".join(f"{row[c]:.6f}" if c == "distance" else str(row[c])
                           for c in RANK_TABLE_COLUMNS))
    if args.metrics:
        r = index.evaluate(feats, pids, camids)
        ranks = ", ".join(f"R{k} {100 * r.cmc[k - 1]:.1f}%" for k in (1, 5, 10) if k <= len(r.cmc))
        print(f"=> mAP {100 * r.mAP:.1f}%, {ranks}, mINP {100 * r.mINP:.1f}% ({r.num_valid} of "
              f"{r.num_query} queries have a true match)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Runs the tool with the package's log lines shown on stdout."""
    args = build_parser().parse_args(argv)
    require_faiss()  # before any file is read: the error names the extra to install
    with console_logging():
        return {"build": _build, "add": _add, "query": _query}[args.command](args)


if __name__ == "__main__":
    from tfclip_torchreid import cli

    sys.exit(cli.run(main))
