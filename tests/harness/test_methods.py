"""Tests for aalr.harness.methods: every method builds, trains, saves and resumes exactly; the
schedules give LR sequences written out by hand; SGD-HD matches its slow reference."""

from __future__ import annotations

import io
import json
import logging
import math
import re
import sys
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from aalr.harness import methods
from aalr.harness.methods import (
    AALR_METHODS,
    METHODS,
    PEER_METHODS,
    PRACTITIONER_METHODS,
    REGISTRY,
    MissingPackageError,
    Requirement,
    build_method,
    default_lr,
    describe,
    method_spec,
    missing_packages,
    require_installed,
    step_schedule,
)

STEPS = 3  # batches per "epoch" in these tests
ENDS_AT_ZERO = (
    "sgd-cosine",
    "adamw-cosine",
    "wsd",
    "aalr-plus",
    "aalr-plus-adamw",
)  # AALR+: the cosine finish
PER_BATCH = ("sgdr", "clr", "sgd-cosine", "adamw-cosine", "onecycle", "lr-range-onecycle", "wsd")


def tiny_model(seed: int = 0, batchnorm: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Linear(4, 8)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(8))
    layers += [nn.ReLU(), nn.Linear(8, 3)]
    return nn.Sequential(*layers)


def batch(epoch: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1000 * epoch + index)
    return torch.randn(4, 4, generator=generator), torch.randint(0, 3, (4,), generator=generator)


def train(
    method: methods.Method, model: nn.Module, epochs: range, steps: int = STEPS
) -> tuple[list[float], list[float], list[dict[str, str]]]:
    """The training loop's call order; returns the LR before each batch, the losses, the outcomes."""
    lrs, losses, outcomes = [], [], []
    for epoch in epochs:
        model.train()
        method.train_mode()
        total = 0.0
        for index in range(steps):
            x, y = batch(epoch, index)
            lrs.append(method.lr)
            method.optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            method.optimizer.step()
            method.after_batch(loss.item() if method.wants_step_loss else None)
            losses.append(loss.item())
            total += loss.item()
        outcomes.append(method.end_epoch(total / steps))
        model.eval()
        method.eval_mode()
    return lrs, losses, outcomes


def build(name: str, model: nn.Module, **kwargs: Any) -> methods.Method:
    kwargs.setdefault("epochs", 4)
    kwargs.setdefault("steps_per_epoch", STEPS)
    kwargs.setdefault("model_name", "mlp")
    kwargs.setdefault("initial_loss", 1.1)
    return build_method(name, model, **kwargs)


def lrs_by_batch(name: str, epochs: int, steps: int, **kwargs: Any) -> list[float]:
    model = tiny_model()
    method = build(name, model, epochs=epochs, steps_per_epoch=steps, **kwargs)
    lrs, _, _ = train(method, model, range(epochs), steps)
    return [*lrs, method.lr]


# ---------------------------------------------------------------------------------------------
# every method
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", METHODS)
def test_every_method_trains_two_epochs(name: str) -> None:
    model = tiny_model()
    method = build(name, model, epochs=2)
    lrs, losses, outcomes = train(method, model, range(2))
    assert method.name == name
    assert len(losses) == 2 * STEPS and all(math.isfinite(loss) for loss in losses)
    assert all(math.isfinite(lr) and lr >= 0 for lr in [*lrs, method.lr])
    # the schedules that end at 0 when the budget (here these two epochs) is spent
    assert (method.lr == 0) == (name in ENDS_AT_ZERO)
    for outcome in outcomes:
        assert set(outcome) == {"action", "reason"}
        assert isinstance(outcome["action"], str) and outcome["reason"]
    assert method.per_batch == (name in PER_BATCH)
    assert json.loads(json.dumps(method.settings))["method"] == name


