"""Tests for aalr.harness.schedules: the cosine and WSD multipliers and GreedyLR against transformers'
own code, by hand, and the LR range test on a problem whose good LR is known."""

from __future__ import annotations

import io
import math
from typing import Any

import pytest
import torch
from torch import nn

from aalr.harness.schedules import (
    GreedyLR,
    LRRangeTest,
    WarmupCosine,
    WarmupStableDecay,
    minimum,
    valley,
)


def sgd(lr: float = 0.1) -> torch.optim.SGD:
    return torch.optim.SGD([nn.Parameter(torch.zeros(2))], lr=lr)


def lambda_lrs(multiplier: Any, steps: int, lr: float = 1.0) -> list[float]:
    """The LR of each of ``steps`` batches and after the last, as LambdaLR steps it."""
    optimizer = sgd(lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return [*lrs, optimizer.param_groups[0]["lr"]]


# ---------------------------------------------------------------------------------------------
# warmup + cosine, warmup-stable-decay
# ---------------------------------------------------------------------------------------------
def test_warmup_cosine_by_hand() -> None:
    lrs = lambda_lrs(WarmupCosine(total_steps=6, warmup_steps=2), 6)
    # warmup 0, 1/2; then 0.5 (1 + cos(pi k / 4)) for k = 0..4: peak, ..., 0 at the budget's end
    expected = [
        0.0,
        0.5,
        1.0,
        0.5 * (1 + math.cos(math.pi / 4)),
        0.5,
        0.5 * (1 + math.cos(3 * math.pi / 4)),
        0.0,
    ]
    assert lrs == pytest.approx(expected, abs=1e-12)
    assert WarmupCosine(6, 2)(100) == 0.0  # past the budget it stays at 0


@pytest.mark.parametrize(("total", "warmup"), [(100, 5), (37, 0), (10, 9), (1, 0)])
def test_warmup_cosine_is_transformers_schedule(total: int, warmup: int) -> None:
    optimization = pytest.importorskip("transformers.optimization")
    optimizer = sgd(1.0)
    theirs = optimization.get_cosine_schedule_with_warmup(optimizer, warmup, total)
    expected = []
    for _ in range(total + 1):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        theirs.step()
    assert lambda_lrs(WarmupCosine(total, warmup), total) == pytest.approx(expected, abs=1e-12)


def test_wsd_by_hand() -> None:
    lrs = lambda_lrs(WarmupStableDecay(total_steps=10, warmup_steps=2, decay_steps=4, decay="1-sqrt"), 10)
    decay = [1 - math.sqrt(k / 4) for k in range(4)]
    assert lrs == pytest.approx([0.0, 0.5, 1.0, 1.0, 1.0, 1.0, *decay, 0.0], abs=1e-12)
    linear = lambda_lrs(WarmupStableDecay(10, 2, 4, decay="linear"), 10)
    assert linear[6:] == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])


