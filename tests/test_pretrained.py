"""CLIP weight sources: 'openai' through the hub client (offline, mirror, cache), local formats.

The hub client reads HF_HUB_OFFLINE / HF_ENDPOINT once, at import; the tests set them in-process
by patching ``huggingface_hub.constants`` (what the client reads at call time) together with the
environment. No test touches the network: the "hub" is a small HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
import time
import warnings
from urllib.parse import urlsplit

import pytest
import torch
from huggingface_hub import constants
from safetensors.torch import save, save_file

from tfclip_torchreid.models.backbone import CLIPVisualBackbone
from tfclip_torchreid.models.backbone_rn50 import CLIPResNetBackbone
from tfclip_torchreid.models.pretrained import (
    find_cached_openai_weights,
    read_clip_checkpoint,
    resize_positional_embedding,
    resolve_openai_weights,
    split_clip_state_dict,
)

RN50_REPO = "timm/resnet50_clip.openai"
RN50_FILE = "open_clip_model.safetensors"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
HINT_RN50 = "pretrained='/path/to/RN50.pt'"
HINT_VIT = "pretrained='/path/to/ViT-B-16.pt'"


class HubMirror:
    """A minimal Hugging Face hub on 127.0.0.1: HEAD/GET ``/<repo>/resolve/main/<file>``.

    It also answers proxy-style requests (absolute URLs), i.e. it can act as an HTTP proxy
    in front of any (even unresolvable) hub host.
    """

    def __init__(self, status: int | None = None) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.hosts: list[str] = []
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _reply(self, body: bool) -> None:
                path = urlsplit(self.path).path  # origin-form, or absolute-form via a proxy
                mirror.requests.append((self.command, path))
                mirror.hosts.append(self.headers.get("Host", ""))
                if status is not None:  # a broken hub: this status for everything
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = mirror.files.get(path)
                if data is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
                self._reply(body=False)

            def do_GET(self) -> None:  # noqa: N802
                self._reply(body=True)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """``hub(endpoint=None, offline=False)`` sets the hub client's endpoint / offline mode."""
    from huggingface_hub.utils import close_session

    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
                "all_proxy", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # ~/.cache/clip is empty
    close_session()  # a fresh client without proxies

    def configure(endpoint: str | None = None, offline: bool = False) -> None:
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
        if offline:
            monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        else:
            monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        if endpoint is not None:
            monkeypatch.setenv("HF_ENDPOINT", endpoint)
            monkeypatch.setattr(constants, "ENDPOINT", endpoint)
            monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                                endpoint + "/{repo_id}/resolve/{revision}/{filename}")

    yield configure
    close_session()


@pytest.fixture
def mirror():
    server = HubMirror()
    yield server
    server.close()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def tiny_rn50_224() -> CLIPResNetBackbone:
    """A tiny RN50 tower as in OpenAI's 224 weights (7x7 + 1 attention-pool table)."""
    torch.manual_seed(3)
    return CLIPResNetBackbone(image_size=(224, 224), layers=(1, 1, 1, 1), width=8, heads=2,
                              output_dim=16, last_stride=2)


def tiny_vit(size: int = 64) -> CLIPVisualBackbone:
    torch.manual_seed(4)
    return CLIPVisualBackbone(image_size=(size, size), width=32, layers=2, heads=2, output_dim=16)


TEXT = {
    "token_embedding.weight": torch.randn(10, 16),
    "positional_embedding": torch.randn(77, 16),
    "transformer.resblocks.0.attn.in_proj_weight": torch.randn(48, 16),
    "ln_final.weight": torch.randn(16),
    "text_projection": torch.randn(16, 16),
}


# ---------------------------------------------------------------------------- 'openai', offline


@pytest.mark.parametrize("model,hint", [("RN50-quickgelu", HINT_RN50),
                                        ("ViT-B-16-quickgelu", HINT_VIT)])
