"""Faults a hostile sweep found, each with its regression test, and the mechanisms that fix them, each with
a property or fault-injection test:

- one writer per output directory (a lock held for the whole run): two writers, a stale lock;
- --force never loses the run it replaces: killed after every single change it makes to the folder,
  and its repair killed after every change too, the old run is back, or the new one continues;
- one judge of what a summary is (rundir.read_summary): every kind of damaged summary is "not
  finished", and a resume (or compare) finishes the run again from its checkpoint;
- settings checked before anything is built or written (LR, weight decay, model size, last batch);
- one-line messages for a full disk, Ctrl-C and an unsafe checkpoint.

Processes that must die by SIGKILL (or be paused) run in the crash server of test_crash.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from test_bad_input import run_cli  # tests/harness is on sys.path
from test_crash import Server, metrics

from aalr.cli import main
from aalr.harness import config as config_module
from aalr.harness import guard, rundir, train
from aalr.harness.config import FLOAT32_MAX, RunError, TrainConfig, validate
from aalr.harness.rundir import is_finished, read_summary, short_error

DIGITS = ["--dataset", "digits", "--model", "mlp", "--batch-size", "32", "--train-subset", "64",
          "--device", "cpu", "--no-progress"]  # fmt: skip
OLD = [*DIGITS, "--method", "step", "--lr", "0.1", "0.05", "--epochs", "2", "--seed", "0"]  # a grid run
NEW = [*DIGITS, "--method", "sgdr", "--epochs", "2", "--seed", "1"]
TIMEOUT_S = 120


def train_argv(settings: list[str], out: Path, *extra: str) -> list[str]:
    return ["train", *settings, "--out", str(out), *extra]


def tree(directory: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under ``directory``, but the lock file: a killed run
    leaves it behind, as it must (the lock is the kernel's, not the file's)."""
    if not directory.exists():
        return {}
    return {
        str(path.relative_to(directory)): path.read_bytes() if path.is_file() else None
        for path in sorted(directory.rglob("*"))
        if path.name != guard.LOCK
    }


def no_backup(out: Path) -> bool:
    return not (out / guard.REPLACED).exists() and not (out / guard.MOVING).exists()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("faults")
    (root / "data").mkdir()
    instance = Server(root, datasets=("digits",))
    yield instance
    instance.close()


def ok(reply: dict[str, Any], log: str) -> None:
    assert reply == {"signal": None, "code": 0}, log