@pytest.mark.parametrize("decay", ["1-sqrt", "linear"])
@pytest.mark.parametrize(("total", "warmup", "decay_steps"), [(100, 5, 20), (23, 1, 5), (8, 0, 8)])
def test_wsd_is_transformers_schedule(decay: str, total: int, warmup: int, decay_steps: int) -> None:
    optimization = pytest.importorskip("transformers.optimization")
    optimizer = sgd(1.0)
    theirs = optimization.get_wsd_schedule(
        optimizer, warmup, decay_steps, num_training_steps=total, warmup_type="linear", decay_type=decay
    )
    expected = []
    for _ in range(total + 1):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        theirs.step()
    ours = lambda_lrs(WarmupStableDecay(total, warmup, decay_steps, decay), total)
    assert ours == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (
            lambda: WarmupCosine(10, 10),
            r"warmup_steps \(10\) must be fewer than the budget's total_steps \(10\)",
        ),
        (lambda: WarmupCosine(0, 0), r"total_steps must be an integer >= 1, got 0"),
        (lambda: WarmupCosine(10, -1), r"warmup_steps must be an integer >= 0, got -1"),
        (lambda: WarmupStableDecay(10, 5, 6), r"warmup_steps \(5\) \+ decay_steps \(6\) exceed"),
        (lambda: WarmupStableDecay(10, 1, 2, "cosine"), r"decay must be one of 1-sqrt, linear, got 'cosine'"),
    ],
)
def test_bad_schedule_arguments(make: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


# ---------------------------------------------------------------------------------------------
# GreedyLR
# ---------------------------------------------------------------------------------------------
def loss_sequence(seed: int, n: int = 120) -> list[float]:
    """Improving, then flat, then noisy, then improving again: every branch of GreedyLR is taken."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(n, generator=generator).tolist()
    values = []
    for i in range(n):
        if i < 30:
            values.append(2.0 - 0.05 * i)
        elif i < 60:
            values.append(0.5)
        elif i < 90:
            values.append(0.5 + 0.2 * noise[i])
        else:
            values.append(0.45 - 0.01 * (i - 90))
    return values


GREEDY_SETTINGS = [
    {},
    {"patience": 2},
    {"patience": 1, "cooldown": 2, "warmup": 3},
    {"patience": 2, "threshold": 0.01, "threshold_mode": "rel"},
    {"patience": 0, "smooth": True, "window_size": 4},
    {"patience": 1, "factor": 0.5, "min_lr": 0.02, "max_lr": 0.3, "reset_start": 3},
]


@pytest.mark.parametrize("settings", GREEDY_SETTINGS)
@pytest.mark.parametrize("seed", [0, 1])
def test_greedy_takes_transformers_decisions(settings: dict[str, Any], seed: int) -> None:
    optimization = pytest.importorskip("transformers.optimization")
    theirs_optimizer, ours_optimizer = sgd(0.1), sgd(0.1)
    theirs = optimization.GreedyLR(theirs_optimizer, **settings)
    ours = GreedyLR(ours_optimizer, **settings)
    theirs_lrs, ours_lrs = [], []
    for loss in loss_sequence(seed):
        theirs.step(loss)
        ours.step(loss)
        theirs_lrs.append(theirs_optimizer.param_groups[0]["lr"])
        ours_lrs.append(ours_optimizer.param_groups[0]["lr"])
    assert ours_lrs == theirs_lrs  # exactly: the same arithmetic
    assert len(set(ours_lrs)) > 1  # the sequence did move the LR


def test_greedy_by_hand() -> None:
    optimizer = sgd(0.1)
    greedy = GreedyLR(optimizer, patience=1, factor=0.5, min_lr=0.02, max_lr=0.3)
    actions, lrs = [], []
    for loss in [3.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]:
        actions.append(greedy.step(loss))
        lrs.append(optimizer.param_groups[0]["lr"])
    # two better in a row (more than patience 1): /0.5; then an equal loss is no better: after two
    # such, x0.5, and again, down to min_lr 0.02, where it stays
    assert actions == [
        "none", "increase", "none", "none", "decrease", "none", "decrease", "none", "decrease", "none",
    ]  # fmt: skip
    assert lrs == pytest.approx([0.1, 0.2, 0.2, 0.2, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025])
    greedy.step(1.0)
    greedy.step(1.0)
    assert optimizer.param_groups[0]["lr"] == 0.02  # the floor, not 0.0125


def test_greedy_resumes_exactly_through_weights_only_load() -> None:
    losses = loss_sequence(0)
    optimizer = sgd(0.1)
    greedy = GreedyLR(optimizer, patience=1, smooth=True, window_size=5)
    for loss in losses[:50]:
        greedy.step(loss)
    buffer = io.BytesIO()
    torch.save({"greedy": greedy.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    rest = []
    for loss in losses[50:]:
        greedy.step(loss)
        rest.append(optimizer.param_groups[0]["lr"])
    fresh_optimizer = sgd(0.1)
    fresh = GreedyLR(fresh_optimizer, patience=1, smooth=True, window_size=5)
    fresh_optimizer.load_state_dict(saved["optimizer"])
    fresh.load_state_dict(saved["greedy"])
    resumed = []
    for loss in losses[50:]:
        fresh.step(loss)
        resumed.append(fresh_optimizer.param_groups[0]["lr"])
    assert resumed == rest


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"factor": 1.0}, r"factor must be in \(0, 1\), got 1.0"),
        ({"factor": 0}, r"factor must be > 0, got 0"),
        ({"patience": -1}, r"patience must be an integer >= 0, got -1"),
        ({"patience": True}, r"patience must be an integer >= 0, got True"),
        ({"mode": "up"}, r"mode must be 'min' or 'max', got 'up'"),
        ({"threshold_mode": "pct"}, r"threshold_mode must be 'rel' or 'abs', got 'pct'"),
        ({"min_lr": 2.0}, r"min_lr \(2.0\) must be at most max_lr \(1.0\)"),
        ({"smooth": "yes"}, r"smooth must be true or false, got 'yes'"),
        ({"window_size": 0}, r"window_size must be an integer >= 1, got 0"),
    ],
)
def test_greedy_bad_arguments(settings: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GreedyLR(sgd(), **settings)


# ---------------------------------------------------------------------------------------------
# the LR range test
# ---------------------------------------------------------------------------------------------
def test_range_test_lrs_are_fastais_exponential_schedule() -> None:
    test = LRRangeTest()
    seen = []
    while not test.observe(1.0):  # a flat loss never diverges: all num_it steps
        seen.append(test.lrs[-1])
    seen.append(test.lrs[-1])
    assert len(seen) == 100 and test.stopped == ""
    assert seen == pytest.approx([1e-7 * (10 / 1e-7) ** (i / 100) for i in range(100)], rel=1e-12)
    with pytest.raises(RuntimeError, match="the LR range test is over"):
        test.observe(1.0)


def test_range_test_smooths_and_stops_at_four_times_the_minimum() -> None:
    test = LRRangeTest(num_it=50, beta=0.5)
    losses = [1.0, 1.0, 1.0, 6.0, 30.0]
    done = [test.observe(loss) for loss in losses]
    # debiased EMA with beta 0.5: 1, 1, 1, then (0.5^3*... ) written out
    averages, average = [], 0.0
    for k, loss in enumerate(losses, start=1):
        average = 0.5 * average + 0.5 * loss
        averages.append(average / (1 - 0.5**k))
    assert test.losses == pytest.approx(averages)
    assert averages[3] < 4 and averages[4] > 4  # so the test stops at the fifth step, not before
    assert done == [False, False, False, False, True]
    assert "4 x its minimum 1" in test.stopped


def test_range_test_stops_at_a_non_finite_loss() -> None:
    test = LRRangeTest(num_it=50)
    assert not test.observe(2.0)
    assert test.observe(math.nan) and "non-finite" in test.stopped


def test_suggestions_by_hand() -> None:
    lrs = [float(10**k) for k in range(-6, 1)]  # 1e-6 .. 1
    losses = [5.0, 5.0, 4.0, 3.0, 2.0, 1.0, 9.0]
    assert minimum(lrs, losses) == pytest.approx(0.01)  # the loss is lowest at 0.1
    # the longest strictly decreasing run is 5, 4, 3, 2, 1 (indices 1-5 as fastai counts them from
    # max_end - length = 0): two thirds of the way is index 0 + int(5/3) + int(5/6) = 1
    assert valley(lrs, losses) == pytest.approx(1e-5)


def linear_regression_range_test(rule: str, scale: float, seed: int) -> tuple[float, float]:
    """The range test with plain SGD on minibatch least squares, inputs ~ N(0, scale^2): the loss's
    Hessian is 2 scale^2 I, so the LR that solves it in one step is 1 / (2 scale^2) and every LR above
    twice that diverges. Returns the suggestion and that LR."""
    generator = torch.Generator().manual_seed(seed)
    dim = 20
    w_true = torch.randn(dim, generator=generator)
    w = torch.zeros(dim, requires_grad=True)
    optimizer = torch.optim.SGD([w], lr=1e-7)
    test = LRRangeTest(suggestion=rule)
    while True:
        for group in optimizer.param_groups:
            group["lr"] = test.lr
        x = scale * torch.randn(64, dim, generator=generator)
        y = x @ w_true + 0.1 * torch.randn(64, generator=generator)
        loss = ((x @ w - y) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if test.observe(loss.item()):
            break
    assert test.stopped, "the test must have seen the divergence above 2 / h"
    return test.suggestion(), 1 / (2 * scale**2)


@pytest.mark.parametrize("scale", [1.0, 10.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_range_test_finds_the_known_good_lr(scale: float, seed: int) -> None:
    valley_lr, best = linear_regression_range_test("valley", scale, seed)
    minimum_lr, _ = linear_regression_range_test("minimum", scale, seed)
    # both stable (below the best, far below divergence at 2x it), neither uselessly small
    assert best / 10 <= minimum_lr <= best
    assert best / 100 <= valley_lr <= best
    assert valley_lr < minimum_lr  # fastai's valley is the more careful of the two here


def test_range_test_state_round_trips() -> None:
    test = LRRangeTest(num_it=20)
    for loss in [3.0, 2.9, 2.5]:
        test.observe(loss)
    buffer = io.BytesIO()
    torch.save(test.state_dict(), buffer)
    buffer.seek(0)
    fresh = LRRangeTest(num_it=20)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert (fresh.lr, fresh.steps, fresh.losses) == (test.lr, test.steps, test.losses)
    assert fresh.observe(2.0) == test.observe(2.0) and fresh.losses == test.losses


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"end_lr": 1e-8}, r"end_lr \(1e-08\) must be above start_lr \(1e-07\)"),
        ({"num_it": 0}, r"num_it must be an integer >= 1, got 0"),
        ({"stop_factor": 1.0}, r"stop_factor must be > 1, got 1.0"),
        ({"beta": 1.0}, r"beta must be in \[0, 1\), got 1.0"),
        ({"suggestion": "steep"}, r"suggestion must be one of valley, minimum, got 'steep'"),
    ],
)
def test_range_test_bad_arguments(settings: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LRRangeTest(**settings)
