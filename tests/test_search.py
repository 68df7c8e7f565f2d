"""Gallery search on faiss (tfclip_torchreid.search, tools/search.py, tools/bench_search.py):
the exact index equals the ranker, filters, save/load, incremental add, compressed recall."""

from __future__ import annotations

import builtins
import importlib.util
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch

from tfclip_torchreid.engine.evaluation import distance_matrix
from tfclip_torchreid.metrics.rank import rank_metrics
from tfclip_torchreid.search import (
    INSTALL_HINT,
    GalleryIndex,
    build_index,
    merge_results,
    require_faiss,
)
from tfclip_torchreid.utils.feature_files import save_embeddings
from tfclip_torchreid.visualize import rank_gallery

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SMALL = "PCA32,IVF16,SQ8"  # the compressed recipe at a test's size


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_cli",
                                                  osp.join(REPO, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _problem(num_ids=40, dim=48, seed=0, queries=60):
    """Identity-clustered features: identity centre + view noise, 1..8 views per identity on 4
    cameras; queries are other views; a few gallery rows are exact duplicates (ties)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((num_ids, dim))
    g_pids = np.repeat(np.arange(num_ids), rng.integers(1, 9, size=num_ids))
    g_cams = rng.integers(0, 4, size=len(g_pids))
    g = centres[g_pids] + 1.2 * rng.standard_normal((len(g_pids), dim))
    g[5] = g[3]  # ties: equal distances to every query
    g[17] = g[11]
    q_pids = rng.integers(0, num_ids, size=queries)
    q_cams = rng.integers(0, 4, size=queries)
    q = centres[q_pids] + 1.2 * rng.standard_normal((queries, dim))
    return (g.astype(np.float32), g_pids, g_cams, q.astype(np.float32), q_pids, q_cams)


def _evaluation_distances(q, g):
    return distance_matrix(torch.from_numpy(q), torch.from_numpy(g), normalize=True)


def _same_metrics(a, b):
    assert np.array_equal(a.cmc, b.cmc)
    assert a.num_valid == b.num_valid and a.num_query == b.num_query
    assert abs(a.mAP - b.mAP) < 1e-12 and abs(a.mINP - b.mINP) < 1e-12


def test_exact_index_equals_the_ranker():
    """On the index's own distances, always; on the evaluation's (torch's float32 rounding),
    when no two distances of a query lie within that rounding, as here."""
    g, gp, gc, q, qp, qc = _problem()
    index = GalleryIndex(g.shape[1])
    index.add(g, gp, gc)
    ours = index.evaluate(q, qp, qc, max_rank=20)
    own = np.empty((len(q), len(g)), dtype=np.float32)
    for row, dist, ids in index.rankings(q, chunk_size=7):
        np.put_along_axis(own[row:row + len(ids)], ids, dist, axis=1)
    _same_metrics(ours, rank_metrics(own, qp, gp, qc, gc, max_rank=20))
    ref = rank_metrics(_evaluation_distances(q, g), qp, gp, qc, gc, max_rank=20)
    assert 0.2 < ref.mAP < 0.95 and ref.num_valid < len(q)  # errors and unmatched queries
    _same_metrics(ours, ref)


def test_exact_index_equals_the_ranker_on_near_ties():
    """Identity-clustered 64-d features, 3000 tracklets: the index's and torch's distances
    differ by float32 rounding, enough to swap near-ties; on the index's own distances the
    ranker and the index agree exactly."""
    bench = _tool("bench_search")
    gen = bench.SyntheticReID(3000, dim=64, seed=0)
    g, gp, gc = gen.chunk(0, 3000)
    q, qp, qc = gen.queries(40)
    index = GalleryIndex(64)
    index.add(g, gp, gc)
    own = np.empty((len(q), len(g)), dtype=np.float32)
    for row, dist, ids in index.rankings(q):
        np.put_along_axis(own[row:row + len(ids)], ids, dist, axis=1)
    _same_metrics(index.evaluate(q, qp, qc), rank_metrics(own, qp, gp, qc, gc))
    assert np.abs(own - _evaluation_distances(q, g)).max() < 2e-6


def test_exact_topk_with_filters_and_ties_equals_the_protocol_ranking():
    g, gp, gc, q, qp, qc = _problem()
    q = np.concatenate([q, g[[3, 11]]])  # queries tied with two pairs of gallery rows
    qp, qc = np.concatenate([qp, gp[[3, 11]]]), np.concatenate([qc, (gc[[3, 11]] + 1) % 4])
    index = GalleryIndex(g.shape[1])
    index.add(g, gp, gc)
    res = index.search(q, 15, qp, qc)
    dist = _evaluation_distances(q, g)
    for i in range(len(q)):
        expected = rank_gallery(dist[i], qp[i], qc[i], gp, gc, 15)  # stable: ties by index
        assert res.ids[i].tolist() == expected
    np.testing.assert_allclose(res.distances, np.take_along_axis(dist, res.ids, 1), atol=1e-5)
    tied = res.ids[-2].tolist()
    assert tied.index(3) + 1 == tied.index(5)  # equal distances: gallery order


def test_filters_same_identity_same_camera_only_for_known_ids():
    # gallery: the query's identity 7 on its camera (4 rows, nearest), on another camera,
    # an unknown identity (-1) on the query's camera, and others
    base = np.array([1.0, 0.0, 0.0])
    g = np.stack([base, base, base, base, [0.9, 0.1, 0], [0.8, 0.2, 0], [0, 1, 0], [0, 0, 1]])
    gp = np.array([7, 7, 7, 7, 7, -1, 3, 4])
    gc = np.array([0, 0, 0, 0, 1, 0, 0, 0])
    index = GalleryIndex(3)
    index.add(g, gp, gc)
    q = base[None]
    assert index.search(q, 3, [7], [0]).ids.tolist() == [[4, 5, 6]]  # 4 junk rows over-fetched
    assert index.search(q, 3, [-1], [0]).ids.tolist() == [[0, 1, 2]]  # unknown id: no filter
    assert index.search(q, 3).ids.tolist() == [[0, 1, 2]]  # no labels: no filter
    assert index.search(q, 3, [7], [1]).ids.tolist() == [[0, 1, 2]]  # other camera: kept
    short = index.search(q, 6, [7], [0])  # only 4 items survive the filter
    assert short.ids.tolist() == [[4, 5, 6, 7, -1, -1]]
    assert np.isinf(short.distances[0, 4:]).all()
    with pytest.raises(ValueError, match="q_camids"):
        index.search(q, 3, [7])


def test_save_load_round_trip_and_atomic_writes(tmp_path, monkeypatch):
    g, gp, gc, q, qp, qc = _problem()
    names = [f"t{i}" for i in range(len(g))]
    for factory, params in (("exact", None), (SMALL, "nprobe=4,rerank=20")):
        index = build_index(g, gp, gc, names, factory, params, meta={"model": "tiny"})
        path = index.save(str(tmp_path / "gallery.index"))
        loaded = GalleryIndex.load(path)
        assert (loaded.factory, loaded.params, loaded.meta) == (index.factory, index.params,
                                                                 {"model": "tiny"})
        assert loaded.names == names and np.array_equal(loaded.pids, gp)
        assert np.array_equal(loaded.camids, gc)
        a, b = index.search(q, 10, qp, qc), loaded.search(q, 10, qp, qc)
        assert np.array_equal(a.ids, b.ids) and np.array_equal(a.distances, b.distances)
    assert os.listdir(tmp_path) == ["gallery.index"]
    before = open(path, "rb").read()
    faiss = require_faiss()

    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setattr(faiss, "write_index", broken)
    with pytest.raises(OSError, match="disk full"):
        loaded.save(path)
    assert os.listdir(tmp_path) == ["gallery.index"] and open(path, "rb").read() == before
    (tmp_path / "other.bin").write_bytes(b"not an index")
    with pytest.raises(ValueError, match="not a gallery index"):
        GalleryIndex.load(str(tmp_path / "other.bin"))
    with pytest.raises(FileNotFoundError, match="tools/search.py build"):
        GalleryIndex.load(str(tmp_path / "missing.index"))


def _inverted_lists(index):
    """(ids, codes) of every list of an IVF index."""
    faiss = require_faiss()
    from faiss.contrib.inspect_tools import get_invlist

    invlists = faiss.extract_index_ivf(index.index).invlists
    return [get_invlist(invlists, i) for i in range(invlists.nlist)]


def test_incremental_add_equals_one_build(tmp_path):
    """Exact: the same index, byte for byte. Compressed: the same items in the same cells and
    the same results; a code may move by one step where faiss's PCA (a batched matrix product,
    whose float32 rounding depends on the batch) lands on a quantisation boundary."""
    faiss = require_faiss()
    g, gp, gc, q, qp, qc = _problem()
    for factory, params in (("exact", None), (SMALL, "nprobe=4,rerank=20")):
        trained = GalleryIndex(g.shape[1], factory, params)
        trained.train(g)
        empty = trained.save(str(tmp_path / "trained.index"))
        once, parts = GalleryIndex.load(empty), GalleryIndex.load(empty)
        once.add(g, gp, gc)
        parts.add(g[:50], gp[:50], gc[:50])
        path = parts.save(str(tmp_path / f"{factory}.index"))
        parts = GalleryIndex.load(path)  # the rest added after a reload, as tools/search.py add
        parts.add(g[50:90], gp[50:90], gc[50:90])
        parts.add(g[90:], gp[90:], gc[90:])
        assert np.array_equal(once.pids, parts.pids) and np.array_equal(once.camids, parts.camids)
        a, b = once.search(q, 10, qp, qc), parts.search(q, 10, qp, qc)
        assert np.array_equal(a.ids, b.ids)
        if factory == "exact":
            assert (bytes(faiss.serialize_index(once.index))
                    == bytes(faiss.serialize_index(parts.index)))
            assert np.array_equal(a.distances, b.distances)
            continue
        lists_once, lists_parts = _inverted_lists(once), _inverted_lists(parts)
        assert all(np.array_equal(i1, i2) for (i1, _), (i2, _) in zip(lists_once, lists_parts))
        codes = [(c1, c2) for (_, c1), (_, c2) in zip(lists_once, lists_parts)]
        steps = np.concatenate([np.abs(c1.astype(int) - c2.astype(int)).ravel()
                                for c1, c2 in codes])
        assert steps.max() <= 1 and (steps == 0).mean() > 0.99
        ids = np.arange(len(g))
        assert np.array_equal(once.store.gather(ids), parts.store.gather(ids))
        np.testing.assert_allclose(a.distances, b.distances, rtol=0, atol=1e-6)


def test_sharded_gallery_merges_to_one_index(tmp_path):
    """docs/search.md: one trained index copied to every machine, each adds its share of the
    gallery and answers the queries; merged, the results are one index's."""
    g, gp, gc, q, qp, qc = _problem()
    cut = [0, 60, 101, len(g)]
    for factory, params in (("exact", None), (SMALL, "nprobe=16")):
        trained = GalleryIndex(g.shape[1], factory, params)
        trained.train(g)
        empty = trained.save(str(tmp_path / "trained.index"))
        whole = GalleryIndex.load(empty)
        whole.add(g, gp, gc)
        shards = []
        for a, b in zip(cut[:-1], cut[1:]):
            shard = GalleryIndex.load(empty)
            shard.add(g[a:b], gp[a:b], gc[a:b])
            shards.append(shard)
        merged = merge_results([s.search(q, 10, qp, qc) for s in shards],
                               [s.ntotal for s in shards])
        one = whole.search(q, 10, qp, qc)
        if factory == "exact":
            assert np.array_equal(merged.ids, one.ids)
            assert np.array_equal(merged.distances, one.distances)
        else:  # the same cells scanned; codes may differ by one step (batched PCA rounding)
            assert (merged.ids == one.ids).mean() > 0.97


def test_compressed_index_recall_at_small_size():
    bench = _tool("bench_search")
    gen = bench.SyntheticReID(6000, dim=64, seed=1)
    g, gp, gc = gen.chunk(0, 6000)
    q, qp, qc = gen.queries(200)
    exact = GalleryIndex(64)
    exact.add(g, gp, gc)
    truth = exact.search(q, 10, qp, qc).ids
    plain = build_index(g, gp, gc, factory=SMALL, params="nprobe=4")
    reranked = build_index(g, gp, gc, factory=SMALL, params="nprobe=4,rerank=40")
    r_plain = bench.recall_at(plain.search(q, 10, qp, qc).ids, truth, 10)
    r_rerank = bench.recall_at(reranked.search(q, 10, qp, qc).ids, truth, 10)
    assert 0.3 < r_plain < r_rerank and r_rerank >= 0.9, (r_plain, r_rerank)
    assert reranked.store is not None and plain.store is None
    with pytest.raises(ValueError, match="without its features"):
        plain.set_params("rerank=10")


def test_missing_faiss_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def no_faiss(name, *args, **kwargs):
        if name == "faiss":
            raise ImportError("No module named 'faiss'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_faiss)
    with pytest.raises(ImportError, match=r"tfclip-torchreid\[search\]") as err:
        require_faiss()
    assert INSTALL_HINT in str(err.value)


def test_search_cli_build_add_query(tmp_path, capsys):
    g, gp, gc, q, qp, qc = _problem()
    items = [{"name": f"g{i}", "paths": [], "pid": int(p), "camid": int(c), "num_frames": 1}
             for i, (p, c) in enumerate(zip(gp, gc))]
    index_of = {"root": str(tmp_path), "meta": {"arch": "tiny"}}
    save_embeddings(str(tmp_path / "g1.npy"), g[:70], {**index_of, "items": items[:70]})
    save_embeddings(str(tmp_path / "g2.h5"), g[70:], {**index_of, "items": items[70:]})
    q_items = [{"name": f"q{i}", "paths": [], "pid": int(p), "camid": int(c), "num_frames": 1}
               for i, (p, c) in enumerate(zip(qp, qc))]
    save_embeddings(str(tmp_path / "q.npy"), q, {**index_of, "items": q_items})
    cli = _tool("search")
    out = str(tmp_path / "gallery.index")
    assert cli.main(["build", "--features", str(tmp_path / "g1.npy"), "--out", out]) == 0
    assert cli.main(["add", out, "--features", str(tmp_path / "g2.h5")]) == 0
    table = str(tmp_path / "topk.csv")
    assert cli.main(["query", out, "--features", str(tmp_path / "q.npy"), "--topk", "5",
                     "--out", table, "--metrics"]) == 0
    printed = capsys.readouterr().out
    ref = rank_metrics(_evaluation_distances(q, g), qp, gp, qc, gc)
    assert f"mAP {100 * ref.mAP:.1f}%" in printed
    rows = open(table).read().splitlines()
    assert rows[0] == "query,rank,gallery,distance,match" and len(rows) == 1 + 5 * len(q)
    dist = _evaluation_distances(q, g)
    expected = [f"g{j}" for j in rank_gallery(dist[0], qp[0], qc[0], gp, gc, 5)]
    assert [r.split(",")[2] for r in rows[1:6]] == expected
    meta = GalleryIndex.load(out).meta["sources"]
    assert [s["items"] for s in meta] == [70, len(g) - 70]
    # a compressed index with its features on disk, extended in place
    small = str(tmp_path / "small.index")
    assert cli.main(["build", "--features", str(tmp_path / "g1.npy"), "--out", small,
                     "--index", SMALL, "--params", "nprobe=16,rerank=30"]) == 0
    assert cli.main(["add", small, "--features", str(tmp_path / "g2.h5")]) == 0
    grown = GalleryIndex.load(small)
    assert grown.ntotal == len(g) and grown.store.rows == len(g)
    np.testing.assert_allclose(grown.store.gather(np.arange(len(g))),
                               g / np.linalg.norm(g, axis=1, keepdims=True), atol=1e-3)


def test_bench_search_smoke(capsys):
    bench = _tool("bench_search")
    assert bench.main(["--gallery", "3000", "--queries", "40", "--dim", "64", "--exact",
                       "--json"]) == 0
    exact = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert exact["exact_equal"] is True and exact["recall_at_10"] == 1.0
    assert bench.main(["--gallery", "3000", "--queries", "40", "--dim", "64", "--index", SMALL,
                       "--params", "nprobe=4,rerank=40", "--train-size", "2000", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    keys = {"gallery", "dim", "index", "build_s", "index_gb", "peak_rss_gb", "queries_per_s",
            "recall_at_10"}
    assert keys <= set(out) and "exact_equal" not in out
    assert out["gallery"] == 3000 and out["index"] == SMALL and 0.5 < out["recall_at_10"] <= 1
