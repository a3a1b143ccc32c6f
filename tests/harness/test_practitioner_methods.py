"""The methods a practitioner reaches for today without tuning (issues 16 and 18): their LR
trajectories as the schedules say, the range test's restore, GreedyLR once an epoch, AALR's spike
rollback within a round, bad options, and each one through ``aalr train`` on a tiny MNIST-1D run,
resumed mid-run as if never interrupted."""

from __future__ import annotations

import io
import itertools
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from aalr.cli import main
from aalr.harness import rundir
from aalr.harness.methods import PRACTITIONER_METHODS, Method, build_method, describe
from aalr.harness.train import run

FAST = {"dataset": "mnist1d", "batch_size": 128, "train_subset": 512, "progress": False}  # 4 steps an epoch


def tiny_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))


def problem(n: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A learnable 3-class problem: labels from a fixed linear map of the inputs."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=generator)
    y = (x @ torch.randn(4, 3, generator=generator)).argmax(1)
    return x, y


def train(
    method: Method,
    model: nn.Module,
    epochs: range,
    steps: int,
    *,
    batch_size: int = 32,
    before_step: Any = None,
) -> tuple[list[float], list[dict[str, str]]]:
    """The training loop's call order on :func:`problem`; the LR of each batch (and after the last)
    and the epochs' outcomes. ``before_step(epoch, index, method)`` may meddle (inject a spike)."""
    x, y = problem()
    lrs, outcomes = [], []
    for epoch in epochs:
        method.train_mode()
        model.train()
        total = 0.0
        for index in range(steps):
            start = (index * batch_size) % len(x)
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
            if before_step is not None:
                before_step(epoch, index, method)
            lrs.append(method.lr)
            method.optimizer.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            method.optimizer.step()
            method.after_batch(loss.item() if method.wants_step_loss else None)
            total += loss.item()
        outcomes.append(method.end_epoch(total / steps))
        model.eval()
        method.eval_mode()
    return [*lrs, method.lr], outcomes


def build(
    name: str, model: nn.Module, epochs: int = 4, steps: int = 5, initial_loss: float = 1.1, **options: Any
) -> Method:
    return build_method(
        name,
        model,
        epochs=epochs,
        steps_per_epoch=steps,
        model_name="mlp",
        initial_loss=initial_loss,
        **options,
    )


def initial_loss(model: nn.Module) -> float:
    x, y = problem()
    with torch.no_grad():
        return float(F.cross_entropy(model(x), y))


# ---------------------------------------------------------------------------------------------
# LR trajectories: what each schedule says
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "peak"), [("sgd-cosine", 0.1), ("adamw-cosine", 1e-3)])
def test_cosine_warms_up_peaks_and_ends_at_zero(name: str, peak: float) -> None:
    model = tiny_model()
    method = build(name, model, epochs=8, steps=5)  # 40 steps: warmup round(0.05 * 40) = 2
    lrs, _ = train(method, model, range(8), 5)
    assert method.settings["warmup_steps"] == 2 and method.settings["total_steps"] == 40
    assert lrs[:3] == pytest.approx([0.0, peak / 2, peak])
    assert max(lrs) == pytest.approx(peak)
    assert lrs[21] == pytest.approx(peak / 2)  # halfway through the cosine's 38 steps: 2 + 19
    assert all(a >= b for a, b in itertools.pairwise(lrs[2:]))  # never rises after the peak
    assert lrs[-2] == pytest.approx(peak * 0.5 * (1 + math.cos(math.pi * 37 / 38)))  # the last batch
    assert lrs[-1] == 0.0  # the budget is spent


def test_adamw_methods_use_adamw_with_weight_decay_005() -> None:
    for name in ("adamw-cosine", "wsd", "greedy-adamw", "aalr-plus-adamw"):
        method = build(name, tiny_model())
        assert type(method.optimizer) is torch.optim.AdamW, name
        assert method.optimizer.param_groups[0]["weight_decay"] == 0.05, name
        assert method.settings["lr"] == 1e-3, name
    sgd = build("sgd-cosine", tiny_model())
    group = sgd.optimizer.param_groups[0]
    assert type(sgd.optimizer) is torch.optim.SGD and (group["momentum"], group["weight_decay"]) == (
        0.9,
        5e-4,
    )


