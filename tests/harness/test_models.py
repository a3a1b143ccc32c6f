"""Tests for the model registry (aalr.harness.models)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from aalr.harness.models import (
    MODELS,
    PAPER_MODELS,
    TOKEN_MODELS,
    Normalize,
    build_model,
    count_parameters,
    default_model_for,
    model_options,
)
from aalr.harness.models.resnet import ZeroPadShortcut
from aalr.harness.models.wrn import WideBlock, WideResNet

SMALL_SHAPES: dict[str, tuple[int, ...]] = {
    "mnist1d-cnn": (1, 40),
    "fmnist-cnn": (1, 28, 28),
    "fmnist-bn-cnn": (1, 28, 28),
    "fmnist-resnet": (1, 28, 28),
    "mlp": (1, 8, 8),
}
CIFAR = (3, 32, 32)
# Models cheap enough on CPU to run many times per test (the WRNs are not).
CHEAP_IMAGE_MODELS = [
    "resnet18",
    "resnet20",
    "vgg16",
    "vgg16-bn",
    "simplenetv1",
    "fmnist-cnn",
    "fmnist-bn-cnn",
    "fmnist-resnet",
    "mlp",
]


def shape_for(name: str) -> tuple[int, ...]:
    return SMALL_SHAPES.get(name, CIFAR)


def slow_if_wrn(names: list[str]) -> list[object]:
    return [pytest.param(n, marks=pytest.mark.slow) if n.startswith("wrn") else n for n in names]


@pytest.fixture(autouse=True)
def _private_rng() -> Iterator[None]:
    """Seeding inside a test must not change the global RNG other tests see."""
    with torch.random.fork_rng(devices=[]):
        yield


def test_registry_names() -> None:
    assert MODELS == (
        "resnet18",
        "resnet20",
        "wrn-28-10",
        "wrn-34-10",
        "vgg16",
        "vgg16-bn",
        "simplenetv1",
        "mnist1d-cnn",
        "fmnist-cnn",
        "fmnist-bn-cnn",
        "fmnist-resnet",
        "mlp",
        "byte-transformer",
    )
    assert TOKEN_MODELS == ("byte-transformer",)
    assert set(PAPER_MODELS) == set(MODELS) - set(SMALL_SHAPES) - set(TOKEN_MODELS)


@pytest.mark.parametrize("name", sorted(PAPER_MODELS))
def test_paper_parameter_count_within_2_percent(name: str) -> None:
    model = build_model(name, num_classes=10, input_shape=CIFAR)
    count = count_parameters(model)
    assert abs(count - PAPER_MODELS[name]) <= 0.02 * PAPER_MODELS[name], (name, count)


@pytest.mark.parametrize(
    ("name", "input_shape", "options", "expected"),
    [
        # He et al.'s option A has no projection convs; option B (1x1 conv + BN) would give 272,474.
        # stem 432 + 32, stage1 3 x (2 x 2,304 + 64), stage2 13,952 + 2 x 18,560,
        # stage3 55,552 + 2 x 73,984, linear 650.
        ("resnet20", CIFAR, {}, 269_722),
        # MNIST-1D paper's CNN: 150 + 1,900 + 1,900 + 1,260.
        ("mnist1d-cnn", (1, 40), {}, 5_210),
        # conv 320 + conv 18,496 + Linear(64*7*7, 128) 401,536 + Linear(128, 10) 1,290.
        ("fmnist-cnn", (1, 28, 28), {}, 421_642),
        # width 2: conv 640 + conv 73,856 + Linear(128*7*7, 256) 1,605,888 + Linear(256, 10) 2,570.
        ("fmnist-cnn", (1, 28, 28), {"width": 2.0}, 1_682_954),
        # 784*256+256 + 256*256+256 + 256*10+10.
        ("mlp", (1, 28, 28), {}, 269_322),
        ("mlp", (1, 64), {"hidden": 10}, 64 * 10 + 10 + 10 * 10 + 10 + 10 * 10 + 10),
        # each LayerNorm adds a weight and a bias per unit; dropout adds nothing.
        ("mlp", (1, 64), {"hidden": 10, "norm": "layer", "dropout": 0.2}, 650 + 20 + 110 + 20 + 110),
        # convs 288 + 9,216 + 18,432 + 36,864 (no bias), BN 2 x (32 + 32 + 64 + 64),
        # Linear(64*7*7, 10) 31,370.
        ("fmnist-bn-cnn", (1, 28, 28), {}, 96_554),
        # width 0.5: convs 144 + 2,304 + 4,608 + 9,216, BN 2 x (16 + 16 + 32 + 32),
        # Linear(32*7*7, 10) 15,690.
        ("fmnist-bn-cnn", (1, 28, 28), {"width": 0.5}, 32_154),
        # depth 8 (one block a stage): stem 144 + 32, stage1 2 x 2,304 + 64, stage2 4,608 + 9,216 + 128,
        # stage3 18,432 + 36,864 + 256, linear 650.
        ("fmnist-resnet", (1, 28, 28), {}, 75_002),
        # width 0.5 (8/16/32): stem 72 + 16, stage1 2 x 576 + 32, stage2 1,152 + 2,304 + 64,
        # stage3 4,608 + 9,216 + 128, linear 330.
        ("fmnist-resnet", (1, 28, 28), {"width": 0.5}, 19_074),
    ],
)
def test_hand_counted_parameters(
    name: str, input_shape: tuple[int, ...], options: dict[str, float], expected: int
) -> None:
    model = build_model(name, num_classes=10, input_shape=input_shape, **options)
    assert count_parameters(model) == expected


@pytest.mark.parametrize("name", slow_if_wrn(sorted(PAPER_MODELS)))
def test_paper_model_forward_backward(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_classes=10, input_shape=CIFAR, mean=[0.5] * 3, std=[0.25] * 3)
    x = torch.rand(2, *CIFAR)
    logits = model(x)
    assert logits.shape == (2, 10)
    nn.functional.cross_entropy(logits, torch.tensor([1, 7])).backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None, param_name
        assert torch.isfinite(param.grad).all(), param_name
    assert any(p.grad.abs().sum() > 0 for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", sorted(SMALL_SHAPES))
def test_small_model_forward_backward(name: str) -> None:
    torch.manual_seed(0)
    shape = SMALL_SHAPES[name]
    model = build_model(name, num_classes=10, input_shape=shape)
    x = torch.rand(5, *shape, requires_grad=True)
    logits = model(x)
    assert logits.shape == (5, 10)
    logits.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize(
    ("name", "input_shape"),
    [
        ("resnet20", (1, 28, 28)),  # the paper's Fashion-MNIST ResNet-20
        ("resnet18", (1, 28, 28)),
        ("fmnist-cnn", (3, 32, 32)),
        ("fmnist-bn-cnn", (3, 32, 32)),
        ("fmnist-resnet", (3, 32, 32)),
        ("fmnist-resnet", (1, 5, 7)),
        ("vgg16", (3, 64, 32)),
        ("simplenetv1", (3, 16, 16)),
        ("mnist1d-cnn", (2, 17)),
        ("mlp", (3, 5)),
    ],
)
def test_other_matching_shapes(name: str, input_shape: tuple[int, ...]) -> None:
    model = build_model(name, num_classes=4, input_shape=input_shape).eval()
    with torch.no_grad():
        assert model(torch.rand(2, *input_shape)).shape == (2, 4)


@pytest.mark.parametrize("name", slow_if_wrn([m for m in MODELS if m not in TOKEN_MODELS]))
def test_num_classes_100(name: str) -> None:
    model = build_model(name, num_classes=100, input_shape=shape_for(name)).eval()
    with torch.no_grad():
        assert model(torch.rand(1, *shape_for(name))).shape == (1, 100)


@pytest.mark.parametrize(
    "name", ["resnet20", "simplenetv1", "fmnist-cnn", "fmnist-bn-cnn", "fmnist-resnet", "mnist1d-cnn", "mlp"]
)
def test_normalize_is_applied_inside(name: str) -> None:
    shape = shape_for(name)
    channels = shape[0]
    mean = [0.2 + 0.1 * c for c in range(channels)]
    std = [0.3 + 0.05 * c for c in range(channels)]
    torch.manual_seed(1)
    with_stats = build_model(name, num_classes=10, input_shape=shape, mean=mean, std=std).eval()
    plain = build_model(name, num_classes=10, input_shape=shape).eval()
    plain.net.load_state_dict(with_stats.net.state_dict())  # same weights, different Normalize

    x = torch.rand(3, *shape)
    view = (1, channels) + (1,) * (len(shape) - 1)
    pre_normalized = (x - torch.tensor(mean).reshape(view)) / torch.tensor(std).reshape(view)
    with torch.no_grad():
        torch.testing.assert_close(with_stats(x), plain(pre_normalized))
        assert not torch.allclose(with_stats(x), plain(x))


def test_normalize_is_first_layer_and_identity_without_stats() -> None:
    model = build_model("fmnist-cnn", num_classes=10, input_shape=(2, 8, 8))
    first = next(iter(model.children()))
    assert isinstance(first, Normalize)
    assert {"normalize.mean", "normalize.std"} <= set(model.state_dict())
    x = torch.rand(4, 2, 8, 8)
    assert torch.equal(first(x), x)


def test_mean_std_accept_tuples_and_tensors() -> None:
    from_tuple = build_model("mlp", num_classes=3, input_shape=(2, 4), mean=(0.5, 0.25), std=(2.0, 4.0))
    from_tensor = build_model(
        "mlp", num_classes=3, input_shape=(2, 4), mean=torch.tensor([0.5, 0.25]), std=torch.tensor([2.0, 4.0])
    )
    assert torch.equal(from_tuple.normalize.mean, from_tensor.normalize.mean)
    assert torch.equal(from_tuple.normalize.std, from_tensor.normalize.std)


def test_normalize_buffers_follow_the_model() -> None:
    model = build_model("mlp", num_classes=3, input_shape=(2, 4), mean=[0.5, 0.25], std=[2.0, 4.0])
    assert model.normalize.mean.flatten().tolist() == [0.5, 0.25]
    assert model.normalize.std.flatten().tolist() == [2.0, 4.0]
    assert model.to(torch.float64).normalize.mean.dtype == torch.float64
    assert not any(p is model.normalize.mean for p in model.parameters())


@pytest.mark.parametrize(
    "name",
    [
        "resnet20",
        "wrn-28-10",
        "vgg16-bn",
        "simplenetv1",
        "fmnist-cnn",
        "fmnist-bn-cnn",
        "fmnist-resnet",
        "mlp",
    ],
)
def test_same_seed_same_weights(name: str) -> None:
    shape = shape_for(name)

    def weights(seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(seed)
        return build_model(name, num_classes=10, input_shape=shape).state_dict()

    first, again, other = weights(3), weights(3), weights(4)
    assert first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first)


@pytest.mark.parametrize("name", CHEAP_IMAGE_MODELS)
def test_channels_last_gives_same_output(name: str) -> None:
    torch.manual_seed(2)
    model = build_model(name, num_classes=10, input_shape=shape_for(name)).eval()
    x = torch.rand(2, *shape_for(name))
    with torch.no_grad():
        expected = model(x)
        model = model.to(memory_format=torch.channels_last)
        got = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", [*CHEAP_IMAGE_MODELS, "mnist1d-cnn"])
def test_autocast_bfloat16(name: str) -> None:
    torch.manual_seed(3)
    shape = shape_for(name)
    model = build_model(name, num_classes=10, input_shape=shape, mean=[0.5] * shape[0], std=[0.2] * shape[0])
    x = torch.rand(2, *shape)
    model.eval()  # before any training-mode pass changes the BN statistics
    with torch.no_grad():
        reference = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
    assert low.dtype == torch.bfloat16
    assert (low.float() - reference).norm() <= 0.05 * reference.norm()

    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = nn.functional.cross_entropy(model(x), torch.tensor([0, 3]))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_option_a_shortcut_subsamples_and_zero_pads() -> None:
    x = torch.randn(2, 16, 8, 8)
    out = ZeroPadShortcut(16, 32, stride=2)(x)
    assert out.shape == (2, 32, 4, 4)
    for n in range(2):
        for c in range(32):
            for i in range(4):
                for j in range(4):
                    expected = x[n, c - 8, 2 * i, 2 * j] if 8 <= c < 24 else 0.0
                    assert out[n, c, i, j] == expected


def test_model_options() -> None:
    assert model_options("wrn-28-10") == ("dropout",)
    assert model_options("mlp") == ("hidden", "norm", "dropout")
    assert model_options("fmnist-cnn") == ("width",)
    assert model_options("fmnist-bn-cnn") == ("width",)
    assert model_options("fmnist-resnet") == ("depth", "width")
    assert model_options("resnet18") == ()


def test_fmnist_bn_cnn_has_batchnorm_after_every_conv() -> None:
    layers = list(build_model("fmnist-bn-cnn", num_classes=10, input_shape=(1, 28, 28)).net)
    convs = [i for i, layer in enumerate(layers) if isinstance(layer, nn.Conv2d)]
    assert len(convs) == 4
    for i in convs:
        assert layers[i].bias is None  # the BatchNorm's shift takes its place
        assert (
            isinstance(layers[i + 1], nn.BatchNorm2d) and layers[i + 1].num_features == layers[i].out_channels
        )
        assert isinstance(layers[i + 2], nn.ReLU)


def test_fmnist_resnet_at_depth_20_width_1_is_resnet20() -> None:
    """The CPU-sized family reuses ResNet-20's code: at ResNet-20's size it is the same network."""
    shape = (1, 28, 28)
    torch.manual_seed(5)
    reference = build_model("resnet20", num_classes=10, input_shape=shape).eval()
    torch.manual_seed(5)
    same = build_model("fmnist-resnet", num_classes=10, input_shape=shape, depth=20, width=1.0).eval()
    reference_state, same_state = reference.state_dict(), same.state_dict()
    assert reference_state.keys() == same_state.keys()
    assert all(torch.equal(reference_state[k], same_state[k]) for k in reference_state)


@pytest.mark.parametrize(("depth", "blocks"), [(8, 1), (14, 2), (20, 3)])
def test_fmnist_resnet_depth_sets_blocks_per_stage(depth: int, blocks: int) -> None:
    net = build_model("fmnist-resnet", num_classes=10, input_shape=(1, 28, 28), depth=depth).net
    assert [len(stage) for stage in net.stages] == [blocks] * 3
    convs = sum(isinstance(m, nn.Conv2d) for m in net.modules())
    assert convs + 1 == depth  # the stem, two convs a block, and the linear layer


def test_mlp_defaults_keep_the_plain_layers() -> None:
    """Runs and checkpoints made before norm and dropout existed load into the default MLP."""
    model = build_model("mlp", num_classes=10, input_shape=(1, 8, 8))
    assert [type(layer) for layer in model.net] == [
        nn.Flatten,
        nn.Linear,
        nn.ReLU,
        nn.Linear,
        nn.ReLU,
        nn.Linear,
    ]
    assert [k for k in model.state_dict() if k.startswith("net.")] == [
        f"net.{i}.{p}" for i in (1, 3, 5) for p in ("weight", "bias")
    ]


def test_mlp_layer_norm_and_dropout_are_where_documented() -> None:
    model = build_model("mlp", num_classes=10, input_shape=(1, 8, 8), hidden=16, norm="layer", dropout=0.5)
    assert [type(layer) for layer in model.net] == [
        nn.Flatten,
        *([nn.Linear, nn.LayerNorm, nn.ReLU, nn.Dropout] * 2),
        nn.Linear,
    ]
    torch.manual_seed(0)
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        model.train()
        assert not torch.equal(model(x), model(x))  # dropout draws anew in training
        model.eval()
        assert torch.equal(model(x), model(x))


@pytest.mark.parametrize(("dropout", "differs"), [(0.0, False), (0.3, True)])
def test_wrn_dropout_acts_in_training_only(dropout: float, differs: bool) -> None:
    torch.manual_seed(0)
    # WRN-10-1: the same code as WRN-28-10, small enough to run quickly.
    model = WideResNet(in_channels=3, num_classes=10, depth=10, widen_factor=1, dropout=dropout)
    x = torch.rand(4, 3, 8, 8)
    with torch.no_grad():
        model.train()
        first, second = model(x), model(x)
        model.eval()
        assert torch.equal(model(x), model(x))
    assert (not torch.equal(first, second)) == differs


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "options", "expected"),
    [("wrn-28-10", {}, 0.3), ("wrn-34-10", {}, 0.0), ("wrn-28-10", {"dropout": 0.0}, 0.0)],
)
def test_wrn_dropout_reaches_every_block(name: str, options: dict[str, float], expected: float) -> None:
    model = build_model(name, num_classes=10, input_shape=CIFAR, **options)
    rates = {block.dropout for block in model.modules() if isinstance(block, WideBlock)}
    assert rates == {expected}


@pytest.mark.parametrize(
    ("dataset", "model"),
    [
        ("mnist1d", "mnist1d-cnn"),
        ("digits", "mlp"),
        ("fashion-mnist", "fmnist-cnn"),
        ("mnist", "fmnist-cnn"),
        ("cifar10", "resnet18"),
        ("cifar100", "resnet18"),
        ("shakespeare", "byte-transformer"),
    ],
)
def test_default_model_for(dataset: str, model: str) -> None:
    assert default_model_for(dataset) == model
    assert default_model_for(dataset) in MODELS


# ----- bad input ---------------------------------------------------------------------------------


def test_unknown_model_name() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'resnet-18'.*resnet18.*mlp"):
        build_model("resnet-18", num_classes=10, input_shape=CIFAR)
    with pytest.raises(ValueError, match=r"unknown model 'nope'"):
        model_options("nope")


def test_unknown_dataset_for_default_model() -> None:
    with pytest.raises(ValueError, match=r"no default model for data set 'svhn'.*cifar10"):
        default_model_for("svhn")


@pytest.mark.parametrize(
    ("name", "input_shape", "message"),
    [
        ("resnet18", (1, 40), r"resnet18 needs input_shape \(C, H, W\) with H, W >= 8, got \(1, 40\)"),
        ("resnet18", (3, 4, 4), r"resnet18 needs input_shape .* >= 8"),
        ("resnet20", (3, 2, 32), r"resnet20 needs input_shape"),
        ("wrn-28-10", (1, 40), r"wrn-28-10 needs input_shape \(C, H, W\)"),
        ("wrn-34-10", (3, 3, 3), r"wrn-34-10 needs input_shape"),
        ("vgg16", (3, 28, 28), r"vgg16 needs input_shape .* divisible by 32, got \(3, 28, 28\)"),
        ("vgg16-bn", (3, 40), r"vgg16-bn needs input_shape"),
        ("simplenetv1", (3, 8, 8), r"simplenetv1 needs input_shape .* >= 16"),
        ("fmnist-cnn", (1, 30, 30), r"fmnist-cnn needs input_shape .* divisible by 4, got \(1, 30, 30\)"),
        (
            "fmnist-bn-cnn",
            (1, 30, 30),
            r"fmnist-bn-cnn needs input_shape .* divisible by 4, got \(1, 30, 30\)",
        ),
        ("fmnist-bn-cnn", (1, 40), r"fmnist-bn-cnn needs input_shape \(C, H, W\)"),
        ("fmnist-resnet", (1, 3, 28), r"fmnist-resnet needs input_shape \(C, H, W\) with H, W >= 4, got"),
        ("mnist1d-cnn", (1, 28, 28), r"mnist1d-cnn needs input_shape \(C, L\)"),
        ("mnist1d-cnn", (1, 2), r"mnist1d-cnn needs input_shape \(C, L\) with L >= 3"),
    ],
)
def test_incompatible_input_shape(name: str, input_shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_model(name, num_classes=10, input_shape=input_shape)


@pytest.mark.parametrize(
    "input_shape", [(3,), (1, 2, 3, 4), (3, 0, 32), (3, -1), (3.0, 32, 32), "3x32x32", 32]
)
def test_malformed_input_shape(input_shape: object) -> None:
    with pytest.raises(ValueError, match=r"input_shape must be \(C, H, W\) or \(C, L\)"):
        build_model("mlp", num_classes=10, input_shape=input_shape)  # type: ignore[arg-type]


@pytest.mark.parametrize("num_classes", [0, -3, 2.0, True, "10"])
def test_bad_num_classes(num_classes: object) -> None:
    with pytest.raises(ValueError, match=r"num_classes must be an int >= 1, got"):
        build_model("mlp", num_classes=num_classes, input_shape=(1, 4))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("mean", "std", "error", "message"),
    [
        ([0.5], None, ValueError, r"give both mean and std or neither"),
        (None, [0.5], ValueError, r"give both mean and std or neither"),
        ([0.5, 0.5], [0.2], ValueError, r"mean must have one value per input channel \(1\), got 2"),
        ([0.5], [0.0], ValueError, r"std values must be > 0, got \[0.0\]"),
        ([0.5], [-1.0], ValueError, r"std values must be > 0"),
        ([math.nan], [1.0], ValueError, r"mean values must be finite"),
        ([0.5], [math.inf], ValueError, r"std values must be finite"),
        ("0.5", [1.0], TypeError, r"mean must be a sequence of 1 floats"),
    ],
)
def test_bad_mean_std(mean: object, std: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        build_model("mlp", num_classes=10, input_shape=(1, 4), mean=mean, std=std)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("mlp", {"width": 2.0}, r"model 'mlp' has no option\(s\) \['width'\]; its options are: hidden"),
        ("resnet18", {"dropout": 0.1}, r"model 'resnet18' has no option\(s\) \['dropout'\]; .* none"),
        ("fmnist-cnn", {"width": 0.0}, r"fmnist-cnn: width must be a finite number > 0, got 0.0"),
        ("fmnist-cnn", {"width": math.inf}, r"fmnist-cnn: width must be a finite number > 0"),
        ("fmnist-cnn", {"width": "2"}, r"fmnist-cnn: width must be a finite number > 0, got '2'"),
        ("mlp", {"hidden": 0}, r"mlp: hidden must be an int >= 1, got 0"),
        ("mlp", {"hidden": 12.5}, r"mlp: hidden must be an int >= 1"),
        ("mnist1d-cnn", {"channels": 0}, r"mnist1d-cnn: channels must be an int >= 1"),
        ("mlp", {"norm": "batch"}, r"mlp: norm must be one of 'none', 'layer', got 'batch'"),
        ("mlp", {"norm": None}, r"mlp: norm must be one of 'none', 'layer', got None"),
        ("mlp", {"dropout": 1.0}, r"mlp: dropout must be in \[0, 1\), got 1.0"),
        ("mlp", {"dropout": -0.5}, r"mlp: dropout must be in \[0, 1\), got -0.5"),
        ("mlp", {"dropout": True}, r"mlp: dropout must be in \[0, 1\), got True"),
        ("mlp", {"dropout": "0.1"}, r"mlp: dropout must be in \[0, 1\), got '0.1'"),
        ("fmnist-bn-cnn", {"width": 0}, r"fmnist-bn-cnn: width must be a finite number > 0, got 0"),
        ("fmnist-bn-cnn", {"width": math.nan}, r"fmnist-bn-cnn: width must be a finite number > 0, got nan"),
        (
            "fmnist-bn-cnn",
            {"depth": 8},
            r"model 'fmnist-bn-cnn' has no option\(s\) \['depth'\]; its options are: width",
        ),
        ("fmnist-resnet", {"width": -1.0}, r"fmnist-resnet: width must be a finite number > 0, got -1.0"),
        (
            "fmnist-resnet",
            {"depth": 10},
            r"fmnist-resnet: depth must be 6n\+2 for an int n >= 1 \(8, 14, 20, ...\), got 10",
        ),
        ("fmnist-resnet", {"depth": 2}, r"fmnist-resnet: depth must be 6n\+2 .*, got 2"),
        ("fmnist-resnet", {"depth": 8.0}, r"fmnist-resnet: depth must be an int >= 1, got 8.0"),
        ("fmnist-resnet", {"depth": True}, r"fmnist-resnet: depth must be an int >= 1, got True"),
        ("wrn-28-10", {"dropout": 1.0}, r"wrn-28-10: dropout must be in \[0, 1\), got 1.0"),
        ("wrn-34-10", {"dropout": -0.1}, r"wrn-34-10: dropout must be in \[0, 1\)"),
    ],
)
def test_bad_options(name: str, options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_model(name, num_classes=10, input_shape=shape_for(name), **options)
