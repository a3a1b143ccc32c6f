"""Step mode: a decision every N optimizer steps, at once on a non-finite loss or a spike, resumable
in the middle of a round."""

from __future__ import annotations

import io
import logging
import math
import warnings

import pytest
import torch
from torch import nn

from aalr import AALR
from aalr.rounds import SPIKE_WINDOW, Round

NAN = math.nan


def tuner_for(every_n_steps: int = 4, **options) -> AALR:
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return AALR(model, optimizer, every_n_steps=every_n_steps, **options)


def test_a_round_is_decided_on_the_mean_of_its_steps_as_an_epoch_would_be():
    losses = [1.9, 1.7, 1.8, 1.6, 1.5, 1.55, 1.45, 1.5, 1.6, 1.7, 1.65, 1.7, 1.2, 1.1, 1.3, 1.0]
    stepper = tuner_for(4, initial_loss=2.0, phase1_patience=2)
    records = [stepper.observe(loss) for loss in losses]
    decided = [r for r in records if r is not None]
    assert [i for i, r in enumerate(records) if r is not None] == [3, 7, 11, 15]
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    epochs = AALR(
        model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), initial_loss=2.0, phase1_patience=2
    )
    means = [sum(losses[i : i + 4]) / 4 for i in range(0, 16, 4)]
    expected = [epochs.step(mean) for mean in means]
    assert [(r["action"], r["next_lr"]) for r in decided] == [(r["action"], r["next_lr"]) for r in expected]
    assert [r["loss"] for r in decided] == pytest.approx(means)
    assert [(r["steps"], r["last_step"]) for r in decided] == [(4, 4), (4, 8), (4, 12), (4, 16)]
    # the same decisions, worded in rounds: a step-mode user never trained an "epoch"
    assert [r["round"] for r in decided] == [r["epoch"] for r in decided] == [1, 2, 3, 4]
    assert [r["reason"] for r in decided] == [r["reason"].replace("epoch", "round") for r in expected]
    assert decided[0]["reason"].startswith("phase 1: stable round 1/2"), decided[0]["reason"]
    assert all("epoch" not in r["reason"] for r in decided) and "round" not in expected[0]


def test_the_lr_changes_only_at_a_rounds_end():
    tuner = tuner_for(3, initial_loss=2.0, phase1_patience=1)
    lrs = []
    for loss in [1.9, 1.8, 1.7, 1.6, 1.5, 1.4]:
        tuner.observe(loss)
        lrs.append(tuner.optimizer.param_groups[0]["lr"])
    assert lrs == [0.1, 0.1, 0.2, 0.2, 0.2, 0.2]


def test_a_non_finite_step_loss_acts_at_once():
    tuner = tuner_for(10, initial_loss=2.0, phase1_patience=1)
    for _ in range(10):
        tuner.observe(1.5)  # round 1: phase 1 done, checkpoint, LR 0.2
    assert tuner.observe(1.4) is None
    record = tuner.observe(NAN)
    assert record is not None and record["action"] == "restore_best" and record["steps"] == 2
    assert tuner.lr == 0.1 and tuner.round.steps == 0


def spike_run(spike_rollback: bool = True) -> tuple[AALR, list]:
    tuner = tuner_for(10, initial_loss=2.0, phase1_patience=1, spike_rollback=spike_rollback)
    records = [tuner.observe(1.0) for _ in range(10)]  # L* = 1.0; the midpoint to 2.0 is 1.5
    records += [tuner.observe(loss) for loss in (1.05, 0.95, 1.6, 1.2, 1.7, 1.8, 1.9, 1.7, 1.8)]
    return tuner, records


def test_a_spike_restores_the_best_checkpoint_and_halves_at_once():
    _, records = spike_run()
    decided = [(i, r) for i, r in enumerate(records) if r is not None]
    # steps 11-19: the mean of the last 5 first passes 1.5 at step 17 (1.6, 1.2, 1.7, 1.8, 1.9 -> 1.64)
    assert [i for i, _ in decided] == [9, 16]
    record = decided[1][1]
    assert record["action"] == "restore_best" and record["next_lr"] == 0.1  # 0.2 halved
    assert record["reason"] == (
        "phase 2: spike: the last 5 steps' mean loss 1.64 is nearer the initial loss 2 than the best 1; "
        "restore best, halve LR, p=2"
    )
    assert record["last_step"] == 17 and record["steps"] == 7 and record["spike"]
    assert not decided[0][1]["spike"]


def test_spike_rollback_false_waits_for_the_round():
    _, records = spike_run(spike_rollback=False)
    assert [i for i, r in enumerate(records) if r is not None] == [9]


def test_noise_around_the_best_is_no_spike():
    tuner = tuner_for(50, initial_loss=2.3, phase1_patience=1)
    for _ in range(50):
        tuner.observe(0.9)
    torch.manual_seed(3)
    noise = (0.9 + 0.25 * torch.randn(200)).clamp(min=0.05).tolist()  # heavy noise, below the midpoint 1.6
    records = [tuner.observe(loss) for loss in noise]
    assert [r["steps"] for r in records if r is not None] == [50, 50, 50, 50]


