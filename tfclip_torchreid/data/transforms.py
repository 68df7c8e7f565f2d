"""Sequence-level transforms: a list of PIL frames -> a ``(T, 3, H, W)`` float tensor.

The paper (Implementation Details; supplement Sec. 1) says "random flipping and random erasing
(Zhong et al. 2020)" on 8-frame clips resized to 256x128. The released code (docs/released_vs_paper.md#transforms)
does, in order:

1. resize every frame to ``H x W`` with PIL bilinear (no padding, no random crop);
2. horizontal flip with p=0.5, **one decision for the whole sequence**;
3. "RandomSizedEarser", decided **per frame** with p=0.5: area ``U(0.02, 0.2) * H * W``, aspect
   ``U(0.3, 1/0.3)``, position resampled until the box lies inside the image, filled with one
   random RGB colour (integers ``U{0..255}``) in pixel space. **Bug in the released code**: the
   colour patch of size ``(w_e, h_e)`` is pasted with its top-left corner at ``(w_e, h_e)``
   instead of the sampled ``(x1, y1)``, so the erased region is always
   ``[w_e, 2 w_e) x [h_e, 2 h_e)`` clipped to the image. :class:`RandomSizedErasing` replicates
   this by default (``at_sampled_location=False``); ``erasing="authors_fixed"`` pastes at the
   sampled location instead. Its draws from Python's ``random`` follow the released order;
4. ToTensor (/255) and normalisation with the **ImageNet** mean/std (hard-coded by the authors;
   CLIP's own statistics are never used). ``norm="clip"`` switches to CLIP's statistics. The
   constants are open_clip's, the chain and the normalisation torchvision's.

Tests and CLIP-Memory extraction use resize + ToTensor + normalisation only.
``erasing="torchreid"`` applies torchreid's own ``RandomErasing`` (Zhong et al.: sh=0.4, mean-value
fill on the normalised tensor) to every frame independently instead.

Random numbers come from Python's ``random`` module (like torchreid's and the authors' transforms),
which torch's DataLoader seeds in every worker; seed it (e.g. torchreid's ``set_random_seed``) for
determinism with ``workers=0``.

Example:
    >>> from PIL import Image
    >>> from tfclip_torchreid.data.transforms import build_sequence_transforms
    >>> tf = build_sequence_transforms(64, 32, is_train=True)
    >>> tf([Image.new("RGB", (20, 40))] * 8).shape
    torch.Size([8, 3, 64, 32])
"""

from __future__ import annotations

import math
import random
from typing import Callable, List, Sequence, Tuple, Union

import torch
from open_clip.constants import IMAGENET_MEAN, IMAGENET_STD, INCEPTION_MEAN, INCEPTION_STD
from open_clip.constants import OPENAI_DATASET_MEAN as CLIP_MEAN
from open_clip.constants import OPENAI_DATASET_STD as CLIP_STD
from PIL import Image
from torchvision.transforms import Compose
from torchvision.transforms import v2 as T
from torchvision.transforms.functional import pil_to_tensor

from tfclip_torchreid import compat

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CLIP_MEAN",
    "CLIP_STD",
    "NORM_STATS",
    "ERASING_MODES",
    "SequenceResize",
    "SequenceToTensor",
    "SequenceRandomHorizontalFlip",
    "RandomSizedErasing",
    "normalize",
    "PerFrame",
    "build_sequence_transforms",
    "build_image_transforms",
]

NORM_STATS = {"imagenet": (IMAGENET_MEAN, IMAGENET_STD), "clip": (CLIP_MEAN, CLIP_STD),
              "inception": (INCEPTION_MEAN, INCEPTION_STD)}
ERASING_MODES = ("authors", "authors_fixed", "torchreid", "pixel", "none")

Frames = Sequence[Image.Image]


class SequenceResize:
    """Resize every PIL frame to ``height x width`` (PIL bilinear, as the authors' ``RectScale``).

    Frames that are the same object (repeated indices) are resized once.
    """

    def __init__(self, height: int, width: int, interpolation=Image.BILINEAR):
        self.height, self.width, self.interpolation = int(height), int(width), interpolation

    def __call__(self, frames: Frames) -> List[Image.Image]:
        cache = {}
        out = []
        for img in frames:
            key = id(img)
            if key not in cache:
                if img.size == (self.width, self.height):
                    cache[key] = img
                else:
                    cache[key] = img.resize((self.width, self.height), self.interpolation)
            out.append(cache[key])
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(height={self.height}, width={self.width}, bilinear)"


