"""Faults a hostile sweep found, each with its regression test, and the mechanisms that fix them, each with
a property or fault-injection test:

- one judge of what a summary is (rundir.read_summary): every kind of damaged summary is "not
  finished", and a resume (or compare) finishes the run again from its checkpoint;
- one-line messages for a full disk and an unsafe checkpoint.

Processes that must die by SIGKILL (or be paused) run in the crash server of test_crash.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from test_bad_input import run_cli  # tests/harness is on sys.path
from test_crash import Server, metrics

from aalr.cli import main
from aalr.harness import rundir
from aalr.harness.rundir import is_finished, read_summary, short_error

DIGITS = ["--dataset", "digits", "--model", "mlp", "--batch-size", "32", "--train-subset", "64",
          "--device", "cpu", "--no-progress"]  # fmt: skip
OLD = [*DIGITS, "--method", "step", "--lr", "0.1", "0.05", "--epochs", "2", "--seed", "0"]  # a grid run
NEW = [*DIGITS, "--method", "sgdr", "--epochs", "2", "--seed", "1"]
TIMEOUT_S = 120


def train_argv(settings: list[str], out: Path, *extra: str) -> list[str]:
    return ["train", *settings, "--out", str(out), *extra]


def tree(directory: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under ``directory``."""
    if not directory.exists():
        return {}
    return {
        str(path.relative_to(directory)): path.read_bytes() if path.is_file() else None
        for path in sorted(directory.rglob("*"))
    }


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
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run made in this process (for the tests that need no kill)."""
    out = tmp_path_factory.mktemp("runs") / "done"
    code, err = run_cli(train_argv(NEW, out))
    assert code == 0, err
    return out


def copy(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to


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
