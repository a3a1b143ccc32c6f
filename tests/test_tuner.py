"""The tuner: acting on decisions (restores, LRs), state, resume equivalence, errors."""

from __future__ import annotations

import argparse
import gc
import io
import json
import logging
import math

import numpy as np
import pytest
import torch
from torch import nn

import aalr
from aalr import AALR

NAN = float("nan")


def tiny_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


def data(seed: int = 1, n: int = 32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


def train_epoch(model, optimizer, x, y, batches: int = 2) -> float:
    model.train()
    losses = []
    for xb, yb in zip(x.chunk(batches), y.chunk(batches), strict=True):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return float(np.mean(losses))


def params(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def optimizer_tensors(optimizer) -> list[torch.Tensor]:
    return [t for state in optimizer.state.values() for t in state.values() if isinstance(t, torch.Tensor)]


OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=5e-4),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=1e-2),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_scripted_losses_drive_lr_and_restores(name):
    model = tiny_model()
    optimizer = OPTIMIZERS[name](model.parameters())
    eta0 = optimizer.param_groups[0]["lr"]
    tuner = AALR(model, optimizer, initial_loss=2.0, phase1_patience=1)
    x, y = data()
    lrs = []
    for scripted in [1.9, 1.8, 1.7, NAN, 1.6]:
        lrs.append(optimizer.param_groups[0]["lr"])
        train_epoch(model, optimizer, x, y)
        tuner.step(scripted)
    # 1.9 ends phase 1 (x2); window [1.8, 1.7] improves (x2); NaN restores best and halves
    assert lrs == [eta0, 2 * eta0, 2 * eta0, 4 * eta0, 2 * eta0]
    assert [r["action"] for r in tuner.history] == ["save_best", "none", "save_best", "restore_best", "none"]
    assert tuner.lr == optimizer.param_groups[0]["lr"] == 2 * eta0


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_restore_best_is_exact_and_repeatable(name):
    model = tiny_model()
    optimizer = OPTIMIZERS[name](model.parameters())
    tuner = AALR(model, optimizer, initial_loss=2.0, phase1_patience=1)
    x, y = data()
    train_epoch(model, optimizer, x, y)
    tuner.step(1.0)  # phase 1 done: the best checkpoint is taken here
    best_model = params(model)
    best_opt = [t.clone() for t in optimizer_tensors(optimizer)]
    assert best_opt, "the optimizer should have state after an epoch"
    for _ in range(2):  # train away, then NaN -> restore; twice from the same snapshot
        train_epoch(model, optimizer, x, y)
        assert not torch.equal(params(model)["0.weight"], best_model["0.weight"])
        tuner.step(NAN)
        assert_same_state(params(model), best_model)
        for live, saved in zip(optimizer_tensors(optimizer), best_opt, strict=True):
            assert torch.equal(live, saved)
    # restored tensors share no storage with the snapshot
    snapshot = tuner.snapshots.get("best")
    live_ptrs = {t.data_ptr() for t in list(model.state_dict().values()) + optimizer_tensors(optimizer)}
    snap_ptrs = {t.data_ptr() for t in snapshot["model"].values()}
    snap_ptrs |= {
        t.data_ptr()
        for s in snapshot["optimizer"]["state"].values()
        for t in s.values()
        if isinstance(t, torch.Tensor)
    }
    assert not live_ptrs & snap_ptrs


def test_phase1_restart_restores_initial_weights_and_fresh_optimizer():
    model = tiny_model()
    initial = params(model)
    optimizer = OPTIMIZERS["sgd"](model.parameters())
    tuner = AALR(model, optimizer, initial_loss=2.0, rules="paper")
    x, y = data()
    train_epoch(model, optimizer, x, y)
    tuner.step(1.5)
    train_epoch(model, optimizer, x, y)
    assert optimizer.state  # momentum buffers exist
    record = tuner.step(2.5)  # above L*=1.5: restart
    assert record["action"] == "restore_initial"
    assert_same_state(params(model), initial)
    assert not optimizer.state  # no momentum
    assert optimizer.param_groups[0]["lr"] == 0.05
    assert tuner.best_loss == 2.0
    assert "initial" in tuner.snapshots.names()