@pytest.mark.parametrize("name", METHODS)
def test_state_round_trips_and_resumes_exactly(name: str) -> None:
    model = tiny_model(seed=0)
    method = build(name, model)
    train(method, model, range(2))
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "method": method.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)

    lrs_on, losses_on, outcomes_on = train(method, model, range(2, 4))

    fresh_model = tiny_model(seed=1)  # different weights: everything must come from the checkpoint
    fresh = build(name, fresh_model)
    fresh_model.load_state_dict(checkpoint["model"])
    fresh.load_state_dict(checkpoint["method"])
    lrs_resumed, losses_resumed, outcomes_resumed = train(fresh, fresh_model, range(2, 4))

    assert lrs_resumed == lrs_on
    assert losses_resumed == losses_on
    assert outcomes_resumed == outcomes_on
    assert fresh.lr == method.lr
    for a, b in zip(model.state_dict().values(), fresh_model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_aalr_methods_wire_the_tuner() -> None:
    sgd = build("aalr", tiny_model())
    rollback = build("aalr-rollback", tiny_model())
    adam = build("aalr-adam", tiny_model())
    assert isinstance(sgd.optimizer, torch.optim.SGD) and isinstance(adam.optimizer, torch.optim.Adam)
    assert sgd.lr == 0.1 and adam.lr == 1e-3
    assert sgd.optimizer.param_groups[0]["momentum"] == 0.9
    assert sgd.optimizer.param_groups[0]["weight_decay"] == 5e-4
    assert adam.optimizer.param_groups[0]["weight_decay"] == 0.0
    assert sgd.tuner.config.rollback is False  # type: ignore[attr-defined]
    assert rollback.tuner.config.rollback is True  # type: ignore[attr-defined]
    # tuner options pass through, optimizer options too
    patient = build("aalr", tiny_model(), phase1_patience=3, momentum=0.5)
    assert patient.tuner.config.phase1_patience == 3  # type: ignore[attr-defined]
    assert patient.optimizer.param_groups[0]["momentum"] == 0.5


def test_aalr_end_epoch_reports_the_tuners_decision() -> None:
    model = tiny_model()
    method = build("aalr", model, initial_loss=1e-9)  # no epoch can beat it: phase 1 restarts
    _, _, outcomes = train(method, model, range(2))
    last = method.tuner.history[-1]  # type: ignore[attr-defined]
    assert outcomes[-1] == {"action": last["action"], "reason": last["reason"]}
    assert method.lr == last["next_lr"]


# ---------------------------------------------------------------------------------------------
# schedules, by hand
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model_name", "epochs", "expected"),
    [
        ("resnet18", 200, (0.1, [60, 120, 160], 0.2)),
        ("resnet18", 10, (0.1, [3, 6, 8], 0.2)),
        ("resnet18", 2, (0.1, [1, 1, 2], 0.2)),  # milestones that collide keep the total decay
        ("resnet20", 182, (0.1, [91, 137], 0.1)),  # 32k/64k and 48k/64k iterations
        ("resnet20", 8, (0.1, [4, 6], 0.1)),
        ("wrn-28-10", 200, (0.1, [60, 120, 160], 0.2)),
        ("wrn-34-10", 20, (0.1, [6, 12, 16], 0.2)),
        ("vgg16", 300, (0.05, [30, 60, 90, 120, 150, 180, 210, 240, 270], 0.5)),
        ("vgg16-bn", 20, (0.05, [2, 4, 6, 8, 10, 12, 14, 16, 18], 0.5)),
        ("simplenetv1", 540, (0.1, [100, 190, 306, 390, 440], 0.1)),
        ("simplenetv1", 54, (0.1, [10, 19, 31, 39, 44], 0.1)),
        ("mnist1d-cnn", 10, (0.1, [5, 8], 0.1)),
        ("fmnist-cnn", 30, (0.1, [15, 23], 0.1)),
        ("mlp", 4, (0.1, [2, 3], 0.1)),
    ],
)
def test_step_schedule_scales_the_published_milestones(
    model_name: str, epochs: int, expected: tuple[float, list[int], float]
) -> None:
    assert step_schedule(model_name, epochs) == expected


def test_step_schedule_unknown_model_uses_the_small_rule_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="aalr.harness.methods"):
        assert step_schedule("my-new-net", 8) == (0.1, [4, 6], 0.1)
    assert "my-new-net" in caplog.text


