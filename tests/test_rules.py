"""The tuner's easy path: the recommended rules by default, the paper's one switch away, LR bounds,
the best weights back at the end, a warning past the budget, decisions that show without set-up."""

from __future__ import annotations

import dataclasses
import logging
import math
import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import aalr
from aalr import AALR, AALRConfig, AALRPolicy


def rules_of(config: AALRConfig) -> AALRConfig:
    """The config without its LR bounds (the tuner always sets them: at least float's range)."""
    return dataclasses.replace(config, max_exponent=None, min_exponent=None)


def model_and_sgd(lr: float = 0.1) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    return model, torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)


# -- rules ------------------------------------------------------------------------------------------
def test_the_default_is_aalr_plus_as_the_harness_runs_it():
    model, optimizer = model_and_sgd()
    assert rules_of(AALR(model, optimizer, initial_loss=2.0).config) == AALRConfig(
        rollback=True, phase1_failure="rollback", finish="cosine"
    )
    model, optimizer = model_and_sgd()
    assert rules_of(AALR(model, optimizer, initial_loss=2.0, total_epochs=30).config) == AALRConfig(
        rollback=True, phase1_failure="rollback", finish="cosine", total_epochs=30
    )


def test_the_default_equals_the_harness_aalr_plus_method():
    from aalr.harness.methods import build_method

    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    method = build_method("aalr-plus", model, epochs=12, steps_per_epoch=5, model_name="x", initial_loss=2.0)
    model, optimizer = model_and_sgd()
    assert AALR(model, optimizer, initial_loss=2.0, total_epochs=12).config == method.tuner.config


def test_paper_rules_are_algorithm_1_and_ignore_the_budget_for_the_lr():
    model, optimizer = model_and_sgd()
    assert rules_of(AALR(model, optimizer, rules="paper").config) == AALRConfig(finish="none")
    losses = [1.9, 1.8, 2.5, 1.7, 1.6, 1.5, 1.55, 1.58, 1.4, 1.3]
    lrs = {}
    for budget in (None, 10):
        model, optimizer = model_and_sgd()
        tuner = AALR(
            model, optimizer, initial_loss=2.0, rules="paper", phase1_patience=2, total_epochs=budget
        )
        lrs[budget] = [tuner.step(loss)["next_lr"] for loss in losses]
    # by hand: stable, stable -> phase 2 (0.2); windows of 2: 1.7 < 1.8 at epoch 4 -> 0.4 ...
    assert lrs[None] == lrs[10]
    assert lrs[None] == [0.1, 0.2, 0.2, 0.4, 0.4, 0.8, 0.8, 0.8, 0.8, 1.6]


def test_an_explicit_option_overrides_the_rules():
    model, optimizer = model_and_sgd()
    config = AALR(model, optimizer, rules="paper", rollback=True).config
    assert config.rollback and config.phase1_failure == "restart" and config.finish == "none"
    model, optimizer = model_and_sgd()
    assert AALR(model, optimizer, finish="linear", total_epochs=5).config.finish == "linear"


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"rules": "fast"}, ValueError, r"rules must be one of \('plus', 'paper'\), got 'fast'"),
        ({"max_lr": 0.05}, ValueError, r"max_lr \(0.05\) must be >= the optimizer's LR, eta0 = 0.1"),
        ({"min_lr": 0.2}, ValueError, r"min_lr \(0.2\) must be <= the optimizer's LR, eta0 = 0.1"),
        ({"max_lr": math.nan}, ValueError, r"max_lr must be None or a finite number > 0, got nan"),
        ({"min_lr": -1.0}, ValueError, r"min_lr must be None or a finite number > 0, got -1.0"),
        ({"max_lr": "1"}, ValueError, r"max_lr must be None or a finite number > 0, got '1'"),
        ({"verbose": 1}, TypeError, r"verbose must be True or False, got 1"),
    ],
)
def test_bad_settings_name_the_value(options, error, match):
    model, optimizer = model_and_sgd()
    with pytest.raises(error, match=match):
        AALR(model, optimizer, **options)


