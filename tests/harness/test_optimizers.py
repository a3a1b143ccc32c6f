"""Tests for aalr.harness.optimizers: SGD-HD matches its slow float64 reference, follows the
hypergradient rule worked out by hand, and checks its settings."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from aalr.harness.optimizers import SGDHD, SGDHDReference


def tiny_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def batch(epoch: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1000 * epoch + index)
    return torch.randn(4, 4, generator=generator), torch.randint(0, 3, (4,), generator=generator)


# ---------------------------------------------------------------------------------------------
# hypergradient descent
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("momentum", "nesterov", "weight_decay", "dampening"),
    [
        (0.0, False, 0.0, 0.0),
        (0.0, False, 5e-4, 0.0),
        (0.9, False, 5e-4, 0.0),
        (0.9, True, 5e-4, 0.0),
        (0.9, False, 0.0, 0.1),
    ],
)
def test_sgdhd_matches_the_float64_reference(
    momentum: float, nesterov: bool, weight_decay: float, dampening: float
) -> None:
    fast_model, slow_model = tiny_model(seed=3), tiny_model(seed=3)
    settings = dict(
        lr=0.01,
        hypergrad_lr=0.01,
        momentum=momentum,
        nesterov=nesterov,
        weight_decay=weight_decay,
        dampening=dampening,
    )
    fast = SGDHD(fast_model.parameters(), **settings)
    slow = SGDHDReference(slow_model.parameters(), **settings)
    for step in range(6):
        x, y = batch(0, step)
        for model, optimizer in ((fast_model, fast), (slow_model, slow)):
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
        assert fast.param_groups[0]["lr"] == pytest.approx(slow.param_groups[0]["lr"], rel=1e-5)
        for a, b in zip(fast_model.parameters(), slow_model.parameters(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert fast.param_groups[0]["lr"] != 0.01  # the LR did move


def quadratic_alphas(
    x0: list[float], alpha0: float, beta: float, steps: int
) -> tuple[list[float], torch.Tensor]:
    """SGD-HD on f(x) = |x|^2 / 2 (gradient x); the alpha used at each step."""
    x = torch.nn.Parameter(torch.tensor(x0, dtype=torch.float64))
    optimizer = SGDHD([x], lr=alpha0, hypergrad_lr=beta)
    alphas = []
    for _ in range(steps):
        optimizer.zero_grad()
        (0.5 * (x * x).sum()).backward()
        optimizer.step()
        alphas.append(optimizer.param_groups[0]["lr"])
    return alphas, x.detach()


def test_sgdhd_by_hand_on_a_parabola() -> None:
    # x = 1, alpha 0.1, beta 0.01: step 1 has no previous gradient; then alpha += beta * g_t * g_{t-1}.
    alphas, x = quadratic_alphas([1.0], 0.1, 0.01, 3)
    assert alphas == pytest.approx([0.1, 0.109, 0.1162171], rel=1e-12)  # 0.109 + 0.01 * 0.8019 * 0.9
    assert float(x[0]) == pytest.approx(0.8019 * (1 - 0.1162171), rel=1e-12)


def test_sgdhd_alpha_grows_when_gradients_align() -> None:
    alphas, _ = quadratic_alphas([1.0, -2.0], 0.01, 0.001, 10)  # small steps: g_t and g_{t-1} align
    assert all(later > earlier for earlier, later in itertools.pairwise(alphas))


def test_sgdhd_alpha_shrinks_when_gradients_oppose() -> None:
    alphas, _ = quadratic_alphas([1.0, -2.0], 1.9, 0.01, 10)  # overshooting: x flips sign every step
    assert all(later < earlier for earlier, later in itertools.pairwise(alphas))


def test_sgdhd_errors() -> None:
    model = tiny_model()
    with pytest.raises(ValueError, match="one param group, got 2"):
        SGDHD([{"params": [model[0].weight]}, {"params": [model[0].bias]}])
    with pytest.raises(ValueError, match="Nesterov momentum needs momentum > 0"):
        SGDHD(model.parameters(), nesterov=True)
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\), got 1.0"):
        SGDHD(model.parameters(), momentum=1.0)
    with pytest.raises(ValueError, match="lr must be finite and > 0, got 0"):
        SGDHD(model.parameters(), lr=0)
    with pytest.raises(ValueError, match="hypergrad_lr must be finite and >= 0"):
        SGDHD(model.parameters(), hypergrad_lr=-1.0)