def test_phase1_rollback_restores_the_last_stable_epoch_exactly():
    model = tiny_model()
    optimizer = OPTIMIZERS["sgd"](model.parameters())
    tuner = AALR(model, optimizer, initial_loss=2.0, phase1_patience=5, phase1_failure="rollback")
    x, y = data()
    train_epoch(model, optimizer, x, y)
    assert tuner.step(1.5)["action"] == "save_best"
    assert tuner.snapshots.names() == ["best"]  # the restart point is freed: one snapshot at a time
    saved_weights, saved_momentum = params(model), [t.clone() for t in optimizer_tensors(optimizer)]
    train_epoch(model, optimizer, x, y)
    record = tuner.step(1.7)  # above L*=1.5: back to epoch 1, half the LR, phase 2 with p=2
    assert (record["action"], tuner.phase, tuner.patience, tuner.best_loss) == ("restore_best", 2, 2, 1.5)
    assert_same_state(params(model), saved_weights)
    assert all(torch.equal(a, b) for a, b in zip(optimizer_tensors(optimizer), saved_momentum, strict=True))
    assert optimizer.param_groups[0]["lr"] == 0.05


@pytest.mark.parametrize("resume_at", [1, 3])
def test_resume_equivalence_with_phase1_rollback(tmp_path, resume_at):
    scripted = {0: 1.1, 1: 5.0, 8: NAN}  # epoch 1 rolls phase 1 back; the NaN restores again in phase 2
    options = {"phase1_failure": "rollback", "rollback": True, "total_epochs": 12}
    lrs, weights, tuner = run_training(12, scripted, **options)
    actions = [r["action"] for r in tuner.history]
    assert actions[1] == "restore_best" and tuner.history[1]["phase"] == 1 and "restore_best" in actions[3:]
    lrs2, weights2, tuner2 = run_training(12, scripted, resume_at=resume_at, tmp_path=tmp_path, **options)
    assert lrs2 == lrs
    assert_same_state(weights2, weights)
    assert [r["action"] for r in tuner2.history] == actions


def test_initial_snapshot_freed_in_phase2():
    model = tiny_model()
    tuner = AALR(
        model, OPTIMIZERS["sgd"](model.parameters()), initial_loss=2.0, phase1_patience=2, rules="paper"
    )
    tuner.step(1.9)
    assert tuner.snapshots.names() == ["initial"]
    tuner.step(1.8)
    assert tuner.snapshots.names() == ["best"]


def test_two_param_groups_keep_their_ratio():
    model = tiny_model()
    optimizer = torch.optim.SGD(
        [{"params": model[0].parameters()}, {"params": model[3].parameters(), "lr": 0.025}], lr=0.1
    )
    tuner = AALR(model, optimizer, initial_loss=2.0, phase1_patience=1)
    for loss in [1.0, 0.9, 0.8, NAN]:
        tuner.step(loss)
        lr0, lr1 = (g["lr"] for g in optimizer.param_groups)
        assert lr1 == lr0 / 4  # exact: both are their start times the same power of two
    assert optimizer.param_groups[0]["lr"] == 0.2