class SequenceToTensor:
    """Stack PIL frames into a ``uint8`` tensor ``(T, 3, H, W)`` (repeated frames converted once).

    Every later step works on distinct memory per position (the stack is a copy).
    """

    def __call__(self, frames: Frames) -> torch.Tensor:
        if len(frames) == 0:
            raise ValueError("cannot convert an empty frame sequence")
        slots, uniq, order = {}, [], []
        for img in frames:
            key = id(img)
            if key not in slots:
                slots[key] = len(uniq)
                uniq.append(img)
            order.append(slots[key])
        sizes = {im.size for im in uniq}
        if len(sizes) > 1:
            raise ValueError(
                f"frames of one sequence have different sizes {sorted(sizes)}; add a "
                "SequenceResize (build_sequence_transforms does) before SequenceToTensor"
            )
        tensors = [pil_to_tensor(im if im.mode == "RGB" else im.convert("RGB")) for im in uniq]
        stacked = torch.stack(tensors)
        if len(uniq) == len(frames):
            return stacked
        return stacked.index_select(0, torch.as_tensor(order))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SequenceRandomHorizontalFlip:
    """Flip all frames of a ``(T, C, H, W)`` tensor together with probability ``p``."""

    def __init__(self, p: float = 0.5):
        self.p = float(p)

    def __call__(self, seq: torch.Tensor) -> torch.Tensor:
        if random.random() < self.p:
            return seq.flip(-1)
        return seq

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p}, one decision per sequence)"


class RandomSizedErasing:
    """The authors' per-frame "RandomSizedEarser" on a ``uint8`` ``(T, 3, H, W)`` sequence.

    Each frame is erased with probability ``p``: target area ``U(sl, sh) * H * W``, aspect
    ``U(asratio, 1/asratio)``, box ``He = sqrt(area * aspect)``, ``We = sqrt(area / aspect)`` and a
    float position ``(xe, ye)`` resampled until ``0 < xe``, ``xe + We <= W`` (same for y); the
    patch is ``w_e = floor(ceil(xe) + We) - ceil(xe)`` wide (``h_e`` likewise) and filled with one
    random RGB colour. With ``at_sampled_location=False`` (default, faithful to the released code)
    the patch goes to ``(w_e, h_e)`` -- the released code passes the patch *size* as the paste
    position -- so the erased rectangle is ``[h_e, 2 h_e) x [w_e, 2 w_e)`` clipped to the image;
    with ``True`` it goes to the sampled ``(ceil(xe), ceil(ye))``.

    ``max_attempts`` bounds the resampling loop (unbounded in the released code; for any sane
    frame size the loop ends within a few draws); after that the frame is left untouched.

    Example:
        >>> import torch
        >>> seq = torch.zeros(8, 3, 256, 128, dtype=torch.uint8)
        >>> out = RandomSizedErasing(p=1.0)(seq)
        >>> bool((out[:, :, :4, :4] == 0).all())  # the top-left corner is never erased
        True
    """

    def __init__(
        self,
        p: float = 0.5,
        sl: float = 0.02,
        sh: float = 0.2,
        asratio: float = 0.3,
        at_sampled_location: bool = False,
        max_attempts: int = 1000,
    ):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"erasing probability must be in [0, 1], got {p}")
        if not 0.0 < sl <= sh < 1.0:
            raise ValueError(f"need 0 < sl <= sh < 1 for the erased area, got sl={sl}, sh={sh}")
        if not 0.0 < asratio <= 1.0:
            raise ValueError(f"asratio must be in (0, 1], got {asratio}")
        self.p, self.sl, self.sh, self.asratio = float(p), float(sl), float(sh), float(asratio)
        self.at_sampled_location = bool(at_sampled_location)
        self.max_attempts = int(max_attempts)

    def sample_box(self, height: int, width: int) -> Tuple[int, int, int, int] | None:
        """Draw one box; returns ``(top, left, h_e, w_e)`` of the region to fill, or None."""
        area = height * width
        for _ in range(self.max_attempts):
            target = random.uniform(self.sl, self.sh) * area
            aspect = random.uniform(self.asratio, 1.0 / self.asratio)
            he = math.sqrt(target * aspect)
            we = math.sqrt(target / aspect)
            xe = random.uniform(0, width - we)
            ye = random.uniform(0, height - he)
            if xe + we <= width and ye + he <= height and xe > 0 and ye > 0:
                x1, y1 = math.ceil(xe), math.ceil(ye)
                w_e = math.floor(x1 + we) - x1
                h_e = math.floor(y1 + he) - y1
                if self.at_sampled_location:
                    return y1, x1, h_e, w_e
                return h_e, w_e, h_e, w_e  # released code: pasted at (w_e, h_e)
        return None

    def __call__(self, seq: torch.Tensor) -> torch.Tensor:
        if seq.dtype != torch.uint8 or seq.dim() != 4:
            raise ValueError(
                "RandomSizedErasing works on uint8 (T, C, H, W) frames before normalisation; "
                f"got dtype={seq.dtype}, shape={tuple(seq.shape)}"
            )
        height, width = seq.shape[-2:]
        out = None
        for t in range(seq.shape[0]):
            if random.uniform(0.0, 1.0) > self.p:
                continue
            box = self.sample_box(height, width)
            if box is None:
                continue
            colour = [random.randint(0, 255) for _ in range(3)]
            top, left, h_e, w_e = box
            if out is None:
                out = seq.clone()
            out[t, :, top:top + h_e, left:left + w_e] = torch.tensor(
                colour[: seq.shape[1]], dtype=torch.uint8
            ).view(-1, 1, 1)
        return seq if out is None else out

    def __repr__(self) -> str:
        where = "sampled location" if self.at_sampled_location else "(w_e, h_e) as released"
        return (
            f"{type(self).__name__}(p={self.p}, area=U({self.sl}, {self.sh}), "
            f"aspect=U({self.asratio}, {1 / self.asratio:.3f}), paste at {where})"
        )