def test_wsd_is_flat_then_decays_over_the_last_fifth() -> None:
    model = tiny_model()
    method = build("wsd", model, epochs=10, steps=10)  # 100 steps: warmup 5, decay the last 20
    lrs, _ = train(method, model, range(10), 10)
    assert lrs[:6] == pytest.approx([0.0, 2e-4, 4e-4, 6e-4, 8e-4, 1e-3])
    assert lrs[5:80] == [pytest.approx(1e-3)] * 75
    assert lrs[80:] == pytest.approx([1e-3 * (1 - math.sqrt(k / 20)) for k in range(20)] + [0.0])
    linear_model = tiny_model()
    linear = build("wsd", linear_model, epochs=10, steps=10, decay="linear", decay_fraction=0.5)
    lrs, _ = train(linear, linear_model, range(10), 10)
    assert linear.settings["decay_steps"] == 50
    assert lrs[50:] == pytest.approx([1e-3 * (1 - k / 50) for k in range(50)] + [0.0])


def test_onecycle_follows_torch_defaults_over_the_budget() -> None:
    model = tiny_model()
    method = build("onecycle", model, epochs=4, steps=5)  # 20 steps; the peak at 0.3 * 20 - 1 = 5
    momenta = []
    original = method.after_batch

    def record(loss: float | None = None) -> None:
        original(loss)
        momenta.append(method.optimizer.param_groups[0]["momentum"])

    method.after_batch = record  # type: ignore[method-assign]
    lrs, _ = train(method, model, range(4), 5)
    assert lrs[0] == pytest.approx(0.1 / 25)  # div_factor 25
    assert max(lrs) == pytest.approx(0.1) and lrs.index(max(lrs)) == 5
    assert lrs[19] == pytest.approx(0.1 / 25 / 1e4)  # final_div_factor 1e4, at the last batch
    assert min(momenta) == pytest.approx(0.85) and momenta[-2] == pytest.approx(0.95)  # the last batch


# ---------------------------------------------------------------------------------------------
# the range test then one-cycle
# ---------------------------------------------------------------------------------------------
def test_range_test_runs_first_then_restores_and_one_cycles_at_its_suggestion() -> None:
    model = tiny_model()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    method = build("lr-range-onecycle", model, epochs=10, steps=40, range_test_steps=60)
    assert method.wants_step_loss and method.settings["range_test_steps_planned"] == 60
    seen: dict[str, Any] = {}

    def watch(epoch: int, index: int, m: Any) -> None:
        if m.scheduler is not None and "weights" not in seen:  # the first batch after the test
            seen["weights"] = {k: v.clone() for k, v in model.state_dict().items()}
            seen["optimizer_state"] = dict(m.optimizer.state)
            seen["step"] = epoch * 40 + index

    lrs, outcomes = train(method, model, range(10), 40, before_step=watch)
    test = method.test  # type: ignore[attr-defined]
    steps = test.steps
    assert 6 <= steps <= 60 and seen["step"] == steps
    assert lrs[:steps] == pytest.approx([test.lr_at(i) for i in range(steps)])  # 1e-7 up, exponentially
    assert all(torch.equal(initial[k], seen["weights"][k]) for k in initial)  # weights restored
    assert seen["optimizer_state"] == {}  # and the optimizer's state (no momentum left over)
    assert method.max_lr == test.suggestion() > 0  # type: ignore[attr-defined]
    assert method.settings["range_test_steps"] == steps and method.settings["max_lr"] == method.max_lr  # type: ignore[attr-defined]
    onecycle = lrs[steps:]
    assert onecycle[0] == pytest.approx(method.max_lr / 25)  # type: ignore[attr-defined]
    assert max(onecycle) == pytest.approx(method.max_lr, rel=1e-3)  # type: ignore[attr-defined]  # peak between steps
    assert method.scheduler.total_steps == 400 - steps  # type: ignore[attr-defined]
    assert not method.wants_step_loss  # no per-step loss once the test is over
    ended = [o for o in outcomes if o["action"] == "restore_initial"]
    assert len(ended) == 1 and f"over {steps} steps" in ended[0]["reason"]