def test_each_group_lr_is_exactly_its_own_start_times_a_power_of_two():
    # lr0 * (0.3 / 0.1) would give 0.30000000000000004; each group's own start gives 0.3 itself
    model = tiny_model()
    optimizer = torch.optim.SGD(
        [{"params": model[0].parameters()}, {"params": model[3].parameters(), "lr": 0.3}], lr=0.1
    )
    tuner = AALR(model, optimizer, initial_loss=2.0, phase1_patience=1)
    seen = []
    for loss in [1.0, 0.9, 0.8, NAN, NAN]:  # double, double (window), then halve twice
        tuner.step(loss)
        k = tuner.policy.lr_exponent
        assert [g["lr"] for g in optimizer.param_groups] == [math.ldexp(0.1, k), math.ldexp(0.3, k)]
        seen.append(k)
    assert seen == [1, 1, 2, 1, 0] and optimizer.param_groups[1]["lr"] == 0.3
    assert tuner.lr_ratios == [1.0, 0.3 / 0.1]
    state = tuner.state_dict()
    assert state["group_eta0"] == [0.1, 0.3] and "eta0" not in state and "lr_ratios" not in state
    # a state saved before group_eta0 existed kept eta0 and the ratios
    old = {**{k: v for k, v in state.items() if k != "group_eta0"}, "eta0": 0.1, "lr_ratios": [1.0, 3.0]}
    other = AALR(model, optimizer, initial_loss=2.0, phase1_patience=1)
    other.load_state_dict(old)
    assert other.group_eta0 == pytest.approx([0.1, 0.3], rel=1e-15)
    rule = r"group_eta0 .* must be a list of finite numbers >= 0, the first > 0, got "
    cases = {
        "[0.0, 5.0]": rule + r"\[0.0, 5.0\]",
        "[0.1, -1.0]": rule + r"\[0.1, -1.0\]",
        "[0.1]": r"AALR state has 1 param groups, the optimizer has 2",
    }
    for bad, match in cases.items():
        with pytest.raises(ValueError, match=match):
            other.load_state_dict({**state, "group_eta0": json.loads(bad)})
    with pytest.raises(ValueError, match=r"missing keys \['group_eta0'\]"):
        other.load_state_dict({k: v for k, v in state.items() if k != "group_eta0"})
    assert other.group_eta0 == pytest.approx([0.1, 0.3], rel=1e-15)  # nothing changed


def test_a_param_group_added_later_is_refused_before_anything_changes():
    model = tiny_model()
    optimizer = torch.optim.SGD(model[0].parameters(), lr=0.1)
    tuner = AALR(model, optimizer, initial_loss=2.0, phase1_patience=1)
    optimizer.add_param_group({"params": model[3].parameters()})
    with pytest.raises(ValueError, match="has 2 param groups, but the tuner was made for 1"):
        tuner.step(1.0)
    assert tuner.policy.epoch == 0 and tuner.history == []


def test_a_state_that_has_a_checkpoint_must_carry_it():
    # the AALR+ finish started in phase 1 (it checkpoints there): a state without 'best' is refused
    model = tiny_model()
    tuner = AALR(model, torch.optim.SGD(model.parameters(), lr=0.1), initial_loss=2.0, total_epochs=4)
    for loss in [1.9, 1.8]:  # epoch 2 = half of 4: the (cosine) finish starts, still in phase 1
        tuner.step(loss)
    assert tuner.phase == 1 and tuner.policy.finish_epoch == 2
    state = tuner.state_dict()
    with pytest.raises(ValueError, match=r"a checkpoint was taken .* but the state has no 'best' snapshot"):
        tuner.load_state_dict({**state, "snapshots": {}})


def test_lr_is_always_eta0_times_power_of_two():
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.3)
    tuner = AALR(model, optimizer, initial_loss=2.0, phase1_patience=2)
    rng = np.random.default_rng(0)
    for _ in range(60):
        tuner.step(float(rng.choice([NAN, 2.5, 1.0, 0.5, 0.1])) * rng.uniform(0.9, 1.1))
        mantissa, _ = math.frexp(optimizer.param_groups[0]["lr"] / 0.3)
        assert mantissa == 0.5


def test_step_accepts_numbers_and_0d_tensors():
    model = tiny_model()
    tuner = AALR(model, OPTIMIZERS["sgd"](model.parameters()), initial_loss=torch.tensor(2.0))
    for loss in [1.9, 1, torch.tensor(1.0), np.float32(0.9), torch.tensor(0.8, dtype=torch.float64)]:
        tuner.step(loss)
    assert tuner.history[-1]["loss"] == pytest.approx(0.8)