def test_nothing_learnt_yet_means_no_spike():
    tuner = tuner_for(10, initial_loss=2.0)
    assert [tuner.observe(loss) for loss in (1.99, 2.5, 3.0, 3.1, 3.2, 3.3)] == [None] * 6


def test_without_an_initial_loss_the_first_round_stands_in():
    tuner = tuner_for(5, phase1_patience=3)  # phase 1: L* follows every round
    for loss in (2.0, 2.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0):
        tuner.observe(loss)
    # initial 2.0 (round 1), best 1.0 (round 2): 1.6 x5 is nearer 2.0
    records = [tuner.observe(1.6) for _ in range(SPIKE_WINDOW)]
    assert records[-1] is not None and records[-1]["reason"].startswith("phase 1: spike")


# -- resume in the middle of a round -------------------------------------------------------------------
def train(steps: int, *, resume_at: int | None = None, **budget: int) -> tuple[list, dict]:
    torch.manual_seed(0)
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))

    def make():
        torch.manual_seed(1)
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
        tuner = AALR(model, optimizer, initial_loss=1.2, every_n_steps=7, phase1_patience=2, **budget)
        return model, optimizer, tuner

    model, optimizer, tuner = make()
    for step in range(steps):
        if step == resume_at:
            buffer = io.BytesIO()
            torch.save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "tuner": tuner.state_dict(),
                },
                buffer,
            )
            buffer.seek(0)
            saved = torch.load(buffer, weights_only=True)
            model, optimizer, tuner = make()
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            tuner.load_state_dict(saved["tuner"])
        batch = slice((step * 16) % 64, (step * 16) % 64 + 16)
        loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        tuner.observe(loss)
    return tuner.history, {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("resume_at", [10, 14, 30])  # mid-round, at a round's start, mid-round
def test_resume_in_the_middle_of_a_round_equals_an_uninterrupted_run(resume_at):
    history, weights = train(42)
    resumed_history, resumed_weights = train(42, resume_at=resume_at)
    assert len(history) == 6 and resumed_history == history
    assert all(torch.equal(weights[k], resumed_weights[k]) for k in weights)


# -- budgets and misuse --------------------------------------------------------------------------------
def test_total_steps_is_a_budget_in_rounds():
    assert tuner_for(10, total_steps=105).config.total_epochs == 10
    assert tuner_for(10, total_rounds=7).config.total_epochs == 7


def run_to_the_budget(losses: list[float], **options) -> AALR:
    """Observe every loss with warnings as errors: a run given its whole length never hears it is past it."""
    tuner = tuner_for(10, initial_loss=2.0, phase1_patience=1, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for loss in losses:
            tuner.observe(loss)
    return tuner


def test_the_last_round_runs_on_to_the_budgets_last_step():
    # 105 steps in rounds of 10: the 5 left over go to the tenth round, which the finish decides on,
    # instead of 5 steps trained after the budget's last decision (at the finish's LR 0)
    tuner = run_to_the_budget([1.0 - i / 200 for i in range(105)], total_steps=105)
    assert [r["steps"] for r in tuner.history] == [10] * 9 + [15]
    assert tuner.history[-1]["last_step"] == 105 and tuner.config.total_epochs == 10
    assert tuner.history[-2]["next_lr"] > 0 and tuner.history[-1]["next_lr"] == 0


def test_a_round_cut_short_moves_the_budget_so_the_finish_still_ends_at_the_last_step():
    # a spike ends round 2 after 7 steps (as in spike_run): the rounds after it are shifted by 3 steps,
    # and the last one takes them (13 steps), so the finish's last decision is at step 100
    spike = [1.05, 0.95, 1.6, 1.2, 1.7, 1.8, 1.9]
    tuner = run_to_the_budget([1.0] * 10 + spike + [0.9] * 83, total_steps=100)
    assert [r["last_step"] for r in tuner.history] == [10, 17, 27, 37, 47, 57, 67, 77, 87, 100]
    assert tuner.history[1]["spike"] and tuner.config.total_epochs == len(tuner.history) == 10
    assert tuner.history[-2]["next_lr"] > 0  # the last round trained, at the finish's lowest LR
    # two rounds of one step (non-finite losses) leave 18 steps: one round more, the last of 18
    tuner = run_to_the_budget([1.0] * 10 + [NAN, NAN] + [0.9] * 88, total_steps=100)
    assert [r["last_step"] for r in tuner.history] == [10, 11, 12, 22, 32, 42, 52, 62, 72, 82, 100]
    assert tuner.config.total_epochs == len(tuner.history) == 11
    # a budget of rounds is one of steps too: total_rounds=10 is 100 steps
    tuner = run_to_the_budget([1.0] * 10 + spike + [0.9] * 83, total_rounds=10)
    assert tuner.history[-1]["last_step"] == 100 and len(tuner.history) == 10


def test_resume_in_the_last_round_past_every_n_steps_equals_an_uninterrupted_run():
    # rounds of 7 in a budget of 45 steps: the sixth round runs from step 36 to 45; stop at step 44,
    # when it has 8 steps (more than every_n_steps), and go on from the saved state
    history, weights = train(45, total_steps=45)
    assert [r["last_step"] for r in history] == [7, 14, 21, 28, 35, 45]
    resumed_history, resumed_weights = train(45, resume_at=43, total_steps=45)
    assert resumed_history == history
    assert all(torch.equal(weights[k], resumed_weights[k]) for k in weights)


def test_a_state_saved_before_the_step_budget_was_kept_loads(caplog):
    tuner = tuner_for(10, total_steps=100)
    state = tuner.state_dict()
    del state["steps"]["total_steps"]
    other = tuner_for(10, total_steps=100)
    with caplog.at_level(logging.WARNING, logger="aalr"):
        other.load_state_dict(state)
    assert other.total_steps == 100 and not caplog.records
    state["steps"]["total_steps"] = 80  # saved with another budget: the saved one wins, and it is said
    with caplog.at_level(logging.WARNING, logger="aalr"):
        other.load_state_dict(state)
    assert other.total_steps == 80 and "saved budget total_steps=80 (constructed with 100)" in caplog.text


@pytest.mark.parametrize(
    ("options", "match"),
    [
        (
            {"total_steps": 100, "total_rounds": 10},
            r"give one budget, total_epochs, total_rounds or total_steps",
        ),
        ({"total_steps": 3}, r"total_steps \(3\) must be at least every_n_steps \(4\): one round"),
        ({"total_rounds": 0}, r"total_rounds must be None or an integer >= 1, got 0"),
        ({"every_n_steps": 0}, r"every_n_steps must be >= 1, got 0"),
    ],
)
def test_bad_budgets_name_the_value(options, match):
    with pytest.raises(ValueError, match=match):
        tuner_for(**{"every_n_steps": 4, **options})


def test_total_steps_needs_every_n_steps():
    model = nn.Linear(4, 3)
    with pytest.raises(ValueError, match=r"total_steps needs every_n_steps"):
        AALR(model, torch.optim.SGD(model.parameters(), lr=0.1), total_steps=100)


def test_the_modes_do_not_mix():
    with pytest.raises(RuntimeError, match=r"decides every 4 optimizer steps: call observe\(loss\)"):
        tuner_for(4).step(1.0)
    model = nn.Linear(4, 3)
    epochs = AALR(model, torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(
        RuntimeError, match=r"make it with every_n_steps=N, or call step\(loss\) once per epoch"
    ):
        epochs.observe(1.0)
    with pytest.raises(
        ValueError, match=r"AALR state is of a tuner that decides every N steps; this one was"
    ):
        epochs.load_state_dict(tuner_for(4).state_dict())


@pytest.mark.parametrize(
    ("round_state", "match"),
    [
        ({"total": 1.0, "steps": 4, "recent": []}, r"the round's steps must be an int in \[0, 4\), got 4"),
        ({"total": math.inf, "steps": 1, "recent": [1.0]}, r"the round's total must be a finite number"),
        ({"total": 1.0, "steps": 1, "recent": [1.0, 2.0]}, r"recent losses must be a list of <= 4"),
        ({"total": 1.0}, r"the round must be a dict with total, steps and recent"),
    ],
)
def test_a_bad_round_state_is_refused(round_state, match):
    tuner = tuner_for(4)
    state = tuner.state_dict()
    state["steps"]["round"] = round_state
    with pytest.raises(ValueError, match=match):
        tuner_for(4).load_state_dict(state)


def test_the_round_rule_alone():
    r = Round(3)
    for loss in (1.0, 2.0):
        r.add(loss)
    assert (r.mean, r.full, r.window) == (1.5, False, 3)
    r.add(3.0)
    assert r.full and r.spike(best=1.0, initial=3.0) is None  # mean 2 is the midpoint: not nearer
    r.add(3.5)
    assert r.spike(best=1.0, initial=3.0) == (
        "spike: the last 3 steps' mean loss 2.83333 is nearer the initial loss 3 than the best 1"
    )
    assert r.spike(best=1.0, initial=5.0) is None


def test_every_n_steps_takes_numpy_integers_as_the_budgets_do():
    import numpy as np

    tuner = tuner_for(np.int64(4), total_steps=np.int64(40))
    assert tuner.round.every_n_steps == 4 and type(tuner.round.every_n_steps) is int
    assert tuner.config.total_epochs == 10


def test_a_loss_on_the_meta_device_is_refused_naming_it():
    # found by the hostile sweep of the integrations: torch's own error came from deep inside item()
    tuner = tuner_for(4)
    with pytest.raises(ValueError, match="loss is a tensor on the meta device"):
        tuner.observe(torch.tensor(1.0, device="meta"))
    assert tuner.state_dict()["steps"]["round"]["steps"] == 0  # nothing counted