class PerFrame:
    """Apply a per-image tensor transform (e.g. torchreid's ``RandomErasing``) to every frame."""

    def __init__(self, transform: Callable[[torch.Tensor], torch.Tensor]):
        self.transform = transform

    def __call__(self, seq: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.transform(frame) for frame in seq.unbind(0)])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.transform).__name__})"


def normalize(mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD) -> T.Compose:
    """``uint8`` ``(..., 3, H, W)`` -> float ``/ 255``, then ``(x - mean) / std`` (torchvision).

    Example:
        >>> normalize()(torch.zeros(2, 3, 4, 4, dtype=torch.uint8)).dtype
        torch.float32
    """
    if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
        raise ValueError(f"need 3 means and 3 positive stds, got mean={mean}, std={std}")
    return T.Compose([T.ToDtype(torch.float32, scale=True),
                      T.Normalize([float(m) for m in mean], [float(s) for s in std])])


def norm_stats(norm) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    if isinstance(norm, str):
        key = norm.lower()
        if key not in NORM_STATS:
            raise ValueError(
                f"unknown norm {norm!r}; choose 'imagenet' (the authors' choice), 'clip', "
                "'inception' (0.5, CLIP-ReID's ViT) or pass a (mean, std) pair"
            )
        return NORM_STATS[key]
    try:
        mean, std = norm
        return tuple(mean), tuple(std)
    except (TypeError, ValueError) as err:
        raise ValueError(f"norm must be 'imagenet', 'clip' or a (mean, std) pair, got {norm!r}") from err


def erasing_mode(erasing) -> str:
    if erasing is None or erasing is False:
        return "none"
    if not isinstance(erasing, str) or erasing.lower() not in ERASING_MODES:
        raise ValueError(f"unknown erasing {erasing!r}; choose one of {ERASING_MODES} or None")
    return erasing.lower()