def test_range_test_takes_at_most_a_quarter_of_the_budget() -> None:
    method = build("lr-range-onecycle", tiny_model(), epochs=2, steps=5)
    assert method.settings["range_test_steps_planned"] == 2  # 10 steps // 4, not fastai's 100


def test_range_test_resumes_mid_test_exactly() -> None:
    def fresh(seed: int) -> tuple[nn.Module, Method]:
        model = tiny_model(seed)
        return model, build("lr-range-onecycle", model, epochs=6, steps=20, range_test_steps=50)

    model, method = fresh(0)
    train(method, model, range(1), 20)  # 20 of the test's steps
    assert method.scheduler is None  # type: ignore[attr-defined]
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "method": method.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    lrs_on, outcomes_on = train(method, model, range(1, 6), 20)
    resumed_model, resumed = fresh(1)
    resumed_model.load_state_dict(checkpoint["model"])
    resumed.load_state_dict(checkpoint["method"])
    lrs, outcomes = train(resumed, resumed_model, range(1, 6), 20)
    assert lrs == lrs_on and outcomes == outcomes_on
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), resumed_model.state_dict().values(), strict=True)
    )


# ---------------------------------------------------------------------------------------------
# GreedyLR once an epoch
# ---------------------------------------------------------------------------------------------
def test_greedy_steps_on_each_epochs_training_loss() -> None:
    method = build("greedy", tiny_model(), patience=1, factor=0.5)
    outcomes = [method.end_epoch(loss) for loss in [2.0, 1.0, 0.5, 0.5, 0.5]]
    assert [o["action"] for o in outcomes] == ["none", "increase", "none", "none", "decay"]
    assert method.lr == pytest.approx(0.1)  # 0.1 -> 0.2 -> 0.1
    assert "training loss 0.5" in outcomes[-1]["reason"]
    adamw = build("greedy-adamw", tiny_model())
    assert (adamw.greedy.min_lr, adamw.greedy.max_lr) == pytest.approx((1e-5, 1e-2))  # type: ignore[attr-defined]
    assert (adamw.greedy.patience, adamw.greedy.factor) == (10, 0.95)  # type: ignore[attr-defined]
    sgd = build("greedy", tiny_model())
    assert (sgd.greedy.min_lr, sgd.greedy.max_lr) == pytest.approx((1e-3, 1.0))  # type: ignore[attr-defined]
    assert not sgd.wants_step_loss and not sgd.per_batch


# ---------------------------------------------------------------------------------------------
# AALR's spike rollback
# ---------------------------------------------------------------------------------------------
def spike_at(epoch: int, first: int, count: int, factor: float = 30.0) -> Any:
    def meddle(e: int, index: int, method: Any) -> None:
        if e == epoch and first <= index < first + count:
            for group in method.optimizer.param_groups:
                group["lr"] = method.tuner.lr * factor

    return meddle


def test_spike_rollback_restores_the_best_within_the_round() -> None:
    steps = 8
    model = tiny_model()
    # a budget of 16: the spike (epoch 4) falls before the finish (half the budget), so the halving is exact
    method = build(
        "aalr-plus", model, epochs=16, steps=steps, spike_rollback=True, initial_loss=initial_loss(model)
    )
    assert method.wants_step_loss and method.tuner.round.every_n_steps == steps  # type: ignore[attr-defined]
    seen: dict[str, Any] = {}

    def meddle(epoch: int, index: int, m: Any) -> None:
        spike_at(3, 2, 4)(epoch, index, m)
        if epoch == 3 and index == 0:
            seen["best"] = {k: v.clone() for k, v in m.tuner.snapshots.get("best")["model"].items()}
        if any(r.get("spike") for r in m.tuner.history) and "after" not in seen:
            seen["after"] = {k: v.clone() for k, v in model.state_dict().items()}

    _, outcomes = train(method, model, range(8), steps, before_step=meddle)
    spikes = [r for r in method.tuner.history if r.get("spike")]  # type: ignore[attr-defined]
    assert spikes, "the injected steps at 30x the LR must be caught"
    first = spikes[0]
    assert 3 * steps < first["last_step"] < 4 * steps  # mid-epoch 4 (0-based 3): within the round
    assert first["action"] == "restore_best" and first["next_lr"] == pytest.approx(first["lr"] / 2)
    assert all(torch.equal(seen["best"][k], seen["after"][k]) for k in seen["best"])  # rolled back
    assert outcomes[3]["action"] == "restore_best" and "spike" in outcomes[3]["reason"]


