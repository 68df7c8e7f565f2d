"""Model zoo: table, cache folder, and downloads through gdown from a local HTTP server.

The served files are state dicts in CLIP-ReID's key layout (``torch.save(model.state_dict())``
of its ``build_transformer``): the reference's key names and shape rules, recorded from its code in
``tests/data/clipreid_keys`` (:mod:`clipreid_reference`), at tiny widths. Every
download goes through :func:`zoo.download_zoo` -> ``gdown.download`` exactly as in production;
the entries point their ``url`` at 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import re
import socket
import threading
import time
from typing import Dict, List, Tuple

import pytest
import torch
from clipreid_reference import clipreid_state_dict

from tfclip_torchreid.models import zoo
from tfclip_torchreid.models.zoo import ZooEntry


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
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", etag)
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


def _add(monkeypatch, name: str, url: str, sha256: str | None = None, **kw) -> ZooEntry:
    fields = dict(arch="clipreid_vitb16", dataset="market1501", num_classes=7, camera_num=6,
                  switches={"use_sie": False, "stride": 16})
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
def test_table_holds_the_official_clipreid_checkpoints():
    names = zoo.list_zoo()
    assert len(names) == 9
    expected = {
        "clipreid_vitb16_market1501": ("clipreid_vitb16", 751, 6, False, 16,
                                       "1GnyAVeNOg3Yug1KBBWMKKbT2x43O5Ch7"),
        "clipreid_vitb16_sie_olp_msmt17": ("clipreid_vitb16_s12", 1041, 15, True, 12,
                                           "1sPZbWTv2_stXBGutjHMvE87pAbSAgVaz"),
        "clipreid_rn50_dukemtmcreid": ("clipreid_rn50", 702, 8, False, 16,
                                       "1XXycuux__uDd9WKwaTAQ4W1RjLqnUphq"),
    }
    for name, (arch, ncls, ncam, sie, stride, drive_id) in expected.items():
        e = zoo.get_entry(name)
        assert (e.arch, e.num_classes, e.camera_num, e.layout) == (arch, ncls, ncam, "clipreid")
        assert e.switches["use_sie"] is sie and e.switches["stride"] == stride
        assert e.drive_id == drive_id and e.sha256 is None
        assert e.manual_url == f"https://drive.google.com/file/d/{drive_id}/view"
        assert e.download_url == f"https://drive.google.com/uc?id={drive_id}"
    assert zoo.get_entry("zoo:clipreid_vitb16_sie_olp_market1501").switches["sie_coe"] == 1.0
    assert len({zoo.get_entry(n).drive_id for n in names}) == 9
    assert all(re.fullmatch(r"[-\w]{33}", zoo.get_entry(n).drive_id) for n in names)
    spec = zoo.zoo_model_kwargs("zoo:clipreid_vitb16_sie_olp_msmt17")
    assert spec == ("clipreid_vitb16_s12", 1041, 15, {"use_sie": True, "sie_coe": 1.0, "stride": 12})
    assert zoo.get_entry("clipreid_rn50_market1501").pixel_mean == (0.485, 0.456, 0.406)
    with pytest.raises(TypeError):
        zoo.get_entry("clipreid_rn50_market1501").switches["stride"] = 12  # read-only


def test_is_zoo_and_unknown_name_lists_available():
    assert zoo.is_zoo("zoo:x") and not zoo.is_zoo("x.pth") and not zoo.is_zoo(None)
    with pytest.raises(ValueError) as err:
        zoo.resolve_weights("zoo:clipreid_vitl14_mars")
    msg = str(err.value)
    assert "clipreid_vitl14_mars" in msg
    assert all(n in msg for n in zoo.list_zoo())


def test_plain_path(tmp_path):
    f = tmp_path / "w.pth"
    f.write_bytes(b"x")
    assert zoo.resolve_weights(str(f)) == str(f)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        zoo.resolve_weights(str(tmp_path / "missing.pth"))


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
    path = zoo.resolve_weights("zoo:t_vit", quiet=True)
    assert path == str(tmp_path / "home" / "checkpoints" / "t_vit.pth")
    with open(path, "rb") as f:
        assert f.read() == vit_bytes
    assert server.requests == [("/vit.pth", None)]
    assert _cache_files(tmp_path) == ["t_vit.pth", "t_vit.pth.lock"]
    # second use: no request at all
    assert zoo.resolve_weights("zoo:t_vit", quiet=True) == path
    assert len(server.requests) == 1

    info = zoo.read_zoo_checkpoint(path, entry="t_vit")
    assert info["layout"] == "clipreid" and info["backbone"] == "vit"
    assert (info["num_classes"], info["camera_num"], info["use_sie"]) == (7, 0, False)
    assert (info["feature_dim"], info["proj_dim"], info["num_positions"]) == (96, 16, 129)
    assert info["has_text_encoder"]
    assert torch.equal(info["state_dict"]["classifier.weight"],
                       torch.load(io.BytesIO(vit_bytes))["classifier.weight"])


def test_sha256_mismatch_leaves_no_file(server, tmp_path, monkeypatch):
    _add(monkeypatch, "t_bad", server.url("/vit.pth"), sha256="0" * 64)
    with pytest.raises(RuntimeError) as err:
        zoo.resolve_weights("zoo:t_bad", quiet=True)
    assert "sha256" in str(err.value) and "0" * 64 in str(err.value)
    assert _cache_files(tmp_path) == ["t_bad.pth.lock"]  # neither final nor staging file


def test_interrupted_download_resumes_on_next_call(server, vit_bytes, tmp_path, monkeypatch):
    _add(monkeypatch, "t_cut", server.url("/vit.pth"), sha256=hashlib.sha256(vit_bytes).hexdigest())
    server.cut = 1
    with pytest.raises(RuntimeError) as err:
        zoo.resolve_weights("zoo:t_cut", quiet=True)
    assert "resume" in str(err.value) and "--weights" in str(err.value)
    files = _cache_files(tmp_path)
    assert "t_cut.pth" not in files and "t_cut.pth.download" not in files
    parts = [f for f in files if f.endswith(".part")]
    assert len(parts) == 1 and parts[0].startswith("t_cut.pth.download")
    received = os.path.getsize(tmp_path / "home" / "checkpoints" / parts[0])
    assert 0 < received < len(vit_bytes)

    path = zoo.resolve_weights("zoo:t_cut", quiet=True)
    with open(path, "rb") as f:
        assert f.read() == vit_bytes
    assert server.requests[-1] == ("/vit.pth", f"bytes={received}-")  # resumed, not restarted
    assert _cache_files(tmp_path) == ["t_cut.pth", "t_cut.pth.lock"]


def test_interruption_retried_within_one_call(server, vit_bytes, monkeypatch):
    monkeypatch.setattr(zoo, "RETRIES", 2)
    _add(monkeypatch, "t_retry", server.url("/vit.pth"))
    server.cut = 1
    path = zoo.resolve_weights("zoo:t_retry", quiet=True)
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
    assert zoo.resolve_weights("zoo:t_staged", quiet=True) == str(d / "t_staged.pth")
    assert server.requests == []


def test_concurrent_callers_download_once(server, vit_bytes, monkeypatch):
    _add(monkeypatch, "t_conc", server.url("/vit.pth"))
    results, errors = [], []

    def worker():
        try:
            results.append(zoo.resolve_weights("zoo:t_conc", quiet=True))
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
        zoo.resolve_weights("zoo:t_off", quiet=True)
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
        zoo.resolve_weights("zoo:clipreid_vitb16_market1501", quiet=True)
    msg = str(err.value)
    assert "https://drive.google.com/file/d/1GnyAVeNOg3Yug1KBBWMKKbT2x43O5Ch7/view" in msg
    assert "offline?" in msg and "--weights /path/to/file.pth" in msg


def test_web_page_instead_of_checkpoint_is_rejected(server, tmp_path, monkeypatch):
    server.files["/quota.pth"] = b"<!DOCTYPE html><html><body>Quota exceeded</body></html>"
    _add(monkeypatch, "t_html", server.url("/quota.pth"))
    with pytest.raises(RuntimeError, match="web page"):
        zoo.resolve_weights("zoo:t_html", quiet=True)
    assert _cache_files(tmp_path) == ["t_html.pth.lock"]


def test_server_error_is_reported(server, tmp_path, monkeypatch):
    _add(monkeypatch, "t_404", server.url("/missing.pth"))
    with pytest.raises(RuntimeError, match="404"):
        zoo.resolve_weights("zoo:t_404", quiet=True)
    assert "t_404.pth" not in _cache_files(tmp_path)


# ----------------------------------------------------------------------------------------------
# reading files
# ----------------------------------------------------------------------------------------------
def test_read_layouts_and_entry_check(tmp_path):
    sie = tmp_path / "sie.pth"
    torch.save({f"module.{k}": v for k, v in
                clipreid_state_dict("vit", num_classes=5, camera_num=3, stride=12).items()}, sie)
    info = zoo.read_zoo_checkpoint(str(sie))
    assert info["layout"] == "clipreid" and not any(k.startswith("module.")
                                                    for k in info["state_dict"])
    assert (info["camera_num"], info["use_sie"], info["num_positions"]) == (3, True, 211)

    rn = tmp_path / "rn50.pth"
    torch.save({"state_dict": clipreid_state_dict("rn50", num_classes=4, width=8)}, rn)
    info = zoo.read_zoo_checkpoint(str(rn))
    assert (info["backbone"], info["feature_dim"], info["num_positions"]) == ("rn50", 256, 129)
    with pytest.raises(ValueError, match="expected 751"):
        zoo.read_zoo_checkpoint(str(rn), entry="clipreid_rn50_market1501")

    assert zoo.detect_layout({"TMD.resblocks.0.attn.in_proj_weight": 0,
                              "image_encoder.proj": 0}) == "tfclip_authors"
    assert zoo.detect_layout({"backbone.proj": 0}) == "tfclip"
    assert zoo.detect_layout({"fc.weight": 0}) == "unknown"


# ----------------------------------------------------------------------------------------------
# zoo weights in the model family: build_tfclip(weights=), FeatureExtractor, the CLI
# ----------------------------------------------------------------------------------------------
TINY = {"image_size": (256, 128), "width": 32, "layers": 2, "heads": 2, "embed_dim": 16,
        "text_width": 16, "text_layers": 1, "text_heads": 2}


@pytest.mark.parametrize("backbone", ["vit", "rn50"])
def test_clipreid_checkpoint_loads_into_our_model(backbone, monkeypatch, tmp_path):
    """A checkpoint in CLIP-ReID's own key layout (the official zoo files) loads strictly into
    the matching clipreid_* model through the one key-mapping place, and serves features."""
    from tfclip_torchreid import compat
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
        # torchreid's FeatureExtractor with the zoo name (num_classes=1 model rebuilt in place)
        extractor = compat.FeatureExtractor(model_name=arch, model_path="zoo:t_cr", device="cpu",
                                            image_size=(256, 128), verbose=False)
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
