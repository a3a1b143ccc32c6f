"""Algorithm 1's rules against LR sequences written out by hand, plus property tests."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aalr.policy import AALRConfig, AALRPolicy
from reference_aalr import reference_decisions

NAN = float("nan")
INF = float("inf")


def run(losses, initial_loss=2.3, **config):
    policy = AALRPolicy(initial_loss=initial_loss, config=AALRConfig(**config))
    return [(d.lr_exponent, d.action) for d in (policy.step(x) for x in losses)], policy


def test_phase1_ten_stable_epochs_then_phase2_doubles():
    losses = [2.2 - 0.1 * i for i in range(10)]
    decisions, policy = run(losses)
    assert decisions == [(0, "none")] * 9 + [(1, "save_best")]
    assert policy.phase == 2 and policy.patience == 1
    assert policy.best == pytest.approx(losses[-1])


def test_phase1_equal_loss_does_not_fail():
    decisions, _ = run([2.3, 2.3, 2.3], phase1_patience=3)
    assert decisions == [(0, "none"), (0, "none"), (1, "save_best")]


@pytest.mark.parametrize(
    ("losses", "expected"),
    [
        # a rise above L* restarts: halve, counter back to 0, L* back to the initial 2.3
        (
            [2.0, 2.1, 2.2, 2.1, 2.0],
            [(0, "none"), (-1, "restore_initial"), (-1, "none"), (-1, "none"), (0, "save_best")],
        ),
        # NaN and inf restart too; the epoch counter keeps counting
        (
            [NAN, INF, 2.2, 2.2, 2.2],
            [(-1, "restore_initial"), (-2, "restore_initial"), (-2, "none"), (-2, "none"), (-1, "save_best")],
        ),
        # above the initial loss in the first epoch
        ([2.4, 2.2, 2.1, 2.0], [(-1, "restore_initial"), (-1, "none"), (-1, "none"), (0, "save_best")]),
    ],
)
def test_phase1_restarts(losses, expected):
    decisions, policy = run(losses, phase1_patience=3)
    assert decisions == expected
    assert policy.epoch == len(losses)


def test_phase1_restart_best_keep_compares_with_best_seen():
    # "keep": after the restart L* stays 2.0, so the restarted model's 2.2 fails again
    decisions, _ = run([2.0, 2.1, 2.2, 1.9], phase1_patience=3, restart_best="keep")
    assert decisions == [(0, "none"), (-1, "restore_initial"), (-2, "restore_initial"), (-2, "none")]
    decisions, _ = run([2.0, 2.1, 2.2, 1.9], phase1_patience=3)
    assert decisions == [(0, "none"), (-1, "restore_initial"), (-1, "none"), (-1, "none")]


def test_phase1_rollback_by_hand():
    # stable epochs are saved; the first failure restores the last one, halves, and phase 2 starts, p=2
    losses = [2.0, 1.9, 2.0, 1.95, 1.85, 1.8]
    decisions, policy = run(losses, phase1_patience=5, phase1_failure="rollback")
    assert decisions == [
        (0, "save_best"),
        (0, "save_best"),
        (-1, "restore_best"),  # 2.0 > 1.9: back to epoch 2's weights, L* stays 1.9
        (-1, "none"),  # phase 2, window of p+1 = 3 epochs
        (-1, "none"),
        (0, "save_best"),  # 1.8 < 1.9 at the window's end: checkpoint, double, p=1
    ]
    assert policy.phase == 2 and policy.patience == 1 and policy.best == 1.8


def test_phase1_rollback_before_any_stable_epoch_restarts_like_the_paper():
    decisions, policy = run([2.4, NAN, 2.2, INF], phase1_patience=5, phase1_failure="rollback")
    # 2.4 > 2.3 and NaN come before any saved epoch: restart; after 2.2 was saved, inf rolls back
    assert decisions == [
        (-1, "restore_initial"),
        (-2, "restore_initial"),
        (-2, "save_best"),
        (-3, "restore_best"),
    ]
    assert policy.phase == 2 and policy.best == 2.2


def test_phase1_rollback_state_round_trip():
    losses = [2.0, 1.9, 1.95, 1.9, 1.7]
    config = AALRConfig(phase1_patience=4, phase1_failure="rollback")
    full = AALRPolicy(initial_loss=2.3, config=config)
    expected = [(d.lr_exponent, d.action) for d in (full.step(x) for x in losses)]
    first = AALRPolicy(initial_loss=2.3, config=config)
    head = [(d.lr_exponent, d.action) for d in (first.step(x) for x in losses[:2])]
    assert not first.needs_initial_snapshot  # a checkpoint to roll back to exists
    second = AALRPolicy()
    second.load_state_dict(first.state_dict())
    tail = [(d.lr_exponent, d.action) for d in (second.step(x) for x in losses[2:])]
    assert head + tail == expected and expected[2] == (-1, "restore_best")


def test_unknown_initial_loss_first_epoch_cannot_fail_on_value():
    decisions, policy = run([50.0, 49.0, 51.0, 7.0], initial_loss=None, phase1_patience=3)
    assert decisions == [(0, "none"), (0, "none"), (-1, "restore_initial"), (-1, "none")]
    assert policy.best == 7.0


PHASE2_START = [2.0]  # with phase1_patience=1: one stable epoch, then phase 2 at exponent 1, p=1


def test_phase2_windows_of_p_plus_1_by_hand():
    losses = PHASE2_START + [
        1.9,
        1.8,  # window (p=1, 2 epochs): 1.8 < 2.0 -> save, double (exp 2), p=1
        1.9,
        1.85,  # miss 1 (1.85 >= 1.8): one more window at exp 2
        1.9,
        1.81,  # miss 2: halve (exp 1), p=2
        1.7,
        1.7,
        1.79,  # window of 3: 1.79 < 1.8 -> save, double (exp 2), p=1
        1.6,
        1.75,  # 1.75 < 1.79 -> save, exp 3
    ]
    decisions, policy = run(losses, phase1_patience=1)
    assert decisions == [
        (1, "save_best"),
        (1, "none"),
        (2, "save_best"),
        (2, "none"),
        (2, "none"),
        (2, "none"),
        (1, "none"),
        (1, "none"),
        (1, "none"),
        (2, "save_best"),
        (2, "none"),
        (3, "save_best"),
    ]
    assert policy.patience == 1 and policy.best == 1.75


def test_phase2_window_p_reading():
    # windows of p epochs: p=1 decides every epoch
    losses = PHASE2_START + [1.9, 1.95, 1.95, 1.8, 1.8, 1.85, 1.85]
    decisions, policy = run(losses, phase1_patience=1, window="p")
    assert decisions == [
        (1, "save_best"),
        (2, "save_best"),  # 1.9 < 2.0
        (2, "none"),  # miss 1
        (1, "none"),  # miss 2: halve, p=2
        (1, "none"),
        (2, "save_best"),  # window of 2 ends at 1.8 < 1.9
        (2, "none"),  # p=1: 1.85 miss 1
        (1, "none"),  # miss 2: halve
    ]
    assert policy.patience == 2


def test_phase2_nan_mid_window_restores_best_at_once():
    losses = PHASE2_START + [1.9, NAN, 1.95, 1.9, 1.85]
    decisions, policy = run(losses, phase1_patience=1)
    assert decisions == [
        (1, "save_best"),
        (1, "none"),
        (0, "restore_best"),  # NaN in the 2nd epoch of the window: restore, halve, p=2
        (0, "none"),
        (0, "none"),
        (1, "save_best"),  # a new window of 3 epochs
    ]
    assert policy.patience == 1


def test_phase2_rollback_restores_on_the_halving():
    losses = PHASE2_START + [2.1, 2.1, 2.1, 2.1]
    plain, _ = run(losses, phase1_patience=1)
    rolled, _ = run(losses, phase1_patience=1, rollback=True)
    assert plain[-1] == (0, "none")
    assert rolled[-1] == (0, "restore_best")
    assert plain[:-1] == rolled[:-1]


def test_section_4_1_walkthrough_halvings_without_improvement():
    # Section 4.1: without improvement AALR trains 2(p+1) epochs at each LR, then halves and
    # doubles p: the n-th halving falls 2^(n+1) + 2n - 2 epochs into phase 2 (4, 10, 20, 38).
    decisions, _ = run(PHASE2_START + [3.0] * 38, phase1_patience=1)
    phase2 = decisions[1:]
    halvings = [i + 1 for i in range(1, len(phase2)) if phase2[i][0] < phase2[i - 1][0]]
    assert halvings == [4, 10, 20, 38]
    assert [phase2[h - 1][0] for h in halvings] == [0, -1, -2, -3]


def test_section_4_1_cycle_three_of_seven_epochs():
    # "effective training for AALR is for 3 epochs out of the 7 epochs it spent": 2 + 2 epochs at
    # 2*rho (no improvement), halve, p=2, then 3 epochs that improve and double again.
    losses = PHASE2_START + [2.5, 2.5, 2.5, 2.5, 1.9, 1.8, 1.7]
    decisions, _ = run(losses, phase1_patience=1)
    assert [d[0] for d in decisions[1:]] == [1, 1, 1, 0, 0, 0, 1]
    assert decisions[-1] == (1, "save_best")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"phase1_patience": 0}, ValueError, r"phase1_patience must be >= 1, got 0"),
        ({"phase1_patience": 2.5}, TypeError, r"phase1_patience must be an int"),
        ({"window": "p+2"}, ValueError, r"window must be one of \('p\+1', 'p'\), got 'p\+2'"),
        ({"rollback": "yes"}, TypeError, r"rollback must be True or False, got 'yes'"),
        ({"restart_best": "best"}, ValueError, r"restart_best must be one of .*'best'"),
    ],
)
def test_config_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        AALRConfig(**kwargs)


@pytest.mark.parametrize(
    ("value", "error"), [(NAN, ValueError), (INF, ValueError), ("2.3", TypeError), (True, TypeError)]
)
def test_initial_loss_errors(value, error):
    with pytest.raises(error, match="initial_loss"):
        AALRPolicy(initial_loss=value)


def test_state_round_trip_continues_identically():
    losses = PHASE2_START + [1.9, 1.8, 1.9, 1.85, 1.9, NAN, 1.7, 1.6, 1.5]
    full, _ = run(losses, phase1_patience=1)
    first = AALRPolicy(initial_loss=2.3, config=AALRConfig(phase1_patience=1))
    head = [(d.lr_exponent, d.action) for d in (first.step(x) for x in losses[:5])]
    second = AALRPolicy()
    second.load_state_dict(first.state_dict())
    tail = [(d.lr_exponent, d.action) for d in (second.step(x) for x in losses[5:])]
    assert head + tail == full


# -- property tests against the independent reference ------------------------------------------

loss_values = st.one_of(
    st.floats(min_value=0.0, max_value=3.0, allow_nan=False),
    st.sampled_from([NAN, INF, -INF, 1.0, 1.5]),  # repeats make ties likely
)


@settings(max_examples=400, deadline=None)
@given(
    losses=st.lists(loss_values, max_size=80),
    initial=st.one_of(st.none(), st.floats(min_value=0.5, max_value=3.0)),
    patience1=st.integers(min_value=1, max_value=4),
    window=st.sampled_from(["p+1", "p"]),
    rollback=st.booleans(),
    phase1_failure=st.sampled_from(["restart", "rollback"]),
)
def test_policy_matches_reference(losses, initial, patience1, window, rollback, phase1_failure):
    options = dict(phase1_patience=patience1, window=window, rollback=rollback, phase1_failure=phase1_failure)
    expected = reference_decisions(losses, initial, **options)
    got, _ = run(losses, initial, **options)
    assert got == expected


@settings(max_examples=200, deadline=None)
@given(
    losses=st.lists(loss_values, max_size=80),
    rollback=st.booleans(),
    phase1_failure=st.sampled_from(["restart", "rollback"]),
)
def test_policy_invariants(losses, rollback, phase1_failure):
    config = AALRConfig(phase1_patience=3, rollback=rollback, phase1_failure=phase1_failure)
    policy = AALRPolicy(initial_loss=2.0, config=config)
    previous_patience = policy.patience
    previous_exponent = 0
    for loss in losses:
        phase = policy.phase
        decision = policy.step(loss)
        assert abs(decision.lr_exponent - previous_exponent) <= 1  # only doubling or halving
        p = policy.patience
        assert p >= 1 and p & (p - 1) == 0  # a power of two
        if decision.action == "save_best" and phase == 1 and policy.phase == 1:  # a stable epoch, saved
            assert phase1_failure == "rollback" and decision.lr_exponent == previous_exponent
        elif decision.action == "save_best":
            assert p == 1 and decision.lr_exponent == previous_exponent + 1
        if decision.action == "restore_best" and phase == 1:  # rollback out of phase 1
            assert phase1_failure == "rollback" and policy.phase == 2 and p == 2
            assert decision.lr_exponent == previous_exponent - 1
        elif decision.action == "restore_best":
            assert phase == 2 and decision.lr_exponent == previous_exponent - 1 and p == 2 * previous_patience
            assert (not math.isfinite(loss)) or rollback
        if decision.action == "restore_initial":
            assert phase == 1 and decision.lr_exponent == previous_exponent - 1
        if phase == 2 and decision.lr_exponent < previous_exponent and decision.action == "none":
            assert p == 2 * previous_patience and not rollback
        if policy.phase == 2 and policy.best is not None:
            assert math.isfinite(policy.best)
        previous_patience, previous_exponent = p, decision.lr_exponent


# -- AALR+: the budget-aware finish ------------------------------------------------------------


def test_finish_steps_by_hand():
    # budget 8: the finish starts after epoch ceil(0.75*8)=6, x0.01 from epoch ceil(0.9*8)=8 on
    losses = [*PHASE2_START, 1.9, 1.8, 1.9, 1.85, 1.9, 1.7, 1.6]
    policy = AALRPolicy(initial_loss=2.3, config=AALRConfig(phase1_patience=1, total_epochs=8))
    decisions = [policy.step(x) for x in losses]
    got = [(d.lr_exponent, d.action, d.lr_scale) for d in decisions]
    assert got == [
        (1, "save_best", 1.0),  # phase 1 done
        (1, "none", 1.0),
        (2, "save_best", 1.0),  # 1.8 < 2.0
        (2, "none", 1.0),
        (2, "none", 1.0),  # 1.85 >= 1.8: one more window
        (2, "restore_best", 0.1),  # epoch 6 = 75%: 1.9 is not better than 1.8 -> restore, x0.1
        (2, "save_best", 0.1),  # epoch 7, finishing: a better loss becomes the checkpoint; no doubling
        (2, "save_best", 0.01),  # epoch 8 = 90% of the budget: x0.01
    ]
    assert "AALR+ finish" in decisions[5].reason


def test_finish_steps_keeps_a_better_current_loss():
    losses = [*PHASE2_START, 1.9, 1.8, 1.7]
    policy = AALRPolicy(initial_loss=2.3, config=AALRConfig(phase1_patience=1, total_epochs=4))
    decisions = [policy.step(x) for x in losses]
    # epoch 3 = ceil(0.75*4): the window [1.9, 1.8] improved, so 1.8 is checkpointed and the doubling
    # taken back: the finish decays from the LR that improved
    assert (decisions[2].action, decisions[2].lr_exponent, decisions[2].lr_scale) == ("save_best", 1, 0.1)
    assert (decisions[3].action, decisions[3].lr_scale) == ("save_best", 0.01)


def test_finish_linear_by_hand():
    # budget 6: the finish starts once the window in progress would not end before epoch 6
    losses = [*PHASE2_START, 1.9, 1.8, 1.75, 1.7, 1.65, 1.6]
    policy = AALRPolicy(
        initial_loss=2.3, config=AALRConfig(phase1_patience=1, total_epochs=6, finish="linear")
    )
    decisions = [policy.step(x) for x in losses]
    # epoch 3: window [1.9, 1.8] improves; the next window would end at 5 <= 6: continue, doubled (exp 2)
    assert (decisions[2].action, decisions[2].lr_exponent, decisions[2].lr_scale) == ("save_best", 2, 1.0)
    # epoch 5: window [1.75, 1.7] improves; the next would end at 7 >= 6: finish, take back the doubling,
    # decay linearly: (6 - e) / (6 - 5 + 1) for the epochs after e
    assert (decisions[4].action, decisions[4].lr_exponent, decisions[4].lr_scale) == ("save_best", 2, 0.5)
    assert (decisions[5].action, decisions[5].lr_scale) == ("save_best", 0.0)


def test_finish_nan_restores_and_halves():
    losses = [*PHASE2_START, 1.9, 1.8, 2.0, NAN]
    policy = AALRPolicy(initial_loss=2.3, config=AALRConfig(phase1_patience=1, total_epochs=4))
    decisions = [policy.step(x) for x in losses]
    # epoch 3 (= ceil(0.75*4)) improved: the finish starts with a checkpoint and the doubling taken back
    assert (decisions[2].action, decisions[2].lr_exponent) == ("save_best", 1)
    assert decisions[3].action == "none"  # 2.0 is not better: nothing, no exploration
    assert (decisions[4].action, decisions[4].lr_exponent) == ("restore_best", 0)  # NaN: restore, halve


def test_finish_steps_starts_on_time_on_a_non_finite_epoch_with_a_checkpoint():
    # epoch 3 = ceil(0.75*4) is NaN in phase 2: the usual restore-and-halve, and the finish starts there
    policy = AALRPolicy(initial_loss=2.3, config=AALRConfig(phase1_patience=1, total_epochs=4))
    decisions = [policy.step(x) for x in [*PHASE2_START, 1.9, NAN]]
    assert (decisions[2].action, decisions[2].lr_exponent, decisions[2].lr_scale) == ("restore_best", 0, 0.1)
    assert policy.finish_epoch == 3 and "AALR+ finish" in decisions[2].reason
    assert policy.best == 2.0  # the restored checkpoint's loss
    decisions.append(policy.step(1.7))
    assert (decisions[3].action, decisions[3].lr_exponent, decisions[3].lr_scale) == ("save_best", 0, 0.01)


def test_finish_waits_for_a_finite_epoch_without_a_checkpoint():
    # phase 1 with restarts has no checkpoint: a NaN at the milestone restarts first; the next finite
    # epoch starts the finish (checkpointing the current weights)
    policy = AALRPolicy(initial_loss=2.3, config=AALRConfig(total_epochs=4))
    decisions = [policy.step(x) for x in [2.2, 2.1, NAN, 2.25]]
    assert (decisions[2].action, decisions[2].lr_scale) == ("restore_initial", 1.0)
    assert (decisions[3].action, decisions[3].lr_exponent, decisions[3].lr_scale) == ("save_best", -1, 0.01)
    assert policy.finish_epoch == 4 and policy.best == 2.25


def test_finish_linear_starts_in_phase1_when_phase1_would_outlast_the_budget():
    # budget 5, phase 1 needs 10 stable epochs: epoch 1 + 9 >= 5, so the decay starts at once
    config = AALRConfig(total_epochs=5, finish="linear", phase1_failure="rollback")
    policy = AALRPolicy(initial_loss=2.3, config=config)
    decisions = [policy.step(x) for x in [2.2, 2.1, 2.15, 2.0, 1.9]]
    assert policy.finish_epoch == 1 and policy.phase == 1
    assert [(d.action, d.lr_exponent, d.lr_scale) for d in decisions] == [
        ("save_best", 0, 0.8),  # (5 - 1) / (5 - 1 + 1)
        ("save_best", 0, 0.6),
        ("none", 0, 0.4),  # a rise in the finish is no phase-1 failure: no restart, no halving
        ("save_best", 0, 0.2),
        ("save_best", 0, 0.0),
    ]


@pytest.mark.parametrize("phase1_failure", ["restart", "rollback"])
def test_a_failed_first_epoch_restarts_before_the_finish(phase1_failure):
    # budget 5 < phase 1: the linear finish is due at epoch 1, but epoch 1 is worse than the initial
    # model (2.9 > 2.3) and nothing stable came before: restart first, finish from epoch 2
    config = AALRConfig(total_epochs=5, finish="linear", phase1_failure=phase1_failure)
    policy = AALRPolicy(initial_loss=2.3, config=config)
    first = policy.step(2.9)
    assert (first.action, first.lr_exponent, first.lr_scale) == ("restore_initial", -1, 1.0)
    assert policy.finish_epoch is None
    second = policy.step(2.2)
    assert policy.finish_epoch == 2 and second.action == "save_best" and policy.best == 2.2


def test_finish_linear_in_phase1_waits_while_phase1_fits_the_budget():
    config = AALRConfig(phase1_patience=3, total_epochs=8, finish="linear")
    policy = AALRPolicy(initial_loss=2.3, config=config)
    decisions = [policy.step(x) for x in [2.2, 2.1]]
    assert policy.finish_epoch is None and all(d.lr_scale == 1.0 for d in decisions)
    decisions.append(policy.step(2.4))  # a failure at epoch 3: restart; 3 more stable epochs end at 6 < 8
    assert policy.finish_epoch is None and decisions[-1].action == "restore_initial"
    decisions += [policy.step(x) for x in [2.2, 2.1]]  # epoch 5: 5 + 1 >= 8? no
    assert policy.finish_epoch is None
    decisions.append(policy.step(2.3))  # epoch 6 fails again: 6 + 3 >= 8, the finish starts
    assert policy.finish_epoch == 6 and decisions[-1].action == "save_best"


def test_finish_starts_in_phase1_with_a_checkpoint():
    policy = AALRPolicy(initial_loss=2.3, config=AALRConfig(total_epochs=4))
    decisions = [policy.step(x) for x in [2.2, 2.1, 2.0, 1.9]]
    assert decisions[2].action == "save_best" and decisions[2].lr_scale == 0.1
    assert policy.phase == 1 and policy.finish_epoch == 3


def test_finish_starting_on_a_saved_phase1_epoch_keeps_its_lr():
    # phase1_failure="rollback" saves stable phase-1 epochs without doubling: nothing to take back
    config = AALRConfig(total_epochs=4, phase1_failure="rollback")
    policy = AALRPolicy(initial_loss=2.3, config=config)
    decisions = [policy.step(x) for x in [2.2, 2.1, 2.0, 1.9]]
    assert [(d.lr_exponent, d.action) for d in decisions[:3]] == [(0, "save_best")] * 3
    assert decisions[2].lr_scale == 0.1 and policy.finish_epoch == 3


def test_finish_state_round_trip_mid_finish():
    losses = [*PHASE2_START, 1.9, 1.8, 1.9, 1.85, 1.9, 1.7, NAN, 1.6, 1.5]
    config = AALRConfig(phase1_patience=1, total_epochs=10, rollback=True)
    full = AALRPolicy(initial_loss=2.3, config=config)
    expected = [(d.lr_exponent, d.action, d.lr_scale) for d in (full.step(x) for x in losses)]
    first = AALRPolicy(initial_loss=2.3, config=config)
    head = [(d.lr_exponent, d.action, d.lr_scale) for d in (first.step(x) for x in losses[:9])]
    assert first.finish_epoch is not None  # the save happens inside the finish
    second = AALRPolicy()
    second.load_state_dict(first.state_dict())
    tail = [(d.lr_exponent, d.action, d.lr_scale) for d in (second.step(x) for x in losses[9:])]
    assert head + tail == expected


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"total_epochs": 0}, r"total_epochs must be None or an integer >= 1, got 0"),
        ({"total_epochs": 2.5}, r"total_epochs must be None or an integer >= 1, got 2.5"),
        ({"finish": "sine"}, r"finish must be one of \('steps', 'linear', 'cosine', 'none'\), got 'sine'"),
        ({"phase1_failure": "best"}, r"phase1_failure must be one of \('restart', 'rollback'\), got 'best'"),
    ],
)
def test_finish_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AALRConfig(**kwargs)


@settings(max_examples=300, deadline=None)
@given(
    losses=st.lists(loss_values, max_size=60),
    total=st.integers(min_value=1, max_value=60),
    finish=st.sampled_from(["steps", "linear", "cosine"]),
    phase1_failure=st.sampled_from(["restart", "rollback"]),
)
def test_finish_never_raises_the_lr_and_scale_decreases(losses, total, finish, phase1_failure):
    config = AALRConfig(phase1_patience=2, total_epochs=total, finish=finish, phase1_failure=phase1_failure)
    policy = AALRPolicy(initial_loss=2.0, config=config)
    previous_lr = None
    for loss in losses:
        exponent_before, phase_before, best_before = policy.lr_exponent, policy.phase, policy.best
        decision = policy.step(loss)
        lr = 2.0**decision.lr_exponent * decision.lr_scale
        assert 0.0 <= decision.lr_scale <= 1.0
        if policy.finish_epoch == policy.epoch:  # the finish decays from the LR that trained this epoch
            assert decision.lr_exponent <= exponent_before
            stable = math.isfinite(loss) and (best_before is None or loss <= best_before)
            if phase_before == 1 and stable:
                assert decision.lr_exponent == exponent_before
        if policy.finish_epoch is not None and policy.epoch > policy.finish_epoch and previous_lr is not None:
            assert lr <= previous_lr  # no more doubling once the finish has begun
            assert decision.action != "restore_initial"
        previous_lr = lr if policy.finish_epoch is not None else None


@pytest.mark.parametrize(
    ("config", "before"),
    [
        (AALRConfig(phase1_patience=3), [1.9]),  # phase 1: restart
        (AALRConfig(phase1_patience=3, phase1_failure="rollback"), [1.9]),  # phase 1: rollback
        (AALRConfig(phase1_patience=1), [1.9, 1.8]),  # phase 2
        (AALRConfig(phase1_patience=1, total_epochs=4), [1.9, 1.8, 1.7]),  # the finish
    ],
)
def test_a_diverged_round_acts_as_a_non_finite_loss_and_says_why(config, before):
    plain, diverging = (
        AALRPolicy(initial_loss=2.0, config=config),
        AALRPolicy(initial_loss=2.0, config=config),
    )
    for loss in before:
        plain.step(loss)
        diverging.step(loss)
    expected = plain.step(math.nan)
    got = diverging.step(1.5, diverged="spike: the loss jumped")
    assert (got.action, got.lr_exponent, got.lr_scale) == (
        expected.action,
        expected.lr_exponent,
        expected.lr_scale,
    )
    assert got.reason == expected.reason.replace("loss not finite", "spike: the loss jumped")
    assert "spike: the loss jumped" in got.reason
    assert plain.state_dict() == diverging.state_dict()


# -- candidate AALR+ rules (issue 16): rollback_on="collapse", ceiling ----------------------------
def drive(policy: AALRPolicy, windows: list[list[float]]) -> list[tuple[str, int]]:
    """Feed each window's losses; the (action, exponent) of each window's last decision."""
    out = []
    for window in windows:
        for loss in window:
            decision = policy.step(loss)
        out.append((decision.action, decision.lr_exponent))
    return out


# phase 1 ends after one epoch (9 < 10): phase 2 at k=1, p=1
CYCLE = [
    [9.0],
    [8.5, 8.0],  # improves: k=2
    [8.2, 8.1], [8.3, 8.2],  # two misses at k=2: halve to 1 (p=2)
    [7.9, 7.8, 7.7],  # improves
    [7.8, 7.75], [7.8, 7.75],  # two misses at k=2 again
    [7.6, 7.5, 7.4],  # improves
    [7.3, 7.2],  # improves
]  # fmt: skip


def test_ceiling_retries_an_lr_that_failed_twice_only_after_two_improving_windows():
    plain = drive(AALRPolicy(initial_loss=10.0, config=AALRConfig(phase1_patience=1)), CYCLE)
    capped = drive(AALRPolicy(initial_loss=10.0, config=AALRConfig(phase1_patience=1, ceiling=True)), CYCLE)
    assert [k for _, k in plain] == [1, 2, 2, 1, 2, 2, 1, 2, 3]
    # the same until k=2 has failed twice; then one improving window at k=1 is not enough
    assert [k for _, k in capped] == [1, 2, 2, 1, 2, 2, 1, 1, 2]
    assert capped[7] == ("save_best", 1)  # the improvement is still checkpointed


def test_ceiling_waits_twice_as_long_after_each_further_failure_and_resets_on_a_miss():
    policy = AALRPolicy(initial_loss=10.0, config=AALRConfig(phase1_patience=1, ceiling=True))
    drive(policy, CYCLE[:7])  # k=2 has failed twice: k=1, p=2
    assert (policy.ceiling_exponent, policy.ceiling_failures) == (2, 2)
    drive(policy, [[7.6, 7.5, 7.4]])  # 1 of 2
    drive(policy, [[7.45, 7.41], [7.45, 7.41]])  # two misses at k=1: halve from 1, a new ceiling
    assert (policy.lr_exponent, policy.ceiling_exponent, policy.ceiling_failures) == (0, 1, 1)
    state = policy.state_dict()
    again = AALRPolicy(initial_loss=10.0)
    again.load_state_dict(state)
    assert again.state_dict() == state


def test_old_states_without_the_ceiling_load_as_no_ceiling():
    policy = AALRPolicy(initial_loss=10.0, config=AALRConfig(phase1_patience=1))
    drive(policy, CYCLE[:3])
    state = policy.state_dict()
    for key in ("ceiling_exponent", "ceiling_failures", "ceiling_wins"):
        del state[key]
    again = AALRPolicy(initial_loss=10.0)
    again.load_state_dict(state)
    assert (again.ceiling_exponent, again.ceiling_failures, again.ceiling_wins) == (None, 0, 0)
    with pytest.raises(ValueError, match="ceiling_failures must be an int >= 0"):
        again.load_state_dict({**policy.state_dict(), "ceiling_failures": -1})


@pytest.mark.parametrize(("miss", "restored"), [(8.2, False), (9.5, True)])
def test_rollback_on_collapse_restores_only_a_loss_nearer_the_initial_one(miss, restored):
    config = AALRConfig(phase1_patience=1, rollback=True, rollback_on="collapse")
    policy = AALRPolicy(initial_loss=10.0, config=config)
    drive(policy, CYCLE[:2])  # best 8.0, k=2; the midpoint of 8 and 10 is 9
    (_, _), (action, k) = drive(policy, [[miss, miss], [miss, miss]])
    assert (action, k) == ("restore_best" if restored else "none", 1)
    always = AALRPolicy(initial_loss=10.0, config=AALRConfig(phase1_patience=1, rollback=True))
    drive(always, CYCLE[:2])
    assert drive(always, [[miss, miss], [miss, miss]])[1] == ("restore_best", 1)


def test_the_new_rules_refuse_bad_values():
    with pytest.raises(ValueError, match="rollback_on must be one of"):
        AALRConfig(rollback_on="spike")
    with pytest.raises(TypeError, match="ceiling must be True or False"):
        AALRConfig(ceiling=1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("total", "share", "patience", "expected"),
    [
        (8, 0.25, 10, 2),
        (15, 0.25, 10, 3),
        (30, 0.25, 10, 7),
        (60, 0.25, 10, 10),  # capped by the patience
        (3, 0.25, 10, 1),  # at least one stable epoch
        (10, 0.3, 10, 3),  # 10 * 0.3 is 2.9999999999999996 in floats
        (None, 0.25, 10, 10),  # no budget: the patience
        (8, None, 10, 10),  # no share: the patience
        (40, 0.5, 4, 4),
    ],
)
def test_phase1_share_ties_phase1_to_the_budget(total, share, patience, expected):
    config = AALRConfig(total_epochs=total, phase1_share=share, phase1_patience=patience)
    assert config.phase1_epochs == expected


def test_phase1_share_ends_phase1_early_by_hand():
    # budget 8, a quarter: 2 stable epochs end phase 1; then phase 2's first window at 2x
    decisions, policy = run(
        [2.2, 2.1, 2.0, 1.9], total_epochs=8, phase1_share=0.25, phase1_failure="rollback"
    )
    assert decisions == [(0, "save_best"), (1, "save_best"), (1, "none"), (2, "save_best")]
    assert policy.phase == 2
    first = AALRPolicy(initial_loss=2.3, config=AALRConfig(total_epochs=8, phase1_share=0.25))
    assert first.step(2.2).reason == "phase 1: stable epoch 1/2"
    assert first.step(2.1).reason.startswith("phase 1 done after 2 stable epochs")


def test_phase1_share_moves_the_linear_finish_in_phase1():
    # budget 10, phase 1 of 10 epochs: the linear finish starts at once (see the test above it); with a
    # share of 0.5, phase 1 needs 5 epochs, which end before the budget: no finish yet
    losses = [2.2, 2.1]
    _, plain = run(losses, total_epochs=10, finish="linear", phase1_failure="rollback")
    _, shared = run(losses, total_epochs=10, finish="linear", phase1_failure="rollback", phase1_share=0.5)
    assert plain.finish_epoch == 1 and shared.finish_epoch is None


@pytest.mark.parametrize(
    ("share", "error", "match"),
    [
        (0.0, ValueError, r"phase1_share must be None or in \(0, 1\], got 0.0"),
        (1.5, ValueError, r"phase1_share must be None or in \(0, 1\], got 1.5"),
        (NAN, ValueError, r"phase1_share must be None or in \(0, 1\], got nan"),
        ("0.25", TypeError, r"phase1_share must be None or a number in \(0, 1\], got '0.25'"),
        (True, TypeError, r"phase1_share must be None or a number"),
    ],
)
def test_phase1_share_refuses_bad_values(share, error, match):
    with pytest.raises(error, match=match):
        AALRConfig(phase1_share=share)


def test_finish_cosine_by_hand():
    # budget 8: the finish starts at epoch 4 (half); the 4 epochs left follow a cosine to zero
    config = AALRConfig(total_epochs=8, finish="cosine", phase1_failure="rollback", rollback=True)
    policy = AALRPolicy(initial_loss=2.3, config=config)
    decisions = [policy.step(x) for x in [2.2, 2.1, 2.0, 1.9, 1.8, 1.7, 1.6, 1.5]]
    assert policy.finish_epoch == 4
    assert [round(d.lr_scale, 4) for d in decisions] == [1.0, 1.0, 1.0, 0.9045, 0.6545, 0.3455, 0.0955, 0.0]
    assert decisions[3].reason == "AALR+ finish (cosine) at epoch 4/8: this epoch improved; checkpoint"


def test_finish_cosine_decays_from_the_lr_that_trained_the_restored_checkpoint():
    # patience 1: epoch 1 ends phase 1 and doubles (k=1); the window at k=1 misses; the finish (epoch 4)
    # restores the epoch-1 checkpoint, trained at k=0: the decay starts there, not at the doubled LR
    config = AALRConfig(total_epochs=8, finish="cosine", phase1_patience=1, rollback=True)
    policy = AALRPolicy(initial_loss=2.3, config=config)
    decisions = [policy.step(x) for x in [2.2, 2.5, 2.5, 2.5]]
    assert [(d.action, d.lr_exponent) for d in decisions] == [
        ("save_best", 1), ("none", 1), ("none", 1), ("restore_best", 0),
    ]  # fmt: skip
    assert policy.best_exponent == 0 and decisions[-1].lr_scale == pytest.approx(0.9045, abs=1e-4)
    steps = AALRPolicy(initial_loss=2.3, config=AALRConfig(total_epochs=4, phase1_patience=1, rollback=True))
    assert [steps.step(x).lr_exponent for x in [2.2, 2.5, 2.5]][-1] == 1  # "steps" keeps its exponent


def test_best_exponent_round_trips_and_old_states_load_without_it():
    policy = AALRPolicy(initial_loss=2.3, config=AALRConfig(phase1_failure="rollback"))
    policy.step(2.2)
    state = policy.state_dict()
    assert state["best_exponent"] == 0
    other = AALRPolicy(initial_loss=2.3)
    other.load_state_dict({k: v for k, v in state.items() if k != "best_exponent"})
    assert other.best_exponent is None
    with pytest.raises(ValueError, match=r"best_exponent must be None or an int, got 0.5"):
        other.load_state_dict({**state, "best_exponent": 0.5})