@pytest.mark.parametrize(
    ("loss", "error", "match"),
    [
        ("1.0", TypeError, r"loss must be a float, an int or a 0-d tensor, got str: '1.0'"),
        (True, TypeError, r"got bool"),
        (None, TypeError, r"got NoneType"),
        (torch.tensor([1.0, 2.0]), ValueError, r"0-d tensor .* shape \(2,\)"),
        ([1.0], TypeError, r"got list"),
        (10**400, ValueError, r"loss must fit in a float, got an int of 401 digits"),
    ],
)
def test_step_rejects_bad_losses(loss, error, match):
    model = tiny_model()
    tuner = AALR(model, OPTIMIZERS["sgd"](model.parameters()))
    with pytest.raises(error, match=match):
        tuner.step(loss)
    assert tuner.epoch == 0 and not tuner.history  # nothing was lost or changed


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (
            lambda m: AALR("model", torch.optim.SGD(m.parameters(), lr=0.1)),
            TypeError,
            "model must be a torch.nn.Module",
        ),
        (lambda m: AALR(m, object()), TypeError, "optimizer must be a torch.optim.Optimizer"),
        (
            lambda m: AALR(m, torch.optim.SGD(m.parameters(), lr=0.0)),
            ValueError,
            r"eta0 and must be > 0, got 0.0",
        ),
        (
            lambda m: AALR(m, torch.optim.SGD(m.parameters(), lr=0.1), initial_loss=float("nan")),
            ValueError,
            "initial_loss must be finite",
        ),
        (
            lambda m: AALR(m, torch.optim.SGD(m.parameters(), lr=0.1), window="epoch"),
            ValueError,
            "window must be one of",
        ),
        (
            lambda m: AALR(m, torch.optim.SGD(m.parameters(), lr=0.1), phase1_patience=-1),
            ValueError,
            "phase1_patience must be >= 1, got -1",
        ),
        (
            lambda m: AALR(m, torch.optim.SGD(m.parameters(), lr=0.1), initial_loss="2"),
            TypeError,
            "initial_loss",
        ),
        (
            lambda m: AALR(m, torch.optim.SGD(m.parameters(), lr=0.1), sync_distributed=1),
            TypeError,
            "sync_distributed",
        ),
    ],
)
def test_constructor_errors(make, error, match):
    with pytest.raises(error, match=match):
        make(tiny_model())


def test_no_param_groups_error():
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    optimizer.param_groups.clear()
    with pytest.raises(ValueError, match="no param groups"):
        AALR(model, optimizer)


def test_negative_group_lr_error():
    model = tiny_model()
    optimizer = torch.optim.SGD(
        [{"params": model[0].parameters()}, {"params": model[3].parameters()}], lr=0.1
    )
    optimizer.param_groups[1]["lr"] = -1.0
    with pytest.raises(ValueError, match=r"param group 1 has LR -1.0"):
        AALR(model, optimizer)


def test_every_decision_is_logged_with_its_reason(caplog):
    model = tiny_model()
    tuner = AALR(model, OPTIMIZERS["sgd"](model.parameters()), initial_loss=2.0, phase1_patience=1)
    with caplog.at_level(logging.INFO, logger="aalr"):
        tuner.step(1.5)
        tuner.step(NAN)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "phase 1 done" in messages[0] and "not finite" in messages[1]
    assert [r["reason"] for r in tuner.history] == [
        m.split(", ", 1)[1].rsplit(" (lr", 1)[0] for m in messages
    ]


def save_load(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_state_dict_is_weights_only_loadable_and_plain():
    model = tiny_model()
    optimizer = OPTIMIZERS["adam"](model.parameters())
    tuner = AALR(model, optimizer, initial_loss=2.0, phase1_patience=1)
    x, y = data()
    train_epoch(model, optimizer, x, y)
    tuner.step(1.0)
    tuner.step(NAN)
    state = save_load(tuner.state_dict())
    assert state["policy"]["lr_exponent"] == 0 and state["history"][1]["action"] == "restore_best"
    assert set(state["snapshots"]) == {"best"}


def run_training(
    epochs, scripted, *, resume_at=None, tmp_path=None, rollback=False, snapshot_dir=None, **extra
):
    """Train for real; feed the tuner the real loss, or a scripted one where given (NaN forces restores)."""
    model = tiny_model()
    optimizer = OPTIMIZERS["sgd"](model.parameters())
    tuner = AALR(
        model,
        optimizer,
        initial_loss=1.2,
        phase1_patience=2,
        rollback=rollback,
        snapshot_dir=snapshot_dir,
        **extra,
    )
    x, y = data()
    lrs = []
    for epoch in range(epochs):
        if resume_at is not None and epoch == resume_at:
            torch.save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "tuner": tuner.state_dict(),
                },
                tmp_path / "ckpt.pt",
            )
            model = tiny_model(seed=99)  # fresh objects, different weights
            optimizer = OPTIMIZERS["sgd"](model.parameters())
            tuner = AALR(
                model,
                optimizer,
                initial_loss=5.0,
                phase1_patience=2,
                rollback=rollback,
                snapshot_dir=snapshot_dir,
                **extra,
            )
            ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=True)
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            tuner.load_state_dict(ckpt["tuner"])
        lrs.append(optimizer.param_groups[0]["lr"])
        loss = train_epoch(model, optimizer, x, y)
        tuner.step(scripted.get(epoch, loss))
    return lrs, params(model), tuner


