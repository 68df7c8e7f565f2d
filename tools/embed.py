"""Embed folders of tracklets (or images) with a trained TF-CLIP model; rank query vs gallery.

Tracklets are read from the frame names as the benchmarks lay them out: a MARS or LS-VID person
folder (``bbox_test/0001/0001C1T0001F001.jpg``) holds several tracklets, told apart by the names
and embedded apart; iLIDS-VID, PRID2011 and DukeMTMC-VideoReID keep a folder per tracklet; every
Market-1501, DukeMTMC-reID or MSMT17 image is a tracklet. Any other folder that holds image files
is one tracklet (frames in file-name order), and images directly in DIR are one-frame tracklets.
The log says what was found. pid / camera come from the names, else -1 / 0. Features are the
model's test features under the dense test protocol (all clips of ``--seq-len`` frames,
averaged), written as ``OUT.npy`` + ``OUT.json`` (index: frame paths, pid, camid, frame count,
and in ``meta`` the settings and the weights' digest; what ``tools/visualize.py`` reads) or one
``OUT.h5``.

Every frame is checked before any compute (cached): a bad frame stops the run with the list of
bad files, or with ``--skip-bad-frames`` is left out (with tracklets left without frames; the log
and the index's ``meta`` list them). A run that stops part-way writes what it embedded to
``OUT_partial.*`` (``meta["partial"]`` says how many of how many and why it stopped); a complete
run removes such files of an earlier run.

With ``--query QDIR --gallery GDIR`` both sets are embedded (``OUT_query.*``,
``OUT_gallery.*``), ranked by the evaluation's distance (Euclidean on L2-normalised features)
and the top-k table is written to ``OUT_topk.csv`` (query, rank, gallery, distance, match; the
tracklets as their folder or image path under QDIR / GDIR);
CMC / mAP are printed when the names carry identities.

Frames are prepared as the weights say: the model's input size and, unless ``--norm`` is given,
the mean / std the weights were trained with (recorded in this package's checkpoints; the zoo
entry's for ``zoo:NAME``, e.g. 0.5 / 0.5 for the CLIP-ReID ViTs; the arch's documented default
for other files).

Several processes (``torchrun --nproc_per_node=N tools/embed.py ...``, one per GPU, or gloo
processes on CPUs) share the embedding: each takes a contiguous run of whole batches and the
features are gathered in order, so the files are the ones a single process writes; only the
first process writes files and prints.

Examples:
    python tools/embed.py --weights log/mars/checkpoints/latest.pth --input tracks/ --out f.npy
    python tools/embed.py --weights W --query q/ --gallery g/ --out out/mars.h5 --topk 10
    torchrun --nproc_per_node=4 tools/embed.py --weights W --input tracks/ --out f.npy
"""

from __future__ import annotations

import argparse
import os
import os.path as osp
import sys
import time
from typing import Any, Dict, List, Tuple

import numpy as np
import torch

from tfclip_torchreid.embedding import (
    H5_EXTENSIONS,
    EmbeddingError,
    EmbeddingInterrupted,
    embed_folder,
    rank_table,
    ranking_metrics,
    save_embeddings,
    weights_digest,
    write_rank_table,
)
from tfclip_torchreid.export import load_inference_model
from tfclip_torchreid.models import list_archs, resolve_weights
from tfclip_torchreid.models.weights import arch_preprocess
from tfclip_torchreid.utils.distributed import (
    cleanup,
    init_distributed,
    is_dist,
    is_main_process,
)
from tfclip_torchreid.utils.logger import console_logging
from tfclip_torchreid.visualize import feature_distances


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--arch", choices=list_archs(), default=None,
                   help="architecture (needed for weights that do not name it)")
    p.add_argument("--weights", default=None,
                   help="checkpoint written by this package, zoo:NAME, or (with --arch) other "
                        "weights")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", help="folder of tracklet folders and/or images")
    src.add_argument("--query", help="query folder (with --gallery)")
    p.add_argument("--gallery", help="gallery folder (with --query)")
    p.add_argument("--out", required=True,
                   help="output: FILE.npy (+ FILE.json), FILE.h5, or a stem (-> .npy + .json)")
    p.add_argument("--seq-len", type=int, default=8, help="frames per clip")
    p.add_argument("--batch-size", type=int, default=8, help="tracklets per batch")
    p.add_argument("--max-clips", type=int, default=64, help="clips per forward pass")
    p.add_argument("--norm", default=None, choices=("imagenet", "clip", "inception"),
                   help="frame normalisation (default: the weights' mean / std)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    p.add_argument("--no-parse-ids", action="store_true",
                   help="ignore pid / camera in file names (pid -1, camera 0 for all)")
    p.add_argument("--camera-num", type=int, default=None,
                   help="SIE cameras of a random model (no --weights; default 6); weights say "
                        "their own")
    p.add_argument("--skip-bad-frames", action="store_true",
                   help="leave out frames that are missing, empty, truncated or cannot be decoded "
                        "(and tracklets left without frames), listed in the log and the index; "
                        "default: stop before any compute, naming them")
    p.add_argument("--part-size", type=int, default=512,
                   help="tracklets embedded per part: the most a failure part-way can lose")
    p.add_argument("--topk", type=int, default=10, help="gallery tracklets per query in the table")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _derived(out: str, part: str, ext: str | None = None) -> str:
    """``out`` with ``_<part>`` before its extension (``f.h5`` -> ``f_query.h5``), or with the
    extension ``ext`` instead."""
    stem, own = osp.splitext(out)
    if own.lower() not in (".npy", ".json") + H5_EXTENSIONS:
        stem, own = out, ""
    return f"{stem}_{part}{own if ext is None else ext}"


