"""Tests of the suite file format and the suite runner (aalr.harness.suite)."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aalr.harness.config import TrainConfig
from aalr.harness.methods import SUITE_DEFAULTS
from aalr.harness.rundir import saved_settings
from aalr.harness.suite import (
    SUITES_DIR,
    RunSpec,
    UnusableFile,
    available_suites,
    is_finished,
    load_suite,
    read_json_object,
    read_summary,
    read_text_file,
    run_settings,
    run_suite,
)

ISSUE16_UNTUNED = list(SUITE_DEFAULTS)  # in suites' order: after the paper's methods
ALL_METHODS = [
    "aalr", "aalr-rollback", "step", "sgdr", "clr", "adam", "hypergrad",
    "prodigy", "dadapt", "schedulefree", "dog",
]  # fmt: skip

EXAMPLE = """
name = "quick"
description = "MNIST-1D, every method, 2 seeds; about 5 minutes on 2 cores"
[defaults]
dataset = "mnist1d"
model = "mnist1d-cnn"
epochs = 30
batch_size = 128
seeds = [0, 1]
methods = ["aalr", "aalr-rollback", "step", "sgdr", "clr", "adam", "hypergrad", "prodigy", "dadapt",
           "schedulefree", "dog"]
[defaults.method_options.step]
lr = [0.2, 0.1, 0.05, 0.02]
val_fraction = 0.1
"""


def write(tmp_path: Path, text: str, name: str = "suite.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# Parsing


def test_example_suite_parses_into_one_experiment_named_after_the_suite(tmp_path: Path) -> None:
    suite = load_suite(str(write(tmp_path, EXAMPLE)))
    assert suite.name == "quick"
    assert suite.description.startswith("MNIST-1D")
    assert len(suite.runs) == 2 * len(ALL_METHODS)
    assert suite.experiments == ["quick"]
    assert suite.methods == ALL_METHODS
    # Seed-major order: every method gets seed 0 before any gets seed 1.
    assert [(r.seed, r.method) for r in suite.runs] == [(s, m) for s in (0, 1) for m in ALL_METHODS]
    step = next(r for r in suite.runs if r.method == "step" and r.seed == 1)
    assert step.config == {
        "dataset": "mnist1d",
        "model": "mnist1d-cnn",
        "epochs": 30,
        "batch_size": 128,
        "lr": [0.2, 0.1, 0.05, 0.02],
        "val_fraction": 0.1,
        "method": "step",
        "seed": 1,
        "suite": "quick",
        "experiment": "quick",
    }
    aalr = next(r for r in suite.runs if r.method == "aalr")
    assert "lr" not in aalr.config and "val_fraction" not in aalr.config
    for run in suite.runs:
        assert not {"seeds", "methods", "method_options"} & set(run.config)


def test_experiments_override_defaults_and_method_options_merge(tmp_path: Path) -> None:
    text = """