def test_step_lrs_by_epoch() -> None:
    lrs = lrs_by_batch("step", epochs=10, steps=1, model_name="resnet18")
    expected = [0.1, 0.1, 0.1, 0.02, 0.02, 0.02, 0.004, 0.004, 0.0008, 0.0008, 0.0008]
    assert lrs == pytest.approx(expected, rel=1e-12)


def test_step_lr_overrides_the_start() -> None:
    lrs = lrs_by_batch("step", epochs=4, steps=1, model_name="mlp", lr=0.4)
    assert lrs == pytest.approx([0.4, 0.4, 0.04, 0.004, 0.004], rel=1e-12)


def test_sgdr_fractional_epochs_by_hand() -> None:
    lrs = lrs_by_batch("sgdr", epochs=4, steps=2, t0_epochs=1)
    expected = [
        0.1,  # epoch 0.0
        0.05,  # 0.5 of a 1-epoch cycle
        0.1,  # restart; the next cycle lasts 2 epochs
        0.08535533905932738,  # 0.05 * (1 + cos(pi / 4))
        0.05,
        0.014644660940672627,  # 0.05 * (1 + cos(3 pi / 4))
        0.1,  # restart at epoch 3; the next cycle lasts 4 epochs
        0.09619397662556434,  # 0.05 * (1 + cos(pi / 8))
        0.08535533905932738,  # epoch 4.0: T_cur = 1 of 4
    ]
    assert lrs == pytest.approx(expected, rel=1e-9)


def test_sgdr_defaults_restart_at_10_and_30() -> None:
    lrs = lrs_by_batch("sgdr", epochs=31, steps=1)
    picks = {epoch: lrs[epoch] for epoch in (0, 5, 10, 20, 25, 30)}
    assert picks == pytest.approx({0: 0.1, 5: 0.05, 10: 0.1, 20: 0.05, 25: 0.014644660940672627, 30: 0.1})


def test_sgdr_end_epoch_lands_on_the_whole_epoch() -> None:
    # The loop ran 2 batches although it announced 4 per epoch: epoch 1 still starts at T_cur = 1.
    model = tiny_model()
    method = build("sgdr", model, epochs=2, steps_per_epoch=4, t0_epochs=2)
    train(method, model, range(1), steps=2)
    assert method.lr == pytest.approx(0.05)


def test_clr_triangle_by_hand() -> None:
    lrs = lrs_by_batch("clr", epochs=4, steps=2, step_size_epochs=1)
    expected = [0.001, 0.0035, 0.006, 0.0035, 0.001, 0.0035, 0.006, 0.0035, 0.001]
    assert lrs == pytest.approx(expected, rel=1e-9)


def test_clr_defaults() -> None:
    model = tiny_model()
    method = build("clr", model, epochs=8, steps_per_epoch=STEPS)
    assert method.settings["step_size_up"] == 4 * STEPS
    assert method.lr == pytest.approx(0.001)
    train(method, model, range(4))
    assert method.lr == pytest.approx(0.006)  # the peak after 4 epochs of batches
    assert method.optimizer.param_groups[0]["momentum"] == 0.9  # fixed, not cycled
    scaled = build("clr", tiny_model(), lr=0.012)  # lr sets max_lr; base_lr keeps Smith's 1:6
    assert scaled.settings["base_lr"] == pytest.approx(0.002) and scaled.lr == pytest.approx(0.002)


def test_const_and_adam_stay_constant() -> None:
    assert lrs_by_batch("const", epochs=2, steps=2) == [0.1] * 5
    assert lrs_by_batch("adam", epochs=2, steps=2) == [1e-3] * 5


def test_default_lr() -> None:
    assert default_lr("step") is None
    assert default_lr("clr") == 0.006
    assert default_lr("hypergrad") == 1e-3
    for name in ("aalr", "aalr-rollback", "aalr-adam", "const", "sgdr", "adam", "hypergrad"):
        assert build(name, tiny_model()).lr == default_lr(name)
    for name in PEER_METHODS:
        expected = 2.5e-3 if name == "schedulefree-adamw" else 1.0  # AdamWScheduleFree's own default
        assert default_lr(name) == expected
        assert build(name, tiny_model()).settings["lr"] == expected


