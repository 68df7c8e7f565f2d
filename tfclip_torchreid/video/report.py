"""What the video pipeline writes: the identities table, the HTML report, and its picture.

* :func:`write_identities` -- ``identities.csv``: ``camera,track_id,global_id,frames`` (one row
  per embedded track; ``frames``: the frames it was cropped in);
* :func:`write_report` -- ``report.html``: one row per global identity with crops of its tracks
  in every camera (and, with a ground truth, the person behind each track). The file is self-
  contained -- styles inline, crops embedded as JPEG ``data:`` URIs -- so it opens in any browser
  from disk, sent by mail or copied, without a server;
* :func:`screenshot` -- a PNG of a page as a real browser draws it (headless Chromium), e.g. the
  report's picture in the README.

Example:
    >>> import os, tempfile
    >>> from PIL import Image
    >>> from tfclip_torchreid.video.tracklets import TrackResult
    >>> t = TrackResult("cam1", 0, 3, frames=5, first=1, last=5,
    ...                 thumbnails=[Image.new("RGB", (8, 16), (200, 0, 0))])
    >>> out = tempfile.mkdtemp()
    >>> write_identities(os.path.join(out, "identities.csv"), [t], [1])
    >>> open(os.path.join(out, "identities.csv")).read().splitlines()
    ['camera,track_id,global_id,frames', 'cam1,3,1,5']
    >>> html = write_report(os.path.join(out, "report.html"), [t], [1], ["cam1"])
    >>> "data:image/jpeg;base64," in open(html).read()
    True
"""

from __future__ import annotations

import base64
import csv
import html
import io
import os
import os.path as osp
import shutil
import subprocess
import tempfile
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from PIL import Image

from .tracklets import TrackResult

__all__ = ["IDENTITY_COLUMNS", "BROWSERS", "write_identities", "write_report", "find_browser",
           "screenshot"]

IDENTITY_COLUMNS = ("camera", "track_id", "global_id", "frames")
#: browsers :func:`screenshot` looks for, in order
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def write_identities(path: str, tracks: Sequence[TrackResult], labels: Sequence[int]) -> None:
    """``identities.csv`` (:data:`IDENTITY_COLUMNS`), rows in camera then track order."""
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    rows = sorted(zip(tracks, labels), key=lambda r: (r[0].cam_index, r[0].track_id))
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(IDENTITY_COLUMNS)
        for t, gid in rows:
            writer.writerow([t.camera, t.track_id, int(gid), t.frames])


def _data_uri(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 16px; color: #222; background: #fafafa; }
h1 { font-size: 20px; margin: 0 0 4px 0; }
.summary { color: #555; margin-bottom: 12px; font-size: 13px; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: 4px 6px; vertical-align: top; background: #fff; }
th { background: #eee; font-size: 13px; }
td.gid { font-weight: bold; text-align: center; white-space: nowrap; }
td.gid small { font-weight: normal; color: #666; }
.track { display: inline-block; margin: 2px 6px 2px 0; }
.track .label { font-size: 11px; color: #444; }
.track img { height: 72px; margin-right: 1px; border: 1px solid #bbb; }
.mixed { color: #b00; }
.pure { color: #070; }
"""


def _track_cell(t: TrackResult, person: str | None) -> str:
    who = f" &middot; person {html.escape(person)}" if person is not None else ""
    imgs = "".join(f'<img src="{_data_uri(im)}" alt="">' for im in t.thumbnails)
    return (f'<div class="track"><div class="label">track {t.track_id} &middot; frames '
            f"{t.first}-{t.last} ({t.frames}){who}</div>{imgs}</div>")


def write_report(path: str, tracks: Sequence[TrackResult], labels: Sequence[int],
                 cameras: Sequence[str], truth: Mapping[Tuple[str, int], str] | None = None,
                 summary: Mapping[str, Any] | None = None, title: str = "Identities") -> str:
    """``report.html`` (see the module notes): a row per global identity, a column per camera;
    ``truth`` adds each track's person and marks identities that mix people; ``summary``
    entries are listed under the title. Identities seen by most cameras come first. Returns
    ``path``."""
    groups: Dict[int, List[TrackResult]] = {}
    for t, gid in zip(tracks, labels):
        groups.setdefault(int(gid), []).append(t)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cameras)
    rows = []
    # identities seen by most cameras (then with most tracks) first
    order = sorted(groups, key=lambda g: (-len({t.camera for t in groups[g]}), -len(groups[g]), g))
    for gid in order:
        members = sorted(groups[gid], key=lambda t: (t.cam_index, t.track_id))
        seen = {t.camera for t in members}
        note = f"<br><small>{len(members)} track(s), {len(seen)} camera(s)</small>"
        if truth is not None:
            people = {truth.get(t.key) for t in members} - {None}
            if len(people) > 1:
                note += f'<br><small class="mixed">{len(people)} people</small>'
            elif people:
                note += f'<br><small class="pure">person {html.escape(next(iter(people)))}</small>'
        cells = []
        for cam in cameras:
            mine = [t for t in members if t.camera == cam]
            cells.append("<td>" + "".join(
                _track_cell(t, truth.get(t.key) if truth is not None else None)
                for t in mine) + "</td>")
        rows.append(f'<tr><td class="gid">{gid}{note}</td>{"".join(cells)}</tr>')
    facts = "".join(f"<div>{html.escape(str(k))}: {html.escape(str(v))}</div>"
                    for k, v in (summary or {}).items())
    page = (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            f"</title><style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f'<div class="summary">{facts}</div><table><tr><th>identity</th>{head}</tr>'
            f"{''.join(rows)}</table></body></html>\n")
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)
    return path


def find_browser() -> str | None:
    """The first of :data:`BROWSERS` on the ``PATH``, or None."""
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def screenshot(page: str, png: str, size: Tuple[int, int] = (1280, 900),
               browser: str | None = None, timeout: float = 120.0) -> str:
    """Draw ``page`` (an HTML file) with headless Chromium into ``png`` (``size`` = window width,
    height in pixels); returns ``png``.

    Chromium runs without a sandbox, GPU, network services, first-run steps or sync, with a
    throw-away profile; the page is opened from disk (``file://``).

    Raises:
        FileNotFoundError: no browser (Debian: ``apt-get install chromium``).
        RuntimeError: the browser wrote no picture (its last output lines quoted).
    """
    exe = browser or find_browser()
    if exe is None:
        raise FileNotFoundError(f"no Chromium found (looked for {', '.join(BROWSERS)}): "
                                "install it, e.g. apt-get install chromium")
    png = osp.abspath(png)
    os.makedirs(osp.dirname(png), exist_ok=True)
    if osp.exists(png):
        os.remove(png)
    with tempfile.TemporaryDirectory(prefix="tfclip-chromium-") as profile:
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-background-networking", "--disable-component-update",
               "--no-first-run", "--disable-sync", "--hide-scrollbars",
               f"--user-data-dir={profile}", f"--screenshot={png}",
               f"--window-size={int(size[0])},{int(size[1])}",
               "file://" + osp.abspath(page)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if not osp.isfile(png) or osp.getsize(png) == 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise RuntimeError(f"{exe} wrote no screenshot of {page} (exit status "
                           f"{proc.returncode}): {tail}")
    return png
