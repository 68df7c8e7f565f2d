"""Model zoo: table, cache folder, downloads through gdown from a local HTTP server, and zoo
weights through the resolver (model, preprocessing) into build_tfclip, torchreid's
FeatureExtractor and tools/embed.py.

The served files are state dicts in CLIP-ReID's key layout (``torch.save(model.state_dict())``
of its ``build_transformer``): the reference's key names and shape rules, recorded from its code in
``tests/data/clipreid_keys`` (:mod:`clipreid_reference`), at tiny widths. Every
download goes through :func:`zoo.download_zoo` -> ``gdown.download`` exactly as in production;
the entries point their ``url`` at 127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import importlib.util
import io
import json
import logging
import os
import os.path as osp
import re
import socket
import threading
import time
from typing import Dict, List, Tuple

import numpy as np
import pytest
import torch
from clipreid_reference import clipreid_state_dict
from PIL import Image

from tfclip_torchreid import compat
from tfclip_torchreid.models import zoo
from tfclip_torchreid.models.key_mapping import detect_layout
from tfclip_torchreid.models.tfclip import TFCLIP
from tfclip_torchreid.models.weights import (
    resolve_weights,
    weights_file,
    weights_from_checkpoint,
    zoo_weights,
)
from tfclip_torchreid.models.zoo import ZooEntry

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _to_bytes(state: Dict[str, torch.Tensor]) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------
# a local HTTP file server with Range support and scripted failures
# ----------------------------------------------------------------------------------------------
class FileServer:
    """Serves ``files`` on 127.0.0.1; records requests; cuts the first ``cut`` full bodies."""

    def __init__(self, files: Dict[str, bytes]):
        self.files = files
        self.requests: List[Tuple[str, str | None]] = []  # (path, Range header)
        self.cut = 0
        self.no_length: set = set()  # paths served without Content-Length (read to the close)
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):  # noqa: N802 - http.server's name
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                etag = '"' + hashlib.md5(data).hexdigest() + '"'
                start = 0
                m = re.fullmatch(r"bytes=(\d+)-", rng or "")
                if m and self.headers.get("If-Range", etag) == etag:
                    start = int(m.group(1))
                body = data[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Type", "application/octet-stream")
                if self.path not in server.no_length:
                    self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", etag)
                if self.path not in server.no_length:
                    self.send_header("Accept-Ranges", "bytes")
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                try:
                    if not start and server.cut > 0:
                        server.cut -= 1
                        self.wfile.write(body[: len(body) // 2])
                        self.wfile.flush()
                        self.connection.shutdown(socket.SHUT_RDWR)
                        self.close_connection = True
                        return
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # client hung up (resume)
                    pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def vit_bytes() -> bytes:
    # > 1 MiB: gdown reads 512 KiB chunks and a chunk cut short is lost, so an interruption
    # half-way through keeps at least one chunk to resume from
    torch.manual_seed(1)
    data = _to_bytes(clipreid_state_dict("vit", num_classes=7, width=96))
    assert len(data) > 2 * 512 * 1024
    return data


@pytest.fixture
def server(vit_bytes):
    srv = FileServer({"/vit.pth": vit_bytes})
    yield srv
    srv.close()


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """Every test gets its own cache folder; no proxy for 127.0.0.1."""
    monkeypatch.setenv("TFCLIP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setattr(zoo, "RETRIES", 0)  # single attempts unless a test says otherwise


#: the model of the served ``vit_bytes`` file: clipreid_vitb16 at its tiny widths
VIT_SWITCHES = {"use_sie": False, "stride": 16, "width": 96, "layers": 2, "heads": 2,
                "embed_dim": 16, "text_width": 16, "text_layers": 1, "text_heads": 2}


def _add(monkeypatch, name: str, url: str, sha256: str | None = None, **kw) -> ZooEntry:
    fields = dict(arch="clipreid_vitb16", dataset="market1501", num_classes=7, camera_num=6,
                  switches=VIT_SWITCHES)
    fields.update(kw)
    entry = ZooEntry(name=name, url=url, sha256=sha256, **fields)
    monkeypatch.setitem(zoo._ZOO, name, entry)
    return entry


def _cache_files(tmp_path) -> List[str]:
    d = tmp_path / "home" / "checkpoints"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


# ----------------------------------------------------------------------------------------------
# the table
# ----------------------------------------------------------------------------------------------
#: training-set sizes of the benchmarks (identities, cameras), from the datasets' papers
BENCHMARKS = {"market1501": (751, 6), "dukemtmcreid": (702, 8), "msmt17": (1041, 15)}
#: CLIP-ReID's released variants: (visual tower, stride, SIE) and the reference's full sizes
VARIANTS = {"vitb16": ("vit", 16, False), "vitb16_sie_olp": ("vit", 12, True),
            "rn50": ("rn50", 16, False)}
FULL = {"vit": dict(width=768, layers=12, embed=512), "rn50": dict(width=64, embed=1024,
                                                                   blocks=(3, 4, 6, 3))}


def _name_parts(name: str) -> Tuple[str, str]:
    m = re.fullmatch(r"clipreid_(vitb16|vitb16_sie_olp|rn50)_(market1501|dukemtmcreid|msmt17)",
                     name)
    assert m, f"zoo entry {name!r} is not one of CLIP-ReID's released models"
    return m.group(1), m.group(2)


@pytest.mark.parametrize("name", zoo.list_zoo())
def test_every_entry_fits_a_full_size_file_of_its_layout(name):
    """A CLIP-ReID file of the variant and training set the name says (full sizes, on the meta
    device) is accepted as the entry's file, and the entry's model takes every tensor of it."""
    variant, dataset = _name_parts(name)
    backbone, stride, sie = VARIANTS[variant]
    ids, cams = BENCHMARKS[dataset]
    with torch.device("meta"):
        state = clipreid_state_dict(backbone, num_classes=ids, camera_num=cams if sie else 0,
                                    stride=stride, text_width=512, text_layers=12,
                                    **FULL[backbone])
        weights = zoo_weights(name, state)
        own = TFCLIP(weights.config).state_dict()
    shapes = {k: tuple(v.shape) for k, v in own.items() if not k.startswith("memory.")}
    assert shapes == {k: tuple(v.shape) for k, v in weights.state_dict.items()}
    cfg = weights.config
    assert (cfg.num_classes, cfg.use_sie, cfg.camera_num if sie else cams) == (ids, sie, cams)
    assert (cfg.backbone, cfg.memory_source) == ({"vit": "vit", "rn50": "resnet"}[backbone],
                                                 "text")
    if backbone == "vit":
        assert cfg.stride == stride
    with torch.device("meta"):  # a file of another training set is refused, naming the fix
        other = clipreid_state_dict(backbone, num_classes=ids + 1, stride=stride,
                                    camera_num=cams if sie else 0, **FULL[backbone])
    with pytest.raises(ValueError, match=rf"num_classes {ids + 1} \(expected {ids}\).*again"):
        zoo_weights(name, other, path="/cache/x.pth")


def _doc_table() -> Dict[str, Tuple[Tuple[int, ...], Tuple[float, ...], Tuple[float, ...]]]:
    """CLIP-ReID's INPUT settings as docs/clipreid_and_rn50.md records them: config -> (size,
    mean, std), and the zoo name patterns each config trains."""
    with open(osp.join(REPO, "docs", "clipreid_and_rn50.md")) as f:
        rows = [line for line in f if line.startswith("| `configs/person/")]
    table = {}
    for row in rows:
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        nums = [tuple(float(v) for v in cell.split(",")) for cell in cells[2:5]]
        for pattern in re.findall(r"`(clipreid_\w+?)_\*`", cells[1]):
            table[pattern] = (tuple(int(v) for v in nums[0]), nums[1], nums[2])
    return table


def test_entries_preprocess_as_clipreid_configs_in_docs():
    table = _doc_table()
    assert set(table) == {"clipreid_vitb16", "clipreid_vitb16_sie_olp", "clipreid_rn50"}
    for name in zoo.list_zoo():
        variant, _ = _name_parts(name)
        size, mean, std = table[f"clipreid_{variant}"]
        pre = zoo.get_entry(name).preprocess
        assert (tuple(pre["image_size"]), tuple(pre["mean"]), tuple(pre["std"])) == (size, mean,
                                                                                    std), name


def test_entry_urls_and_read_only_switches():
    names = zoo.list_zoo()
    ids = {zoo.get_entry(n).drive_id for n in names}
    assert len(ids) == len(names) and all(re.fullmatch(r"[-\w]{33}", i) for i in ids)
    e = ZooEntry(name="x", arch="clipreid_rn50", dataset="market1501", num_classes=751,
                 camera_num=6, drive_id="abc")
    assert e.manual_url == "https://drive.google.com/file/d/abc/view"
    assert e.download_url == "https://drive.google.com/uc?id=abc"
    with pytest.raises(ValueError, match="exactly one of drive_id and url"):
        ZooEntry(name="y", arch="clipreid_rn50", dataset="m", num_classes=1, camera_num=1)
    with pytest.raises(TypeError):
        zoo.get_entry(names[0]).switches["stride"] = 12  # read-only


def test_is_zoo_and_unknown_name_lists_available():
    assert zoo.is_zoo("zoo:x") and not zoo.is_zoo("x.pth") and not zoo.is_zoo(None)
    with pytest.raises(ValueError) as err:
        weights_file("zoo:clipreid_vitl14_mars")
    msg = str(err.value)
    assert "clipreid_vitl14_mars" in msg
    assert all(n in msg for n in zoo.list_zoo())


def test_plain_path(tmp_path):
    f = tmp_path / "w.pth"
    f.write_bytes(b"x")
    assert weights_file(str(f)) == str(f)
    with pytest.raises(FileNotFoundError, match="missing.pth.*zoo:"):
        weights_file(str(tmp_path / "missing.pth"))


def test_cache_folder(tmp_path, monkeypatch):
    assert zoo.zoo_cache_dir() == str(tmp_path / "home" / "checkpoints")
    monkeypatch.delenv("TFCLIP_HOME")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert zoo.zoo_cache_path("clipreid_rn50_msmt17") == str(
        tmp_path / "torch" / "hub" / "checkpoints" / "clipreid_rn50_msmt17.pth")


# ----------------------------------------------------------------------------------------------
# downloads
# ----------------------------------------------------------------------------------------------
def test_download_once_then_cache_hit(server, vit_bytes, tmp_path, monkeypatch):
    sha = hashlib.sha256(vit_bytes).hexdigest()
    _add(monkeypatch, "t_vit", server.url("/vit.pth"), sha256=sha)
    path = weights_file("zoo:t_vit", quiet=True)
    assert path == str(tmp_path / "home" / "checkpoints" / "t_vit.pth")
    with open(path, "rb") as f:
        assert f.read() == vit_bytes
    assert server.requests == [("/vit.pth", None)]
    assert _cache_files(tmp_path) == ["t_vit.pth", "t_vit.pth.lock"]
    # second use: no request at all
    assert weights_file("zoo:t_vit", quiet=True) == path
    assert len(server.requests) == 1

    weights = resolve_weights("zoo:t_vit", quiet=True)  # the cached file, read and checked
    assert len(server.requests) == 1
    assert (weights.layout, weights.path, weights.source) == ("clipreid", path, "zoo:t_vit")
    cfg = weights.config
    assert (cfg.arch, cfg.num_classes, cfg.use_sie, cfg.width, cfg.stride) == (
        "clipreid_vitb16", 7, False, 96, 16)
    assert weights.preprocess.source == "zoo entry"
    assert torch.equal(weights.state_dict["classifier2.weight"],
                       torch.load(io.BytesIO(vit_bytes))["classifier.weight"])


def test_sha256_mismatch_leaves_no_file(server, tmp_path, monkeypatch):
    _add(monkeypatch, "t_bad", server.url("/vit.pth"), sha256="0" * 64)
    with pytest.raises(RuntimeError) as err:
        weights_file("zoo:t_bad", quiet=True)
    assert "sha256" in str(err.value) and "0" * 64 in str(err.value)
    assert _cache_files(tmp_path) == ["t_bad.pth.lock"]  # neither final nor staging file


def test_interrupted_download_resumes_on_next_call(server, vit_bytes, tmp_path, monkeypatch):
    _add(monkeypatch, "t_cut", server.url("/vit.pth"), sha256=hashlib.sha256(vit_bytes).hexdigest())
    server.cut = 1
    with pytest.raises(RuntimeError) as err:
        weights_file("zoo:t_cut", quiet=True)
    assert "resume" in str(err.value) and "--weights" in str(err.value)
    files = _cache_files(tmp_path)
    assert "t_cut.pth" not in files and "t_cut.pth.download" not in files
    parts = [f for f in files if f.endswith(".part")]
    assert len(parts) == 1 and parts[0].startswith("t_cut.pth.download")
    received = os.path.getsize(tmp_path / "home" / "checkpoints" / parts[0])
    assert 0 < received < len(vit_bytes)

    path = weights_file("zoo:t_cut", quiet=True)
    with open(path, "rb") as f:
        assert f.read() == vit_bytes
    assert server.requests[-1] == ("/vit.pth", f"bytes={received}-")  # resumed, not restarted
    assert _cache_files(tmp_path) == ["t_cut.pth", "t_cut.pth.lock"]


def test_interruption_retried_within_one_call(server, vit_bytes, monkeypatch):
    monkeypatch.setattr(zoo, "RETRIES", 2)
    _add(monkeypatch, "t_retry", server.url("/vit.pth"))
    server.cut = 1
    path = weights_file("zoo:t_retry", quiet=True)
    with open(path, "rb") as f:
        assert f.read() == vit_bytes
    assert [r[1] is not None for r in server.requests] == [False, True]


def test_complete_staging_file_is_published_without_network(server, vit_bytes, tmp_path,
                                                            monkeypatch):
    """A crash after the download but before the rename: the next call only renames."""
    _add(monkeypatch, "t_staged", server.url("/vit.pth"),
         sha256=hashlib.sha256(vit_bytes).hexdigest())
    d = tmp_path / "home" / "checkpoints"
    d.mkdir(parents=True)
    (d / "t_staged.pth.download").write_bytes(vit_bytes)
    assert weights_file("zoo:t_staged", quiet=True) == str(d / "t_staged.pth")
    assert server.requests == []


def test_concurrent_callers_download_once(server, vit_bytes, monkeypatch):
    _add(monkeypatch, "t_conc", server.url("/vit.pth"))
    results, errors = [], []

    def worker():
        try:
            results.append(weights_file("zoo:t_conc", quiet=True))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and len(set(results)) == 1 and len(results) == 3
    assert len(server.requests) == 1


def test_offline_fails_fast_with_manual_path(tmp_path, monkeypatch):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    _add(monkeypatch, "t_off", f"http://127.0.0.1:{port}/vit.pth")
    t0 = time.monotonic()
    with pytest.raises(RuntimeError) as err:
        weights_file("zoo:t_off", quiet=True)
    assert time.monotonic() - t0 < 5
    msg = str(err.value)
    assert f"http://127.0.0.1:{port}/vit.pth" in msg and "--weights /path/to/file.pth" in msg
    assert "t_off.pth" in msg  # where to put a manual download
    assert not [f for f in _cache_files(tmp_path) if f.startswith("t_off.pth") and
                not f.endswith(".lock")]


def test_offline_drive_entry_names_drive_page(monkeypatch):
    """A real table entry offline (the request fails to resolve): the message names its Drive
    page and the local-path alternative."""
    import gdown
    import requests

    def unreachable(url, **kwargs):
        raise requests.exceptions.ConnectionError(f"Failed to resolve host of {url}")

    monkeypatch.setattr(gdown, "download", unreachable)
    with pytest.raises(RuntimeError) as err:
        weights_file("zoo:clipreid_vitb16_market1501", quiet=True)
    msg = str(err.value)
    assert "https://drive.google.com/file/d/1GnyAVeNOg3Yug1KBBWMKKbT2x43O5Ch7/view" in msg
    assert "offline?" in msg and "--weights /path/to/file.pth" in msg


def test_web_page_instead_of_checkpoint_is_rejected(server, tmp_path, monkeypatch):
    server.files["/quota.pth"] = b"<!DOCTYPE html><html><body>Quota exceeded</body></html>"
    _add(monkeypatch, "t_html", server.url("/quota.pth"))
    with pytest.raises(RuntimeError, match="web page"):
        weights_file("zoo:t_html", quiet=True)
    assert _cache_files(tmp_path) == ["t_html.pth.lock"]


def test_server_error_is_reported(server, tmp_path, monkeypatch):
    _add(monkeypatch, "t_404", server.url("/missing.pth"))
    with pytest.raises(RuntimeError, match="404"):
        weights_file("zoo:t_404", quiet=True)
    assert "t_404.pth" not in _cache_files(tmp_path)


def test_left_over_truncated_staging_file_is_downloaded_again(server, vit_bytes, tmp_path,
                                                             monkeypatch, caplog):
    """A .download file cut short (no sha256 in the entry) is never promoted: it fails the
    archive check and the file is downloaded anew."""
    caplog.set_level(logging.INFO, logger="tfclip_torchreid")
    _add(monkeypatch, "t_short", server.url("/vit.pth"))
    d = tmp_path / "home" / "checkpoints"
    d.mkdir(parents=True)
    (d / "t_short.pth.download").write_bytes(vit_bytes[: len(vit_bytes) // 2])
    path = weights_file("zoo:t_short")
    with open(path, "rb") as f:
        assert f.read() == vit_bytes
    assert server.requests == [("/vit.pth", None)]
    assert "t_short.pth.download, left by an earlier download, failed its check" in caplog.text
    assert "truncated" in caplog.text
    assert re.search(r"saved .*t_short\.pth \([\d,]+ bytes, sha256 [0-9a-f]{64}; verified: "
                     r"size, archive\)", caplog.text)
    assert _cache_files(tmp_path) == ["t_short.pth", "t_short.pth.lock"]


@pytest.mark.parametrize("announced", [True, False])
def test_file_cut_short_at_the_server_is_not_promoted(server, vit_bytes, tmp_path, monkeypatch,
                                                      announced):
    """A server that sends a truncated file (announcing its short size, or no size at all): the
    download completes as far as HTTP can tell, and the archive check rejects it."""
    server.files["/short.pth"] = vit_bytes[: len(vit_bytes) - 1000]
    if not announced:
        server.no_length.add("/short.pth")
    _add(monkeypatch, "t_cut_srv", server.url("/short.pth"))
    with pytest.raises(RuntimeError) as err:
        weights_file("zoo:t_cut_srv", quiet=True)
    msg = str(err.value)
    assert "not a complete checkpoint" in msg and "truncated" in msg and "deleted" in msg
    assert _cache_files(tmp_path) == ["t_cut_srv.pth.lock"]


def test_verify_download_checks_the_announced_size(vit_bytes, tmp_path, monkeypatch):
    entry = _add(monkeypatch, "t_size", "http://127.0.0.1:1/x.pth")
    path = tmp_path / "x.pth"
    path.write_bytes(vit_bytes)
    assert zoo.verify_download(entry, str(path), len(vit_bytes)) == ["size", "archive"]
    with pytest.raises(RuntimeError, match=f"incomplete: {len(vit_bytes):,} of the "
                                           f"{len(vit_bytes) + 1:,} bytes"):
        zoo.verify_download(entry, str(path), len(vit_bytes) + 1)


def test_bad_cached_file_is_named_with_the_fix(server, vit_bytes, tmp_path, monkeypatch):
    """A cached file that is not a checkpoint (here cut short, e.g. copied by hand): the message
    names the cache file, says what it is and to delete it; after that, zoo:NAME downloads it."""
    _add(monkeypatch, "t_cached", server.url("/vit.pth"))
    d = tmp_path / "home" / "checkpoints"
    d.mkdir(parents=True)
    cached = d / "t_cached.pth"
    cached.write_bytes(vit_bytes[: len(vit_bytes) // 3])
    with pytest.raises(ValueError) as err:
        resolve_weights("zoo:t_cached", quiet=True)
    msg = str(err.value)
    assert str(cached) in msg and "truncated" in msg and f"rm {cached}" in msg
    assert "weights_only" not in msg and "file an issue" not in msg
    assert server.requests == []
    os.remove(cached)  # what the message says
    weights = resolve_weights("zoo:t_cached", quiet=True)
    assert weights.path == str(cached) and len(server.requests) == 1


# ----------------------------------------------------------------------------------------------
# reading files
# ----------------------------------------------------------------------------------------------
def test_read_layouts_and_entry_check(tmp_path, monkeypatch):
    sie = tmp_path / "sie.pth"
    torch.save({f"module.{k}": v for k, v in
                clipreid_state_dict("vit", num_classes=5, camera_num=3, stride=12).items()}, sie)
    weights = resolve_weights(str(sie), "clipreid_vitb16")  # shapes: not described by the file
    assert weights.layout == "clipreid" and not weights.self_describing
    assert not any(k.startswith(("module.", "image_encoder.")) for k in weights.state_dict)
    cfg = weights.config
    assert (cfg.num_classes, cfg.camera_num, cfg.use_sie, cfg.stride, cfg.width) == (5, 3, True,
                                                                                     12, 32)
    assert (cfg.text_width, cfg.text_layers, cfg.embed_dim) == (16, 1, 16)
    assert weights.preprocess.mean == (0.5, 0.5, 0.5)  # clipreid_vitb16's documented default
    with pytest.raises(ValueError, match="does not name its architecture.*--arch"):
        resolve_weights(str(sie))

    rn = tmp_path / "rn50.pth"
    state = clipreid_state_dict("rn50", num_classes=4, width=8)
    torch.save({"state_dict": state, "epoch": 9}, rn)
    weights = resolve_weights(str(rn), "clipreid_rn50")
    assert (weights.config.backbone, weights.config.width, weights.config.resnet_layers,
            weights.config.embed_dim) == ("resnet", 8, (1, 1, 1, 1), 16)
    assert weights.checkpoint == {"epoch": 9}
    # a bad file in the cache is named, with the fix
    cache = tmp_path / "home" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(state, cache / "clipreid_rn50_market1501.pth")
    with pytest.raises(ValueError) as err:
        resolve_weights("zoo:clipreid_rn50_market1501")
    msg = str(err.value)
    assert str(cache / "clipreid_rn50_market1501.pth") in msg and "num_classes 4 (expected 751)" \
        in msg and f"delete it (rm {cache / 'clipreid_rn50_market1501.pth'})" in msg

    assert detect_layout({"TMD.resblocks.0.attn.in_proj_weight": 0,
                          "image_encoder.proj": 0}) == "tfclip_authors"
    assert detect_layout({"image_encoder.proj": 0, "prompt_learner.cls_ctx": 0}) == "clipreid"
    assert detect_layout({"backbone.proj": 0}) == "tfclip"
    assert detect_layout({"visual.proj": 0}) == "clip"
    assert detect_layout({"fc.weight": 0}) == "unknown"
    with pytest.raises(ValueError, match="none of the keys.*fc.weight"):
        weights_from_checkpoint({"fc.weight": torch.zeros(1)}, "x.pth", "clipreid_vitb16")
    with pytest.raises(ValueError, match="CLIP weights.*pretrained"):
        weights_from_checkpoint({"visual.proj": torch.zeros(1)}, "clip.pt", "clipreid_vitb16")


# ----------------------------------------------------------------------------------------------
# zoo weights in the model family: build_tfclip(weights=), FeatureExtractor, the CLI
# ----------------------------------------------------------------------------------------------
TINY = {"image_size": (256, 128), "width": 32, "layers": 2, "heads": 2, "embed_dim": 16,
        "text_width": 16, "text_layers": 1, "text_heads": 2}


@pytest.mark.parametrize("backbone", ["vit", "rn50"])
def test_clipreid_checkpoint_loads_into_our_model(backbone, monkeypatch, tmp_path):
    """A checkpoint in CLIP-ReID's own key layout (the official zoo files) loads strictly into
    the matching clipreid_* model through the one key-mapping place, and serves features."""
    from tfclip_torchreid.models import build_tfclip

    torch.manual_seed(3)
    if backbone == "vit":
        state = clipreid_state_dict("vit", num_classes=7, width=32, layers=2, embed=16,
                                    text_width=16, text_layers=1, camera_num=6)
        arch, switches = "clipreid_tiny", {**TINY, "use_sie": True}
    else:
        state = clipreid_state_dict("rn50", num_classes=7, width=8, embed=16, text_width=16,
                                    text_layers=1)
        arch = "tfclip_rn50_tiny"
        switches = {"image_size": (256, 128), "width": 8, "heads": 2, "embed_dim": 16,
                    "text_width": 16, "text_layers": 1, "text_heads": 2,
                    "memory_source": "text", "use_ssp": False, "temporal": "tap",
                    "test_feature": "released"}
    srv = FileServer({"/cr.pth": _to_bytes(state)})
    try:
        _add(monkeypatch, "t_cr", srv.url("/cr.pth"), arch=arch, switches=switches)
        model = build_tfclip(arch, weights="zoo:t_cr")
        ours = model.state_dict()
        torch.testing.assert_close(ours["classifier2.weight"], state["classifier.weight"])
        torch.testing.assert_close(ours["prompt_learner.cls_ctx"], state["prompt_learner.cls_ctx"])
        torch.testing.assert_close(ours["backbone.conv1.weight"], state["image_encoder.conv1.weight"])
        # torchreid's FeatureExtractor with the zoo name: the entry's model, built once
        extractor = compat.utils.FeatureExtractor(model_name=arch, model_path="zoo:t_cr",
                                                  device="cpu", verbose=False)
        for k, v in ours.items():
            if not k.startswith("memory."):
                torch.testing.assert_close(extractor.model.state_dict()[k], v, msg=k)
        x = torch.rand(2, 3, 256, 128)
        with torch.no_grad():
            torch.testing.assert_close(extractor(x), model.eval()(x), atol=1e-5, rtol=1e-5)
        assert len(srv.requests) == 1  # downloaded once, then served from the cache
    finally:
        srv.close()
    with pytest.raises(ValueError, match="holds a"):
        build_tfclip("tfclip_tiny", weights="zoo:t_cr")


# ----------------------------------------------------------------------------------------------
# the preprocessing travels with zoo weights (CLIP-ReID's ViTs: mean = std = 0.5)
# ----------------------------------------------------------------------------------------------
TINY_VIT = {"width": 32, "layers": 2, "heads": 2, "embed_dim": 16, "text_width": 16,
            "text_layers": 1, "text_heads": 2}


@pytest.fixture
def market_vit(monkeypatch):
    """zoo:clipreid_vitb16_market1501 as the table has it (identities, switches,
    preprocessing), served from 127.0.0.1 at tiny widths."""
    name = "clipreid_vitb16_market1501"
    real = zoo.get_entry(name)
    torch.manual_seed(4)
    srv = FileServer({"/m.pth": _to_bytes(clipreid_state_dict(
        "vit", num_classes=real.num_classes, width=32, layers=2, embed=16, text_width=16,
        text_layers=1))})
    entry = dataclasses.replace(real, drive_id="", url=srv.url("/m.pth"),
                                switches={**real.switches, **TINY_VIT})
    monkeypatch.setitem(zoo._ZOO, name, entry)
    yield f"zoo:{name}"
    srv.close()


def _images(folder, n: int = 3) -> List[str]:
    """``n`` random 256x128 PNG frames (lossless, at the model's size: no resampling)."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        paths.append(osp.join(folder, f"frame_{i}.png"))
        Image.fromarray(rng.integers(0, 256, (256, 128, 3), dtype=np.uint8)).save(paths[-1])
    return paths


def _by_hand(model, paths: List[str]) -> torch.Tensor:
    """Test features of single frames normalised with mean = std = 0.5, computed by hand."""
    x = torch.stack([torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1)
                     for p in paths]).float() / 255.0
    with torch.no_grad():
        return model.eval()((x - 0.5) / 0.5)