def test_weight_decay_defaults_and_override() -> None:
    assert build("sgdr", tiny_model()).optimizer.param_groups[0]["weight_decay"] == 5e-4
    assert build("adam", tiny_model()).optimizer.param_groups[0]["weight_decay"] == 0.0
    assert build("prodigy", tiny_model()).optimizer.param_groups[0]["weight_decay"] == 0.0
    assert build("dog", tiny_model()).optimizer.param_groups[0]["weight_decay"] == 5e-4
    assert build("adam", tiny_model(), weight_decay=0.01).optimizer.param_groups[0]["weight_decay"] == 0.01


# ---------------------------------------------------------------------------------------------
# peers
# ---------------------------------------------------------------------------------------------
def test_dog_reps_rel_follows_the_authors_batchnorm_rule() -> None:
    plain = build("dog", tiny_model())
    with_bn = build("dog", tiny_model(batchnorm=True))
    assert plain.optimizer.param_groups[0]["reps_rel"] == 1e-6
    assert with_bn.optimizer.param_groups[0]["reps_rel"] == 1e-4
    assert build("dog", tiny_model(), reps_rel=1e-5).optimizer.param_groups[0]["reps_rel"] == 1e-5


def test_schedulefree_warmup_and_weight_swap() -> None:
    model = tiny_model()
    method = build("schedulefree", model, epochs=10, steps_per_epoch=10)  # warmup: 5% of 100 steps
    assert method.settings["warmup_steps"] == 5
    lrs, _, _ = train(method, model, range(1), steps=10)
    assert lrs[:6] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.0])
    # train() left it in eval mode (averaged x); train_mode moves to y and back again.
    x = [p.detach().clone() for p in model.parameters()]
    method.train_mode()
    y = [p.detach().clone() for p in model.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(x, y, strict=True))
    method.eval_mode()
    for a, b in zip(x, model.parameters(), strict=True):
        torch.testing.assert_close(a, b.detach())


def test_effective_lr_of_parameter_free_peers() -> None:
    prodigy = build("prodigy", tiny_model())
    assert prodigy.lr == 1e-6  # d0 * lr before any step
    dadapt = build("dadapt", tiny_model())
    dog = build("dog", tiny_model())
    assert dadapt.lr == 0.0 and dog.lr == 0.0  # their first step depends on the first gradient
    model = tiny_model()
    dog = build("dog", model)
    train(dog, model, range(1))
    group = dog.optimizer.param_groups[0]
    # DoG's eta = rbar / sqrt(G): the largest distance from x0 over the root of summed squared gradients
    assert dog.lr == pytest.approx(float(group["rbar"] / torch.sqrt(group["G"])))


@pytest.mark.parametrize(
    ("name", "module"),
    [("prodigy", "prodigyopt"), ("dadapt", "dadaptation"), ("schedulefree", "schedulefree"), ("dog", "dog")],
)
def test_missing_peer_package_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, name: str, module: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(ImportError, match=rf"{module}.*pip install 'aalr\[peers\]'"):
        build(name, tiny_model())


@pytest.mark.parametrize(
    ("name", "module", "package"),
    [
        ("prodigy", "prodigyopt", "prodigyopt"),
        ("dadapt", "dadaptation", "dadaptation"),
        ("schedulefree", "schedulefree", "schedulefree"),
        ("dog", "dog", "dog-optimizer"),
    ],
)
def test_missing_peer_package_is_one_line_naming_method_package_and_fix(
    monkeypatch: pytest.MonkeyPatch, name: str, module: str, package: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # find_spec then finds nothing, and import fails
    message = (
        f"method '{name}' needs the package '{package}', which is not installed: pip install 'aalr[peers]'"
    )
    with pytest.raises(MissingPackageError, match=f"^{re.escape(message)}$") as caught:
        build(name, tiny_model())
    # a bad setting to the harness (exit code 2), an ImportError to a library user
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, ImportError)
    with pytest.raises(MissingPackageError, match=f"^{re.escape(message)}$"):
        require_installed([name])
    assert missing_packages([name]) == {name: Requirement(module, package, "peers")}