# -- bounds -----------------------------------------------------------------------------------------
def test_max_lr_holds_the_doubling_at_the_last_power_of_two_within_it():
    model, optimizer = model_and_sgd()
    tuner = AALR(model, optimizer, initial_loss=2.0, phase1_patience=1, max_lr=0.25)
    records = [tuner.step(loss) for loss in (1.9, 1.8, 1.7, 1.6, 1.5)]
    # phase 1 done -> 0.2; every window of 2 improves, but 0.4 > max_lr: held at 0.2
    assert [r["next_lr"] for r in records] == [0.2, 0.2, 0.2, 0.2, 0.2]
    assert "upper bound" in records[2]["reason"] and "upper bound" not in records[1]["reason"]
    assert optimizer.param_groups[0]["lr"] == 0.2


def test_min_lr_holds_the_halving():
    model, optimizer = model_and_sgd()
    tuner = AALR(model, optimizer, initial_loss=2.0, min_lr=0.03)
    records = [tuner.step(math.nan) for _ in range(4)]
    assert [r["next_lr"] for r in records] == [0.05, 0.05, 0.05, 0.05]  # 0.025 < 0.03
    assert "lower bound" in records[1]["reason"]


def test_bounds_keep_the_param_groups_ratios():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 3))
    groups = [{"params": model[0].parameters(), "lr": 0.1}, {"params": model[1].parameters(), "lr": 0.01}]
    optimizer = torch.optim.SGD(groups)
    tuner = AALR(model, optimizer, initial_loss=2.0, phase1_patience=1, max_lr=0.2)
    for loss in (1.9, 1.8, 1.7):
        tuner.step(loss)
    assert [g["lr"] for g in optimizer.param_groups] == [0.2, 0.02]


def test_bounds_round_trip_in_the_state():
    model, optimizer = model_and_sgd()
    tuner = AALR(model, optimizer, initial_loss=2.0, max_lr=0.8, min_lr=0.01)
    policy = AALRPolicy()
    policy.load_state_dict(tuner.state_dict()["policy"])
    assert (policy.config.max_exponent, policy.config.min_exponent) == (3, -3)


# -- the end of training ----------------------------------------------------------------------------
def test_load_best_brings_back_the_best_rounds_weights():
    model, optimizer = model_and_sgd()
    tuner = AALR(model, optimizer, initial_loss=2.0, phase1_patience=2)
    tuner.step(1.5)
    best = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.weight.add_(1.0)  # training goes on; the next round is worse
    tuner.step(1.7)  # phase 1 failure with a checkpoint: restores and goes to phase 2
    with torch.no_grad():
        model.weight.add_(1.0)
    tuner.step(1.6)  # a phase-2 window epoch: no decision, weights stay changed
    assert not torch.equal(model.weight, best["weight"])
    assert tuner.load_best() is True
    assert all(torch.equal(model.state_dict()[k], v) for k, v in best.items())