@pytest.fixture(scope="module")
def old_run(server: Server) -> Path:
    """A finished grid run: every file a run has (grid/, both checkpoints, summary)."""
    out = server.root / "old"
    ok(*server.train(train_argv(OLD, out)))
    assert {p.name for p in out.iterdir()} == set(rundir.RUN_FILES)
    return out


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run made in this process (for the tests that need no kill)."""
    out = tmp_path_factory.mktemp("runs") / "done"
    code, err = run_cli(train_argv(NEW, out))
    assert code == 0, err
    return out


def copy(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to


# -- row 3: one writer per output directory -------------------------------------------------------
@pytest.mark.parametrize("flags", [[], ["--resume"], ["--force"]])
def test_a_second_writer_on_a_running_out_exits_2_naming_the_first(
    server: Server, tmp_path: Path, flags: list[str]
) -> None:
    out, ready, go = tmp_path / "x", tmp_path / "ready", tmp_path / "go"
    log = server.start(train_argv(NEW, out), {"kind": "pause", "ready": str(ready), "go": str(go)})
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not ready.exists():
            assert time.monotonic() < deadline, "the first run never started training"
            time.sleep(0.05)
        holder = json.loads((out / guard.LOCK).read_text())
        before = tree(out)
        code, err = run_cli(train_argv(OLD, out, *flags))  # another run's settings, into the same folder
        assert code == 2, err
        assert "in use by another aalr run" in err and f"pid {holder['pid']}" in err, err
        assert "Traceback" not in err and err.count("\n") == 1
        assert tree(out) == before  # not a byte changed under the run that holds the folder
    finally:
        go.write_text("go")
    reply, text = server.wait(log)
    ok(reply, text)
    saved = json.loads((out / "config.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert (saved["method"], saved["seed"], summary["method"], summary["seed"]) == ("sgdr", 1, "sgdr", 1)
    assert len(metrics(out)) == summary["epochs"] == 2
    assert not (out / guard.LOCK).exists()  # a run that ends removes its lock file


def test_the_lock_of_a_killed_run_blocks_nothing(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "r"
    reply, log = server.train(train_argv(NEW, out), {"kind": "batch", "at": 3})
    assert reply["signal"] == signal.SIGKILL, log
    assert (out / guard.LOCK).exists()  # the file stays; the kernel dropped the lock with the process
    ok(*server.train(train_argv(NEW, out, "--resume")))
    assert is_finished(out) and not (out / guard.LOCK).exists()


def test_the_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    out = tmp_path / "r"
    first = guard.lock_out_dir(out)
    with pytest.raises(RunError, match=rf"in use by another aalr run \(pid {os.getpid()} on "):
        guard.lock_out_dir(out)  # flock: two open files conflict even within one process
    waiting = os.open(out / guard.LOCK, os.O_RDWR)  # a process that opened the file before the release
    first.release()
    assert not (out / guard.LOCK).exists()
    second = guard.lock_out_dir(out)  # a new file: the waiter's old one no longer counts
    try:
        assert not os.path.samestat(os.fstat(waiting), os.stat(out / guard.LOCK))
    finally:
        os.close(waiting)
        second.release()


# -- row 4: --force never loses the run it replaces -----------------------------------------------
def record_changes(server: Server, argv: list[str], out: Path, record: Path) -> list[list[str]]:
    """The changes ``argv`` makes under ``out``, in order (paths relative to ``out``)."""
    ok(*server.train(argv, {"kind": "file_ops", "under": str(out), "record": str(record)}))
    return [json.loads(line) for line in record.read_text().splitlines()]


def touches_backup(change: list[str]) -> bool:
    return any(path.startswith((guard.REPLACED, guard.MOVING)) for path in change[1:])


def test_force_killed_after_any_change_never_loses_the_run_it_replaces(
    server: Server, old_run: Path, tmp_path: Path
) -> None:
    original = tree(old_run)
    reference = copy(old_run, tmp_path / "reference")  # an uninterrupted --force, recorded
    changes = record_changes(
        server, train_argv(NEW, reference, "--force"), reference, tmp_path / "changes.jsonl"
    )
    first_checkpoint = 1 + next(
        i for i, c in enumerate(changes) if c[0] == "replace" and c[2] == "checkpoint.pt"
    )
    backup_gone = 1 + max(i for i, c in enumerate(changes) if touches_backup(c))
    assert 1 < first_checkpoint < backup_gone  # the backup is deleted only after the first checkpoint
    assert no_backup(reference) and json.loads((reference / "summary.json").read_text())["seed"] == 1
    for at in range(1, backup_gone + 2):  # after every change until the backup is gone, and one more
        where = f"killed after change {at}, {changes[at - 1]}"
        out = copy(old_run, tmp_path / f"killed{at}")
        reply, log = server.train(
            train_argv(NEW, out, "--force"), {"kind": "file_ops", "under": str(out), "at": at}
        )
        assert reply["signal"] == signal.SIGKILL, f"{where}: {log}"
        if at < first_checkpoint:
            # the new run has no checkpoint: the next start puts the old run back, whole
            reply, log = server.train(train_argv(OLD, out, "--resume"))
            assert reply == {"signal": None, "code": 0}, f"{where}: {log}"
            assert tree(out) == original, where
        else:
            # the new run had replaced the old one: the old settings are refused, the new run continues
            reply, log = server.train(train_argv(OLD, out, "--resume"))
            assert reply["code"] == 2 and "settings that differ" in log, f"{where}: {log}"
            reply, log = server.train(train_argv(NEW, out, "--resume"))
            assert reply == {"signal": None, "code": 0}, f"{where}: {log}"
            assert no_backup(out), where
            assert metrics(out) == metrics(reference), where
        shutil.rmtree(out)


def test_the_repair_of_an_interrupted_force_killed_after_any_change_still_puts_the_run_back(
    server: Server, old_run: Path, tmp_path: Path
) -> None:
    original = tree(old_run)
    probe = copy(old_run, tmp_path / "probe")
    changes = record_changes(server, train_argv(NEW, probe, "--force"), probe, tmp_path / "force.jsonl")
    # killed once the new run has written its config.json: the backup complete, a new run begun
    config_written = 1 + next(i for i, c in enumerate(changes) if c[0] == "replace" and c[2] == "config.json")

    def interrupted(name: str) -> Path:
        out = copy(old_run, tmp_path / name)
        reply, log = server.train(
            train_argv(NEW, out, "--force"), {"kind": "file_ops", "under": str(out), "at": config_written}
        )
        assert reply["signal"] == signal.SIGKILL, log
        assert (out / guard.REPLACED).is_dir() and (out / "config.json").exists()
        return out

    state = interrupted("state")
    repair = record_changes(server, train_argv(OLD, state, "--resume"), state, tmp_path / "repair.jsonl")
    assert tree(state) == original
    assert sum(touches_backup(change) for change in repair) >= 3  # it did move the run back
    for at in range(1, len(repair) + 1):
        out = interrupted(f"repair{at}")
        reply, log = server.train(
            train_argv(OLD, out, "--resume"), {"kind": "file_ops", "under": str(out), "at": at}
        )
        assert reply["signal"] == signal.SIGKILL, f"repair killed after change {at}: {log}"
        reply, log = server.train(train_argv(OLD, out, "--resume"))
        assert reply == {"signal": None, "code": 0}, f"repair killed after change {at}: {log}"
        assert tree(out) == original, f"repair killed after change {at}, {repair[at - 1]}"
        shutil.rmtree(out)


@pytest.mark.parametrize("settings", ["the same settings", "other settings"])
def test_force_then_kill_then_resume_keeps_the_old_run(
    server: Server, old_run: Path, tmp_path: Path, settings: str
) -> None:
    # the sweep's repro: `T --force --out OLD & sleep 3; kill -9 $!; T --resume --out OLD`
    out = tmp_path / "OLD"
    if settings == "the same settings":
        ok(*server.train(train_argv(NEW, out)))
    else:
        copy(old_run, out)
    before = tree(out)
    reply, log = server.train(train_argv(NEW, out, "--force"), {"kind": "batch", "at": 1})
    assert reply["signal"] == signal.SIGKILL, log
    assert not (out / "summary.json").exists() and (out / guard.REPLACED).is_dir()
    reply, log = server.train(train_argv(NEW, out, "--resume"))
    assert "the run it was replacing is back in place" in log and "no run in" not in log, log
    if settings == "the same settings":
        ok(reply, log)  # the old run, finished, is returned
    else:
        assert reply["code"] == 2 and "--resume with settings that differ" in log, log
    assert tree(out) == before  # the old run is back, and untouched


# -- row 5: a checkpoint without config.json ------------------------------------------------------
@pytest.mark.parametrize("flags", [[], ["--resume"]])
def test_a_checkpoint_without_config_json_is_refused_naming_it(
    finished: Path, tmp_path: Path, flags: list[str]
) -> None:
    out = copy(finished, tmp_path / "r")
    (out / "config.json").unlink()
    (out / "summary.json").unlink()
    before = tree(out)
    code, err = run_cli(train_argv(NEW, out, *flags))
    assert code == 2 and "checkpoint.pt" in err and "but no config.json" in err and "--force" in err, err
    assert "starting a new one" not in err
    assert tree(out) == before


def test_force_replaces_a_checkpoint_without_config_json(finished: Path, tmp_path: Path) -> None:
    out = copy(finished, tmp_path / "r")
    (out / "config.json").unlink()
    code, err = run_cli(train_argv(NEW, out, "--force", "--seed", "7"))
    assert code == 0, err
    assert json.loads((out / "summary.json").read_text())["seed"] == 7 and no_backup(out)


# -- row 6: a failed grid run blocks no retry -----------------------------------------------------
GRID = [*DIGITS, "--method", "step", "--lr", "0.1", "0.05", "--epochs", "1"]


def test_a_grid_with_an_impossible_split_fails_before_writing_anything(tmp_path: Path) -> None:
    out = tmp_path / "g"
    code, err = run_cli(train_argv(GRID, out, "--val-fraction", "0.999999"))
    assert code == 2 and "val_fraction 0.999999" in err and "Traceback" not in err, err
    assert tree(out) == {}
    code, err = run_cli(train_argv(GRID, out))  # the corrected retry, without --force
    assert code == 0, err


def test_the_leftovers_of_a_failed_grid_run_block_no_retry_with_force(tmp_path: Path) -> None:
    # what the failed grid run of the sweep left (before the split was checked first)
    out = tmp_path / "g"
    leftover = out / "grid" / "lr0.1"
    leftover.mkdir(parents=True)
    config = TrainConfig.from_dict({**TrainConfig().to_dict(), "dataset": "digits", "val_fraction": 0.999999})
    rundir.write_json(leftover / "config.json", rundir.saved_settings(config, validation=True))
    code, err = run_cli(train_argv(GRID, out))
    assert code == 2 and "holds grid but no config.json" in err and "--force" in err, err
    code, err = run_cli(train_argv(GRID, out, "--force"))
    assert code == 0, err
    assert is_finished(out) and is_finished(out / "grid" / "lr0.1") and no_backup(out)


def test_a_grid_that_fails_midway_keeps_its_finished_runs_for_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "g"
    real = train.run_validation
    calls: list[Path] = []

    def second_fails(config: TrainConfig, sub_out: Path, *args: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append(sub_out)
        if len(calls) == 2:
            raise ValueError("simulated failure in the grid's second run")
        return real(config, sub_out, *args, **kwargs)

    monkeypatch.setattr(train, "run_validation", second_fails)
    code, err = run_cli(train_argv(GRID, out))
    assert code == 2 and "simulated failure" in err
    first = tree(out / "grid" / "lr0.1")
    assert is_finished(out / "grid" / "lr0.1") and (out / "config.json").exists()
    monkeypatch.setattr(train, "run_validation", real)
    code, err = run_cli(train_argv(GRID, out, "--resume"))
    assert code == 0, err
    assert tree(out / "grid" / "lr0.1") == first  # finished already: not trained again
    assert "nothing was trained" not in err  # this --resume trained the rest of the grid and the run
    before = tree(out)
    code, err = run_cli(train_argv(GRID, out, "--resume"))  # the whole run is finished: said, not redone
    assert code == 0 and "had finished already, so nothing was trained" in err, err
    assert tree(out) == before
    code, err = run_cli(train_argv(GRID, out, "--resume", "--seed", "3"))  # other settings: said clearly
    assert code == 2 and "seed: saved 0, this command 3" in err and "--force in place of --resume" in err, err
    assert "config.json" in err and "(the default)" not in err
    # a setting the command left out is the default, and the message says so (the user never typed 30)
    without_epochs = [arg for arg in GRID if arg != "--epochs"][:-1]
    code, err = run_cli(train_argv(without_epochs, out, "--resume"))
    assert code == 2 and "epochs: saved 1, this command 30 (the default)" in err, err


def test_aalr_train_defaults_are_train_configs() -> None:
    """The refusal above marks a value "(the default)" by comparing with TrainConfig(): that is only true
    while `aalr train` given nothing but --out builds exactly TrainConfig()'s settings."""
    from aalr.cli import _train_config, build_parser

    args = build_parser().parse_args(["train", "--out", "x"])
    command = rundir.saved_settings(TrainConfig.from_dict(_train_config(args)))
    defaults = rundir.saved_settings(TrainConfig())
    assert {k: (command.get(k), defaults.get(k)) for k in set(command) | set(defaults)} == {
        k: (v, v) for k, v in defaults.items()
    }


