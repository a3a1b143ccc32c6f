"""One run end to end: outputs, determinism, resume, grids, divergence, bad input through the CLI."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from aalr.cli import main
from aalr.harness import loop, numerics, rundir
from aalr.harness.config import RunError, TrainConfig, validate
from aalr.harness.train import run

FAST = {"dataset": "mnist1d", "epochs": 3, "batch_size": 128, "train_subset": 512, "progress": False}


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def strip_times(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def test_run_writes_the_documented_files(tmp_path):
    summary = run({**FAST, "method": "aalr"}, tmp_path / "r")
    out = tmp_path / "r"
    assert {p.name for p in out.iterdir()} >= {
        "config.json",
        "metrics.jsonl",
        "summary.json",
        "checkpoint.pt",
    }
    config = json.loads((out / "config.json").read_text())
    assert config["method"] == "aalr" and config["version"] and "git_commit" in config
    rows = metrics(out)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert set(rows[0]) >= {
        "epoch",
        "lr",
        "train_loss",
        "test_loss",
        "test_acc",
        "action",
        "reason",
        "seconds",
    }
    assert summary["status"] == "finished" and summary["epochs"] == 3
    assert summary["lr_trajectory"] == [r["lr"] for r in rows]
    assert summary["peak_test_acc"] == max(r["test_acc"] for r in rows)
    assert summary["final_test_acc"] == rows[-1]["test_acc"]
    assert summary["initial_loss"] > 2.0  # ln(10) ~ 2.30 for an untrained 10-class model
    assert json.loads((out / "summary.json").read_text())["model"] == "mnist1d-cnn"
    torch.load(out / "checkpoint.pt", weights_only=True)  # loadable without unpickling


def test_same_seed_same_run_other_seed_differs(tmp_path):
    a = run({**FAST, "method": "sgdr"}, tmp_path / "a")
    b = run({**FAST, "method": "sgdr"}, tmp_path / "b")
    c = run({**FAST, "method": "sgdr", "seed": 1}, tmp_path / "c")
    assert strip_times(metrics(tmp_path / "a")) == strip_times(metrics(tmp_path / "b"))
    assert a["final_test_acc"] == b["final_test_acc"]
    assert strip_times(metrics(tmp_path / "a")) != strip_times(metrics(tmp_path / "c"))
    assert c["seed"] == 1


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("method", ["aalr", "sgdr", "schedulefree"])
def test_interrupted_run_resumes_to_the_same_result(tmp_path, monkeypatch, caplog, method):
    config = {**FAST, "epochs": 4, "method": method}
    run(config, tmp_path / "full")
    real_save = rundir.save_checkpoint
    calls = {"n": 0}

    def dying_save(out, state):
        real_save(out, state)
        calls["n"] += 1
        if calls["n"] == 2:
            raise Interrupt  # the process dies right after epoch 2's checkpoint

    monkeypatch.setattr(rundir, "save_checkpoint", dying_save)
    with pytest.raises(Interrupt):
        run(config, tmp_path / "killed")
    monkeypatch.setattr(rundir, "save_checkpoint", real_save)
    assert not (tmp_path / "killed" / "summary.json").exists()
    with caplog.at_level(logging.WARNING, logger="aalr.harness"):
        run(config, tmp_path / "killed", resume=True)
    assert "computed in" not in caplog.text  # the same numerics: nothing to warn about
    assert strip_times(metrics(tmp_path / "killed")) == strip_times(metrics(tmp_path / "full"))
    full = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["model"]
    resumed = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(full[k], resumed[k]) for k in full)


def test_corrupted_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
    config = {**FAST, "epochs": 3, "method": "step"}
    out = tmp_path / "r"
    run(config, out)
    (out / "summary.json").unlink()  # pretend the run died after its last checkpoint
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint")
    summary = run(config, out, resume=True)
    assert "checkpoint.pt" in caplog.text and "cannot be loaded safely" in caplog.text
    assert summary["epochs"] == 3  # epoch 3 was redone from epoch 2's checkpoint


def test_a_checkpoint_holding_a_pickled_object_is_refused(tmp_path):
    out = tmp_path / "r"
    run({**FAST, "epochs": 1, "method": "step"}, out)
    (out / "summary.json").unlink()
    import argparse

    torch.save({"epoch": 1, "config": argparse.Namespace(lr=0.1)}, out / "checkpoint.pt")
    (out / "checkpoint.prev.pt").unlink(missing_ok=True)
    with pytest.raises(RunError, match=r"checkpoint.pt.*cannot be loaded safely.*no good checkpoint"):
        run({**FAST, "epochs": 1, "method": "step"}, out, resume=True)


def test_lr_grid_is_chosen_on_validation_data(tmp_path):
    summary = run({**FAST, "epochs": 2, "method": "const", "lr": [0.5, 0.05]}, tmp_path / "g")
    assert set(summary["lr_grid"]) == {"0.5", "0.05"}
    best = max(summary["lr_grid"], key=summary["lr_grid"].get)
    assert summary["chosen_lr"] == float(best)
    assert summary["lr_trajectory"][0] == float(best)
    val_config = json.loads((tmp_path / "g" / "grid" / "lr0.05" / "config.json").read_text())
    assert val_config["validation_split"] is True


def test_an_unreadable_summary_finishes_the_run_again_for_runs_and_grid_runs(tmp_path):
    config = {**FAST, "epochs": 2, "method": "const", "lr": [0.5, 0.05]}
    first = run(config, tmp_path / "g")
    for summary_file in (tmp_path / "g" / "summary.json", tmp_path / "g" / "grid" / "lr0.5" / "summary.json"):
        summary_file.write_text('{"status": "fini')  # a torn write
    again = run(config, tmp_path / "g", resume=True)
    assert again["chosen_lr"] == first["chosen_lr"] and again["lr_grid"] == first["lr_grid"]
    redone = json.loads((tmp_path / "g" / "grid" / "lr0.5" / "summary.json").read_text())
    assert redone["status"] == "finished"


def test_a_diverging_baseline_ends_cleanly(tmp_path):
    summary = run({**FAST, "epochs": 4, "method": "const", "lr": 1e6}, tmp_path / "d")
    assert summary["status"] == "diverged"
    assert summary["epochs"] < 4
    assert json.loads((tmp_path / "d" / "summary.json").read_text())["status"] == "diverged"


def test_aalr_from_an_absurd_lr_recovers(tmp_path):
    # The same LR kills a constant-LR baseline; AALR halves and restarts until training is stable.
    baseline = run({**FAST, "epochs": 20, "method": "const", "lr": 1e3}, tmp_path / "c")
    assert baseline["status"] == "diverged"
    summary = run({**FAST, "epochs": 20, "method": "aalr", "lr": 1e3}, tmp_path / "a")
    rows = metrics(tmp_path / "a")
    assert summary["status"] == "finished" and summary["epochs"] == 20
    restarts = [r for r in rows if r["action"] == "restore_initial"]
    assert len(restarts) >= 5 and rows[0]["action"] == "restore_initial"
    assert rows[-1]["lr"] <= 4.0
    assert rows[-1]["train_loss"] is not None and rows[-1]["train_loss"] < summary["initial_loss"]
    assert summary["peak_test_acc"] > 0.15  # above chance (0.1)


def test_config_validation_errors():
    cases = [
        ({"dataset": "imagenet"}, "unknown dataset 'imagenet'; choose from mnist1d"),
        ({"model": "resnet1000"}, "unknown model 'resnet1000'; choose from"),
        ({"method": "magic"}, "unknown method 'magic'; choose from aalr"),
        ({"epochs": 0}, "epochs must be an integer >= 1, got 0"),
        ({"batch_size": -5}, "batch_size must be an integer >= 1, got -5"),
        ({"lr": -0.1}, r"lr must be a finite number > 0"),
        ({"lr": [0.1, 0.2], "method": "aalr"}, "an LR grid"),
        ({"val_fraction": 1.5}, r"val_fraction must be in \(0, 1\)"),
        ({"random_erasing": 2.0}, r"random_erasing is a probability in \[0, 1\], got 2.0"),
        ({"adversarial": "pgd", "epsilon": 2.0, "alpha": 0.1, "steps": 3}, "epsilon"),
        ({"adversarial": "pgd", "epsilon": 0.1, "alpha": -1.0, "steps": 3}, "alpha"),
        ({"adversarial": "pgd", "epsilon": 0.1, "alpha": 0.01, "steps": 0}, "steps"),
    ]
    for values, match in cases:
        with pytest.raises(RunError, match=match):
            validate(TrainConfig(**{**FAST, **values}))
    with pytest.raises(RunError, match=r"unknown settings \['colour'\]"):
        TrainConfig.from_dict({"colour": "blue"})


def test_cli_train_prints_the_trajectory(tmp_path, capsys):
    code = main(
        ["train", "--epochs", "2", "--train-subset", "256", "--out", str(tmp_path / "c"), "--no-progress"]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "final test accuracy" in out and "LR trajectory" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dataset", "imagenet"], "unknown dataset 'imagenet'"),
        (["--model", "nope"], "unknown model 'nope'"),
        (["--method", "nope"], "unknown method 'nope'"),
        (["--epochs", "0"], "epochs must be an integer >= 1"),
        (["--batch-size", "0"], "batch_size must be an integer >= 1"),
    ],
)
def test_cli_bad_input_exits_2_and_touches_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "existing"
    out.mkdir()
    (out / "keep.txt").write_text("earlier results")
    code = main(["train", "--out", str(out), "--no-progress", *argv])
    assert code == 2
    assert message in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_cli_refuses_another_runs_directory_unless_resume_or_force(tmp_path, capsys):
    out = tmp_path / "r"
    args = ["train", "--epochs", "1", "--train-subset", "256", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    before = (out / "summary.json").read_text()
    assert main([*args[:-3], "--seed", "3", "--out", str(out), "--no-progress"]) == 2
    assert "holds another run" in capsys.readouterr().err
    assert (out / "summary.json").read_text() == before
    assert main([*args, "--resume"]) == 0  # finished: nothing to do
    assert main([*args[:-3], "--seed", "3", "--out", str(out), "--no-progress", "--resume"]) == 2
    assert "differ from the saved run" in capsys.readouterr().err
    assert main([*args[:-3], "--seed", "3", "--out", str(out), "--no-progress", "--force"]) == 0
    assert json.loads((out / "summary.json").read_text())["seed"] == 3


def test_unwritable_output_is_reported_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RunError, match="exists and is not a directory"):
        run({**FAST, "epochs": 1}, blocker)


@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist").is_dir(),
    reason="needs the Debian package dataset-fashion-mnist (.ci/run installs it)",
)
def test_one_fgsm_trained_epoch_on_fashion_mnist_reports_robust_below_clean(tmp_path):
    summary = run(
        {"dataset": "fashion-mnist", "model": "fmnist-cnn", "model_options": {"width": 0.5},
         "train_subset": 2000, "epochs": 1, "method": "aalr", "adversarial": "fgsm", "epsilon": 0.1,
         "robust_samples": 300, "eval_pgd_steps": 5, "progress": False},
        tmp_path / "adv",
    )  # fmt: skip
    row = metrics(tmp_path / "adv")[0]
    assert summary["final_test_acc"] > 0.2  # above chance (0.1): it learned something
    assert summary["robust"]["fgsm"]["final"] < summary["final_test_acc"]
    assert summary["robust"]["pgd"]["final"] <= summary["robust"]["fgsm"]["final"] + 0.05
    assert row["fgsm_acc"] == summary["robust"]["fgsm"]["final"]
    assert summary["robust"]["pgd"]["steps"] == 5
    assert summary["adversarial"]["kind"] == "fgsm" and summary["adversarial"]["epsilon"] == 0.1
    assert summary["initial_loss"] > 2.0  # measured on adversarial examples of the initial model


def test_cli_compare_report_and_list(tmp_path, capsys):
    suite = tmp_path / "tiny.toml"
    suite.write_text(
        'name = "tiny"\n[defaults]\ndataset = "mnist1d"\nepochs = 2\ntrain_subset = 256\n'
        'seeds = [0]\nmethods = ["aalr-plus", "sgdr"]\n'
    )
    out = tmp_path / "runs"
    assert main(["compare", "--suite", str(suite), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "| aalr-plus | 1 |" in printed and "| sgdr | 1 |" in printed
    assert (out / "report.md").exists() and (out / "results.csv").exists()
    assert list(out.glob("lr_*.png")) and list(out.glob("acc_*.png"))
    before = (out / "tiny" / "sgdr" / "seed0" / "metrics.jsonl").read_text()
    # a finished run is skipped even when asked for another memory format (how, not what)
    assert (
        main(["compare", "--suite", str(suite), "--out", str(out), "--no-progress", "--channels-last"]) == 0
    )
    assert "finished already, skipped" in capsys.readouterr().out
    assert (out / "tiny" / "sgdr" / "seed0" / "metrics.jsonl").read_text() == before
    other = tmp_path / "other"
    argv = ["compare", "--suite", str(suite), "--out", str(other), "--no-progress", "--only", "sgdr"]
    assert main([*argv, "--channels-last", "--precision", "bf16"]) == 0
    saved = json.loads((other / "tiny" / "sgdr" / "seed0" / "config.json").read_text())
    assert saved["channels_last"] is True and saved["precision"] == "bf16"
    assert main(["report", str(out)]) == 0
    assert "| aalr-plus |" in capsys.readouterr().out
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    assert (
        "aalr-plus" in listing
        and "quick" in listing
        and "fashion-mnist (default model fmnist-cnn)" in listing
    )


class _Exited(Exception):
    pass


@pytest.mark.parametrize("world_size", [None, "1", "2"])
def test_entry_leaves_without_teardown_only_under_torchrun(monkeypatch, world_size):
    from aalr import cli

    if world_size is None:
        monkeypatch.delenv("WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("WORLD_SIZE", world_size)
    monkeypatch.setattr(cli, "main", lambda argv=None: 3)
    codes: list[int] = []

    def fake_exit(code: int) -> None:
        codes.append(code)
        raise _Exited

    monkeypatch.setattr(cli.os, "_exit", fake_exit)
    if world_size == "2":  # several ranks: os._exit with main's code, after flushing
        with pytest.raises(_Exited):
            cli.entry()
        assert codes == [3]
    else:
        with pytest.raises(SystemExit) as info:
            cli.entry()
        assert info.value.code == 3 and codes == []


def _bn_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(4, 6), torch.nn.Dropout(0.5), torch.nn.BatchNorm1d(6), torch.nn.Linear(6, 2)
    )


def test_refresh_batchnorm_recomputes_statistics_on_fixed_batches_without_randomness():
    x = torch.randn(100, 4, generator=torch.Generator().manual_seed(1))
    model, manual = _bn_model(), _bn_model()
    model.eval()
    rng = torch.get_rng_state()
    assert loop.refresh_batchnorm(model, x, lambda t: t, torch.device("cpu"), 32, batches=2)
    assert torch.equal(torch.get_rng_state(), rng)  # dropout stayed off: no random numbers drawn
    assert not model.training and not model[2].training  # the model's mode is back as it was
    manual.eval()
    manual[2].train()
    with torch.no_grad():
        manual(x[:32])
        manual(x[32:64])  # the first two batches, in order; x[64:] is not used
    assert torch.equal(model[2].running_mean, manual[2].running_mean)
    assert torch.equal(model[2].running_var, manual[2].running_var)
    assert not torch.equal(model[2].running_mean, torch.zeros(6))


def test_refresh_batchnorm_without_batchnorm_does_nothing():
    model = torch.nn.Sequential(torch.nn.Linear(4, 2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert not loop.refresh_batchnorm(model, torch.randn(8, 4), lambda t: t, torch.device("cpu"), 4)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("loss_pass", ["batches", "full"])
@pytest.mark.parametrize(("method", "calls"), [("schedulefree", 2), ("sgdr", 0)])
def test_schedulefree_refreshes_batchnorm_once_an_epoch(tmp_path, monkeypatch, method, calls, loss_pass):
    seen: list[int] = []
    monkeypatch.setattr(loop, "refresh_batchnorm", lambda model, x, *args, **kw: seen.append(len(x)))
    run({**FAST, "epochs": 2, "method": method, "loss_pass": loss_pass}, tmp_path / method)
    assert seen == [512] * calls  # once an epoch (also with the full loss pass), on the run's training data


DIGITS_CNN = {
    "dataset": "digits", "model": "fmnist-cnn", "model_options": {"width": 0.25}, "epochs": 2,
    "batch_size": 64, "method": "aalr", "progress": False, "device": "cpu",
}  # fmt: skip


@pytest.mark.parametrize(("channels_last", "expected"), [(None, False), (True, True), (False, False)])
def test_channels_last_on_the_cpu_only_when_asked(tmp_path, monkeypatch, channels_last, expected):
    seen = []
    real_evaluate = loop.evaluate

    def spy(model, x, y, prepare, *args, **kwargs):
        # a weight with one input channel is contiguous in both layouts: look at the second convolution
        conv = next(p for p in model.parameters() if p.ndim == 4 and p.shape[1] > 1)
        seen.append(conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous())
        return real_evaluate(model, x, y, prepare, *args, **kwargs)

    monkeypatch.setattr(loop, "evaluate", spy)
    run({**DIGITS_CNN, "channels_last": channels_last}, tmp_path / "r")
    assert seen and all(s == expected for s in seen)


def test_channels_last_is_for_images_only_and_auto_means_cuda():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    resolve = numerics.resolve_channels_last
    assert resolve(True, cpu, (1, 8, 8)) and not resolve(False, cuda, (3, 32, 32))
    assert not resolve(None, cpu, (3, 32, 32)) and resolve(None, cuda, (3, 32, 32))
    assert not resolve(True, cuda, (1, 40))  # a signal (MNIST-1D) has no channels_last layout


def test_channels_last_changes_speed_not_the_run(tmp_path):
    # the same run in both layouts: same decisions, and losses equal up to float rounding
    plain = run({**DIGITS_CNN, "channels_last": False}, tmp_path / "plain")
    fast = run({**DIGITS_CNN, "channels_last": True}, tmp_path / "fast")
    assert plain["lr_trajectory"] == fast["lr_trajectory"]
    for a, b in zip(metrics(tmp_path / "plain"), metrics(tmp_path / "fast"), strict=True):
        assert a["action"] == b["action"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
    assert abs(plain["final_test_acc"] - fast["final_test_acc"]) <= 0.01


def test_channels_last_may_differ_on_resume_and_is_checked(tmp_path, capsys):
    out = tmp_path / "r"
    run({**DIGITS_CNN, "epochs": 1}, out)
    run({**DIGITS_CNN, "epochs": 1, "channels_last": True}, out, resume=True)  # how, not what: allowed
    with pytest.raises(RunError, match=r"channels_last must be true, false or null \(auto\), got 'yes'"):
        validate(TrainConfig(**{**DIGITS_CNN, "channels_last": "yes"}))
    argv = ["train", "--dataset", "digits", "--epochs", "1", "--no-progress", "--channels-last", "--out"]
    assert main([*argv, str(tmp_path / "cli")]) == 0
    assert json.loads((tmp_path / "cli" / "config.json").read_text())["channels_last"] is True


@pytest.mark.parametrize(("precision", "expected"), [("auto", torch.float32), ("fp32", torch.float32),
                                                      ("bf16", torch.bfloat16)])  # fmt: skip
def test_bf16_on_the_cpu_only_when_asked_in_every_forward_pass(tmp_path, precision, expected):
    # a model with BatchNorm and schedule-free SGD, so that the BatchNorm refresh runs; the full loss pass
    seen = []  # (which pass, dtype of the first convolution's output)
    current = ["training"]  # the pass under way: spies on the functions that make the other passes set it
    from aalr.harness import models

    real_build = models.build_model
    training_set = []  # _initial_loss gets the data set: evaluate on its training data is the full pass

    def spy(name, real):
        def wrapped(*args, **kwargs):
            if name == "initial loss":
                training_set.append(args[1].x_train)
            label = name
            if name == "evaluate":
                label = "full loss pass" if any(args[1] is x for x in training_set) else "test pass"
            current[0] = label
            try:
                return real(*args, **kwargs)
            finally:
                current[0] = "training"

        return wrapped

    def build(*args, **kwargs):
        model = real_build(*args, **kwargs)
        next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d)).register_forward_hook(
            lambda module, inputs, out: seen.append((current[0], out.dtype))
        )
        return model

    config = {**DIGITS_CNN, "model": "resnet20", "model_options": {}, "method": "schedulefree", "epochs": 1,
              "loss_pass": "full", "precision": precision}  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(models, "build_model", build)
        for function, name in (("_initial_loss", "initial loss"), ("evaluate", "evaluate"),
                               ("refresh_batchnorm", "BatchNorm refresh")):  # fmt: skip
            patch.setattr(loop, function, spy(name, getattr(loop, function)))
        summary = run(config, tmp_path / "r")
    assert summary["status"] == "finished"
    passes = {name for name, _ in seen}
    assert passes == {"initial loss", "training", "BatchNorm refresh", "full loss pass", "test pass"}, passes
    assert {dtype for _, dtype in seen} == {expected}


def test_bf16_changes_numerics_not_the_quality_and_may_differ_on_resume(tmp_path):
    plain = run({**DIGITS_CNN, "epochs": 3}, tmp_path / "plain")
    bf16 = run({**DIGITS_CNN, "epochs": 3, "precision": "bf16"}, tmp_path / "bf16")
    losses = [[r["train_loss"] for r in metrics(tmp_path / name)] for name in ("plain", "bf16")]
    assert losses[0] != losses[1]  # a different computation, not a label
    assert losses[0][0] == pytest.approx(losses[1][0], rel=0.02)  # later epochs drift apart, as runs do
    assert abs(plain["final_test_acc"] - bf16["final_test_acc"]) <= 0.05
    out = tmp_path / "resumed"
    run({**DIGITS_CNN, "epochs": 1}, out)
    assert run({**DIGITS_CNN, "epochs": 1, "precision": "bf16"}, out, resume=True)["epochs"] == 1  # allowed


def test_every_epoch_records_how_it_was_computed_also_across_a_resume(tmp_path, monkeypatch, caplog):
    config = {**DIGITS_CNN, "epochs": 3}
    real_save = rundir.save_checkpoint

    def dying_save(out, state):
        real_save(out, state)
        raise Interrupt  # the process dies right after epoch 1's checkpoint

    monkeypatch.setattr(rundir, "save_checkpoint", dying_save)
    with pytest.raises(Interrupt):
        run(config, tmp_path / "r")
    monkeypatch.setattr(rundir, "save_checkpoint", real_save)
    with caplog.at_level(logging.WARNING, logger="aalr.harness"):
        summary = run({**config, "precision": "bf16", "channels_last": True}, tmp_path / "r", resume=True)
    assert "at epoch 1 in cpu bf16 channels_last; its epochs so far were computed in cpu fp32" in caplog.text
    assert [row["numerics"] for row in metrics(tmp_path / "r")] == ["cpu fp32"] + [
        "cpu bf16 channels_last"
    ] * 2
    assert summary["numerics"] == ["cpu fp32", "cpu bf16 channels_last"]
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["numerics"] == summary["numerics"]
    assert main(["report", str(tmp_path)]) == 0
    assert (tmp_path / "report.md").read_text().count(
        "; computed in cpu fp32 and cpu bf16 channels_last"
    ) == 1


def test_every_epoch_records_its_cpu_threads_also_across_a_resume(tmp_path, monkeypatch):
    """The thread count changes a run at rounding level (results.md): each epoch says what it had."""
    config = {**DIGITS_CNN, "epochs": 3}
    real_save, threads = rundir.save_checkpoint, torch.get_num_threads()

    def dying_save(out, state):
        real_save(out, state)
        raise Interrupt

    try:
        torch.set_num_threads(1)
        monkeypatch.setattr(rundir, "save_checkpoint", dying_save)
        with pytest.raises(Interrupt):
            run(config, tmp_path / "r")
        monkeypatch.setattr(rundir, "save_checkpoint", real_save)
        torch.set_num_threads(2)
        summary = run(config, tmp_path / "r", resume=True)
    finally:
        torch.set_num_threads(threads)
    assert [row["threads"] for row in metrics(tmp_path / "r")] == [1, 2, 2]
    assert summary["threads"] == [1, 2]


def test_numerics_of_epochs_from_an_older_checkpoint_are_counted_as_unrecorded(tmp_path, monkeypatch, caplog):
    config = {**DIGITS_CNN, "epochs": 2}
    real_save = rundir.save_checkpoint

    def dying_save(out, state):
        for row in state["rows"]:
            row.pop("numerics")  # as a checkpoint written before rows recorded it
        real_save(out, state)
        raise Interrupt

    monkeypatch.setattr(rundir, "save_checkpoint", dying_save)
    with pytest.raises(Interrupt):
        run(config, tmp_path / "r")
    monkeypatch.setattr(rundir, "save_checkpoint", real_save)
    summary = run({**config, "precision": "bf16"}, tmp_path / "r", resume=True)
    assert summary["numerics"] == ["cpu bf16"] and summary["numerics_unrecorded_epochs"] == 1
    assert main(["report", str(tmp_path)]) == 0
    assert (
        "computed in cpu bf16 (1 run(s) with epochs made before this was recorded)"
        in (tmp_path / "report.md").read_text()
    )


def test_no_numerics_warning_when_a_resume_trains_nothing(tmp_path, caplog):
    out = tmp_path / "r"
    run({**DIGITS_CNN, "epochs": 1}, out)
    (out / "summary.json").unlink()  # the process died after its last checkpoint, before the summary
    with caplog.at_level(logging.WARNING, logger="aalr.harness"):
        summary = run({**DIGITS_CNN, "epochs": 1, "precision": "bf16"}, out, resume=True)
    assert "computed in" not in caplog.text
    assert summary["numerics"] == ["cpu fp32"]  # what the epochs were computed in, not what was asked


def test_a_grid_result_records_how_its_grid_runs_computed_too(tmp_path, caplog):
    config = {**DIGITS_CNN, "epochs": 1, "method": "step", "lr": [0.1, 0.05]}
    out = tmp_path / "g"
    assert run(config, out)["numerics"] == ["cpu fp32"]
    for name in ("summary.json", "checkpoint.pt", "checkpoint.prev.pt"):
        (out / name).unlink(missing_ok=True)  # the final run again, in bf16; the finished grid is kept
    with caplog.at_level(logging.WARNING, logger="aalr.harness"):
        summary = run({**config, "precision": "bf16"}, out, resume=True)
    assert summary["numerics"] == ["cpu fp32", "cpu bf16"] and summary["numerics_unrecorded_epochs"] == 0
    assert "the grid's runs and the final run computed in ['cpu fp32', 'cpu bf16']" in caplog.text


def test_precision_is_checked_and_reaches_the_config(tmp_path, capsys):
    with pytest.raises(RunError, match=r"precision must be one of auto, fp32, bf16, got 'fp16'"):
        validate(TrainConfig(**{**DIGITS_CNN, "precision": "fp16"}))
    assert numerics.resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert numerics.resolve_precision("auto", torch.device("cuda")) == "bf16"
    assert numerics.resolve_precision("bf16", torch.device("cpu")) == "bf16"
    argv = ["train", "--dataset", "digits", "--epochs", "1", "--no-progress", "--out"]
    assert main([*argv, str(tmp_path / "cli"), "--precision", "bf16"]) == 0
    assert json.loads((tmp_path / "cli" / "config.json").read_text())["precision"] == "bf16"
    with pytest.raises(SystemExit) as info:
        main([*argv, str(tmp_path / "bad"), "--precision", "fp16"])
    assert info.value.code == 2 and "invalid choice: 'fp16'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("avx512_bf16", "amx", "expected"), [(False, False, False), (True, False, True), (False, True, True)]
)
def test_bf16_instructions_are_looked_for_and_their_absence_warned_about(
    tmp_path, monkeypatch, caplog, avx512_bf16, amx, expected
):
    # oneDNN's own check says yes on any AVX512 CPU, where bf16 is emulated: look at the instructions
    monkeypatch.setattr(numerics.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    assert numerics.cpu_has_bf16() is expected
    with caplog.at_level(logging.WARNING, logger="aalr.harness"):
        run({**DIGITS_CNN, "epochs": 1, "precision": "bf16"}, tmp_path / "r")
    assert ("neither AVX512-BF16 nor AMX" in caplog.text) is not expected
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="aalr.harness"):
        run({**DIGITS_CNN, "epochs": 1}, tmp_path / "fp32")  # fp32 never warns
    assert "AVX512-BF16" not in caplog.text


@pytest.mark.parametrize("onednn", [True, False])
def test_bf16_check_on_arm_asks_onednn(monkeypatch, onednn):
    monkeypatch.setattr(numerics.platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: not onednn, raising=False)
    monkeypatch.setattr(numerics, "_onednn_has_bf16", lambda: onednn)
    assert numerics.cpu_has_bf16() is onednn

    def missing() -> bool:
        raise RuntimeError("no such op")

    monkeypatch.setattr(numerics, "_onednn_has_bf16", missing)
    assert numerics.cpu_has_bf16() is False


def test_bf16_check_survives_a_torch_without_the_private_checks(monkeypatch):
    monkeypatch.setattr(numerics.platform, "machine", lambda: "x86_64")
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    assert numerics.cpu_has_bf16() is False


def test_channels_last_reaches_every_forward_pass_augmented_and_attacked(tmp_path, write_cifar10):
    # 3 channels, so the layout is unambiguous; crop, flip, cutout and random erasing, then FGSM training
    write_cifar10(tmp_path / "data", n_train=80, n_test=40)
    layouts = []

    def record(module, inputs):
        x = inputs[0]
        layouts.append(
            (module.training, x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous())
        )

    from aalr.harness import models

    real_build = models.build_model

    def build(*args, **kwargs):
        model = real_build(*args, **kwargs)
        model.register_forward_pre_hook(record)
        return model

    config = {
        "dataset": "cifar10", "model": "fmnist-cnn", "model_options": {"width": 0.25}, "epochs": 1,
        "batch_size": 32, "cutout": 8, "random_erasing": 0.5, "adversarial": "fgsm", "epsilon": 0.03,
        "robust_samples": 16, "eval_pgd_steps": 2, "channels_last": True, "device": "cpu",
        "data_dir": str(tmp_path / "data"), "progress": False,
    }  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(models, "build_model", build)  # train.run imports it when it runs
        run(config, tmp_path / "r")
    assert any(training for training, _ in layouts) and any(not training for training, _ in layouts)
    assert all(channels_last for _, channels_last in layouts)