name = "bs"
[defaults]
dataset = "fashion-mnist"
epochs = 10
batch_size = 128
augment = { flip = true, pad_crop = 4 }
seeds = [0, 1]
methods = ["aalr", "step"]
[defaults.method_options.step]
lr = 0.1
milestones = [5]
[[experiment]]
name = "bs32"
batch_size = 32
seeds = [7]
[experiment.method_options.step]
lr = 0.05
[[experiment]]
name = "erasing"
methods = ["aalr"]
augment = { random_erasing = 0.5 }
"""
    suite = load_suite(write(tmp_path, text))
    assert suite.experiments == ["bs32", "erasing"]
    by_key = {(r.experiment, r.method, r.seed): r.config for r in suite.runs}
    assert set(by_key) == {
        ("bs32", "aalr", 7),
        ("bs32", "step", 7),
        ("erasing", "aalr", 0),
        ("erasing", "aalr", 1),
    }
    assert by_key["bs32", "aalr", 7]["batch_size"] == 32
    assert by_key["bs32", "aalr", 7]["epochs"] == 10
    # The experiment's method_options win key by key over the defaults' ones.
    assert by_key["bs32", "step", 7]["lr"] == 0.05
    assert by_key["bs32", "step", 7]["milestones"] == [5]
    # Tables merge key by key.
    assert by_key["erasing", "aalr", 0]["augment"] == {"flip": True, "pad_crop": 4, "random_erasing": 0.5}
    assert by_key["erasing", "aalr", 0]["batch_size"] == 128
    # Each run's config is its own copy.
    by_key["erasing", "aalr", 0]["augment"]["flip"] = False
    assert by_key["erasing", "aalr", 1]["augment"]["flip"] is True


def test_run_dir_layout(tmp_path: Path) -> None:
    spec = RunSpec(experiment="bs32", method="aalr-rollback", seed=3, config={})
    assert spec.run_dir(tmp_path) == tmp_path / "bs32" / "aalr-rollback" / "seed3"
    assert spec.run_dir(str(tmp_path)) == tmp_path / "bs32" / "aalr-rollback" / "seed3"


BAD_SUITES = [
    ('name = "x"\nmethodz = ["aalr"]\n', r"unknown top-level key\(s\) 'methodz'; allowed: name, description"),
    ("[defaults]\nseeds = [0]\nmethods = ['aalr']\n", r"missing top-level key 'name'"),
    ('name = ""\n[defaults]\nseeds = [0]\nmethods = ["aalr"]\n', r"'name' must be a non-empty string"),
    (
        'name = "x"\n[defaults]\nseeds = [0]\nmethods = []\n',
        r"'methods' in \[defaults\] must be a non-empty list",
    ),
    (
        'name = "x"\n[defaults]\nseeds = []\nmethods = ["aalr"]\n',
        r"'seeds' in \[defaults\] must be a non-empty list",
    ),
    (
        'name = "x"\n[defaults]\nseeds = ["0"]\nmethods = ["aalr"]\n',
        r"'seeds' .* non-negative integers, got '0'",
    ),
    ('name = "x"\n[defaults]\nseeds = [1.5]\nmethods = ["aalr"]\n', r"non-negative integers, got 1.5"),
    ('name = "x"\n[defaults]\nseeds = [true]\nmethods = ["aalr"]\n', r"non-negative integers, got True"),
    (
        'name = "x"\n[defaults]\nseeds = 0\nmethods = ["aalr"]\n',
        r"'seeds' in \[defaults\] must be a non-empty list",
    ),
    ('name = "x"\n[defaults]\nseeds = [0, 0]\nmethods = ["aalr"]\n', r"lists a seed twice"),
    ('name = "x"\n[defaults]\nseeds = [0]\nmethods = ["aalr", "aalr"]\n', r"lists a method twice"),
    ('name = "x"\n[defaults]\nseeds = [0]\nmethods = ["../x"]\n', r"becomes a folder name\), got '../x'"),
    (
        'name = "x"\n[defaults]\nseeds = [0]\nmethods = ["aalr"]\n'
        '[[experiment]]\nname = "a"\n[[experiment]]\nname = "a"\n',
        r"duplicate experiment name 'a'",
    ),
    (
        'name = "x"\n[defaults]\nseeds = [0]\nmethods = ["aalr"]\n[[experiment]]\nepochs = 3\n',
        r"experiment 1 has no 'name'",
    ),
    ('name = "x"\n[defaults]\nseed = 0\nmethods = ["aalr"]\n', r"key 'seed' is not allowed in \[defaults\]"),
    ('name = "x"\n[defaults]\nseeds = [0]\nmethod = "aalr"\n', r"key 'method' is not allowed .*'methods'"),
    (
        'name = "x"\n[defaults]\nseeds = [0]\nmethods = ["aalr"]\nexperiment = "y"\n',
        r"key 'experiment' is not allowed in \[defaults\]",
    ),
    ('name = "x"\n[defaults]\nseeds = [0]\n', r"experiment 'x' has no 'methods'"),
    ('name = "x"\n[defaults]\nmethods = ["aalr"]\n', r"experiment 'x' has no 'seeds'"),
    (
        'name = "x"\n[defaults]\nseeds = [0]\nmethods = ["aalr"]\n[defaults.method_options.stpe]\nlr = 0.1\n',
        r"method_options for 'stpe', which no experiment runs; methods run: aalr",
    ),
    (
        'name = "x"\n[defaults]\nseeds = [0]\nmethods = ["aalr"]\n[defaults.method_options]\naalr = 3\n',
        r"method_options.aalr in \[defaults\] must be a table",
    ),
    (
        'name = "x"\n[defaults]\nseeds = [0]\nmethods = ["aalr"]\n'
        "[defaults.method_options.aalr]\nseeds = [1]\n",
        r"key 'seeds' is not allowed in method_options.aalr",
    ),
    ('name = "x"\n[defaults\n', r"not valid TOML"),
]


@pytest.mark.parametrize(("text", "message"), BAD_SUITES)
def test_bad_suite_files_are_rejected_naming_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match=message) as caught:
        load_suite(path)
    assert str(path) in str(caught.value)


def test_unknown_suite_name_lists_available_suites() -> None:
    available = available_suites()
    assert available, "the repository ships suites"
    with pytest.raises(ValueError, match=r"unknown suite 'no-such-suite'; available suites: ") as caught:
        load_suite("no-such-suite")
    for name in available:
        assert name in str(caught.value)


def test_missing_suite_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"suite file .*missing\.toml does not exist"):
        load_suite(str(tmp_path / "missing.toml"))


def test_validate_callback_sees_every_run_and_its_errors_name_the_place(tmp_path: Path) -> None:
    path = write(tmp_path, EXAMPLE)
    seen: list[dict[str, Any]] = []
    load_suite(path, validate=seen.append)
    assert [(c["method"], c["seed"]) for c in seen] == [(m, s) for s in (0, 1) for m in ALL_METHODS]

    def reject_dog(config: dict[str, Any]) -> None:
        if config["method"] == "dog":
            raise ValueError("unknown method 'dog'; known: aalr, step")

    with pytest.raises(ValueError, match=r"experiment 'quick', method 'dog': unknown method 'dog'"):
        load_suite(path, validate=reject_dog)


# ---------------------------------------------------------------------------------------------
# The paper suites


def test_suites_dir_holds_the_paper_suites() -> None:
    assert SUITES_DIR.is_dir()
    assert {"table1-cifar10", "table2-cifar100"} <= set(available_suites())


def test_table1_follows_the_paper() -> None:
    suite = load_suite("table1-cifar10")
    # Models of Table 1; epochs and batch sizes of Section 5.1.
    expected = {
        "resnet18": ("resnet18", 200, 128),
        "simplenetv1": ("simplenetv1", 540, 100),
        "vgg16": ("vgg16", 200, 128),
        "vgg16-bn": ("vgg16-bn", 200, 128),
        "wrn-28-10-dropout": ("wrn-28-10", 200, 128),
        "wrn-28-10-dropout-cutout": ("wrn-28-10", 200, 128),
    }
    assert suite.experiments == list(expected)
    assert suite.methods == [*ALL_METHODS[:2], "aalr-plus", *ALL_METHODS[2:], *ISSUE16_UNTUNED]
    for run in suite.runs:
        assert run.config["dataset"] == "cifar10"
        model, epochs, batch_size = expected[run.experiment]
        assert (run.config["model"], run.config["epochs"], run.config["batch_size"]) == (
            model,
            epochs,
            batch_size,
        )
        assert (run.config.get("cutout", 0) == 16) == run.experiment.endswith("cutout")
    assert sorted({r.seed for r in suite.runs}) == [0, 1, 2]
    assert len(suite.runs) == len(expected) * (len(ALL_METHODS) + 1 + len(ISSUE16_UNTUNED)) * 3
    assert "GPU" in suite.description


def test_table2_follows_the_paper() -> None:
    suite = load_suite("table2-cifar100")
    expected = {
        "wrn-28-10-dropout": ("wrn-28-10", 200, 128),
        "simplenetv1": ("simplenetv1", 540, 64),
        "vgg16": ("vgg16", 200, 128),
    }
    assert suite.experiments == list(expected)
    for run in suite.runs:
        assert run.config["dataset"] == "cifar100"
        model, epochs, batch_size = expected[run.experiment]
        assert (run.config["model"], run.config["epochs"], run.config["batch_size"]) == (
            model,
            epochs,
            batch_size,
        )
    assert sorted({r.seed for r in suite.runs}) == [0, 1, 2]
    assert "GPU" in suite.description


# ---------------------------------------------------------------------------------------------
# Running


def a_summary(**values: Any) -> dict[str, Any]:
    """A summary.json with every key a finished run writes (what read_summary takes for a summary)."""
    return {
        "status": "finished", "method": "aalr", "dataset": "digits", "model": "mlp", "seed": 0,
        "epochs": 1, "final_test_acc": 0.5, "peak_test_acc": 0.5, "lr_trajectory": [0.1],
        "wall_seconds": 1.0, **values,
    }  # fmt: skip


class FakeTrain:
    """Records its calls and writes config.json, metrics.jsonl and summary.json as train.py does (every
    setting, one line per epoch, the summary last); fails for the methods it is told to."""

    def __init__(self, fail: tuple[str, ...] = (), silent: tuple[str, ...] = ()) -> None:
        self.calls: list[tuple[dict[str, Any], Path]] = []
        self.fail = fail
        self.silent = silent

    def __call__(self, config: dict[str, Any], out_dir: Path) -> None:
        self.calls.append((config, out_dir))
        if config["method"] in self.fail:
            raise RuntimeError(f"{config['method']} exploded")
        out_dir.mkdir(parents=True, exist_ok=True)
        settings = TrainConfig.from_dict({k: v for k, v in config.items() if k != "resume"})
        saved = {**saved_settings(settings), "version": "0.0", "git_commit": "abc"}
        (out_dir / "config.json").write_text(json.dumps(saved))
        epochs = settings.epochs
        rows = [{"epoch": e, "lr": 0.1, "test_acc": 0.5} for e in range(1, epochs + 1)]
        (out_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        if config["method"] in self.silent:
            return
        summary = a_summary(
            epochs=epochs,
            method=config["method"],
            seed=config["seed"],
            experiment=config["experiment"],
            lr_trajectory=[0.1] * epochs,
        )
        (out_dir / "summary.json").write_text(json.dumps(summary))


def small_suite(tmp_path: Path) -> Any:
    text = """