def test_load_best_without_a_checkpoint_says_so():
    model, optimizer = model_and_sgd()
    tuner = AALR(model, optimizer, initial_loss=2.0, rules="paper")
    tuner.step(1.9)  # paper rules: phase 1 keeps no checkpoint
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert tuner.load_best() is False
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_a_step_past_the_budget_warns_once():
    model, optimizer = model_and_sgd()
    tuner = AALR(model, optimizer, initial_loss=2.0, total_epochs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tuner.step(1.9)
        tuner.step(1.8)
    with pytest.warns(UserWarning, match=r"round 3 is past the budget of 2 rounds \(total_epochs=2\)"):
        tuner.step(1.7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tuner.step(1.6)


# -- decisions seen -------------------------------------------------------------------------------
def test_restores_are_warnings_and_the_rest_info_unless_verbose(caplog):
    model, optimizer = model_and_sgd()
    tuner = AALR(model, optimizer, initial_loss=2.0)
    with caplog.at_level(logging.INFO, logger="aalr"):
        tuner.step(1.9)
        tuner.step(math.nan)
    levels = [(r.levelno, "restore" in r.getMessage()) for r in caplog.records if r.name == "aalr"]
    assert levels == [(logging.INFO, False), (logging.WARNING, True)]
    caplog.clear()
    model, optimizer = model_and_sgd()
    tuner = AALR(model, optimizer, initial_loss=2.0, verbose=True)
    with caplog.at_level(logging.INFO, logger="aalr"):
        tuner.step(1.9)
    assert [r.levelno for r in caplog.records if r.name == "aalr"] == [logging.WARNING]


def test_a_restart_is_printed_with_no_logging_set_up():
    code = (
        "import torch, aalr\n"
        "m = torch.nn.Linear(2, 2)\n"
        "t = aalr.AALR(m, torch.optim.SGD(m.parameters(), lr=0.1), initial_loss=1.0, rules='paper')\n"
        "t.step(0.9)\n"
        "t.step(1.5)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "restart from the initial weights" in result.stderr
    assert "stable epoch 1" not in result.stderr  # INFO stays quiet


# -- mean_loss --------------------------------------------------------------------------------------
def test_mean_loss_weights_batches_by_size_and_keeps_the_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.5))
    x, y = torch.randn(10, 4), torch.randint(0, 3, (10,))
    loader = DataLoader(TensorDataset(x, y), batch_size=4)  # 4 + 4 + 2
    model.train()
    value = aalr.mean_loss(model, loader)
    assert model.training
    model.eval()
    expected = torch.nn.functional.cross_entropy(model(x), y).item()
    assert value == pytest.approx(expected, rel=1e-6)
    assert aalr.mean_loss(model, loader, torch.nn.functional.nll_loss) != pytest.approx(expected)


def test_mean_loss_refuses_what_it_cannot_read():
    model = nn.Linear(4, 3)
    with pytest.raises(ValueError, match="the loader gave no samples"):
        aalr.mean_loss(model, [])
    with pytest.raises(
        TypeError, match=r"batch 0 must be a tuple or list \(inputs, targets, ...\), got Tensor"
    ):
        aalr.mean_loss(model, [torch.randn(2, 4)])


@pytest.mark.parametrize("name", ["aalr", "aalr-rollback", "aalr-adam"])
def test_the_harness_paper_methods_keep_the_paper_rules(name):
    from aalr.harness.methods import build_method

    model = nn.Linear(4, 3)
    method = build_method(name, model, epochs=12, steps_per_epoch=5, model_name="x", initial_loss=2.0)
    assert rules_of(method.tuner.config) == AALRConfig(finish="none", rollback=name == "aalr-rollback")


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"max_exponent": -1}, r"max_exponent must be >= 0 \(the LR may not start above its bound\), got -1"),
        ({"min_exponent": 2}, r"min_exponent must be <= 0 \(the LR may not start below its bound\), got 2"),
    ],
)
def test_exponent_bounds_must_admit_the_start(settings, match):
    with pytest.raises(ValueError, match=match):
        AALRConfig(**settings)


# -- float's range ------------------------------------------------------------------------------------
def test_endless_non_finite_losses_never_drive_the_lr_to_zero():
    model, optimizer = model_and_sgd()
    tuner = AALR(model, optimizer, initial_loss=2.0, phase1_patience=1)
    tuner.step(1.0)
    for _ in range(2000):
        tuner.step(math.nan)
    assert 0 < tuner.lr < 1e-300 and optimizer.param_groups[0]["lr"] == tuner.lr
    assert tuner.lr * 2 != tuner.lr and math.isfinite(tuner.lr)
    assert "lower bound" in tuner.history[-1]["reason"]


def test_endless_improvement_never_overflows_the_lr():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 3))
    groups = [{"params": model[0].parameters(), "lr": 0.1}, {"params": model[1].parameters(), "lr": 10.0}]
    optimizer = torch.optim.SGD(groups)
    tuner = AALR(model, optimizer, initial_loss=2.0, phase1_patience=1)
    loss = 1.0
    for _ in range(3000):
        loss *= 0.999
        tuner.step(loss)
    lrs = [g["lr"] for g in optimizer.param_groups]
    assert all(math.isfinite(lr) for lr in lrs) and lrs[1] > 1e300  # the larger group reached the top
    assert "upper bound" in tuner.history[-1]["reason"] or "upper bound" in tuner.history[-2]["reason"]


def test_mean_loss_of_a_dataset_says_to_give_a_data_loader():
    data = TensorDataset(torch.randn(4, 4), torch.randint(0, 3, (4,)))
    with pytest.raises(
        TypeError, match=r"batch 0's targets are one number, not a batch: give mean_loss a DataLoader"
    ):
        aalr.mean_loss(nn.Linear(4, 3), data)
