"""Bad input that used to get past validation: it failed once training had started (a traceback, or an
output directory left with a config.json, or --force having deleted the run it was to replace)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_bad_input import run_cli  # the same in-process CLI helper (tests/harness is on sys.path)

from aalr.harness import loop, rundir, train
from aalr.harness.config import TrainConfig

TINY = ["--epochs", "1", "--train-subset", "64", "--no-progress"]


def files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "done"
    assert run_cli(["train", *TINY, "--out", str(out)])[0] == 0
    return out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--adversarial", "fgsm", "--epsilon", "0.1"], "'mnist1d' is not one"),
        (["--dataset", "digits", "--adversarial", "fgsm", "--epsilon", "0"], "epsilon must be > 0"),
        (["--dataset", "digits", "--cutout", "99999999999999999999"], "cutout must be an integer in [0, 16]"),
        (["--cutout", "4"], "mnist1d inputs are 1-D"),
        (["--seed", "4294967296"], "seed must be an integer in [0, 4294967295], got 4294967296"),
        (["--method", "adam", "--method-option", "betas=[0.9]"], "betas must be a list of two numbers"),
        (["--method-option", "momentum=NaN"], "momentum must be a number in [0, 1), got nan"),
        (["--method-option", "momentum=abc"], "momentum must be a number in [0, 1), got 'abc'"),
        (["--method", "const", "--method-option", "nesterov=abc"], "nesterov must be true or false"),
        (["--method", "prodigy", "--method-option", "d_coef=abc"], "d_coef must be a finite number"),
        (["--method", "schedulefree", "--method-option", "warmup_steps=-5"], "warmup_steps must be >= 0"),
    ],
)
def test_late_bad_input_exits_2_and_leaves_no_trace(tmp_path: Path, argv: list[str], message: str) -> None:
    code, err = run_cli(["train", *TINY, "--out", str(tmp_path / "new"), *argv])
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "new" / "config.json").exists()


def test_force_with_bad_data_keeps_the_run_it_would_replace(tmp_path: Path, finished: Path) -> None:
    bad = tmp_path / "data"
    bad.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):  # fmt: skip
        (bad / name).write_bytes(b"garbage")
    before = files(finished)
    code, err = run_cli(["train", *TINY, "--out", str(finished), "--force", "--dataset", "fashion-mnist",
                         "--model", "mlp", "--data-dir", str(bad)])  # fmt: skip
    assert code == 2 and "not an IDX file" in err
    assert files(finished) == before


def test_force_that_fails_before_its_first_checkpoint_puts_the_old_run_back(
    tmp_path: Path, finished: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = files(finished)

    def fail(*args: object, **kwargs: object) -> None:
        raise ValueError("simulated failure in the first epoch")

    monkeypatch.setattr(loop, "train_epochs", fail)
    code, err = run_cli(["train", *TINY, "--out", str(finished), "--force", "--seed", "4"])
    assert code == 2 and "simulated failure" in err
    assert files(finished) == before and not (finished / rundir.REPLACED).exists()


def test_resume_and_force_together_are_refused(finished: Path) -> None:
    before = files(finished)
    code, err = run_cli(["train", *TINY, "--out", str(finished), "--resume", "--force"])
    assert code == 2 and "not allowed with argument --resume" in err
    assert files(finished) == before


def test_empty_out_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(["train", *TINY, "--out", ""])
    assert code == 2 and "--out is empty" in err
    assert list(tmp_path.iterdir()) == []


def test_resume_reports_checkpoints_and_configs_that_do_not_fit(tmp_path: Path, finished: Path) -> None:
    out = tmp_path / "partial"
    out.mkdir()
    for name in ("config.json", "metrics.jsonl", "checkpoint.pt"):
        (out / name).write_bytes((finished / name).read_bytes())
    torch.save({"x": 1}, out / "checkpoint.pt")  # a zip that torch loads, but not a checkpoint
    code, err = run_cli(["train", *TINY, "--out", str(out), "--resume"])
    assert code == 2 and "not a checkpoint of this harness" in err and "Traceback" not in err
    state = torch.load(finished / "checkpoint.pt", weights_only=True)
    state["model"] = {key: torch.zeros(1) for key in state["model"]}
    torch.save(state, out / "checkpoint.pt")
    code, err = run_cli(["train", *TINY, "--out", str(out), "--resume"])
    assert code == 2 and "does not fit this run's model and method" in err
    (out / "config.json").write_text(json.dumps([1, 2]))
    code, err = run_cli(["train", *TINY, "--out", str(out), "--resume"])
    assert code == 2 and "holds list, not a run's settings" in err


def test_compare_checks_the_command_line_overrides_first(tmp_path: Path) -> None:
    suite = tmp_path / "s.toml"
    suite.write_text('name = "s"\n[defaults]\nmethods = ["aalr"]\nseeds = [0]\nepochs = 1\n')
    code, err = run_cli(["compare", "--suite", str(suite), "--out", str(tmp_path / "o"), "--device", "tpu"])
    assert code == 2 and "got 'tpu'" in err
    assert not (tmp_path / "o").exists()


def test_report_names_an_unreadable_summary_and_a_bad_out(
    tmp_path: Path, finished: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "runs"
    (root / "a").mkdir(parents=True)
    for name in ("config.json", "metrics.jsonl", "summary.json"):
        (root / "a" / name).write_bytes((finished / name).read_bytes())
    (root / "b").mkdir()
    (root / "b" / "summary.json").write_text("{bad")
    code, err = run_cli(["report", str(root)])
    assert code == 0 and "b/summary.json is unreadable" in caplog.text
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, err = run_cli(["report", str(root), "--out", str(blocker)])
    assert code == 2 and "exists and is not a directory" in err and "--resume" not in err


def test_force_that_succeeds_replaces_the_old_run_and_keeps_no_backup(tmp_path: Path, finished: Path) -> None:
    out = tmp_path / "again"
    out.mkdir()
    for name, content in files(finished).items():
        (out / name).write_bytes(content)
    old_config = json.loads((out / "config.json").read_text())
    code, _ = run_cli(["train", *TINY, "--out", str(out), "--force", "--seed", "5"])
    assert code == 0
    assert json.loads((out / "config.json").read_text())["seed"] == 5 != old_config["seed"]
    assert json.loads((out / "summary.json").read_text())["seed"] == 5
    assert not (out / rundir.REPLACED).exists()


def test_a_missing_data_dir_and_a_resume_with_nothing_to_resume_are_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from aalr.harness.data import load_dataset

    missing = tmp_path / "no-such-dir"
    load_dataset("digits", missing)
    assert f"data dir '{missing}' does not exist" in caplog.text
    code, err = run_cli(["train", *TINY, "--out", str(tmp_path / "fresh"), "--resume"])
    assert code == 0 and "--resume: no run in" in err and "starting a new one" in err


def test_a_finished_run_is_returned_without_loading_its_data(
    finished: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a resumed suite skips its finished runs: each must cost a look at summary.json, not a data load
    def no_load(config: object) -> None:
        raise AssertionError("the data were loaded for a finished run")

    monkeypatch.setattr(loop, "load_data", no_load)
    config = json.loads((finished / "config.json").read_text())
    summary = train.run({k: config[k] for k in rundir.saved_settings(TrainConfig())}, finished, resume=True)
    assert summary == json.loads((finished / "summary.json").read_text())