def test_without_an_injected_spike_no_spike_is_seen_and_rounds_are_epochs() -> None:
    steps = 8
    model = tiny_model()
    method = build(
        "aalr-plus", model, epochs=8, steps=steps, spike_rollback=True, initial_loss=initial_loss(model)
    )
    train(method, model, range(8), steps)
    history = method.tuner.history  # type: ignore[attr-defined]
    assert not any(r["spike"] for r in history)
    assert [r["last_step"] for r in history] == [steps * k for k in range(1, 9)]


def test_spike_rollback_is_off_by_default_and_costs_no_per_step_loss() -> None:
    method = build("aalr-plus", tiny_model())
    assert not method.wants_step_loss and method.tuner.round is None  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="spike_rollback must be true or false, got 'yes'"):
        build("aalr", tiny_model(), spike_rollback="yes")
    with pytest.raises(ValueError, match=r"unknown option\(s\) every_n_steps for method 'aalr'"):
        build("aalr", tiny_model(), every_n_steps=3)


# ---------------------------------------------------------------------------------------------
# state, bad options
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", PRACTITIONER_METHODS)
def test_state_loads_with_weights_only(name: str) -> None:
    model = tiny_model()
    method = (
        build(name, model, epochs=4, steps=5, range_test_steps=8)
        if name == "lr-range-onecycle"
        else build(name, model)
    )
    train(method, model, range(1), 5)
    buffer = io.BytesIO()
    torch.save(method.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert state["method"] == name
    json.dumps(method.settings)  # plain values, for the run's records


@pytest.mark.parametrize(
    ("name", "options", "match"),
    [
        ("sgd-cosine", {"warmup_fraction": 1.0}, r"warmup_fraction must be a number in \[0, 1\) .*got 1.0"),
        ("adamw-cosine", {"warmup_fraction": "5%"}, r"warmup_fraction must be a number in \[0, 1\).*'5%'"),
        (
            "adamw-cosine",
            {"momentum": 0.9},
            r"unknown option\(s\) momentum for method 'adamw-cosine'; allowed: betas, eps, warmup_fraction",
        ),
        ("wsd", {"decay": "cosine"}, r"wsd decay must be one of 1-sqrt, linear, got 'cosine'"),
        ("wsd", {"decay_fraction": 0}, r"decay_fraction must be a number in \(0, 1\]"),
        (
            "wsd",
            {"warmup_fraction": 0.5, "decay_fraction": 0.6},
            r"warmup_fraction \+ decay_fraction <= 1, got 0.5 \+ 0.6",
        ),
        ("onecycle", {"pct_start": 1.5}, r"pct_start must be a number in \(0, 1\)"),
        ("onecycle", {"anneal_strategy": "exp"}, r"anneal_strategy must be 'cos' or 'linear', got 'exp'"),
        (
            "onecycle",
            {"base_momentum": 0.99},
            r"base_momentum \(0.99\) must be at most max_momentum \(0.95\)",
        ),
        ("onecycle", {"div_factor": 0}, r"div_factor must be finite and > 0, got 0"),
        (
            "lr-range-onecycle",
            {"lr": 0.1},
            r"lr-range-onecycle finds its max LR by the range test; give no lr",
        ),
        (
            "lr-range-onecycle",
            {"suggestion": "steep"},
            r"suggestion must be one of valley, minimum, got 'steep'",
        ),
        ("lr-range-onecycle", {"range_test_steps": 0}, r"range_test_steps must be >= 1, got 0"),
        ("lr-range-onecycle", {"range_end_lr": 1e-9}, r"end_lr \(1e-09\) must be above start_lr"),
        ("greedy", {"factor": 1.5}, r"factor must be in \(0, 1\), got 1.5"),
        ("greedy", {"mode": "max"}, r"unknown option\(s\) mode for method 'greedy'"),
        ("greedy-adamw", {"min_lr": 0.1}, r"min_lr \(0.1\) must be at most max_lr \(0.01"),
        ("aalr-plus-adamw", {"phase1_patience": 0}, r"phase1_patience"),
        (
            "schedulefree-adamw",
            {"momentum": 0.9},
            r"unknown option\(s\) momentum for method 'schedulefree-adamw'",
        ),
    ],
)
def test_bad_options_fail_clearly(name: str, options: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build(name, tiny_model(), **options)


# ---------------------------------------------------------------------------------------------
# through `aalr train`: tiny MNIST-1D runs
# ---------------------------------------------------------------------------------------------
def rows(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_aalr_list_shows_each_with_its_defaults_and_source(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in PRACTITIONER_METHODS:
        line = next(line for line in out.splitlines() if line.strip().startswith(f"{name} "))
        assert describe(name) in line
        assert any(str(year) in line for year in range(2015, 2026)), name  # a cited source
    method_lines = [line for line in out.splitlines() if line.startswith("  ")]
    assert len({line.index(describe(line.split()[0])) for line in method_lines}) == 1  # one column


# prodigy is older; it runs here too, on the same budget as the new ones (it has no schedule to fit)
@pytest.mark.parametrize("name", [*PRACTITIONER_METHODS, "prodigy"])
def test_aalr_train_runs_two_epochs(tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / name
    # batches of 16: 32 steps an epoch, so that 5% of the budget is a warmup of 3 steps
    argv = ["train", "--method", name, "--epochs", "2", "--train-subset", "512", "--batch-size", "16",
            "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert "final test accuracy" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["epochs"] == 2
    epochs = rows(out)
    assert all(math.isfinite(r["train_loss"]) for r in epochs)
    if name in ("sgd-cosine", "adamw-cosine", "wsd"):
        assert epochs[0]["lr"] == 0.0 and epochs[-1]["next_lr"] == 0.0  # warmup from 0; 0 at the end
    if name == "lr-range-onecycle":
        assert epochs[0]["lr"] == pytest.approx(1e-7) and epochs[0]["action"] == "restore_initial"
        # the range test's steps are training cost beyond the epochs: the summary says how many
        assert 0 < summary["method_settings"]["range_test_steps"] <= 16  # at most a quarter of 64 steps


def test_aalr_train_spike_rollback_option(tmp_path: Path) -> None:
    out = tmp_path / "spike"
    argv = ["train", "--method", "aalr-plus", "--epochs", "2", "--train-subset", "512", "--out", str(out),
            "--no-progress", "--method-option", "spike_rollback=true",
            "--method-option", "spike_skip=2"]  # fmt: skip
    assert main(argv) == 0
    assert all(r["reason"].startswith("step ") for r in rows(out))  # decided by the step-mode tuner
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method_settings"]["spike_skip"] == 2


@pytest.mark.parametrize("name", ["sgd-cosine", "adamw-cosine"])
def test_cosine_lr_grid_is_chosen_on_validation_data(tmp_path: Path, name: str) -> None:
    lrs = [0.5, 0.05] if name == "sgd-cosine" else [1e-2, 1e-4]
    summary = run({**FAST, "epochs": 2, "batch_size": 16, "method": name, "lr": lrs}, tmp_path / "g")
    assert set(summary["lr_grid"]) == {f"{lr:g}" for lr in lrs}
    assert summary["chosen_lr"] == float(max(summary["lr_grid"], key=summary["lr_grid"].get))
    metrics = rows(tmp_path / "g")
    assert metrics[0]["lr"] == 0.0 and metrics[0]["next_lr"] > 0  # the chosen LR's warmup


class Interrupt(Exception):
    pass


@pytest.mark.parametrize(
    ("name", "epochs", "kill_after"),
    [
        # 8 epochs of 4 steps: the range test takes the first 8 steps, so the kill after epoch 1 comes
        # in the middle of it, and the one after epoch 3 in the one-cycle
        ("lr-range-onecycle", 8, 1),
        ("lr-range-onecycle", 8, 3),
        ("wsd", 3, 2),
        ("greedy", 3, 2),
        ("aalr-plus-adamw", 3, 2),  # with spike_rollback: the tuner in step mode
    ],
)
def test_interrupted_run_resumes_to_the_same_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, epochs: int, kill_after: int
) -> None:
    options = {"method_args": {"spike_rollback": True}} if name == "aalr-plus-adamw" else {}
    config = {**FAST, "epochs": epochs, "method": name, **options}
    run(config, tmp_path / "full")
    real_save = rundir.save_checkpoint
    calls = {"n": 0}

    def dying_save(out: Path, state: dict[str, Any]) -> None:
        real_save(out, state)
        calls["n"] += 1
        if calls["n"] == kill_after:
            raise Interrupt

    monkeypatch.setattr(rundir, "save_checkpoint", dying_save)
    with pytest.raises(Interrupt):
        run(config, tmp_path / "killed")
    monkeypatch.setattr(rundir, "save_checkpoint", real_save)
    run(config, tmp_path / "killed", resume=True)
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in rows(tmp_path / "full")]
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in rows(tmp_path / "killed")] == strip
    full = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["model"]
    resumed = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(full[k], resumed[k]) for k in full)


@pytest.mark.parametrize("skip", [3, 100])  # 100: the rest of the epoch, and no further
def test_spike_skip_leaves_out_the_batches_after_a_spike_within_its_epoch(skip: int) -> None:
    steps = 8
    model = tiny_model()
    method = build(
        "aalr-plus",
        model,
        epochs=8,
        steps=steps,
        spike_rollback=True,
        spike_skip=3,
        initial_loss=initial_loss(model),
    )
    trained: list[tuple[int, int]] = []
    x, y = problem()
    for epoch in range(8):
        method.train_mode()
        for index in range(steps):
            if method.skip_next_batch():
                continue
            spike_at(3, 2, 4)(epoch, index, method)
            trained.append((epoch, index))
            method.optimizer.zero_grad()
            loss = F.cross_entropy(model(x[index * 32 : index * 32 + 32]), y[index * 32 : index * 32 + 32])
            loss.backward()
            method.optimizer.step()
            method.after_batch(loss.item())
        method.end_epoch(0.0)
    spikes = [r for r in method.tuner.history if r.get("spike")]  # type: ignore[attr-defined]
    assert len(spikes) == 1
    at = spikes[0]["last_step"] - 3 * steps - 1  # the batch (0-based, in epoch 3) that set it off
    left_out = {(3, i) for i in range(at + 1, min(at + 1 + skip, steps))}
    assert left_out and not left_out & set(trained)  # the next batches, up to the epoch's end, left out
    assert (4, 0) in trained  # a skip ends with its epoch
    assert len(trained) == 8 * steps - len(left_out)


def test_spike_skip_is_checked() -> None:
    with pytest.raises(ValueError, match=r"spike_skip=2 needs spike_rollback=true"):
        build("aalr-plus", tiny_model(), spike_skip=2)
    with pytest.raises(ValueError, match=r"spike_skip must be an integer >= 0 .*got -1"):
        build("aalr-plus", tiny_model(), spike_rollback=True, spike_skip=-1)
    with pytest.raises(ValueError, match=r"spike_skip must be an integer >= 0 .*got True"):
        build("aalr-plus", tiny_model(), spike_rollback=True, spike_skip=True)


def test_spike_rollback_with_a_full_loss_pass_is_refused(tmp_path: Path) -> None:
    argv = ["train", "--method", "aalr-plus", "--epochs", "2", "--train-subset", "512",
            "--out", str(tmp_path / "x"), "--no-progress", "--loss-pass", "full",
            "--method-option", "spike_rollback=true"]  # fmt: skip
    assert main(argv) == 2
    assert not (tmp_path / "x").exists()