def build_sequence_transforms(
    height: int,
    width: int,
    is_train: bool,
    flip: bool = True,
    erasing: str | None = "authors",
    norm: Union[str, Tuple[Sequence[float], Sequence[float]]] = "imagenet",
) -> Compose:
    """Build the train or test sequence transform (list of PIL frames -> ``(T, 3, H, W)``).

    Args:
        height, width: output frame size (the authors use 256 x 128).
        is_train: training pipeline (flip and erasing) or test pipeline (resize + normalise).
        flip: sequence-consistent horizontal flip with p=0.5 (train only).
        erasing: ``"authors"`` (released RandomSizedEarser incl. its paste-position bug),
            ``"authors_fixed"`` (same, pasted at the sampled position), ``"torchreid"``
            (torchreid's ``RandomErasing`` per frame, after normalisation) or ``None``/``"none"``.
        norm: ``"imagenet"`` (default, the authors'), ``"clip"`` or a ``(mean, std)`` pair.

    Example:
        >>> tf = build_sequence_transforms(256, 128, is_train=False, norm="clip")
        >>> [type(t).__name__ for t in tf.transforms]
        ['SequenceResize', 'SequenceToTensor', 'Compose']
    """
    if int(height) < 1 or int(width) < 1:
        raise ValueError(f"height and width must be positive, got {height}x{width}")
    mean, std = norm_stats(norm)
    mode = erasing_mode(erasing)
    steps: List[Callable] = [SequenceResize(height, width), SequenceToTensor()]
    if is_train:
        if flip:
            steps.append(SequenceRandomHorizontalFlip(0.5))
        if mode in ("authors", "authors_fixed"):
            steps.append(RandomSizedErasing(at_sampled_location=mode == "authors_fixed"))
    steps.append(normalize(mean, std))
    if is_train and mode == "torchreid":
        random_erasing = compat.tr_module("data.transforms").RandomErasing
        steps.append(PerFrame(random_erasing(mean=list(mean))))
    if is_train and mode == "pixel":
        steps.append(T.RandomErasing(p=0.5, value="random"))
    return Compose(steps)


class FirstFrame:
    """Apply a per-image transform (PIL -> (3, H, W)) to a one-frame sequence -> (1, 3, H, W)."""

    def __init__(self, transform: Callable) -> None:
        self.transform = transform

    def __call__(self, frames: Frames) -> torch.Tensor:
        if len(frames) != 1:
            raise ValueError(f"image transforms take one frame, got {len(frames)}")
        return self.transform(frames[0]).unsqueeze(0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.transform!r})"


def build_image_transforms(
    height: int,
    width: int,
    is_train: bool,
    flip: bool = True,
    erasing: str | None = "pixel",
    norm: Union[str, Tuple[Sequence[float], Sequence[float]]] = "inception",
    pad: int = 10,
) -> Compose:
    """CLIP-ReID's image pipeline (image ReID), on torchvision; one frame -> ``(1, 3, H, W)``.

    Train: bicubic resize, horizontal flip (p 0.5), pad ``pad`` + random crop back to ``H x W``,
    to tensor, normalise, random erasing (p 0.5; ``"pixel"``: random normal values, as CLIP-ReID's
    timm erasing; ``"torchreid"``: torchreid's mean-value erasing; ``"authors"`` /
    ``"authors_fixed"``: TF-CLIP's erasing before normalisation; None: off). Test: bilinear
    resize, to tensor, normalise. CLIP-ReID normalises ViT input with 0.5/0.5 (``"inception"``)
    and RN50 input with ImageNet statistics.

    Example:
        >>> from PIL import Image
        >>> tf = build_image_transforms(64, 32, is_train=True)
        >>> tf([Image.new("RGB", (20, 40))]).shape
        torch.Size([1, 3, 64, 32])
    """
    mean, std = norm_stats(norm)
    mode = erasing_mode(erasing)
    if not is_train:
        return Compose([FirstFrame(Compose([T.Resize((height, width)), T.PILToTensor()])),
                        normalize(mean, std)])
    image: List[Callable] = [T.Resize((height, width), interpolation=T.InterpolationMode.BICUBIC)]
    if flip:
        image.append(T.RandomHorizontalFlip(0.5))
    if pad > 0:
        image += [T.Pad(pad), T.RandomCrop((height, width))]
    steps: List[Callable] = [FirstFrame(Compose(image + [T.PILToTensor()]))]
    if mode in ("authors", "authors_fixed"):
        steps.append(RandomSizedErasing(at_sampled_location=mode == "authors_fixed"))
    steps.append(normalize(mean, std))
    if mode == "pixel":
        steps.append(T.RandomErasing(p=0.5, value="random"))
    elif mode == "torchreid":
        steps.append(PerFrame(compat.tr_module("data.transforms").RandomErasing(mean=list(mean))))
    return Compose(steps)