# -- row 7: --force replaces runs only ------------------------------------------------------------
@pytest.mark.parametrize("flags", [["--force"], ["--resume"], []])
def test_a_config_json_that_is_not_a_runs_is_never_replaced(tmp_path: Path, flags: list[str]) -> None:
    out = tmp_path / "P"
    (out / "grid").mkdir(parents=True)
    (out / "config.json").write_text('{"app":1}\n')
    (out / "summary.json").write_text('{"app": "results"}\n')
    before = tree(out)
    code, err = run_cli(train_argv(NEW, out, *flags))
    assert code == 2, err
    assert f"{out / 'config.json'}" in err and "not a run's settings" in err and "Traceback" not in err
    assert tree(out) == before


def test_force_refuses_a_run_folder_holding_other_files_naming_them(finished: Path, tmp_path: Path) -> None:
    out = copy(finished, tmp_path / "r")
    (out / "notes.txt").write_text("mine")
    (out / "plots").mkdir()
    before = tree(out)
    code, err = run_cli(train_argv(NEW, out, "--force", "--seed", "2"))
    assert code == 2 and "notes.txt" in err and "plots" in err and "--force replaces a run only" in err, err
    assert tree(out) == before


# -- row 8: values that used to get past validation ------------------------------------------------
@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"lr": 1e39, "method": "sgdr"}, r"lr must be a finite number > 0 that float32 holds .*got 1e\+39"),
        ({"lr": [0.1, 1e39], "method": "step"}, r"lr must be .* float32 holds .*got 1e\+39"),
        ({"weight_decay": 1e300}, r"weight_decay must be a number >= 0 that float32 holds .*got 1e\+300"),
        (
            {"dataset": "digits", "model": "fmnist-cnn", "model_options": {"width": 1e9}},
            r"model 'fmnist-cnn' with options \{'width': 1000000000.0\} cannot be built .*larger than any",
        ),
    ],
)
def test_values_beyond_what_can_train_are_refused_naming_them(values: dict[str, Any], message: str) -> None:
    with pytest.raises(RunError, match=message):
        validate(TrainConfig.from_dict({"epochs": 1, **values}))