def test_require_installed_lists_every_missing_method_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prodigyopt", None)
    monkeypatch.setitem(sys.modules, "dog", None)
    message = (
        "method 'prodigy' needs the package 'prodigyopt', method 'dog' needs the package "
        "'dog-optimizer', which are not installed: pip install 'aalr[peers]'"
    )
    with pytest.raises(MissingPackageError, match=f"^{re.escape(message)}$"):
        require_installed(["aalr", "prodigy", "step", "dog", "prodigy", "not-a-method"])
    # installed, or not a method (validation names those): nothing to say
    require_installed(["aalr", "dadapt", "not-a-method"])
    require_installed("dadapt")
    assert missing_packages([]) == {}


def test_a_package_two_methods_need_is_named_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "schedulefree", None)
    message = (
        "methods 'schedulefree' and 'schedulefree-adamw' need the package 'schedulefree', which is not "
        "installed: pip install 'aalr[peers]'"
    )
    with pytest.raises(MissingPackageError, match=f"^{re.escape(message)}$"):
        require_installed(["schedulefree", "aalr", "schedulefree-adamw"])


def test_requirement_is_found_without_importing_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "dadaptation", raising=False)  # put back after the test
    requirement = REGISTRY["dadapt"].requires
    assert requirement is not None and requirement.installed()
    assert "dadaptation" not in sys.modules
    assert not Requirement("aalr_no_such_module", "aalr-no-such-package", "peers").installed()


# ---------------------------------------------------------------------------------------------
# the registry
# ---------------------------------------------------------------------------------------------
def test_registry_holds_one_spec_per_method() -> None:
    assert METHODS == tuple(REGISTRY)
    assert METHODS == (
        "aalr", "aalr-rollback", "aalr-adam", "aalr-plus", "step", "const", "sgdr", "clr", "adam",
        "hypergrad", "prodigy", "dadapt", "schedulefree", "dog",
        "sgd-cosine", "adamw-cosine", "onecycle", "lr-range-onecycle", "wsd", "greedy", "greedy-adamw",
        "aalr-plus-adamw", "schedulefree-adamw",
    )  # fmt: skip
    assert METHODS[-len(PRACTITIONER_METHODS) :] == PRACTITIONER_METHODS
    assert AALR_METHODS == ("aalr", "aalr-rollback", "aalr-adam", "aalr-plus", "aalr-plus-adamw")
    assert PEER_METHODS == ("prodigy", "dadapt", "schedulefree", "dog", "schedulefree-adamw")
    for name, spec in REGISTRY.items():
        assert spec.name == name and method_spec(name) is spec
        assert describe(name) == f"{name}: {spec.description}"
        assert default_lr(name) == spec.default_lr
        assert (spec.tuner is not None) == (name in AALR_METHODS)
        assert (spec.requires is not None) == (name in PEER_METHODS)


def test_aalr_specs_tuner_settings_are_what_the_tuner_gets() -> None:
    # (rollback, phase1_failure, total_epochs) for a 4-epoch run, written out
    expected = {
        "aalr": (False, "restart", None),
        "aalr-rollback": (True, "restart", None),
        "aalr-adam": (False, "restart", None),
        "aalr-plus": (True, "rollback", 4),
        "aalr-plus-adamw": (True, "rollback", 4),
    }
    for name, settings in expected.items():
        config = build(name, tiny_model(), epochs=4).tuner.config  # type: ignore[attr-defined]
        assert (config.rollback, config.phase1_failure, config.total_epochs) == settings, name
    # a run's option replaces a spec's tuner default; rollback is the method itself, not an option
    plus = build("aalr-plus", tiny_model(), phase1_failure="restart", total_epochs=2)
    assert plus.tuner.config.phase1_failure == "restart"  # type: ignore[attr-defined]
    assert plus.tuner.config.total_epochs == 2  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=r"unknown option\(s\) rollback for method 'aalr'"):
        build("aalr", tiny_model(), rollback=True)