def test_offline_env_fails_at_once_with_local_file_hint(hub, mirror, model, hint):
    hub(endpoint=mirror.url, offline=True)
    t0 = time.time()
    with pytest.raises(RuntimeError, match="HF_HUB_OFFLINE=1") as err:
        resolve_openai_weights(model)
    assert time.time() - t0 < 5
    assert hint in str(err.value)
    assert mirror.requests == []  # not even a request to the (reachable) endpoint


def test_offline_env_set_after_import_is_honoured(hub, mirror, monkeypatch):
    hub(endpoint=mirror.url, offline=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the hub client's constant still says online
    with pytest.raises(RuntimeError, match="HF_HUB_OFFLINE=1"):
        resolve_openai_weights("RN50-quickgelu")
    assert mirror.requests == []


def test_closed_endpoint_fails_within_seconds_with_hint(hub):
    endpoint = closed_port_url()
    hub(endpoint=endpoint)
    t0 = time.time()
    with pytest.raises(RuntimeError, match="unreachable") as err:
        resolve_openai_weights("RN50-quickgelu")
    assert time.time() - t0 < 5
    message = str(err.value)
    assert HINT_RN50 in message and endpoint in message and "HF_ENDPOINT" in message


def test_silent_endpoint_times_out_within_the_probe_timeout(hub):
    with socket.socket() as listener:  # accepts connections (kernel backlog), never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        hub(endpoint=f"http://127.0.0.1:{listener.getsockname()[1]}")
        t0 = time.time()
        with pytest.raises(RuntimeError, match="unreachable") as err:
            resolve_openai_weights("ViT-B-16-quickgelu", timeout=1.0)
        assert time.time() - t0 < 4
    assert HINT_VIT in str(err.value)


def test_server_error_is_not_retried(hub):
    broken = HubMirror(status=503)
    try:
        hub(endpoint=broken.url)
        t0 = time.time()
        with pytest.raises(RuntimeError, match="HTTP 503"):
            resolve_openai_weights("RN50-quickgelu")
        assert time.time() - t0 < 5
        assert [r for r in broken.requests if "/resolve/" in r[1]] == [
            ("HEAD", f"/{RN50_REPO}/resolve/main/{RN50_FILE}")]
    finally:
        broken.close()


# ---------------------------------------------------------------------------- mirror, cache


def test_download_through_hf_endpoint_mirror(hub, mirror, tmp_path):
    """HF_ENDPOINT (a mirror) serves the weights: downloaded into cache_dir, then loaded."""
    src = tiny_rn50_224()
    full = {"visual." + k: v.contiguous() for k, v in src.state_dict().items()}
    full.update(TEXT)
    mirror.files[f"/{RN50_REPO}/resolve/main/{RN50_FILE}"] = save(full)
    hub(endpoint=mirror.url)
    cache = tmp_path / "cache"

    path = resolve_openai_weights("RN50-quickgelu", cache_dir=str(cache))
    assert path.startswith(str(cache)) and path.endswith(RN50_FILE)
    assert [m for m, p in mirror.requests if p.endswith(RN50_FILE)] == ["HEAD", "HEAD", "GET"]
    parts = split_clip_state_dict(read_clip_checkpoint(path))
    assert parts.text.keys() == TEXT.keys()

    model = CLIPResNetBackbone(image_size=(256, 128), layers=(1, 1, 1, 1), width=8, heads=2,
                               output_dim=16)
    model.load_pretrained("openai", cache_dir=str(cache))
    torch.testing.assert_close(model.layer4[0].conv3.weight, src.layer4[0].conv3.weight)
    assert model.attnpool.positional_embedding.shape == (129, 256)

    # a second resolve is served from the cache, without a request
    before = len(mirror.requests)
    assert resolve_openai_weights("RN50-quickgelu", cache_dir=str(cache)) == path
    assert len(mirror.requests) == before


def test_download_through_http_proxy(hub, mirror, monkeypatch, tmp_path):
    """HTTP_PROXY is honoured: the hub host itself does not even resolve, the proxy answers."""
    from huggingface_hub.utils import close_session

    mirror.files[f"/{RN50_REPO}/resolve/main/{RN50_FILE}"] = save({"visual.proj": torch.ones(3)})
    hub(endpoint="http://hub.invalid")  # .invalid never resolves (RFC 2606)
    monkeypatch.setenv("HTTP_PROXY", mirror.url)
    close_session()  # the client reads the proxy settings when it is created
    path = resolve_openai_weights("RN50-quickgelu", cache_dir=str(tmp_path / "cache"))
    assert read_clip_checkpoint(path)["visual.proj"].tolist() == [1.0, 1.0, 1.0]
    assert set(mirror.hosts) == {"hub.invalid"}


def test_cached_files_are_found_without_network(hub, mirror, tmp_path):
    hub(endpoint=mirror.url)  # online, but nothing may be requested
    cache = tmp_path / "hf"
    snapshot = cache / f"models--{RN50_REPO.replace('/', '--')}" / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text(COMMIT)
    save_file({"visual.proj": torch.ones(2)}, str(snapshot / RN50_FILE))
    found = resolve_openai_weights("RN50-quickgelu", cache_dir=str(cache))
    assert found == str(snapshot / RN50_FILE)
    assert find_cached_openai_weights("RN50-quickgelu", str(cache)) == found
    # open_clip's URL cache (no hub client): <cache_dir>/RN50.pt
    url_cache = tmp_path / "clip"
    url_cache.mkdir()
    torch.save({"visual.proj": torch.ones(2)}, str(url_cache / "RN50.pt"))
    assert resolve_openai_weights("RN50-quickgelu", cache_dir=str(url_cache)) == str(
        url_cache / "RN50.pt")
    hub(endpoint=mirror.url, offline=True)  # offline mode does not hide cached files
    assert resolve_openai_weights("RN50-quickgelu", cache_dir=str(cache)) == found
    assert mirror.requests == []


def test_unknown_openai_model_is_a_clear_error():
    with pytest.raises(ValueError, match="no 'openai' weights"):
        resolve_openai_weights("tfclip_tiny")


# ---------------------------------------------------------------------------- local files


def _torchscript(path: str, tower: torch.nn.Module) -> None:
    """An OpenAI-style TorchScript archive: visual.* + the three meta values."""
    holder = torch.nn.Module()
    holder.visual = tower
    for name, val in (("input_resolution", 224), ("context_length", 77), ("vocab_size", 10)):
        holder.register_buffer(name, torch.tensor(val))
    holder.token_embedding = torch.nn.Embedding(10, 16)
    holder.forward = lambda x: x * holder.visual.attnpool.c_proj.bias.sum()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(holder, torch.ones(2)).save(path)


@pytest.mark.parametrize("layout", ["torchscript", "open_clip_full", "visual_only",
                                    "safetensors", "authors_tfclip"])
def test_local_file_formats(tmp_path, layout):
    src = tiny_rn50_224()
    want = src.state_dict()
    path = str(tmp_path / ("w.safetensors" if layout == "safetensors" else "w.pt"))
    text_expected: set = set()
    if layout == "torchscript":
        _torchscript(path, src)
        text_expected = {"token_embedding.weight"}
    elif layout == "open_clip_full":  # wrapped, DataParallel names
        sd = {"module.visual." + k: v for k, v in want.items()}
        sd.update({"module." + k: v for k, v in TEXT.items()})
        torch.save({"state_dict": sd, "epoch": 3}, path)
        text_expected = set(TEXT)
    elif layout == "visual_only":
        torch.save(want, path)
    elif layout == "safetensors":
        save_file({"visual." + k: v.contiguous() for k, v in want.items()}, path)
    else:  # the authors' TF-CLIP model: image_encoder.* next to their other modules
        sd = {"image_encoder." + k: v for k, v in want.items()}
        sd["classifier.weight"] = torch.zeros(5, 16)
        torch.save(sd, path)
    parts = split_clip_state_dict(read_clip_checkpoint(path))
    assert set(parts.text) == text_expected
    assert parts.visual.keys() == want.keys()
    for k, v in want.items():
        torch.testing.assert_close(parts.visual[k], v, msg=k)
    dst = CLIPResNetBackbone(image_size=(224, 224), layers=(1, 1, 1, 1), width=8, heads=2,
                             output_dim=16, last_stride=2)
    dst.load_pretrained(path)
    torch.testing.assert_close(dst.attnpool.c_proj.weight, src.attnpool.c_proj.weight)


def test_vit_visual_only_keys_are_not_mistaken_for_text(tmp_path):
    src = tiny_vit()
    parts = split_clip_state_dict(src.state_dict())  # has positional_embedding, transformer.*
    assert parts.text == {} and parts.visual.keys() == src.state_dict().keys()
    path = str(tmp_path / "vit.safetensors")
    save_file({"visual." + k: v.contiguous() for k, v in src.state_dict().items()} | {
        k: v.contiguous() for k, v in TEXT.items()}, path)
    dst = CLIPVisualBackbone(image_size=(64, 32), width=32, layers=2, heads=2, output_dim=16)
    dst.load_pretrained(path)
    torch.testing.assert_close(dst.proj, src.proj)
    assert dst.positional_embedding.shape[0] == dst.num_tokens == 4 * 2 + 1


def test_bad_files_and_tables_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_clip_checkpoint(str(tmp_path / "missing.pt"))
    bad = tmp_path / "bad.pt"
    torch.save({"state_dict": {"a": "not a tensor"}}, str(bad))
    with pytest.raises(ValueError, match="state dict of tensors"):
        read_clip_checkpoint(str(bad))
    with pytest.raises(ValueError, match="only square source grids"):
        resize_positional_embedding(torch.zeros(129, 4), (21, 10))
    assert resize_positional_embedding(torch.zeros(129, 4), (16, 8)).shape == (129, 4)
    vit = tiny_vit()
    path = str(tmp_path / "vit.pt")
    torch.save(vit.state_dict(), path)
    rn50 = tiny_rn50_224()
    with pytest.raises(ValueError, match="do not fit this architecture .ModifiedResNet"):
        rn50.load_pretrained(path)


def test_clip_weights_through_the_resolver(tmp_path):
    """CLIP files are backbone weights: the arch's model, CLIP's mean / std at the model's input
    size, loaded (positional table resized) by the model's CLIP loader; as ``--weights`` (a
    trained model) they are refused with the fix."""
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    from tfclip_torchreid.models import build_tfclip, resolve_weights

    src = CLIPVisualBackbone(image_size=(64, 64), width=128, layers=2, heads=2, output_dim=64)
    path = str(tmp_path / "clip.pt")
    torch.save({"visual." + k: v for k, v in src.state_dict().items()}, path)
    weights = resolve_weights(path, "tfclip_tiny", layout="clip")
    assert (weights.layout, weights.preprocess.source) == ("clip", "CLIP")
    assert weights.preprocess.norm == (tuple(OPENAI_DATASET_MEAN), tuple(OPENAI_DATASET_STD))
    assert weights.preprocess.image_size == weights.config.image_size == (128, 64)
    model = weights.build()
    torch.testing.assert_close(model.backbone.proj, src.proj)
    assert model.backbone.positional_embedding.shape[0] == 8 * 4 + 1
    torch.testing.assert_close(build_tfclip("tfclip_tiny", num_classes=1, pretrained=path)
                               .backbone.proj, src.proj)
    with pytest.raises(ValueError, match="CLIP weights.*pretrained"):
        resolve_weights(path, "tfclip_tiny")
    with pytest.raises(ValueError, match="no OpenAI CLIP weights"):
        resolve_weights("openai", "tfclip_tiny")