def test_the_largest_float32_lr_and_weight_decay_are_allowed() -> None:
    validate(TrainConfig(lr=FLOAT32_MAX, weight_decay=FLOAT32_MAX, method="sgdr"))


def test_a_model_larger_than_the_memory_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config_module, "memory_bytes", lambda device: 2**30)
    config = TrainConfig(dataset="digits", model="fmnist-cnn", model_options={"width": 100})
    with pytest.raises(RunError, match=r"'fmnist-cnn' with options \{'width': 100\} has .* parameters and "
                                       r"needs at least .* GiB to train .*more than the 1 GiB"):  # fmt: skip
        validate(config)
    monkeypatch.setattr(config_module, "memory_bytes", lambda device: 2**40)
    validate(config)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--lr", "1e39", "--method", "sgdr"], "got 1e+39"),
        (["--weight-decay", "1e300"], "got 1e+300"),
        (["--model", "fmnist-cnn", "--model-option", "width=1e9"], "'width': 1000000000.0"),
    ],
)
def test_the_sweeps_tracebacks_are_exit_2_messages(tmp_path: Path, argv: list[str], message: str) -> None:
    out = tmp_path / "y"
    code, err = run_cli(["train", *DIGITS, "--epochs", "1", *argv, "--out", str(out)])
    assert code == 2 and message in err and "Traceback" not in err, err
    assert not out.exists()