@pytest.mark.parametrize("rollback", [False, True])
@pytest.mark.parametrize("resume_at", [1, 3, 6])
def test_resume_equivalence_including_restores_after_resume(tmp_path, resume_at, rollback):
    scripted = {0: 1.1, 1: 1.0, 5: NAN, 8: 5.0, 9: 5.0, 10: 5.0, 11: 5.0, 12: NAN}
    lrs, weights, tuner = run_training(14, scripted, rollback=rollback)
    actions = [r["action"] for r in tuner.history]
    assert "restore_best" in actions[resume_at:]  # a restore happens after the resume point
    lrs2, weights2, tuner2 = run_training(
        14, scripted, resume_at=resume_at, tmp_path=tmp_path, rollback=rollback
    )
    assert lrs2 == lrs
    assert_same_state(weights2, weights)
    assert [r["action"] for r in tuner2.history] == actions


def test_directory_snapshots_behave_like_memory(tmp_path):
    scripted = {0: 1.1, 1: 1.0, 5: NAN, 9: NAN}
    lrs, weights, _ = run_training(12, scripted)
    lrs2, weights2, tuner = run_training(12, scripted, snapshot_dir=tmp_path / "snaps")
    assert lrs2 == lrs
    assert_same_state(weights2, weights)
    assert sorted(p.name for p in tuner.snapshots.directory.glob("*.pt")) == ["best.pt"]
    assert tuner.snapshots.directory.parent == tmp_path / "snaps"
    assert tuner.snapshot_nbytes() > 0


def test_directory_snapshot_refuses_pickled_objects(tmp_path):
    model = tiny_model()
    tuner = AALR(model, OPTIMIZERS["sgd"](model.parameters()), snapshot_dir=tmp_path)

    torch.save(
        {"model": argparse.Namespace(lr=0.1), "optimizer": {}}, tuner.snapshots.directory / "initial.pt"
    )
    with pytest.raises(ValueError, match=r"initial.pt.*cannot be read safely"):
        tuner.snapshots.get("initial")


def test_load_state_dict_errors():
    model = tiny_model()
    tuner = AALR(model, OPTIMIZERS["sgd"](model.parameters()))
    with pytest.raises(TypeError, match="AALR state must be a dict"):
        tuner.load_state_dict([1])
    state = tuner.state_dict()
    with pytest.raises(ValueError, match="format 99"):
        tuner.load_state_dict({**state, "format": 99})
    with pytest.raises(ValueError, match="2 param groups, the optimizer has 1"):
        tuner.load_state_dict({**state, "group_eta0": [0.1, 0.05]})


def test_public_api():
    assert aalr.__version__
    assert {"AALR", "AALRConfig", "AALRPolicy"} <= set(aalr.__all__)


def test_best_snapshot_buffers_are_reused_and_updated():
    model = tiny_model()
    optimizer = OPTIMIZERS["sgd"](model.parameters())
    tuner = AALR(model, optimizer, initial_loss=2.0, phase1_patience=1)
    x, y = data()
    train_epoch(model, optimizer, x, y)
    tuner.step(1.0)  # first best snapshot
    first = tuner.snapshots.get("best")["model"]["0.weight"]
    pointer = first.data_ptr()
    for loss in (0.9, 0.8):  # a window of 2 epochs that improves: a new best snapshot
        train_epoch(model, optimizer, x, y)
        tuner.step(loss)
    assert tuner.history[-1]["action"] == "save_best"
    second = tuner.snapshots.get("best")["model"]["0.weight"]
    assert second.data_ptr() == pointer  # no new allocation
    assert torch.equal(second, model.state_dict()["0.weight"])  # but the new values
    assert second.data_ptr() != model.state_dict()["0.weight"].data_ptr()


