"""Tests for aalr.harness.augment: each fast function against its per-sample reference, and properties."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from aalr.harness import augment as aug
from aalr.harness.augment import (
    ERASING_ATTEMPTS,
    Augment,
    augment_for,
    cutout,
    random_crop,
    random_erasing,
    random_flip,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _batch(shape: tuple[int, ...], dtype: torch.dtype, seed: int, device: str = "cpu") -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.uint8:
        return torch.randint(0, 256, shape, generator=g, dtype=torch.uint8).to(device)
    # Shifted away from 0 so zeroed/erased pixels are recognisable.
    return (torch.rand(shape, generator=g) + 1.0).to(dtype).to(device)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- fast == reference

shapes = st.tuples(
    st.integers(1, 7), st.sampled_from([1, 3]), st.integers(1, 12), st.integers(1, 12)
)  # (N, C, H, W), H != W allowed
dtypes = st.sampled_from([torch.float32, torch.uint8, torch.float64])


@settings(max_examples=40, deadline=None)
@given(shape=shapes, dtype=dtypes, padding=st.integers(1, 6), seed=st.integers(0, 2**31 - 1))
def test_random_crop_matches_reference(shape, dtype, padding, seed):
    x = _batch(shape, dtype, seed)
    top, left = aug._draw_crop_offsets(x, padding, _gen(seed))
    assert ((top >= 0) & (top <= 2 * padding) & (left >= 0) & (left <= 2 * padding)).all()
    fast = aug._random_crop_apply(x, padding, top, left)
    assert torch.equal(fast, aug._random_crop_reference(x, padding, top, left))
    # The public function is wired to the same draws and the fast path.
    assert torch.equal(random_crop(x, padding, _gen(seed)), fast)


@settings(max_examples=40, deadline=None)
@given(shape=shapes, dtype=dtypes, p=st.floats(0.0, 1.0), seed=st.integers(0, 2**31 - 1))
def test_random_flip_matches_reference(shape, dtype, p, seed):
    x = _batch(shape, dtype, seed)
    draws = aug._draw_uniform(x, _gen(seed))
    fast = aug._random_flip_apply(x, p, draws)
    assert torch.equal(fast, aug._random_flip_reference(x, p, draws))
    assert torch.equal(random_flip(x, p, _gen(seed)), fast)


@settings(max_examples=40, deadline=None)
@given(shape=shapes, dtype=dtypes, size=st.integers(1, 15), seed=st.integers(0, 2**31 - 1))
def test_cutout_matches_reference(shape, dtype, size, seed):
    x = _batch(shape, dtype, seed)
    centre_y, centre_x = aug._draw_cutout_centres(x, _gen(seed))
    assert ((centre_y >= 0) & (centre_y < shape[2]) & (centre_x >= 0) & (centre_x < shape[3])).all()
    fast = aug._cutout_apply(x, size, centre_y, centre_x)
    assert torch.equal(fast, aug._cutout_reference(x, size, centre_y, centre_x))
    assert torch.equal(cutout(x, size, _gen(seed)), fast)


@settings(max_examples=40, deadline=None)
@given(
    shape=shapes,
    dtype=st.sampled_from([torch.float32, torch.float64]),
    p=st.floats(0.0, 1.0),
    scale_low=st.floats(0.01, 0.5),
    scale_span=st.floats(0.0, 0.5),
    ratio_low=st.floats(0.1, 1.0),
    ratio_span=st.floats(0.0, 4.0),
    value=st.floats(-2.0, 2.0),
    seed=st.integers(0, 2**31 - 1),
)
# a box of 1 pixel against a bound of 0.9999999999999999 pixels: refused in float64, passed in float32
@example(
    shape=(1, 1, 1, 2),
    dtype=torch.float32,
    p=1.0,
    scale_low=0.49999999999999994,
    scale_span=0.0,
    ratio_low=1.0,
    ratio_span=0.0,
    value=0.0,
    seed=0,
)
def test_random_erasing_matches_reference(
    shape, dtype, p, scale_low, scale_span, ratio_low, ratio_span, value, seed
):
    x = _batch(shape, dtype, seed)
    scale = (scale_low, scale_low + scale_span)
    ratio = (ratio_low, ratio_low + ratio_span)
    draws = aug._draw_erasing(x, scale, ratio, _gen(seed))
    fast = aug._random_erasing_apply(x, p, scale, value, draws)
    assert torch.equal(fast, aug._random_erasing_reference(x, p, scale, value, draws))
    assert torch.equal(random_erasing(x, p, scale, ratio, value, _gen(seed)), fast)


def test_random_erasing_matches_reference_on_uint8():
    x = _batch((32, 3, 16, 16), torch.uint8, 0)
    draws = aug._draw_erasing(x, (0.02, 0.33), (0.3, 3.3), _gen(1))
    fast = aug._random_erasing_apply(x, 0.5, (0.02, 0.33), 255, draws)
    assert torch.equal(fast, aug._random_erasing_reference(x, 0.5, (0.02, 0.33), 255, draws))


# --------------------------------------------------------------------------- properties


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
@pytest.mark.parametrize(
    "fn",
    [
        lambda x, g: random_crop(x, 3, g),
        lambda x, g: random_flip(x, 0.5, g),
        lambda x, g: cutout(x, 5, g),
        lambda x, g: random_erasing(x, 0.5, generator=g),
        lambda x, g: Augment(crop_padding=2, flip=True, cutout=3, random_erasing=0.5)(x, g),
    ],
    ids=["crop", "flip", "cutout", "erasing", "pipeline"],
)
def test_shape_dtype_device_preserved_and_input_untouched(fn, dtype, device):
    x = _batch((6, 3, 10, 9), dtype, 0, device)
    before = x.clone()
    out = fn(x, _gen(3))
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert torch.equal(x, before)
    # Same seed, same result; the CPU generator drives augmentation on any device.
    assert torch.equal(fn(x, _gen(3)), out)


@pytest.mark.parametrize(
    "fn",
    [
        lambda x, g: random_crop(x, 4, g),
        lambda x, g: random_flip(x, 0.5, g),
        lambda x, g: cutout(x, 4, g),
        lambda x, g: random_erasing(x, 0.5, generator=g),
    ],
    ids=["crop", "flip", "cutout", "erasing"],
)
def test_different_seeds_give_different_batches(fn):
    x = _batch((64, 1, 12, 12), torch.float32, 0)
    assert not torch.equal(fn(x, _gen(0)), fn(x, _gen(1)))


def test_flip_p0_is_identity_and_p1_flips_all():
    x = _batch((16, 3, 5, 7), torch.float32, 0)
    assert torch.equal(random_flip(x, 0.0, _gen(0)), x)
    assert torch.equal(random_flip(x, 1.0, _gen(0)), x.flip(-1))


def test_flip_p_half_flips_about_half():
    x = torch.arange(2.0).reshape(1, 1, 1, 2).expand(4000, 1, 1, 2)
    flipped = random_flip(x, 0.5, _gen(0))[:, 0, 0, 0] == 1.0
    # Binomial(4000, 0.5): mean 2000, sd 31.6; 5 sd either side.
    assert 2000 - 160 < int(flipped.sum()) < 2000 + 160


def test_random_erasing_p0_is_identity():
    x = _batch((16, 3, 8, 8), torch.float32, 0)
    assert torch.equal(random_erasing(x, p=0.0, generator=_gen(0)), x)


def test_zero_sizes_are_identity():
    x = _batch((4, 1, 6, 6), torch.float32, 0)
    assert random_crop(x, 0) is x
    assert cutout(x, 0) is x


def test_crop_at_centre_offset_is_identity_and_edge_offsets_shift_in_zeros():
    x = _batch((3, 2, 5, 6), torch.float32, 0)
    pad = 2
    same = torch.full((3,), pad)
    assert torch.equal(aug._random_crop_apply(x, pad, same, same), x)
    zero = torch.zeros(3, dtype=torch.long)
    shifted = aug._random_crop_apply(x, pad, zero, same)  # window starts 2 rows above the image
    assert torch.equal(shifted[:, :, :pad], torch.zeros_like(shifted[:, :, :pad]))
    assert torch.equal(shifted[:, :, pad:], x[:, :, :-pad])


def test_crop_offsets_cover_the_whole_range():
    x = torch.zeros(500, 1, 4, 4)
    top, left = aug._draw_crop_offsets(x, 2, _gen(0))
    assert set(top.tolist()) == set(range(5)) and set(left.tolist()) == set(range(5))


def _box_extent(mask: torch.Tensor) -> tuple[int, int, bool]:
    """Height and width of the set pixels of a 2-D mask, and whether they form a full rectangle."""
    rows = mask.any(dim=1).nonzero().flatten()
    cols = mask.any(dim=0).nonzero().flatten()
    if len(rows) == 0:
        return 0, 0, True
    h, w = int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)
    return h, w, int(mask.sum()) == h * w


@pytest.mark.parametrize("size", [1, 4, 5, 16])
def test_cutout_zeroes_one_square_clipped_at_the_border(size):
    height, width = 12, 10
    x = torch.ones(200, 2, height, width)
    out = cutout(x, size, _gen(size))
    for i in range(len(out)):
        zeroed = out[i, 0] == 0
        assert torch.equal(zeroed, out[i, 1] == 0)  # the same square in every channel
        h, w, is_rectangle = _box_extent(zeroed)
        assert is_rectangle and 1 <= h <= size and 1 <= w <= size
        rows = zeroed.any(dim=1).nonzero().flatten()
        cols = zeroed.any(dim=0).nonzero().flatten()
        if 0 < rows[0] and rows[-1] < height - 1:
            assert h == min(size, height)  # not clipped vertically, so full size
        if 0 < cols[0] and cols[-1] < width - 1:
            assert w == min(size, width)


@pytest.mark.parametrize("scale", [(0.02, 0.33), (0.2, 0.25), (0.3, 0.6)])
@pytest.mark.parametrize("ratio", [(0.3, 3.3), (1.0, 1.0)])
def test_random_erasing_area_within_scale(scale, ratio):
    height, width = 16, 20
    x = _batch((300, 3, height, width), torch.float32, 0)
    out = random_erasing(x, p=1.0, scale=scale, ratio=ratio, value=0.0, generator=_gen(0))
    erased_any = 0
    for i in range(len(out)):
        erased = out[i] == 0
        assert torch.equal(erased[0], erased[1]) and torch.equal(erased[0], erased[2])
        h, w, is_rectangle = _box_extent(erased[0])
        assert is_rectangle
        if h:
            erased_any += 1
            assert scale[0] * height * width <= h * w <= scale[1] * height * width
    assert erased_any > 0


def test_random_erasing_with_no_fitting_box_leaves_the_image():
    # A 2x2 image cannot hold a box of area 0.3..0.4 of it (1 pixel is 0.25, 2 pixels 0.5).
    x = _batch((50, 1, 2, 2), torch.float32, 0)
    assert torch.equal(random_erasing(x, p=1.0, scale=(0.3, 0.4), generator=_gen(0)), x)


def test_erasing_draws_lie_in_their_ranges():
    x = torch.zeros(1000, 1, 8, 8)
    draws = aug._draw_erasing(x, (0.1, 0.2), (0.5, 2.0), _gen(0))
    assert draws.area.shape == draws.aspect.shape == (1000, ERASING_ATTEMPTS)
    assert draws.area.min() >= 0.1 and draws.area.max() <= 0.2
    assert draws.aspect.min() >= 0.5 and draws.aspect.max() <= 2.0
    # log-uniform ratio: as many boxes taller than wide as wider than tall (5 sd of a fair coin).
    taller = int((draws.aspect > 1).sum())
    assert abs(taller - 5000) < 5 * 50


# --------------------------------------------------------------------------- pipeline


def test_augment_applies_steps_in_documented_order():
    x = _batch((8, 3, 10, 10), torch.float32, 0)
    pipeline = Augment(crop_padding=2, flip=True, cutout=3, random_erasing=0.7)
    g = _gen(5)
    expected = random_erasing(cutout(random_flip(random_crop(x, 2, g), 0.5, g), 3, g), p=0.7, generator=g)
    assert torch.equal(pipeline(x, _gen(5)), expected)


def test_default_augment_is_identity_for_any_shape():
    x = torch.randn(5, 1, 40)  # MNIST-1D is not an image batch
    assert Augment()(x) is x


def test_augment_round_trips_through_json():
    pipeline = Augment(crop_padding=4, flip=True, cutout=8, random_erasing=0.5)
    assert Augment.from_dict(json.loads(json.dumps(pipeline.to_dict()))) == pipeline


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("cifar10", Augment(crop_padding=4, flip=True)),
        ("cifar100", Augment(crop_padding=4, flip=True)),
        ("fashion-mnist", Augment()),
        ("mnist", Augment()),
        ("digits", Augment()),
        ("mnist1d", Augment()),
    ],
)
def test_augment_for_defaults(name, expected):
    assert augment_for(name) == expected


def test_augment_for_adds_cutout_and_erasing():
    assert augment_for("fashion-mnist", random_erasing=0.5) == Augment(random_erasing=0.5)
    assert augment_for("cifar10", cutout=16) == Augment(crop_padding=4, flip=True, cutout=16)


# --------------------------------------------------------------------------- bad arguments

X = torch.zeros(2, 1, 4, 4)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: random_crop(X, -1), r"padding must be an integer >= 0, got -1"),
        (lambda: random_crop(X, 1.5), r"padding must be an integer >= 0, got 1\.5"),
        (lambda: random_crop(torch.zeros(4, 4), 1), r"random_crop takes a batch .*got shape \(4, 4\)"),
        (lambda: random_flip(X, -0.1), r"p must be a probability in \[0, 1\], got -0\.1"),
        (lambda: random_flip(X, 1.5), r"p must be a probability in \[0, 1\], got 1\.5"),
        (lambda: random_flip(X, float("nan")), r"p must be a probability in \[0, 1\], got nan"),
        (lambda: cutout(X, -2), r"cutout size must be an integer >= 0, got -2"),
        (lambda: cutout(torch.zeros(2, 3, 4), 2), r"cutout takes a batch .*got shape \(2, 3, 4\)"),
        (lambda: random_erasing(X, p=2.0), r"p must be a probability in \[0, 1\], got 2\.0"),
        (
            lambda: random_erasing(X, scale=(0.5, 0.2)),
            r"scale must satisfy 0 < low <= high <= 1.0, got \(0\.5",
        ),
        (lambda: random_erasing(X, scale=(0.0, 0.2)), r"scale must satisfy .*got \(0\.0, 0\.2\)"),
        (lambda: random_erasing(X, scale=(0.1, 1.5)), r"scale must satisfy .*got \(0\.1, 1\.5\)"),
        (lambda: random_erasing(X, scale=(0.1,)), r"scale must be two finite numbers .*got \(0\.1,\)"),
        (lambda: random_erasing(X, ratio=(3.3, 0.3)), r"ratio must satisfy 0 < low <= high, got \(3\.3"),
        (lambda: random_erasing(X, ratio=(-1.0, 2.0)), r"ratio must satisfy .*got \(-1\.0, 2\.0\)"),
        (lambda: random_erasing(X, ratio=(1.0, float("inf"))), r"ratio must be two finite numbers"),
        (lambda: random_erasing(X, value=float("nan")), r"value must be a finite number, got nan"),
        (
            lambda: random_erasing(X.to(torch.uint8), value=0.5),
            r"value for a uint8 batch must be a whole number in 0\.\.255, got 0\.5",
        ),
        (lambda: random_erasing(X.to(torch.uint8), value=300), r"uint8 .* got 300"),
        (lambda: Augment(crop_padding=-4), r"crop_padding must be an integer >= 0, got -4"),
        (lambda: Augment(flip=1), r"flip must be True or False, got 1"),  # type: ignore[arg-type]
        (lambda: Augment(cutout=-1), r"cutout must be an integer >= 0, got -1"),
        (lambda: Augment(random_erasing=1.2), r"random_erasing must be a probability in \[0, 1\], got 1\.2"),
        (lambda: Augment.from_dict({"flip": True, "mixup": 1}), r"unknown augmentation settings \['mixup'\]"),
        (lambda: augment_for("imagenet"), r"unknown data set 'imagenet'; known: mnist1d, digits"),
        (lambda: augment_for("mnist1d", cutout=4), r"mnist1d inputs are 1-D .*cutout=4"),
        (lambda: augment_for("mnist1d", random_erasing=0.5), r"mnist1d .*random_erasing=0\.5"),
    ],
)
def test_bad_arguments_are_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()