def test_an_lr_that_overflows_in_the_optimizers_step_is_an_exit_2_message(tmp_path: Path) -> None:
    # within float32, but Adam divides it by 1 - beta1 = 0.1 at its first step
    out = tmp_path / "a"
    code, err = run_cli(train_argv([*DIGITS, "--method", "adam", "--epochs", "1"], out, "--lr", "3e38"))
    assert code == 2 and "overflowed float32 at epoch 1 with lr 3e+38" in err and "Traceback" not in err
    assert tree(out) == {}  # it failed before its first checkpoint


def test_an_optimizer_that_raises_on_a_non_finite_loss_makes_the_run_diverged(tmp_path: Path) -> None:
    pytest.importorskip("dog")
    out = tmp_path / "d"
    code, err = run_cli(train_argv([*DIGITS, "--method", "dog", "--epochs", "2"], out, "--lr", "3e38"))
    assert code == 0, err  # DoG asserts that its G is positive; with NaN weights it is NaN
    assert json.loads((out / "summary.json").read_text())["status"] == "diverged"


# -- row 9: a disk that fills up mid-run ----------------------------------------------------------
@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full to fill a disk")
def test_a_disk_that_fills_mid_run_is_one_line_with_the_resume_hint(server: Server, tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    ok(*server.train(train_argv(NEW, reference)))
    out = tmp_path / "r"
    reply, log = server.train(
        train_argv(NEW, out), {"kind": "disk_full_after_first_checkpoint", "out": str(out)}
    )
    assert reply == {"signal": None, "code": 1}, log
    assert "Traceback" not in log and log.count("\n") == 1, log
    assert log.startswith(f"aalr train: error: cannot write {str(out / 'metrics.jsonl')!r}: "), log
    assert "No space left on device" in log and "intact" in log and "--resume" in log
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")] == []
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1
    ok(*server.train(train_argv(NEW, out, "--resume")))  # the space is back
    assert metrics(out) == metrics(reference)


def test_a_failed_write_is_one_write_error_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(obj: Any, handle: Any, *args: Any, **kwargs: Any) -> None:
        try:
            raise OSError(28, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos 704 vs 598") from None

    monkeypatch.setattr(torch, "save", full)  # torch's zip writer hides the OSError behind its own error
    with pytest.raises(rundir.WriteError, match=r"cannot write '.*checkpoint.pt': No space left") as raised:
        rundir.save_checkpoint(tmp_path, {"epoch": 1})
    assert raised.value.errno == 28 and raised.value.__suppress_context__
    assert list(tmp_path.iterdir()) == []


# -- row 10: one judge of what a summary is --------------------------------------------------------
def damaged_summaries() -> dict[str, str]:
    good = {"status": "finished", "method": "sgdr", "dataset": "digits", "model": "mlp", "seed": 1,
            "epochs": 2, "final_test_acc": 0.5, "peak_test_acc": 0.5, "lr_trajectory": [0.1, 0.1],
            "wall_seconds": 1.0}  # fmt: skip
    return {
        "not JSON": '{"status": "fini',
        "empty": "",
        "a JSON list": "[1, 2]",
        "a JSON string": '"finished"',
        "an empty object": "{}",
        "a status alone": '{"status": "finished"}',
        "missing a key": json.dumps({k: v for k, v in good.items() if k != "lr_trajectory"}),
        "a wrong status": json.dumps({**good, "status": "FAILED"}),
        "a wrong type": json.dumps({**good, "epochs": "two"}),
        "a boolean for a number": json.dumps({**good, "final_test_acc": True}),
        "a NaN accuracy": json.dumps({**good, "final_test_acc": float("nan")}),
        "an infinite accuracy": json.dumps({**good, "peak_test_acc": float("inf")}),
    }


DAMAGED = damaged_summaries()


@pytest.mark.parametrize("kind", DAMAGED)
def test_a_damaged_summary_is_not_finished_and_resume_finishes_the_run_again(
    finished: Path, tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    out = copy(finished, tmp_path / "r")
    original = json.loads((out / "summary.json").read_text())
    rows = (out / "metrics.jsonl").read_text()
    (out / "summary.json").write_text(DAMAGED[kind])
    assert read_summary(out) is None and not is_finished(out)
    code, err = run_cli(train_argv(NEW, out, "--resume"))
    assert code == 0, err
    assert f"{out / 'summary.json'} is not a run's summary" in caplog.text
    assert "finishing the run again from its checkpoint" in caplog.text
    repaired = read_summary(out)
    assert repaired is not None
    assert {k: v for k, v in repaired.items() if k != "wall_seconds"} == {
        k: v for k, v in original.items() if k != "wall_seconds"
    }
    assert (out / "metrics.jsonl").read_text() == rows  # from the last checkpoint: no epoch trained again


def test_a_resume_rewrites_a_metrics_file_that_a_kill_cut_mid_line(finished: Path, tmp_path: Path) -> None:
    out = copy(finished, tmp_path / "r")
    rows = (out / "metrics.jsonl").read_text()
    (out / "summary.json").unlink()
    (out / "metrics.jsonl").write_text(rows[:-5])  # the last line cut short
    code, err = run_cli(train_argv(NEW, out, "--resume"))
    assert code == 0, err
    assert (out / "metrics.jsonl").read_text() == rows  # the checkpoint's rows, whole
    assert is_finished(out)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda out: (out / "summary.json").mkdir(), "summary.json is a folder where aalr writes a file"),
        (
            lambda out: ((out / "metrics.jsonl").unlink(), (out / "metrics.jsonl").mkdir()),
            "metrics.jsonl is a folder where aalr writes a file",
        ),
        (lambda out: (out / guard.REPLACED).write_text("x"), "is not a folder that aalr made"),
        (lambda out: (out / guard.MOVING).symlink_to(out / "grid"), "is not a folder that aalr made"),
    ],
)
@pytest.mark.parametrize("flags", [["--resume"], ["--force"]])
def test_a_file_where_aalr_keeps_a_folder_or_the_reverse_is_refused_naming_it(
    finished: Path, tmp_path: Path, damage: Any, message: str, flags: list[str]
) -> None:
    out = copy(finished, tmp_path / "r")
    (out / "summary.json").unlink()
    damage(out)
    before = tree(out)
    code, err = run_cli(train_argv(NEW, out, *flags))
    assert code == 2, err
    assert message in err and "Traceback" not in err, err
    assert tree(out) == before