name = "small"
[defaults]
dataset = "digits"
seeds = [0, 1]
methods = ["aalr", "step", "adam"]
[[experiment]]
name = "a"
[[experiment]]
name = "b"
seeds = [0]
"""
    return load_suite(write(tmp_path, text))


def test_run_suite_runs_everything_in_order_and_skips_finished_runs_next_time(tmp_path: Path) -> None:
    suite = small_suite(tmp_path)
    out = tmp_path / "out"
    train = FakeTrain()
    messages: list[str] = []
    done = run_suite(suite, out, train, progress=messages.append)
    assert [d for _, d in train.calls] == [r.run_dir(out) for r in suite.runs]
    assert done == [r.run_dir(out) for r in suite.runs]
    assert all(config["resume"] is False for config, _ in train.calls)
    assert len(messages) == 2 * len(suite.runs)
    order = json.loads((out / "suite.json").read_text())
    assert order["name"] == "small"
    assert [r["run_dir"] for r in order["runs"]] == [
        r.run_dir(out).relative_to(out).as_posix() for r in suite.runs
    ]

    again = FakeTrain()
    messages.clear()
    assert run_suite(suite, out, again, progress=messages.append) == done
    assert again.calls == []
    assert all("finished already, skipped" in m for m in messages)


def test_partial_runs_resume_and_finished_runs_are_skipped(tmp_path: Path) -> None:
    suite = small_suite(tmp_path)
    out = tmp_path / "out"
    finished, partial, empty = suite.runs[0], suite.runs[1], suite.runs[2]
    finished.run_dir(out).mkdir(parents=True)
    (finished.run_dir(out) / "config.json").write_text(json.dumps(finished.config))
    (finished.run_dir(out) / "summary.json").write_text(json.dumps(a_summary()))
    partial.run_dir(out).mkdir(parents=True)
    (partial.run_dir(out) / "metrics.jsonl").write_text('{"epoch": 1}\n')
    (partial.run_dir(out) / "summary.json.tmp").write_text("{")  # a write that was cut short
    empty.run_dir(out).mkdir(parents=True)  # made, then killed before anything was written

    train = FakeTrain()
    run_suite(suite, out, train, progress=lambda _: None)
    called = {d: config for config, d in train.calls}
    assert finished.run_dir(out) not in called
    assert called[partial.run_dir(out)]["resume"] is True
    assert called[empty.run_dir(out)]["resume"] is False
    assert len(train.calls) == len(suite.runs) - 1
    # The spec's own config is untouched by the runner.
    assert "resume" not in partial.config


def test_a_failing_run_is_recorded_and_the_suite_goes_on(tmp_path: Path) -> None:
    suite = small_suite(tmp_path)
    out = tmp_path / "out"
    train = FakeTrain(fail=("step",), silent=("adam",))
    messages: list[str] = []
    done = run_suite(suite, out, train, progress=messages.append)
    assert len(train.calls) == len(suite.runs)
    assert done == [r.run_dir(out) for r in suite.runs if r.method == "aalr"]
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert [(f["experiment"], f["method"], f["seed"]) for f in failures] == [
        (r.experiment, r.method, r.seed) for r in suite.runs if r.method in ("step", "adam")
    ]
    step_failure = next(f for f in failures if f["method"] == "step")
    assert step_failure["error"] == "RuntimeError: step exploded"
    assert "RuntimeError" in step_failure["traceback"]
    adam_failure = next(f for f in failures if f["method"] == "adam")
    assert "without writing summary.json" in adam_failure["error"]
    assert sum("FAILED" in m for m in messages) == len(failures)


def test_keyboard_interrupt_stops_the_suite(tmp_path: Path) -> None:
    suite = small_suite(tmp_path)

    def interrupted(config: dict[str, Any], out_dir: Path) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_suite(suite, tmp_path / "out", interrupted, progress=lambda _: None)


@pytest.mark.parametrize(
    ("only", "expected"),
    [
        ("b", [("b", "aalr", 0), ("b", "step", 0), ("b", "adam", 0)]),
        ("step", [("a", "step", 0), ("a", "step", 1), ("b", "step", 0)]),
        ("a/*/seed1", [("a", "aalr", 1), ("a", "step", 1), ("a", "adam", 1)]),
    ],
)
def test_only_selects_runs(tmp_path: Path, only: str, expected: list[tuple[str, str, int]]) -> None:
    suite = small_suite(tmp_path)
    train = FakeTrain()
    run_suite(suite, tmp_path / "out", train, only=only, progress=lambda _: None)
    assert [(c["experiment"], c["method"], c["seed"]) for c, _ in train.calls] == expected


def test_only_that_matches_nothing_is_an_error(tmp_path: Path) -> None:
    suite = small_suite(tmp_path)
    with pytest.raises(ValueError, match=r"only='sgdr' matches no run of suite 'small'.*aalr, step, adam"):
        run_suite(suite, tmp_path / "out", FakeTrain(), only="sgdr", progress=lambda _: None)


def test_an_output_folder_of_another_suite_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "suite.json").write_text(json.dumps({"name": "quick", "runs": []}))
    with pytest.raises(ValueError, match=r"holds results of suite 'quick', not 'small'"):
        run_suite(small_suite(tmp_path), out, FakeTrain(), progress=lambda _: None)


def test_read_summary_needs_a_json_object(tmp_path: Path) -> None:
    assert read_summary(tmp_path) is None
    (tmp_path / "summary.json").write_text("[1, 2]")
    assert read_summary(tmp_path) is None
    (tmp_path / "summary.json").write_text('{"status": "fin')
    assert not is_finished(tmp_path)
    # a status alone is not a summary: a finished run writes its results too (tests/harness/test_faults.py)
    (tmp_path / "summary.json").write_text('{"status": "diverged"}')
    assert read_summary(tmp_path) is None
    assert not is_finished(tmp_path)
    (tmp_path / "summary.json").write_text(json.dumps(a_summary(status="diverged")))
    assert read_summary(tmp_path) == a_summary(status="diverged")
    assert is_finished(tmp_path)


def test_the_suites_live_in_the_package_and_the_repository_links_to_them() -> None:
    import aalr

    assert SUITES_DIR == Path(aalr.__file__).resolve().parent / "suites"
    assert (Path(__file__).resolve().parents[2] / "suites").resolve() == SUITES_DIR


# ---------------------------------------------------------------------------------------------
# Reusing finished runs only with the settings the suite gives them now


def edited(tmp_path: Path, epochs: int, extra: str = "") -> Any:
    text = f'name = "small"\n[defaults]\ndataset = "digits"\nepochs = {epochs}\nseeds = [0, 1]\n'
    text += f'methods = ["aalr", "step"]\n{extra}'
    return load_suite(write(tmp_path, text))


def tree(directory: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(directory)): p.read_bytes() if p.is_file() else None
        for p in sorted(directory.rglob("*"))
    }


def test_an_edited_suite_refuses_to_reuse_runs_made_with_other_settings(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_suite(edited(tmp_path, epochs=3), out, FakeTrain(), progress=lambda _: None)
    before = tree(out)
    again = FakeTrain()
    with pytest.raises(ValueError) as caught:
        run_suite(edited(tmp_path, epochs=5), out, again, progress=lambda _: None)
    message = str(caught.value)
    assert f"{out} holds 4 run(s) made with other settings than suite 'small' gives them now" in message
    assert "small/aalr/seed0: epochs: 3 in the run, 5 in the suite" in message
    assert "small/step/seed1: epochs: 3 in the run, 5 in the suite" in message
    assert "Give another --out, or delete those runs' folders" in message
    assert again.calls == [] and tree(out) == before  # refused before anything ran or was written


def test_a_setting_the_suite_drops_or_adds_is_a_difference_too(tmp_path: Path) -> None:
    out = tmp_path / "out"
    step_lr = "[defaults.method_options.step]\nlr = 0.2\n"
    run_suite(edited(tmp_path, 3, step_lr), out, FakeTrain(), progress=lambda _: None)
    with pytest.raises(ValueError, match=r"small/step/seed0: lr: 0\.2 in the run, None in the suite"):
        run_suite(edited(tmp_path, 3), out, FakeTrain(), progress=lambda _: None)
    aalr_lr = "[defaults.method_options.aalr]\nlr = 0.05\n"
    with pytest.raises(
        ValueError, match=r"small/aalr/seed0: lr: None in the run, 0\.05 in the suite"
    ) as caught:
        run_suite(edited(tmp_path, 3, step_lr + aalr_lr), out, FakeTrain(), progress=lambda _: None)
    assert "holds 2 run(s)" in str(caught.value) and "step" not in str(caught.value), "only those that differ"


def test_finished_runs_are_reused_whatever_says_how_or_with_what_code_they_ran(tmp_path: Path) -> None:
    suite = edited(tmp_path, epochs=3)
    out = tmp_path / "out"
    run_suite(suite, out, FakeTrain(), progress=lambda _: None)
    for run in suite.runs:
        path = run.run_dir(out) / "config.json"
        saved = json.loads(path.read_text())
        saved.update(device="cuda", precision="bf16", channels_last=True, data_dir="/d", progress=False)
        saved.update(version="9.9", git_commit="fed")
        del saved["model_options"]  # a setting added after the run was made: taken at its default
        saved["method_options"] = {}  # an empty setting of an older version (method_args' former name)
        path.write_text(json.dumps(saved))
    again = FakeTrain()
    messages: list[str] = []
    run_suite(suite, out, again, progress=messages.append)
    assert again.calls == [] and all("finished already, skipped" in m for m in messages)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda p: p.write_text('{"epochs": 3'), r"config.json is not valid JSON \(Expecting"),
        (lambda p: p.write_bytes(b"\xff"), r"config.json is not UTF-8 text \(byte 0xff on line 1\)"),
        (lambda p: p.write_text("[3]"), r"config.json is a JSON array, not an object"),
        (lambda p: p.write_text(""), r"config.json is empty"),
        (lambda p: p.unlink(), r"config.json is missing"),
        (lambda p: (p.unlink(), p.mkdir()), r"config.json is a directory, not a file"),
    ],
)
def test_a_finished_run_whose_settings_cannot_be_read_is_not_reused(
    tmp_path: Path, damage: Callable[[Path], object], reason: str
) -> None:
    suite = edited(tmp_path, epochs=3)
    out = tmp_path / "out"
    run_suite(suite, out, FakeTrain(), progress=lambda _: None)
    damage(suite.runs[1].run_dir(out) / "config.json")
    again = FakeTrain()
    with pytest.raises(ValueError, match=r"small/step/seed0: its settings cannot be checked: " + reason):
        run_suite(suite, out, again, progress=lambda _: None)
    assert again.calls == []


def test_a_partly_made_run_with_other_settings_is_refused_before_any_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_suite(edited(tmp_path, epochs=3), out, FakeTrain(silent=("step",)), progress=lambda _: None)
    assert not (out / "small" / "step" / "seed0" / "summary.json").exists()
    again = FakeTrain()
    with pytest.raises(ValueError, match=r"(?s)holds 4 run\(s\).*small/step/seed0: epochs: 3 in the run, 5"):
        run_suite(edited(tmp_path, epochs=5), out, again, progress=lambda _: None)
    assert again.calls == []


def test_the_suite_ends_saying_how_many_runs_failed(tmp_path: Path) -> None:
    messages: list[str] = []
    run_suite(small_suite(tmp_path), tmp_path / "out", FakeTrain(fail=("step",)), progress=messages.append)
    assert messages[-1] == f"3 of 9 run(s) failed; each is recorded in {tmp_path / 'out' / 'failures.jsonl'}"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty"),
        (b" \n", "empty"),
        (b'{"a": 1}\n\xfe', "not UTF-8 text (byte 0xfe on line 2)"),
        (b'{"a": ', "not valid JSON (Expecting value: line 1 column 7 (char 6))"),
        (b"null", "a JSON null, not an object"),
        (b'"text"', "a JSON string, not an object"),
        (b"3.5", "a JSON number, not an object"),
        (b"true", "a JSON boolean, not an object"),
    ],
)
def test_read_json_object_says_why_a_file_cannot_be_used(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(content)
    with pytest.raises(UnusableFile) as caught:
        read_json_object(path)
    assert (caught.value.path, caught.value.reason) == (path, reason)
    assert str(caught.value) == f"{path}: {reason}"
    path.write_text('{"a": [1]}')
    assert read_json_object(path) == {"a": [1]}
    path.write_bytes(content)
    if reason == "empty":  # failures.jsonl may be empty: no run failed
        assert read_text_file(path, allow_empty=True) == content.decode()


def test_run_settings_fill_in_defaults_and_leave_out_how_a_run_ran() -> None:
    defaults = run_settings({})
    assert defaults["epochs"] == TrainConfig().epochs and defaults["method_args"] == {}
    assert not {"device", "precision", "channels_last", "data_dir", "progress", "version"} & set(defaults)
    assert run_settings({"epochs": 30, "method_options": {}, "resume": True}) == defaults
    assert run_settings({"method_options": {"x": 1}})["method_options"] == {"x": 1}
    assert run_settings({"augment": {"flip": True}})["augment"] == {"flip": True}


# ---------------------------------------------------------------------------------------------
# aalr compare: failed runs, damaged files and edited suites end in a report or a refusal, never silence

TINY_SUITE = 'name = "tiny"\n[defaults]\ndataset = "mnist1d"\nepochs = {epochs}\nseeds = [0, 1]\n'
TINY_SUITE += 'methods = ["aalr", "sgdr"]\n'


def compare(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, train: FakeTrain, epochs: int = 2
) -> tuple[int | str | None, str, str]:
    """``aalr compare`` of a two-method suite into tmp_path/out with ``train`` for train.run:
    (exit code, stdout, stderr)."""
    from aalr import cli

    monkeypatch.setattr(cli, "suite_run_fn", lambda overrides, **where: train)
    path = write(tmp_path, TINY_SUITE.format(epochs=epochs), name="tiny.toml")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["compare", "--suite", str(path), "--out", str(tmp_path / "out"), "--no-progress"])
    return code, out.getvalue(), err.getvalue()


def test_compare_keeps_a_failed_method_in_the_table_and_lists_each_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, printed, _ = compare(tmp_path, monkeypatch, FakeTrain(fail=("sgdr",)))
    report = (tmp_path / "out" / "report.md").read_text()
    for text in (printed, report):
        assert "| aalr | 2 | 50.00 ± 0.00 |" in text
        assert "| sgdr | 0 of 2 (2 crashed) | – | – | – | – | 0/0 |" in text
        assert text.index("| aalr |") < text.index("| sgdr |")  # the suite's order
        assert "Runs that crashed (2): they raised and left no summary.json" in text
        assert "- `tiny/sgdr/seed0`: RuntimeError: sgdr exploded\n- `tiny/sgdr/seed1`: RuntimeError" in text
    assert "2 of 4 run(s) failed; each is recorded in" in printed
    assert (tmp_path / "out" / "results.csv").read_text().splitlines()[2].startswith("tiny,sgdr,")


def test_compare_exits_1_after_writing_the_report_when_a_run_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = compare(tmp_path, monkeypatch, FakeTrain(fail=("sgdr",)))
    assert (tmp_path / "out" / "report.md").exists()
    assert code == 1 and "2 run(s) failed" in err


def test_compare_reports_around_a_damaged_finished_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert compare(tmp_path, monkeypatch, FakeTrain())[0] == 0
    damaged = tmp_path / "out" / "tiny" / "aalr" / "seed1" / "metrics.jsonl"
    with damaged.open("ab") as handle:
        handle.write(b"\xff\n")
    again = FakeTrain()
    code, printed, _ = compare(tmp_path, monkeypatch, again)
    assert code == 0 and again.calls == []
    report = (tmp_path / "out" / "report.md").read_text()
    for text in (printed, report):
        assert "| aalr | 1 | 50.00 ± – |" in text and "| sgdr | 2 |" in text
        assert "- `tiny/aalr/seed1/metrics.jsonl`: not UTF-8 text (byte 0xff on line 3)" in text
    assert f"{damaged} is unreadable: not UTF-8 text" in caplog.text  # on stderr, through logging


def test_compare_of_an_edited_suite_refuses_with_exit_2_and_runs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert compare(tmp_path, monkeypatch, FakeTrain(), epochs=2)[0] == 0
    before = tree(tmp_path / "out")
    again = FakeTrain()
    code, _, err = compare(tmp_path, monkeypatch, again, epochs=3)
    assert code == 2 and again.calls == [] and tree(tmp_path / "out") == before
    assert err.startswith("aalr compare: error: ") and "holds 4 run(s) made with other settings" in err
    assert "tiny/aalr/seed0: epochs: 2 in the run, 3 in the suite" in err and "another --out" in err
