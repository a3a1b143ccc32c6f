"""Batched data augmentation on tensors: pad-and-crop, horizontal flip, cutout, random erasing.

Each function takes a whole batch ``(N, C, H, W)`` (float, or uint8 where a fill value fits) on any
device and works on it there, with per-sample randomness but no Python loop over samples. Every
function is split in two: a ``_draw_*`` helper makes all random draws at once (on the generator's
device, so a seeded CPU generator gives the same augmentation on every device), and an ``_apply``
step uses them. A slow per-sample ``_*_reference`` version takes the same draws, and the tests
check that the two agree. The input is never modified in place; a step with nothing to do returns
it as it is.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from aalr.harness.data import BYTE_DATASETS, _canonical_name

ERASING_ATTEMPTS = 10
"""Tries per sample to find an erasing box that fits (as torchvision); a sample with none is kept."""


def _check_batch(x: Tensor, what: str) -> None:
    if x.dim() != 4:
        raise ValueError(f"{what} takes a batch of shape (N, C, H, W), got shape {tuple(x.shape)}")


def _check_size(value: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")


def _check_probability(p: float, name: str = "p") -> None:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")


def _check_range(bounds: Sequence[float], name: str, upper: float | None) -> tuple[float, float]:
    if len(bounds) != 2 or not all(isinstance(b, (int, float)) and math.isfinite(b) for b in bounds):
        raise ValueError(f"{name} must be two finite numbers (low, high), got {bounds!r}")
    low, high = float(bounds[0]), float(bounds[1])
    if not 0.0 < low <= high or (upper is not None and high > upper):
        allowed = f"0 < low <= high <= {upper}" if upper is not None else "0 < low <= high"
        raise ValueError(f"{name} must satisfy {allowed}, got {bounds!r}")
    return low, high


def _draw_device(x: Tensor, generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else x.device


# --------------------------------------------------------------------------- random crop


def _draw_crop_offsets(x: Tensor, padding: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """Per-sample top and left offsets into the padded image, each uniform in 0..2*padding."""
    offsets = torch.randint(
        0, 2 * padding + 1, (2, x.shape[0]), generator=generator, device=_draw_device(x, generator)
    ).to(x.device)
    return offsets[0], offsets[1]


def _random_crop_apply(x: Tensor, padding: int, top: Tensor, left: Tensor) -> Tensor:
    n, channels, height, width = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    rows = top[:, None] + torch.arange(height, device=x.device)  # (N, H)
    cols = left[:, None] + torch.arange(width, device=x.device)  # (N, W)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chans = torch.arange(channels, device=x.device)[None, :, None, None]
    return padded[batch, chans, rows[:, None, :, None], cols[:, None, None, :]]


def _random_crop_reference(x: Tensor, padding: int, top: Tensor, left: Tensor) -> Tensor:
    height, width = x.shape[2:]
    padded = F.pad(x, (padding, padding, padding, padding))
    out = torch.empty_like(x)
    for i in range(x.shape[0]):
        t, lft = int(top[i]), int(left[i])
        out[i] = padded[i, :, t : t + height, lft : lft + width]
    return out


def random_crop(x: Tensor, padding: int, generator: torch.Generator | None = None) -> Tensor:
    """Pad each image with ``padding`` zeros on every side and crop it back to H x W at a random offset."""
    _check_batch(x, "random_crop")
    _check_size(padding, "padding")
    if padding == 0:
        return x
    top, left = _draw_crop_offsets(x, padding, generator)
    return _random_crop_apply(x, padding, top, left)


# --------------------------------------------------------------------------- horizontal flip


def _draw_uniform(x: Tensor, generator: torch.Generator | None, columns: int = 1) -> Tensor:
    """``(N, columns)`` float64 draws uniform in [0, 1) on ``x``'s device."""
    return torch.rand(
        (x.shape[0], columns), dtype=torch.float64, generator=generator, device=_draw_device(x, generator)
    ).to(x.device)


def _random_flip_apply(x: Tensor, p: float, draws: Tensor) -> Tensor:
    flip = draws[:, 0] < p
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def _random_flip_reference(x: Tensor, p: float, draws: Tensor) -> Tensor:
    out = x.clone()
    for i in range(x.shape[0]):
        if float(draws[i, 0]) < p:
            out[i] = x[i, :, :, torch.arange(x.shape[3] - 1, -1, -1)]
    return out


