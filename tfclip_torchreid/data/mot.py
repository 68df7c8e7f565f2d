"""MOTChallenge track files, and the ground truth that names the person behind each track.

A *track file* is what a multi-object tracker writes for one video, in the MOTChallenge text
format (Milan et al., "MOT16: A Benchmark for Multi-Object Tracking", 2016, Sec. 3.3): one box
per line, ``frame,id,x,y,w,h,conf,x,y,z``, where

* ``frame`` is the 1-based frame number in the video (the first frame is 1);
* ``id`` is the track id (>= 0; detection files carry -1 there: they are not tracks);
* ``x,y,w,h`` are the box's left, top, width and height in pixels of the frame (floats);
* ``conf`` is the tracker's confidence (1 when absent), and the world coordinates ``x,y,z`` are
  -1 for 2-D tracking. Extra columns (the ground truth's class and visibility) are ignored.

:func:`read_tracks` checks every line and stops at the first one that is not a box, naming the
file and line and saying what to do (a 0-based file, a detection file, a repeated frame of one
track). Boxes that are valid lines but cannot be cropped (zero size, outside the frame) are the
reader's business: the video pipeline counts and skips them.

The *ground truth* of a multi-camera set (``gt.csv``, written by
:func:`~tfclip_torchreid.testing.make_synthetic_videos`) says who each track is:
``camera,track_id,person``, the camera named like its video file without the extension
(``cam1`` for ``cam1.mp4`` / ``cam1.txt``).

Example:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "cam1.txt")
    >>> write_tracks(path, {3: [Box(1, 10, 20, 30, 60), Box(2, 12.5, 20, 30, 60)]})
    >>> open(path).read().splitlines()[1]
    '2,3,12.50,20.00,30.00,60.00,1,-1,-1,-1'
    >>> read_tracks(path)[3][1]
    Box(frame=2, x=12.5, y=20.0, w=30.0, h=60.0, conf=1.0)
"""

from __future__ import annotations

import csv
import math
import os
import os.path as osp
from typing import Dict, Iterable, List, Mapping, NamedTuple, Sequence, Tuple

__all__ = ["Box", "TrackFileError", "read_tracks", "write_tracks", "GT_COLUMNS",
           "read_ground_truth", "write_ground_truth"]

#: the columns of ``gt.csv``
GT_COLUMNS = ("camera", "track_id", "person")


class Box(NamedTuple):
    """One line of a track file: a box of a track in one frame (1-based)."""

    frame: int
    x: float
    y: float
    w: float
    h: float
    conf: float = 1.0


class TrackFileError(ValueError):
    """A track file or ground-truth file that cannot be read; the message names the file and the
    line."""


def _integer(text: str, what: str, where: str) -> int:
    value = float(text)
    if not math.isfinite(value) or value != int(value):
        raise TrackFileError(f"{where}: {what} {text!r} is not a whole number")
    return int(value)


def _parse_line(fields: Sequence[str], where: str) -> Tuple[int, Box]:
    if len(fields) < 6:
        raise TrackFileError(f"{where}: {len(fields)} column(s); a MOTChallenge track line is "
                             "frame,id,x,y,w,h[,conf,-1,-1,-1]")
    try:
        frame = _integer(fields[0], "frame", where)
        track = _integer(fields[1], "id", where)
        x, y, w, h = (float(v) for v in fields[2:6])
        conf = float(fields[6]) if len(fields) > 6 and fields[6].strip() else 1.0
    except ValueError as err:
        if isinstance(err, TrackFileError):
            raise
        raise TrackFileError(f"{where}: not a number ({err}); a MOTChallenge track line is "
                             "frame,id,x,y,w,h[,conf,-1,-1,-1]") from None
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise TrackFileError(f"{where}: the box {x},{y},{w},{h} is not finite")
    if frame < 1:
        raise TrackFileError(
            f"{where}: frame {frame}; MOTChallenge frames are 1-based (the video's first frame "
            "is 1). A 0-based file needs 1 added to every frame number")
    if track < 0:
        raise TrackFileError(
            f"{where}: track id {track}; this looks like a detection file (MOT's det.txt has id "
            "-1 on every line), which has no tracks: run a tracker on the detections first")
    return track, Box(frame, x, y, w, h, conf)


def read_tracks(path: str) -> Dict[int, List[Box]]:
    """The tracks of a MOTChallenge track file: ``{track id: boxes in frame order}``, ids in
    ascending order (an empty dict for an empty file).

    Raises:
        FileNotFoundError: no such file.
        TrackFileError: a line that is not a box of a track (too few columns, not a number, a
            frame below 1, a negative id) or a track with two boxes in one frame; the message
            names the file and line(s).
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f"track file {path} does not exist")
    tracks: Dict[int, Dict[int, Tuple[int, Box]]] = {}
    with open(path, newline="") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}, line {lineno}"
            track, box = _parse_line(line.strip().split(","), where)
            seen = tracks.setdefault(track, {})
            if box.frame in seen:
                raise TrackFileError(
                    f"{where}: track {track} has a second box in frame {box.frame} (line "
                    f"{seen[box.frame][0]} is the first); a track has one box per frame")
            seen[box.frame] = (lineno, box)
    return {t: [seen[k][1] for k in sorted(seen)] for t, seen in sorted(tracks.items())}


def write_tracks(path: str, tracks: Mapping[int, Iterable[Box]]) -> None:
    """Write ``{track id: boxes}`` as a MOTChallenge track file, lines in frame then id order
    (coordinates with two decimals)."""
    rows = sorted((box.frame, int(track), box) for track, boxes in tracks.items()
                  for box in boxes)
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        for frame, track, b in rows:
            f.write(f"{frame},{track},{b.x:.2f},{b.y:.2f},{b.w:.2f},{b.h:.2f},{b.conf:g},"
                    "-1,-1,-1\n")


def write_ground_truth(path: str, rows: Iterable[Tuple[str, int, object]]) -> None:
    """Write ``gt.csv``: one ``(camera, track_id, person)`` row per track.

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "gt.csv")
        >>> write_ground_truth(path, [("cam1", 1, 7), ("cam2", 4, 7)])
        >>> read_ground_truth(path)
        {('cam1', 1): '7', ('cam2', 4): '7'}
    """
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(GT_COLUMNS)
        for camera, track, person in rows:
            writer.writerow([camera, int(track), person])


def read_ground_truth(path: str) -> Dict[Tuple[str, int], str]:
    """``{(camera, track_id): person}`` of a ``gt.csv`` (person ids as text).

    Raises:
        FileNotFoundError: no such file.
        TrackFileError: other columns than :data:`GT_COLUMNS`, a track id that is not a whole
            number, a track listed twice (file and line named).
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f"ground-truth file {path} does not exist")
    out: Dict[Tuple[str, int], str] = {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or set(reader.fieldnames) != set(GT_COLUMNS):
            raise TrackFileError(f"{path}: columns {reader.fieldnames}; a ground-truth file has "
                                 f"the columns {','.join(GT_COLUMNS)}")
        for lineno, row in enumerate(reader, start=2):
            where = f"{path}, line {lineno}"
            try:
                key = (row["camera"].strip(), _integer(row["track_id"], "track_id", where))
            except (ValueError, AttributeError) as err:
                if isinstance(err, TrackFileError):
                    raise
                raise TrackFileError(f"{where}: track_id {row['track_id']!r} is not a "
                                     "number") from None
            if key in out:
                raise TrackFileError(f"{where}: camera {key[0]} track {key[1]} is listed twice")
            out[key] = str(row["person"]).strip()
    return out
