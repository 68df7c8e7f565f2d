"""Model zoo: named checkpoints downloaded once (with gdown) into a local cache.

``zoo:NAME`` can be passed wherever a weights file is accepted; the weights resolver
(:func:`~.weights.resolve_weights`) downloads the file with :func:`download_zoo` and builds the
entry's model. The table holds the official CLIP-ReID checkpoints (Li et al., AAAI 2023; the
"Trained models" table of github Syliz517/CLIP-ReID): ViT-B/16 CLIP-ReID, ViT-B/16 CLIP-ReID
with SIE and overlapping patches (stride 12) and the RN50 CLIP-ReID, each trained on MSMT17,
Market-1501 and DukeMTMC-reID. They are stored in CLIP-ReID's own key layout
(``image_encoder.*``, ``prompt_learner.*``, ``text_encoder.*``, ``bottleneck*``,
``classifier*``, ``cv_embed``), which :mod:`.key_mapping` renames. Each entry also says how its
model was trained: identities, cameras, switches and the preprocessing of CLIP-ReID's configs
(256x128; ViT: mean = std = 0.5, ``configs/person/vit_clipreid.yml``; RN50: ImageNet's,
``configs/person/cnn_clipreid.yml``), which travels with the weights.

The TF-CLIP authors publish their weights only on Baidu Pan, which cannot be scripted: download
them by hand and pass the file (``--weights FILE``); their key names are mapped on loading.

Where files go: ``$TFCLIP_HOME/checkpoints`` when ``TFCLIP_HOME`` is set, else torch's hub
checkpoint folder (``torch.hub.get_dir()/checkpoints``, i.e. ``$TORCH_HOME/hub/checkpoints``,
by default ``~/.cache/torch/hub/checkpoints``), as ``<NAME>.pth``.

How a download proceeds (:func:`download_zoo`):

1. a cached ``<NAME>.pth`` is returned at once (no network);
2. otherwise gdown (through requests, so proxies and ``NO_PROXY`` apply) downloads to ``<NAME>.pth.download`` (its own partial file is
   ``<NAME>.pth.download<8 chars>.part``, resumed with an HTTP Range request by the next call),
   with bounded timeouts (:data:`CONNECT_TIMEOUT`, :data:`READ_TIMEOUT`) and :data:`RETRIES`
   retries; offline (no DNS, refused connection, timeout), its error becomes a RuntimeError that
   names the manual download and the local-path alternative, within seconds;
3. the file is verified (:func:`verify_download`): not a web page (Drive's quota page), the size
   the server announced (Content-Length, as gdown reports it), the entry's sha256 when it has
   one, and a complete torch archive (:func:`~tfclip_torchreid.utils.checkpoint.check_torch_file`:
   the zip's central directory is there and every part matches its CRC-32, which also catches a
   file cut short where the server announced no size); a rejected file is deleted;
4. the file is renamed to ``<NAME>.pth`` (atomic on POSIX): a file under the final name was
   verified. A ``.download`` file left by an earlier call (a crash before the rename) is verified
   the same way without the network, and downloaded anew when it fails. A lock file serialises
   concurrent downloads of one name (e.g. DDP ranks).

A cached file that cannot be used (placed there by hand, or damaged since) is not replaced
behind the user's back: the weights resolver's message names the cache file, says what is wrong
with it and to delete it (``rm PATH``), after which ``zoo:NAME`` downloads it again. Moving it
aside automatically would download hundreds of MB again from a quota-limited Drive after every
mistake and could discard a file the user put there on purpose (the offline route above).

The sha256 of the table: the CLIP-ReID authors publish none, and the files are on Google Drive,
which no test here can reach, so the entries record none yet (an invented hash would reject the
real file). A hash is filled in from a verified download: :func:`download_zoo` logs
``saved PATH (N bytes, sha256 H; verified: ...)`` after checking the announced size and the
archive; once the file also loads into the entry's model (``resolve_weights("zoo:NAME")``),
``H`` goes into :data:`SHA256` under the entry's name, and from then on every download and every
leftover ``.download`` file must match it.

Example:
    >>> from tfclip_torchreid.models import zoo
    >>> zoo.list_zoo()[:2]
    ['clipreid_rn50_dukemtmcreid', 'clipreid_rn50_market1501']
    >>> e = zoo.get_entry("clipreid_vitb16_sie_olp_msmt17")
    >>> e.arch, e.num_classes, e.camera_num, dict(e.switches)
    ('clipreid_vitb16_s12', 1041, 15, {'use_sie': True, 'sie_coe': 1.0, 'stride': 12})
    >>> zoo.get_entry("clipreid_vitb16_market1501").preprocess["mean"]
    [0.5, 0.5, 0.5]
    >>> zoo.download_zoo("clipreid_vitb16_market1501")  # doctest: +SKIP
    '/home/me/.cache/torch/hub/checkpoints/clipreid_vitb16_market1501.pth'
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
import os.path as osp
import shlex
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Dict, List, Mapping, Tuple

import torch

from ..utils.checkpoint import CheckpointFileError, check_torch_file, preprocess_entry

logger = logging.getLogger(__name__)

__all__ = [
    "ZOO_PREFIX", "ZooEntry", "is_zoo", "list_zoo", "get_entry",
    "register_zoo_entry", "zoo_cache_dir", "zoo_cache_path",
    "download_zoo", "verify_download", "cached_file_error", "CONNECT_TIMEOUT", "READ_TIMEOUT",
    "RETRIES", "SHA256",
]

ZOO_PREFIX = "zoo:"
#: gdown/requests timeouts: connecting, and the longest silence between received bytes
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 60.0
#: extra attempts of one download after a network failure (each resumes the partial file)
RETRIES = 2

_CLIPREID_SOURCE = "https://github.com/Syliz517/CLIP-ReID#trained-models-and-test-logs"
_CLIP_MEAN_STD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # CLIP-ReID's ViT configs
_IMAGENET_MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # CLIP-ReID's RN50 configs


@dataclass(frozen=True)
class ZooEntry:
    """One downloadable checkpoint.

    Attributes:
        name: zoo name (``zoo:<name>``).
        arch: our architecture that the weights load into (``clipreid_vitb16``,
            ``clipreid_vitb16_s12``, ``clipreid_rn50``, ``tfclip_vitb16``, ...).
        dataset: torchreid name of the training set (``market1501``, ``msmt17``, ...).
        num_classes: training identities (classifier rows).
        camera_num: training cameras.
        switches: model switches the weights need (``use_sie``, ``sie_coe``, ``stride``).
        layout: key layout of the file: ``"clipreid"`` (CLIP-ReID's ``build_transformer``),
            ``"tfclip_authors"`` (the TF-CLIP authors' model) or ``"tfclip"`` (ours).
        drive_id: Google Drive file id; or
        url: any other http(s) URL (exactly one of the two).
        sha256: hex digest of the file, verified after download when given.
        input_size: (height, width) the model was trained at.
        pixel_mean, pixel_std: input normalisation of its training.
        source: where the entry comes from (for people).
    """

    name: str
    arch: str
    dataset: str
    num_classes: int
    camera_num: int
    switches: Mapping[str, Any] = field(default_factory=dict)
    layout: str = "clipreid"
    drive_id: str = ""
    url: str = ""
    sha256: str | None = None
    input_size: Tuple[int, int] = (256, 128)
    pixel_mean: Tuple[float, float, float] = _CLIP_MEAN_STD[0]
    pixel_std: Tuple[float, float, float] = _CLIP_MEAN_STD[1]
    source: str = ""

    def __post_init__(self) -> None:
        if bool(self.drive_id) == bool(self.url):
            raise ValueError(f"zoo entry {self.name!r}: give exactly one of drive_id and url")
        if self.sha256 is not None and len(self.sha256) != 64:
            raise ValueError(f"zoo entry {self.name!r}: sha256 must be 64 hex digits")
        object.__setattr__(self, "switches", MappingProxyType(dict(self.switches)))

    @property
    def filename(self) -> str:
        """File name in the cache folder."""
        return f"{self.name}.pth"

    @property
    def download_url(self) -> str:
        """URL handed to gdown (Drive ids become gdown's ``uc?id=`` form)."""
        return self.url or f"https://drive.google.com/uc?id={self.drive_id}"

    @property
    def manual_url(self) -> str:
        """URL a person opens in a browser to download the file by hand."""
        return self.url or f"https://drive.google.com/file/d/{self.drive_id}/view"

    @property
    def preprocess(self) -> Dict[str, List]:
        """The preprocessing of its training (a checkpoint's ``preprocess`` entry)."""
        return preprocess_entry(self.input_size, self.pixel_mean, self.pixel_std)


# training-set sizes of CLIP-ReID's datasets: (torchreid name, identities, cameras)
_DATASETS = {
    "msmt17": ("msmt17", 1041, 15),
    "market1501": ("market1501", 751, 6),
    "dukemtmcreid": ("dukemtmcreid", 702, 8),
}
# CLIP-ReID README, "Trained models and test logs": the model links (not the test logs)
_CLIPREID_DRIVE_IDS = {
    ("vitb16", "msmt17"): "1BVaZo93kOksYLjFNH3Gf7JxIbPlWSkcO",
    ("vitb16", "market1501"): "1GnyAVeNOg3Yug1KBBWMKKbT2x43O5Ch7",
    ("vitb16", "dukemtmcreid"): "1ldjSkj-7pXAWmx8on5x0EftlCaolU4dY",
    ("vitb16_sie_olp", "msmt17"): "1sPZbWTv2_stXBGutjHMvE87pAbSAgVaz",
    ("vitb16_sie_olp", "market1501"): "1K32xrosw0gPrxYCWXER81mhWObEW5-d4",
    ("vitb16_sie_olp", "dukemtmcreid"): "1zkHLrLy3z9lP0cR2MVQtr4ujoC6eQLKP",
    ("rn50", "msmt17"): "1VdlC1ld3NrQC5Jcx0hntXRb-UaR3tMtr",
    ("rn50", "market1501"): "1sBqCr5LxKcO9J2V0IvLQPb0wzwVzIZUp",
    ("rn50", "dukemtmcreid"): "1XXycuux__uDd9WKwaTAQ4W1RjLqnUphq",
}
#: sha256 of the zoo files by entry name, filled in from verified downloads only (see the module
#: notes); none is recorded yet
SHA256: Dict[str, str] = {}
# variant -> (our arch, switches, normalisation)
_CLIPREID_VARIANTS = {
    "vitb16": ("clipreid_vitb16", {"use_sie": False, "stride": 16}, _CLIP_MEAN_STD),
    "vitb16_sie_olp": ("clipreid_vitb16_s12", {"use_sie": True, "sie_coe": 1.0, "stride": 12},
                       _CLIP_MEAN_STD),
    "rn50": ("clipreid_rn50", {"use_sie": False, "stride": 16}, _IMAGENET_MEAN_STD),
}


def _clipreid_entries() -> Dict[str, ZooEntry]:
    entries = {}
    for (variant, dataset), drive_id in _CLIPREID_DRIVE_IDS.items():
        arch, switches, (mean, std) = _CLIPREID_VARIANTS[variant]
        tr_name, num_classes, camera_num = _DATASETS[dataset]
        name = f"clipreid_{variant}_{dataset}"
        entries[name] = ZooEntry(
            name=name, arch=arch, dataset=tr_name, num_classes=num_classes,
            camera_num=camera_num, switches=switches, layout="clipreid", drive_id=drive_id,
            sha256=SHA256.get(name), pixel_mean=mean, pixel_std=std, source=_CLIPREID_SOURCE,
        )
    return entries


_ZOO: Dict[str, ZooEntry] = _clipreid_entries()


def is_zoo(spec: Any) -> bool:
    """True if ``spec`` is a ``"zoo:NAME"`` string."""
    return isinstance(spec, str) and spec.startswith(ZOO_PREFIX)


def list_zoo() -> List[str]:
    """Names of all zoo entries, sorted."""
    return sorted(_ZOO)


def get_entry(name: str) -> ZooEntry:
    """The entry called ``name`` (with or without the ``zoo:`` prefix).

    Raises:
        ValueError: unknown name; the message lists the available names.
    """
    key = name[len(ZOO_PREFIX):] if is_zoo(name) else name
    if key not in _ZOO:
        raise ValueError(
            f"unknown zoo model {key!r}; available: {', '.join(list_zoo())}. "
            "Or pass a local checkpoint path instead of zoo:NAME"
        )
    return _ZOO[key]


def register_zoo_entry(entry: ZooEntry, overwrite: bool = False) -> None:
    """Add ``entry`` to the table (e.g. your own checkpoints on a web server).

    Example:
        >>> register_zoo_entry(ZooEntry(name="my_mars", arch="tfclip_vitb16", dataset="mars",
        ...     num_classes=625, camera_num=6, layout="tfclip",
        ...     url="https://example.org/my_mars.pth"))  # doctest: +SKIP
    """
    if entry.name in _ZOO and not overwrite:
        raise ValueError(f"zoo entry {entry.name!r} exists; pass overwrite=True to replace it")
    _ZOO[entry.name] = entry


def zoo_cache_dir() -> str:
    """``$TFCLIP_HOME/checkpoints`` if ``TFCLIP_HOME`` is set, else torch's hub checkpoints."""
    home = os.environ.get("TFCLIP_HOME", "").strip()
    if home:
        return osp.join(osp.expanduser(home), "checkpoints")
    return osp.join(torch.hub.get_dir(), "checkpoints")


def zoo_cache_path(name: str) -> str:
    """Where the file of ``name`` is (or will be) cached."""
    return osp.join(zoo_cache_dir(), get_entry(name).filename)


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _is_html(path: str) -> bool:
    """True if the file starts like an HTML page (an error page saved in place of the file)."""
    with open(path, "rb") as f:
        head = f.read(512).lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html"))


def _manual_hint(entry: ZooEntry, final: str) -> str:
    return (
        f"Download it by hand from {entry.manual_url} and pass the file instead of the zoo "
        f"name (--weights /path/to/file.pth, FeatureExtractor(model_path='/path/to/file.pth') "
        f"or build_tfclip(..., weights='/path/to/file.pth')), or save it as {final} to make "
        f"zoo:{entry.name} work offline"
    )


def cached_file_error(name: str, path: str, problem: str) -> ValueError:
    """The error for a cached file of zoo entry ``name`` that cannot be used: ``problem``, then
    which file it is and how to get a good one."""
    entry = get_entry(name)
    return ValueError(
        f"{problem.rstrip('.')}. It is the cached copy of zoo:{entry.name}: delete it "
        f"(rm {shlex.quote(path)}) and pass zoo:{entry.name} again to download it anew (or "
        f"download it by hand from {entry.manual_url} and save it as {path})")


def _gdown_options(announced: Dict[str, int | None]) -> Dict[str, Any]:
    """Timeouts and retries, for the gdown releases that have them (>= 6.3), and a progress
    callback that records the size the server announced in ``announced["size"]``."""
    import gdown

    params = inspect.signature(gdown.download).parameters
    opts: Dict[str, Any] = {}
    if "timeout" in params:
        opts["timeout"] = (CONNECT_TIMEOUT, READ_TIMEOUT)
    if "retries" in params:
        opts["retries"] = RETRIES
    if "progress" in params:
        opts["progress"] = lambda done, total: announced.__setitem__("size", total)
    return opts


def _fetch(entry: ZooEntry, staging: str, final: str, quiet: bool) -> int | None:
    """Download ``entry`` to ``staging`` with gdown (resuming a partial file); returns the size
    the server announced (None when it announced none)."""
    import gdown

    url = entry.download_url
    if not quiet:
        logger.info(f"=> zoo:{entry.name}: downloading {entry.manual_url} to {final}")
    announced: Dict[str, int | None] = {"size": None}
    try:
        gdown.download(url=url, output=staging, quiet=quiet, resume=True,
                       **_gdown_options(announced))
    except Exception as err:  # noqa: BLE001 - every gdown/requests failure gets the same advice
        raise RuntimeError(
            f"zoo:{entry.name}: download of {url} failed ({type(err).__name__}: {err}; "
            f"offline?). "
            f"Bytes received so far (if any) stay in {osp.dirname(final)} and the next attempt "
            "resumes from them. "
            f"{_manual_hint(entry, final)}"
        ) from err
    if not osp.isfile(staging):  # pragma: no cover - gdown returns only after moving its file
        raise RuntimeError(f"zoo:{entry.name}: gdown finished without writing {staging}")
    return announced["size"]


def verify_download(entry: ZooEntry, path: str, announced: int | None = None) -> List[str]:
    """Check a downloaded file of ``entry``: not a web page, ``announced`` bytes (the server's
    Content-Length) when known, the entry's sha256 when it has one, and a complete torch archive
    (:func:`~tfclip_torchreid.utils.checkpoint.check_torch_file`). Returns what was verified
    (of ``"size"``, ``"sha256"``, ``"archive"``); a file of the format before torch 1.6, which
    has no archive to check, passes only on its size or hash.

    Raises:
        RuntimeError: what is wrong (the file is left where it is).
    """
    if _is_html(path):
        raise RuntimeError(
            f"zoo:{entry.name}: the server sent a web page instead of the checkpoint (Google "
            "Drive does this when a file's download quota is exceeded)")
    verified = []
    size = osp.getsize(path)
    if announced is not None:
        if size != announced:
            raise RuntimeError(f"zoo:{entry.name}: the download is incomplete: {size:,} of the "
                               f"{announced:,} bytes the server announced")
        verified.append("size")
    if entry.sha256 is not None:
        digest = _sha256(path)
        if digest != entry.sha256.lower():
            raise RuntimeError(f"zoo:{entry.name}: the downloaded file has sha256 {digest}, "
                               f"expected {entry.sha256}")
        verified.append("sha256")
    try:
        check_torch_file(path)
        verified.append("archive")
    except CheckpointFileError as err:
        if err.kind != "legacy" or not verified:
            raise RuntimeError(f"zoo:{entry.name}: the downloaded file is not a complete "
                               f"checkpoint: {err}") from None
    return verified


def _publish(entry: ZooEntry, staging: str, final: str, announced: int | None) -> str:
    """Verify ``staging`` (:func:`verify_download`; deleted when rejected) and rename it to
    ``final``; returns the line to log."""
    try:
        verified = verify_download(entry, staging, announced)
    except RuntimeError as err:
        os.remove(staging)
        raise RuntimeError(f"{err}; it was deleted. Retry, or {_manual_hint(entry, final)}") \
            from None
    size, digest = osp.getsize(staging), _sha256(staging)
    os.replace(staging, final)  # atomic: the final name only ever holds a verified file
    return (f"=> zoo:{entry.name}: saved {final} ({size:,} bytes, sha256 {digest}; verified: "
            f"{', '.join(verified)})")


def download_zoo(name: str, quiet: bool = False) -> str:
    """Local path of zoo checkpoint ``name``; downloads it on first use (see module doc)."""
    import filelock

    entry = get_entry(name)
    final = zoo_cache_path(entry.name)
    if osp.isfile(final):
        return final
    os.makedirs(osp.dirname(final), exist_ok=True)
    staging = final + ".download"
    with filelock.FileLock(final + ".lock"):
        if osp.isfile(final):  # another process finished it while we waited
            return final
        saved = None
        if osp.isfile(staging):  # left by a crash between the download and the rename
            try:
                saved = _publish(entry, staging, final, None)
            except RuntimeError as err:
                logger.warning(f"=> zoo:{entry.name}: {staging}, left by an earlier download, "
                               f"failed its check ({str(err).split('; it was')[0]}); "
                               "downloading it again")
        if saved is None:
            saved = _publish(entry, staging, final, _fetch(entry, staging, final, quiet))
    if not quiet:
        logger.info(saved)
    return final