@pytest.mark.parametrize("finish", ["steps", "linear"])
def test_resume_in_the_middle_of_the_aalr_plus_finish(tmp_path, finish):
    scripted = {0: 1.1, 1: 1.0, 12: NAN}
    lrs, weights, tuner = run_training(16, scripted, rollback=True, total_epochs=16, finish=finish)
    start = tuner.policy.finish_epoch
    assert start is not None and start <= 14
    assert lrs[-1] < lrs[start - 1]  # the finish lowered the LR
    lrs2, weights2, _ = run_training(
        16, scripted, resume_at=start + 1, tmp_path=tmp_path, rollback=True, total_epochs=16, finish=finish
    )
    assert lrs2 == lrs
    assert_same_state(weights2, weights)


def test_directory_snapshots_leave_other_files_alone(tmp_path):
    # the folder may hold the user's own checkpoints (even pickled ones): never read, listed or deleted
    model = tiny_model()
    optimizer = OPTIMIZERS["sgd"](model.parameters())
    tuner = AALR(model, optimizer, initial_loss=2.0, snapshot_dir=tmp_path)
    torch.save({"model": model.state_dict()}, tmp_path / "ckpt.pt")
    torch.save({"args": argparse.Namespace(lr=0.1)}, tmp_path / "args.pt")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, tmp_path / "best.pt")
    assert tuner.snapshots.names() == ["initial"]  # a stale best.pt of an earlier run is not ours
    state = tuner.state_dict()
    assert sorted(state["snapshots"]) == ["initial"]
    fresh = AALR(model, optimizer, snapshot_dir=tmp_path)
    fresh.load_state_dict(state)
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["args.pt", "best.pt", "ckpt.pt"]


def _tuner_facts(tuner: AALR) -> tuple:
    return (tuner.phase, tuner.epoch, tuner.best_loss, tuner.lr, tuner.snapshots.names(), len(tuner.history))


def _bad_states(good: dict) -> dict[str, tuple[dict, str]]:
    other = nn.Sequential(nn.Linear(4, 9), nn.BatchNorm1d(9), nn.ReLU(), nn.Linear(9, 3))
    other_tuner = AALR(other, OPTIMIZERS["sgd"](other.parameters()), initial_loss=2.0, phase1_patience=1)
    other_tuner.step(1.5)
    return {
        "no snapshots": (
            {k: v for k, v in good.items() if k != "snapshots"},
            r"missing keys \['snapshots'\]",
        ),
        "eta0": (  # a state in the format from before group_eta0
            {**{k: v for k, v in good.items() if k != "group_eta0"}, "eta0": "x", "lr_ratios": [1.0]},
            r"eta0 must be a finite number > 0, got 'x'",
        ),
        "history": ({**good, "history": None}, "history must be a list of dicts"),
        "phase": ({**good, "policy": {**good["policy"], "phase": 7}}, "phase must be 1 or 2, got 7"),
        "patience": (
            {**good, "policy": {**good["policy"], "patience": 3}},
            "patience must be a power of two",
        ),
        "exponent": (
            {**good, "policy": {**good["policy"], "lr_exponent": 0.5}},
            "lr_exponent must be an int",
        ),
        "other model": (
            other_tuner.state_dict(),
            r"snapshot 'best' is of another model: '0.weight' has shape",
        ),
        "no best in phase 2": ({**good, "snapshots": {}}, "phase 2, but the state has no 'best' snapshot"),
    }