# ---------------------------------------------------------------------------------------------
# descriptions and errors
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", METHODS)
def test_describe_is_one_cited_line(name: str) -> None:
    line = describe(name)
    assert line.startswith(f"{name}: ") and "\n" not in line
    if name != "const":
        assert any(str(year) in line for year in range(2012, 2026))


@pytest.mark.parametrize("call", [describe, default_lr, method_spec])
def test_unknown_name_lists_the_methods(call: Any) -> None:
    with pytest.raises(
        ValueError, match=r"unknown method 'sgd'; the methods are: aalr, aalr-rollback, .*dog"
    ):
        call("sgd")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"name": "nope"}, ValueError, r"unknown method 'nope'; the methods are: aalr,"),
        ({"lr": 0.0}, ValueError, r"lr must be finite and > 0, got 0.0"),
        ({"lr": -0.1}, ValueError, r"lr must be finite and > 0, got -0.1"),
        ({"lr": float("nan")}, ValueError, r"lr must be finite and > 0, got nan"),
        ({"lr": float("inf")}, ValueError, r"lr must be finite and > 0, got inf"),
        ({"lr": "0.1"}, TypeError, r"lr must be a real number, got str"),
        ({"lr": True}, TypeError, r"lr must be a real number, got bool"),
        ({"epochs": 0}, ValueError, r"epochs must be >= 1, got 0"),
        ({"epochs": 2.5}, TypeError, r"epochs must be an int, got float"),
        ({"steps_per_epoch": 0}, ValueError, r"steps_per_epoch must be >= 1, got 0"),
        ({"weight_decay": -1e-4}, ValueError, r"weight_decay must be finite and >= 0, got -0.0001"),
        ({"model_name": 3}, TypeError, r"model_name must be a str, got int"),
        (
            {"name": "const", "gamma": 0.5},
            ValueError,
            r"unknown option\(s\) gamma for method 'const'; allowed: momentum, nesterov",
        ),
        (
            {"name": "adam", "momentum": 0.9},
            ValueError,
            r"unknown option\(s\) momentum for method 'adam'; allowed: betas",
        ),
        (
            {"name": "prodigy", "momentum": 0.9},
            ValueError,
            r"unknown option\(s\) momentum for method 'prodigy'",
        ),
        (
            {"name": "aalr", "warp": 1},
            ValueError,
            r"unknown option\(s\) warp for method 'aalr'; allowed: .*window",
        ),
        (
            {"name": "clr", "base_lr": 0.01},
            ValueError,
            r"clr needs base_lr < max_lr \(lr\), got base_lr 0.01",
        ),
        ({"name": "clr", "mode": "exp_range"}, ValueError, r"clr mode must be 'triangular' or 'triangular2'"),
        ({"name": "sgdr", "t0_epochs": 0}, ValueError, r"t0_epochs must be >= 1, got 0"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    arguments: dict[str, Any] = {"name": "const", "epochs": 4, "steps_per_epoch": 3, "model_name": "mlp"}
    arguments.update(kwargs)
    name = arguments.pop("name")
    with pytest.raises(error, match=match):
        build_method(name, tiny_model(), **arguments)


def test_bad_model() -> None:
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module, got list"):
        build_method("const", [], epochs=1, steps_per_epoch=1, model_name="mlp")  # type: ignore[arg-type]
    frozen = tiny_model().requires_grad_(False)
    with pytest.raises(ValueError, match="no parameters that require grad"):
        build_method("const", frozen, epochs=1, steps_per_epoch=1, model_name="mlp")


def test_load_state_dict_checks_the_method() -> None:
    const = build("const", tiny_model())
    adam = build("adam", tiny_model())
    with pytest.raises(ValueError, match="method state is for 'const', this method is 'adam'"):
        adam.load_state_dict(const.state_dict())
    with pytest.raises(TypeError, match="method state must be a dict"):
        adam.load_state_dict([1, 2])  # type: ignore[arg-type]