def random_flip(x: Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> Tensor:
    """Flip each image left-right with probability ``p`` (``p=1`` flips all, ``p=0`` none)."""
    _check_batch(x, "random_flip")
    _check_probability(p)
    return _random_flip_apply(x, p, _draw_uniform(x, generator))


# --------------------------------------------------------------------------- cutout


def _draw_cutout_centres(x: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """Per-sample square centres, uniform over the pixels (the square may stick out; it is clipped)."""
    device = _draw_device(x, generator)
    height, width = x.shape[2:]
    rows = torch.randint(0, height, (x.shape[0],), generator=generator, device=device)
    cols = torch.randint(0, width, (x.shape[0],), generator=generator, device=device)
    return rows.to(x.device), cols.to(x.device)


def _box_mask(height: int, width: int, top: Tensor, left: Tensor, box_h: Tensor, box_w: Tensor) -> Tensor:
    """``(N, 1, H, W)`` mask, true inside rows top..top+box_h-1 and columns left..left+box_w-1."""
    rows = torch.arange(height, device=top.device)
    cols = torch.arange(width, device=top.device)
    in_rows = (rows >= top[:, None]) & (rows < (top + box_h)[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + box_w)[:, None])
    return (in_rows[:, :, None] & in_cols[:, None, :])[:, None]


def _cutout_apply(x: Tensor, size: int, centre_y: Tensor, centre_x: Tensor) -> Tensor:
    # Rows/columns outside the image simply match no pixel, which is the clipping.
    top, left = centre_y - size // 2, centre_x - size // 2
    side = torch.full_like(top, size)
    return x.masked_fill(_box_mask(x.shape[2], x.shape[3], top, left, side, side), 0)


def _cutout_reference(x: Tensor, size: int, centre_y: Tensor, centre_x: Tensor) -> Tensor:
    height, width = x.shape[2:]
    out = x.clone()
    for i in range(x.shape[0]):
        top, left = int(centre_y[i]) - size // 2, int(centre_x[i]) - size // 2
        y0, y1 = max(top, 0), min(top + size, height)
        x0, x1 = max(left, 0), min(left + size, width)
        out[i, :, y0:y1, x0:x1] = 0
    return out


def cutout(x: Tensor, size: int, generator: torch.Generator | None = None) -> Tensor:
    """Zero one ``size`` x ``size`` square per image (DeVries & Taylor 2017).

    The centre is uniform over the image and the square is clipped at the borders, so near an edge
    less than ``size**2`` pixels are zeroed. The square spans rows ``cy - size//2`` to
    ``cy - size//2 + size - 1`` (exactly ``size`` wide for odd and even sizes alike).
    """
    _check_batch(x, "cutout")
    _check_size(size, "cutout size")
    if size == 0:
        return x
    centre_y, centre_x = _draw_cutout_centres(x, generator)
    return _cutout_apply(x, size, centre_y, centre_x)


# --------------------------------------------------------------------------- random erasing


@dataclasses.dataclass(frozen=True)
class _ErasingDraws:
    apply: Tensor  # (N,) uniform [0, 1): erase when < p
    area: Tensor  # (N, K) box area as a fraction of the image, uniform in scale
    aspect: Tensor  # (N, K) box height / width, log-uniform in ratio
    top: Tensor  # (N,) uniform [0, 1): where the box goes among the rows it fits in
    left: Tensor  # (N,)


def _draw_erasing(
    x: Tensor, scale: tuple[float, float], ratio: tuple[float, float], generator: torch.Generator | None
) -> _ErasingDraws:
    k = ERASING_ATTEMPTS
    u = _draw_uniform(x, generator, columns=2 * k + 3)
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    return _ErasingDraws(
        apply=u[:, 0],
        area=scale[0] + (scale[1] - scale[0]) * u[:, 1 : k + 1],
        aspect=torch.exp(log_low + (log_high - log_low) * u[:, k + 1 : 2 * k + 1]),
        top=u[:, 2 * k + 1],
        left=u[:, 2 * k + 2],
    )


def _random_erasing_apply(
    x: Tensor, p: float, scale: tuple[float, float], value: float, draws: _ErasingDraws
) -> Tensor:
    height, width = x.shape[2:]
    pixels = height * width
    box_h = torch.round(torch.sqrt(draws.area * pixels * draws.aspect)).long()  # (N, K)
    box_w = torch.round(torch.sqrt(draws.area * pixels / draws.aspect)).long()
    box_area = box_h * box_w
    # Rounding to whole pixels may leave the area range; such a box is rejected like one too big.
    fits = (box_h >= 1) & (box_w >= 1) & (box_h <= height) & (box_w <= width)
    # in float64, as Python compares: an int64 tensor against a float would promote to float32, where
    # 0.9999999999999999 is 1.0 and a box one pixel too big would pass
    exact_area = box_area.to(torch.float64)
    fits &= (exact_area >= scale[0] * pixels) & (exact_area <= scale[1] * pixels)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # argmax returns the first true attempt
    box_h, box_w = box_h.gather(1, first)[:, 0], box_w.gather(1, first)[:, 0]
    erase = (draws.apply < p) & fits.any(dim=1)
    top = torch.floor(draws.top * (height - box_h + 1)).long()
    left = torch.floor(draws.left * (width - box_w + 1)).long()
    mask = _box_mask(height, width, top, left, box_h, box_w) & erase[:, None, None, None]
    return x.masked_fill(mask, value)


def _random_erasing_reference(
    x: Tensor, p: float, scale: tuple[float, float], value: float, draws: _ErasingDraws
) -> Tensor:
    height, width = x.shape[2:]
    pixels = height * width
    out = x.clone()
    for i in range(x.shape[0]):
        if not float(draws.apply[i]) < p:
            continue
        for k in range(ERASING_ATTEMPTS):
            area, aspect = float(draws.area[i, k]), float(draws.aspect[i, k])
            box_h = round(math.sqrt(area * pixels * aspect))
            box_w = round(math.sqrt(area * pixels / aspect))
            if not (1 <= box_h <= height and 1 <= box_w <= width):
                continue
            if not scale[0] * pixels <= box_h * box_w <= scale[1] * pixels:
                continue
            top = math.floor(float(draws.top[i]) * (height - box_h + 1))
            left = math.floor(float(draws.left[i]) * (width - box_w + 1))
            out[i, :, top : top + box_h, left : left + box_w] = value
            break
    return out


def random_erasing(
    x: Tensor,
    p: float = 0.5,
    scale: Sequence[float] = (0.02, 0.33),
    ratio: Sequence[float] = (0.3, 3.3),
    value: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Random erasing (Zhong et al. 2017), the augmentation of the AALR paper's section 5.5 (p=0.5).

    With probability ``p`` an image gets one rectangle set to ``value`` (in the input's units: a
    whole number 0..255 for uint8 input). The rectangle's area is uniform in ``scale`` (fractions of
    the image) and its height/width ratio log-uniform in ``ratio``, as in torchvision; up to
    ``ERASING_ATTEMPTS`` draws are tried until one fits inside the image with a rounded area still
    within ``scale``, and an image with no such draw is left as it is. Its position is uniform.
    """
    _check_batch(x, "random_erasing")
    _check_probability(p)
    scale_range = _check_range(scale, "scale", upper=1.0)
    ratio_range = _check_range(ratio, "ratio", upper=None)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"value must be a finite number, got {value!r}")
    if x.dtype == torch.uint8 and not (float(value).is_integer() and 0 <= value <= 255):
        raise ValueError(f"value for a uint8 batch must be a whole number in 0..255, got {value!r}")
    draws = _draw_erasing(x, scale_range, ratio_range, generator)
    return _random_erasing_apply(x, p, scale_range, value, draws)


# --------------------------------------------------------------------------- pipeline


@dataclasses.dataclass
class Augment:
    """A training-time augmentation pipeline described by plain data (saved in a run's config.json).

    Applied in this order: pad-``crop_padding`` random crop, horizontal flip (p=0.5), cutout of side
    ``cutout``, random erasing with probability ``random_erasing``. The defaults do nothing, for any
    input shape.
    """

    crop_padding: int = 0
    flip: bool = False
    cutout: int = 0
    random_erasing: float = 0.0

    def __post_init__(self) -> None:
        _check_size(self.crop_padding, "crop_padding")
        if not isinstance(self.flip, bool):
            raise ValueError(f"flip must be True or False, got {self.flip!r}")
        _check_size(self.cutout, "cutout")
        _check_probability(self.random_erasing, "random_erasing")

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.crop_padding:
            x = random_crop(x, self.crop_padding, generator)
        if self.flip:
            x = random_flip(x, 0.5, generator)
        if self.cutout:
            x = cutout(x, self.cutout, generator)
        if self.random_erasing:
            x = random_erasing(x, p=self.random_erasing, generator=generator)
        return x

    def to_dict(self) -> dict[str, Any]:
        """The settings as a plain dict (JSON-ready); ``Augment.from_dict`` reverses it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, settings: Mapping[str, Any]) -> Augment:
        """Rebuild from ``to_dict``'s output; unknown keys are an error, not silently dropped."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ValueError(f"unknown augmentation settings {unknown}; known: {sorted(known)}")
        return cls(**settings)


def augment_for(dataset_name: str, *, random_erasing: float = 0.0, cutout: int = 0) -> Augment:
    """The usual training augmentation for a data set, plus optional cutout and random erasing.

    CIFAR-10/100: pad-4 random crop and horizontal flip (the paper's "standard data augmentation").
    Fashion-MNIST, MNIST, digits, MNIST-1D, shakespeare: nothing by default. MNIST-1D inputs are 1-D
    and shakespeare's are bytes, so cutout and random erasing (which need ``(N, C, H, W)``) are refused
    for them.
    """
    key = _canonical_name(dataset_name)
    if key == "mnist1d" and (random_erasing or cutout):
        raise ValueError(
            f"mnist1d inputs are 1-D (N, 1, 40); cutout={cutout} and random_erasing={random_erasing} "
            "need image data (N, C, H, W)"
        )
    if key in BYTE_DATASETS:
        if random_erasing or cutout:
            raise ValueError(
                f"{key} inputs are windows of bytes (N, T); cutout={cutout} and "
                f"random_erasing={random_erasing} need image data (N, C, H, W)"
            )
    is_cifar = key in ("cifar10", "cifar100")
    return Augment(
        crop_padding=4 if is_cifar else 0, flip=is_cifar, cutout=cutout, random_erasing=random_erasing
    )