@pytest.mark.parametrize(
    "case",
    ["no snapshots", "eta0", "history", "phase", "patience", "exponent", "other model", "no best in phase 2"],
)
def test_a_refused_state_changes_nothing(case):
    model = tiny_model()
    tuner = AALR(model, OPTIMIZERS["sgd"](model.parameters()), initial_loss=2.0, phase1_patience=1)
    tuner.step(1.5)  # phase 2, a best snapshot
    good = tuner.state_dict()
    target_model = tiny_model()
    target = AALR(
        target_model, OPTIMIZERS["sgd"](target_model.parameters()), initial_loss=2.0, phase1_patience=1
    )
    for loss in (1.9, 1.8):
        target.step(loss)
    before, weights = _tuner_facts(target), params(target_model)
    bad, match = _bad_states(good)[case]
    with pytest.raises(ValueError, match=match):
        target.load_state_dict(bad)
    assert _tuner_facts(target) == before
    assert_same_state(params(target_model), weights)
    target.load_state_dict(good)  # and the good state still loads
    assert (target.phase, target.epoch) == (2, 1)


def test_a_step_whose_restore_fails_leaves_the_tuner_as_it_was(tmp_path):
    model = tiny_model()
    optimizer = OPTIMIZERS["sgd"](model.parameters())
    tuner = AALR(model, optimizer, initial_loss=2.0, phase1_patience=1, snapshot_dir=tmp_path)
    tuner.step(1.5)
    best = tuner.snapshots.directory / "best.pt"
    good_bytes = best.read_bytes()
    best.write_bytes(b"truncated")
    before = (*_tuner_facts(tuner), tuner.patience, optimizer.param_groups[0]["lr"])
    with pytest.raises(ValueError, match=r"best\.pt"):
        tuner.step(NAN)  # wants to restore the (now unreadable) best snapshot
    assert (*_tuner_facts(tuner), tuner.patience, optimizer.param_groups[0]["lr"]) == before
    best.write_bytes(good_bytes)  # once the cause is mended, the same step works
    record = tuner.step(NAN)
    assert (record["epoch"], record["action"], tuner.patience) == (2, "restore_best", 2)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1)


def test_finish_from_a_failed_phase1_epoch_keeps_only_its_checkpoint():
    model = tiny_model()
    tuner = AALR(
        model,
        OPTIMIZERS["sgd"](model.parameters()),
        initial_loss=2.3,
        total_epochs=4,
        rules="paper",
        finish="steps",
    )
    records = [tuner.step(loss) for loss in (2.2, 2.1, 2.5, 2.4)]
    # epoch 3 (the finish) checkpoints the current weights, whose loss is 2.5: L* is 2.5, not the 2.3 that
    # the restart rule would have reset it to, so epoch 4's 2.4 is an improvement and is kept
    assert (records[2]["action"], records[2]["best"]) == ("save_best", 2.5)
    assert (records[3]["action"], records[3]["best"]) == ("save_best", 2.4)
    assert tuner.snapshots.names() == ["best"]  # the finish never restarts: the initial weights are freed


def test_finishing_says_the_finish_began_and_phase_keeps_the_phase_it_began_in():
    model = tiny_model()
    tuner = AALR(model, OPTIMIZERS["sgd"](model.parameters()), initial_loss=2.3, total_epochs=8)
    seen = []
    for loss in (2.2, 2.1, 2.0, 1.9, 1.8, 1.7):
        tuner.step(loss)
        seen.append((tuner.phase, tuner.finishing))
    # 8 epochs: the cosine finish begins at half the budget, inside phase 1's 10 stable epochs
    assert seen == [(1, False)] * 3 + [(1, True)] * 3, seen
    assert "finish" in tuner.history[3]["reason"] and "finish" not in tuner.history[2]["reason"]
    other = tiny_model()
    fresh = AALR(other, OPTIMIZERS["sgd"](other.parameters()), initial_loss=2.3, total_epochs=8)
    fresh.load_state_dict(tuner.state_dict())
    assert fresh.finishing  # it is the policy's state: a resumed tuner says the same


def test_integral_settings_of_any_type_are_accepted_as_ints():
    model = tiny_model()
    tuner = AALR(
        model,
        OPTIMIZERS["sgd"](model.parameters()),
        phase1_patience=np.int64(3),
        total_epochs=np.int32(30),
    )
    config = tuner.policy.config
    assert (config.phase1_patience, config.total_epochs) == (3, 30)
    assert type(config.phase1_patience) is int and type(config.total_epochs) is int
    with pytest.raises(ValueError, match="initial_loss must fit in a float"):
        AALR(model, OPTIMIZERS["sgd"](model.parameters()), initial_loss=10**400)
    with pytest.raises(ValueError, match="initial_loss must fit in a float, got an int of 401 digits"):
        aalr.AALRPolicy(initial_loss=10**400)  # the policy alone says the same