def test_an_out_whose_name_is_too_long_is_exit_2(tmp_path: Path) -> None:
    code, err = run_cli(train_argv(NEW, tmp_path / ("x" * 300)))
    assert code == 2, err
    assert "is not writable" in err and "File name too long" in err and "--resume" not in err, err


def test_a_compare_skips_a_run_that_another_process_is_running_and_records_no_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite, out = tiny_suite(tmp_path / "s.toml"), tmp_path / "o"
    suite.write_text(suite.read_text().replace("seeds = [0]", "seeds = [0, 1]"))
    argv = ["compare", "--suite", str(suite), "--out", str(out), "--no-progress", "--device", "cpu"]
    held = guard.lock_out_dir(out / "s" / "sgdr" / "seed0")  # as another `aalr compare --only` holds it
    try:
        assert main(argv) == 0
    finally:
        held.release()
    assert "s/sgdr/seed0: running in another aalr process, skipped" in capsys.readouterr().out
    assert not (out / "failures.jsonl").exists() and is_finished(out / "s" / "sgdr" / "seed1")
    assert main(argv) == 0  # once it is free, it runs
    assert is_finished(out / "s" / "sgdr" / "seed0")


def test_a_real_summary_is_one(finished: Path) -> None:
    assert rundir.summary_problem(json.loads((finished / "summary.json").read_text())) is None


