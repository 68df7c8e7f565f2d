"""Reading camera videos: checked before any compute, then decoded one frame at a time.

Videos are read with PyAV (FFmpeg; the ``video`` extra, ``pip install
"tfclip-torchreid[video]"``). :func:`probe_video` opens a video and decodes its first frame, so a
missing, corrupt or unreadable file (or a file that is not a video, such as a track file given in
its place) stops the run with a :class:`VideoError` that names it, before anything is embedded.
:func:`iter_frames` then streams the frames: one decoded frame is held at a time, nothing is
written to disk, and decoding stops after the last frame that is needed. A decoding error part-way
names the file and the frame.

Frames are numbered from 1, as in MOTChallenge track files.

Example:
    >>> info = probe_video("cam1.mp4")  # doctest: +SKIP
    >>> info.frames, info.fps, (info.height, info.width)  # doctest: +SKIP
    (200, 10.0, (270, 480))
    >>> for number, frame in iter_frames("cam1.mp4", last=2):  # doctest: +SKIP
    ...     print(number, frame.to_ndarray(format="rgb24").shape)
    1 (270, 480, 3)
    2 (270, 480, 3)
"""

from __future__ import annotations

import os.path as osp
from typing import Any, Iterator, NamedTuple, Tuple

from ..utils.optional import import_optional

__all__ = ["VideoError", "VideoInfo", "probe_video", "iter_frames", "import_av"]

# what FFmpeg makes of a text file (a track file passed as a video)
_TEXT_FORMATS = ("tty",)
_TEXT_CODECS = ("ansi",)


class VideoError(RuntimeError):
    """A video that cannot be read; the message names the file."""


class VideoInfo(NamedTuple):
    """What a video's container says: ``frames`` (0 when it does not say), frame rate and
    size."""

    path: str
    frames: int
    fps: float
    height: int
    width: int
    codec: str


def import_av() -> Any:
    """PyAV, or an ImportError naming the ``video`` extra."""
    return import_optional("av", "video", "reading and writing videos")


def _open(av: Any, path: str) -> Tuple[Any, Any]:
    if not osp.isfile(path):
        raise VideoError(f"video {path} does not exist")
    try:
        container = av.open(path)
    except (av.FFmpegError, OSError, ValueError) as err:
        raise VideoError(f"cannot read video {path}: {err}; is it a complete video file "
                         "(a copy that stopped part-way, or another kind of file)?") from err
    fmt = getattr(container.format, "name", "")
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path} has no video stream (format {fmt})")
    stream = container.streams.video[0]
    codec = stream.codec_context.name
    if fmt in _TEXT_FORMATS or codec in _TEXT_CODECS:
        container.close()
        raise VideoError(f"{path} is a text file, not a video (were --videos and --tracks "
                         "swapped?)")
    return container, stream


def probe_video(path: str) -> VideoInfo:
    """Open ``path``, read its stream's frame count, rate and size, and decode its first frame.

    Raises:
        ImportError: PyAV is not installed (the message names the extra).
        VideoError: the file is missing, corrupt, not a video, or has no decodable frame.
    """
    av = import_av()
    container, stream = _open(av, path)
    try:
        try:
            first = next(iter(container.decode(stream)), None)
        except (av.FFmpegError, OSError, ValueError) as err:
            raise VideoError(f"cannot decode the first frame of video {path}: {err}") from err
        if first is None:
            raise VideoError(f"video {path} has no frames")
        rate = stream.average_rate or stream.guessed_rate or 0
        return VideoInfo(path, int(stream.frames or 0), float(rate), int(first.height),
                         int(first.width), stream.codec_context.name)
    finally:
        container.close()


def iter_frames(path: str, last: int | None = None) -> Iterator[Tuple[int, Any]]:
    """``(number, frame)`` for every frame of ``path`` (PyAV ``VideoFrame``; numbers from 1), up
    to frame ``last`` when given. One frame is decoded at a time.

    Raises:
        VideoError: the video cannot be opened, or a frame cannot be decoded (the file and
            frame number named).
    """
    av = import_av()
    container, stream = _open(av, path)
    stream.thread_type = "AUTO"
    number = 0
    try:
        frames = container.decode(stream)
        while last is None or number < last:
            try:
                frame = next(frames)
            except StopIteration:
                return
            except (av.FFmpegError, OSError, ValueError) as err:
                raise VideoError(f"cannot decode frame {number + 1} of video {path}: {err}; "
                                 "the file may be damaged from there on") from err
            number += 1
            yield number, frame
    finally:
        container.close()