# -- snapshot_dir: the tuner's own folder ----------------------------------------------------------
def test_snapshot_dir_never_touches_the_users_files(tmp_path):
    (tmp_path / "best.pt").write_text("mine")
    (tmp_path / "initial.pt").write_text("x")
    model = tiny_model()
    tuner = AALR(model, OPTIMIZERS["sgd"](model.parameters()), initial_loss=1.0, snapshot_dir=tmp_path)
    tuner.step(0.5)  # checkpoints, frees the initial snapshot
    tuner.step(NAN)  # restores
    assert (tmp_path / "best.pt").read_text() == "mine" and (tmp_path / "initial.pt").read_text() == "x"
    assert tuner.snapshots.directory.parent == tmp_path
    folder = tuner.snapshots.directory
    del tuner
    gc.collect()
    assert not folder.exists()  # removed with the tuner
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "initial.pt"]


def test_two_tuners_sharing_a_snapshot_dir_keep_their_own_weights(tmp_path):
    models = [tiny_model(), tiny_model()]
    with torch.no_grad():
        models[1][0].weight.fill_(3.0)
    tuners = [
        AALR(m, OPTIMIZERS["sgd"](m.parameters()), initial_loss=1.0, snapshot_dir=tmp_path) for m in models
    ]
    saved = [{k: v.clone() for k, v in m.state_dict().items()} for m in models]
    for tuner in tuners:
        tuner.step(0.5)
    for model in models:
        with torch.no_grad():
            model[0].weight.add_(1.0)
    for tuner in tuners:
        tuner.step(NAN)
    for model, weights in zip(models, saved, strict=True):
        assert_same_state(model.state_dict(), weights)
    assert tuners[0].snapshots.directory != tuners[1].snapshots.directory


@pytest.mark.parametrize("bad", ["", b"x", 3])
def test_snapshot_dir_must_be_a_path(bad):
    model = tiny_model()
    with pytest.raises(ValueError, match=r"snapshot_dir must be the path of a directory, got"):
        AALR(model, OPTIMIZERS["sgd"](model.parameters()), snapshot_dir=bad)


def test_a_symlinked_snapshot_dir_is_refused(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "link").symlink_to(target)
    model = tiny_model()
    with pytest.raises(ValueError, match=r"snapshot_dir '.*link' is a symbolic link \(to '.*elsewhere'\)"):
        AALR(model, OPTIMIZERS["sgd"](model.parameters()), snapshot_dir=tmp_path / "link")
    assert list(target.iterdir()) == []


def test_a_state_of_another_optimizer_is_refused_before_it_breaks_a_step():
    model = tiny_model()
    sgd_tuner = AALR(model, OPTIMIZERS["sgd"](model.parameters()), initial_loss=2.0, phase1_patience=1)
    sgd_tuner.step(1.5)
    other = tiny_model()
    adam = torch.optim.Adam(other.parameters(), lr=1e-3)
    adam_tuner = AALR(other, adam, initial_loss=2.0)
    with pytest.raises(
        ValueError, match=r"snapshot 'best' is of another optimizer: .*'momentum'.* this Adam"
    ):
        adam_tuner.load_state_dict(sgd_tuner.state_dict())
    assert adam_tuner.epoch == 0  # nothing changed


def test_an_optimizer_that_does_not_train_the_model_is_refused():
    model, other = tiny_model(), tiny_model(1)
    with pytest.raises(ValueError, match=r"param group 0 of the optimizer holds 6 of 6 tensors that are not"):
        AALR(model, OPTIMIZERS["sgd"](other.parameters()))
    with pytest.raises(ValueError, match=r"model ReLU has no parameters: there is nothing to tune"):
        AALR(nn.ReLU(), OPTIMIZERS["sgd"](model.parameters()))
    optimizer = OPTIMIZERS["sgd"](model.parameters())
    optimizer.add_param_group({"params": []})
    with pytest.raises(ValueError, match=r"param group 1 of the optimizer has no parameters"):
        AALR(model, optimizer)