def _output_files(out: str) -> List[str]:
    """The files :func:`save_embeddings` writes for ``out``."""
    if out.lower().endswith(H5_EXTENSIONS):
        return [out]
    stem = osp.splitext(out)[0] if out.endswith((".npy", ".json")) else out
    return [stem + ".npy", stem + ".json"]


def _embed(model: torch.nn.Module, folder: str, out: str, args: argparse.Namespace,
           desc: str, norm: Any, digest: str) -> Tuple[np.ndarray, Dict[str, Any]]:
    start = time.time()
    partial = _derived(out, "partial")
    try:
        feats, index = embed_folder(
            model, folder, parse_names=not args.no_parse_ids,
            meta={"weights": args.weights, "weights_digest": digest},
            skip_bad_frames=args.skip_bad_frames, part_size=args.part_size,
            seq_len=args.seq_len, batch_size=args.batch_size, norm=norm, device=args.device,
            workers=args.workers, max_clips=args.max_clips, progress=not args.quiet, desc=desc)
    except (EmbeddingError, EmbeddingInterrupted) as err:
        if not is_main_process():
            raise
        files = save_embeddings(partial, err.features, err.index)
        note = (f"the features of the {len(err.features)} tracklets embedded before are in "
                f"{', '.join(files)} (marked partial in the index's meta)")
        if isinstance(err, EmbeddingInterrupted):
            print(f"=> {err}: {note}", file=sys.stderr)
            raise
        raise RuntimeError(f"{err} {note[0].upper()}{note[1:]}.") from err
    if not is_main_process():
        return feats, index
    files = save_embeddings(out, feats, index)
    stale = [f for f in _output_files(partial) if osp.isfile(f)]
    for f in stale:
        os.remove(f)
    frames = sum(it["num_frames"] for it in index["items"])
    print(f"=> {desc}: {len(feats)} tracklets ({frames} frames) from {folder} -> "
          f"{feats.shape[1]}-d features in {time.time() - start:.1f} s; wrote {', '.join(files)}"
          + (f" (removed the partial output of an earlier run: {', '.join(stale)})"
             if stale else ""))
    return feats, index


def main(argv: list[str] | None = None) -> int:
    """Runs the tool with the package's log lines shown on stdout (one process or, under
    torchrun, each of several)."""
    joined = is_dist()  # a caller's process group stays theirs
    distributed = init_distributed()
    try:
        with console_logging():
            return _run(argv, distributed)
    finally:
        if distributed and not joined:
            cleanup()


def _rank_device(device: str) -> str:
    """Each torchrun process's own GPU (``cuda`` -> ``cuda:LOCAL_RANK``)."""
    return f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if device == "cuda" else device


def _run(argv: list[str] | None = None, distributed: bool = False) -> int:
    args = build_parser().parse_args(argv)
    if distributed:
        args.device = _rank_device(args.device)
        args.quiet = args.quiet or not is_main_process()
    if (args.query is None) != (args.gallery is None):
        print("error: --query and --gallery go together", file=sys.stderr)
        return 2
    if args.weights is None:
        print("warning: no --weights: embedding with a randomly initialised model",
              file=sys.stderr)
        if args.arch is None:
            print("error: give --weights (or --arch for random weights)", file=sys.stderr)
            return 2
    weights = None if args.weights is None else resolve_weights(args.weights, args.arch)
    model = load_inference_model(args.arch, weights, camera_num=args.camera_num,
                                 device=args.device)
    if args.weights is not None and args.camera_num not in (None, model.cfg.camera_num):
        print(f"note: --camera-num {args.camera_num} is not used: the weights hold "
              f"{model.cfg.camera_num} SIE cameras", file=sys.stderr)
    preprocess = weights.preprocess if weights is not None else arch_preprocess(args.arch)
    norm = args.norm or preprocess.norm
    if is_main_process():
        print(f"=> frames: {model.cfg.image_size[0]}x{model.cfg.image_size[1]}, "
              + (f"--norm {args.norm}" if args.norm else
                 f"mean {list(preprocess.mean)} / std {list(preprocess.std)} "
                 f"({preprocess.source})"))
    digest = weights_digest(model)
    if args.input is not None:
        _embed(model, args.input, args.out, args, "embedding", norm, digest)
        return 0

    qf, q_index = _embed(model, args.query, _derived(args.out, "query"), args, "query", norm,
                         digest)
    gf, g_index = _embed(model, args.gallery, _derived(args.out, "gallery"), args, "gallery",
                         norm, digest)
    if not is_main_process():
        return 0
    distmat = feature_distances(qf, gf)
    query = [{**it, "name": osp.join(args.query, it["name"])} for it in q_index["items"]]
    gallery = [{**it, "name": osp.join(args.gallery, it["name"])} for it in g_index["items"]]
    rows = rank_table(distmat, query, gallery, args.topk)
    table = write_rank_table(_derived(args.out, "topk", ".csv"), rows)
    print(f"=> top-{args.topk} table ({len(rows)} rows): {table}")
    metrics = ranking_metrics(distmat, q_index["items"], g_index["items"])
    if metrics is not None:
        cmc = metrics.cmc
        ranks = ", ".join(f"R{k} {100 * cmc[k - 1]:.1f}%" for k in (1, 5, 10) if k <= len(cmc))
        print(f"=> mAP {100 * metrics.mAP:.1f}%, {ranks}, mINP {100 * metrics.mINP:.1f}% "
              f"({metrics.num_valid} of {metrics.num_query} queries have a true match)")
    return 0


if __name__ == "__main__":
    from tfclip_torchreid import cli

    sys.exit(cli.run(main))