def test_feature_extractor_normalises_a_clipreid_vit_as_its_entry(market_vit, tmp_path):
    extractor = compat.utils.FeatureExtractor(model_name="clipreid_vitb16",
                                              model_path=market_vit, device="cpu", verbose=False)
    normalize = extractor.preprocess.transforms[-1]
    assert (list(normalize.mean), list(normalize.std)) == ([0.5] * 3, [0.5] * 3)
    assert extractor.model.num_classes == 751 and extractor.model.cfg.image_size == (256, 128)
    paths = _images(tmp_path)
    torch.testing.assert_close(extractor(paths), _by_hand(extractor.model, paths),
                               atol=1e-5, rtol=1e-5)
    # the caller's statistics still win
    own = compat.utils.FeatureExtractor(model_name="clipreid_vitb16", model_path=market_vit,
                                        device="cpu", verbose=False, pixel_mean=[0.4] * 3)
    assert list(own.preprocess.transforms[-1].mean) == [0.4] * 3
    with pytest.raises(ValueError, match=r"256x128 frames, not image_size=\(128, 64\)"):
        compat.utils.FeatureExtractor(model_name="clipreid_vitb16", model_path=market_vit,
                                      device="cpu", verbose=False, image_size=(128, 64))


def test_embed_tool_normalises_a_clipreid_vit_as_its_entry(market_vit, tmp_path):
    spec = importlib.util.spec_from_file_location("embed_cli", osp.join(REPO, "tools", "embed.py"))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    paths = _images(tmp_path / "frames")
    out = str(tmp_path / "f.npy")
    assert cli.main(["--weights", market_vit, "--input", str(tmp_path / "frames"), "--out", out,
                     "--seq-len", "1", "--workers", "0", "--quiet", "--device", "cpu"]) == 0
    feats = np.load(out)
    with open(out[:-4] + ".json") as f:
        meta = json.load(f)["meta"]
    assert meta["norm"] == {"mean": [0.5] * 3, "std": [0.5] * 3}
    model = resolve_weights(market_vit).build()
    np.testing.assert_allclose(feats, _by_hand(model, sorted(paths)).numpy(), atol=1e-5)