def tiny_suite(path: Path) -> Path:
    path.write_text(
        'name = "s"\n[defaults]\ndataset = "digits"\nmodel = "mlp"\nmethods = ["sgdr"]\nseeds = [0]\n'
        "epochs = 1\ntrain_subset = 64\nbatch_size = 32\n"
    )
    return path


def test_compare_repairs_a_damaged_summary_instead_of_failing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = tiny_suite(tmp_path / "s.toml")
    argv = [
        "compare",
        "--suite",
        str(suite),
        "--out",
        str(tmp_path / "o"),
        "--no-progress",
        "--device",
        "cpu",
    ]
    assert main(argv) == 0
    (run_dir,) = [p.parent for p in (tmp_path / "o").rglob("summary.json")]
    (run_dir / "summary.json").write_text("[1, 2]")
    capsys.readouterr()
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "FAILED" not in printed and "resuming" in printed, printed
    assert is_finished(run_dir)
    assert main(argv) == 0
    assert "finished already, skipped" in capsys.readouterr().out


# -- row 15: a checkpoint holding pickled objects --------------------------------------------------
class Runs:
    """An object whose unpickling would run a command (never run here: weights_only refuses it)."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, ("echo this must never run",))


ADVICE = (
    "weights_only=False",
    "`weights_only` set to `False`",
    "Re-running",
    "add_safe_globals",
    "allowlist",
)


@pytest.mark.parametrize("held", [argparse.Namespace(lr=0.1), Runs()], ids=["namespace", "reduce-to-system"])
def test_an_unsafe_checkpoint_is_refused_without_advising_the_unsafe_fix(
    finished: Path, tmp_path: Path, held: object
) -> None:
    out = copy(finished, tmp_path / "r")
    (out / "summary.json").unlink()
    for name in (rundir.CHECKPOINT, rundir.PREVIOUS_CHECKPOINT):
        state = torch.load(out / name, weights_only=True)
        state["config"] = held
        torch.save(state, out / name)
    before = tree(out)
    code, err = run_cli(train_argv(NEW, out, "--resume"))
    assert code == 2, err
    assert "only pickle can load" in err and "does not load such files" in err, err
    assert not any(advice in err for advice in ADVICE), err
    assert tree(out) == before


@pytest.mark.parametrize("held", [argparse.Namespace(lr=0.1), Runs()], ids=["namespace", "reduce-to-system"])
def test_short_error_never_shows_torchs_advice(tmp_path: Path, held: object) -> None:
    torch.save({"x": held}, tmp_path / "f.pt")
    with pytest.raises(Exception) as raised:
        torch.load(tmp_path / "f.pt", weights_only=True)
    assert any(advice in str(raised.value) for advice in ADVICE)  # what torch says
    message = short_error(raised.value)
    assert not any(advice in message for advice in ADVICE) and "\n" not in message
    assert ("argparse.Namespace" if isinstance(held, argparse.Namespace) else "posix.system") in message


# -- Ctrl-C ---------------------------------------------------------------------------------------
def test_ctrl_c_is_one_line_that_says_resume_continues(server: Server, tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    ok(*server.train(train_argv(NEW, reference)))
    out = tmp_path / "r"
    reply, log = server.train(train_argv(NEW, out), {"kind": "interrupt", "at": 3})  # in epoch 2
    assert reply == {"signal": None, "code": 130}, log
    assert log == (
        "aalr train: interrupted; the same command with --resume continues from the last checkpoint\n"
    )
    ok(*server.train(train_argv(NEW, out, "--resume")))
    assert metrics(out) == metrics(reference)


def test_ctrl_c_in_compare_says_the_same_command_continues(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupt(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "run", interrupt)
    code = main(["compare", "--suite", str(tiny_suite(tmp_path / "s.toml")), "--out", str(tmp_path / "o")])
    assert code == 130
    err = capsys.readouterr().err
    assert err.startswith("aalr compare: interrupted; the same command again") and "Traceback" not in err


# -- a last batch of one sample where the model cannot train on one ----------------------------------
BATCH_ONE = [
    "--dataset",
    "digits",
    "--model",
    "resnet18",
    "--epochs",
    "1",
    "--device",
    "cpu",
    "--no-progress",
]


def test_a_last_batch_of_one_sample_for_batchnorm_is_refused_before_training(tmp_path: Path) -> None:
    out = tmp_path / "b"
    code, err = run_cli(train_argv(BATCH_ONE, out, "--train-subset", "129", "--batch-size", "128"))
    assert code == 2, err
    assert "--batch-size 128 with 129 training samples" in err and "--train-subset" in err, err
    assert "BatchNorm" in err and "Traceback" not in err
    assert tree(out) == {}


def test_a_validation_split_that_leaves_a_last_batch_of_one_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "b"
    # 130 samples, 13 held out: 117 train the grid's runs, in batches of 116 and 1
    code, err = run_cli(train_argv(BATCH_ONE, out, "--train-subset", "130", "--batch-size", "116",
                                   "--method", "step", "--lr", "0.1", "0.05"))  # fmt: skip
    assert code == 2 and "with 117 training samples left after the validation split" in err, err
    assert tree(out) == {}


def test_a_last_batch_of_one_is_fine_where_the_model_can_train_on_it(tmp_path: Path) -> None:
    # no drop_last: every sample trains every epoch; a model without BatchNorm (fmnist-cnn), or whose
    # BatchNorm sees more than one value per channel, trains on a batch of one
    code, err = run_cli(train_argv([*BATCH_ONE[:3], "fmnist-cnn", *BATCH_ONE[4:]], tmp_path / "c",
                                   "--train-subset", "129", "--batch-size", "128"))  # fmt: skip
    assert code == 0, err
