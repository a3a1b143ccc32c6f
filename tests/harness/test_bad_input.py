"""Bad input, swept: every bad setting (on the command line, in a TrainConfig, in a suite file) gets a
message naming the setting and the value, exit code 2, and leaves an existing run directory as it was.
An output directory that cannot be written, or a full disk, is reported before training starts.

The sweeps are hypothesis property tests, parametrized by setting so that every setting is tried.
Each example must fail before any training, so they are fast; loading the data set (where training
starts) is replaced by an AssertionError here, so a bad value that validation misses fails its test
at once rather than after a run.
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import math
import re
import shutil
import string
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aalr.cli import main
from aalr.harness import data as data_module
from aalr.harness.config import RunError, TrainConfig, validate
from aalr.harness.data import DATASETS
from aalr.harness.methods import METHODS
from aalr.harness.models import MODELS

# Each sweep is parametrized by setting, so every setting is tried whatever hypothesis draws.
SWEEP = settings(max_examples=10, deadline=None)
TINY = ["--epochs", "1", "--train-subset", "64", "--no-progress"]  # in case validation lets one through
TINY_CONFIG: dict[str, Any] = {"epochs": 1, "train_subset": 64, "progress": False}
PGD = {"adversarial": "pgd", "epsilon": 0.03, "alpha": 0.01, "steps": 2}
# The word a message uses for a setting, where it is not the setting's own name.
WORD = {"adversarial": "attack"}


# -- helpers -------------------------------------------------------------------------------------
def run_cli(argv: list[str]) -> tuple[int | str | None, str]:
    """``aalr <argv>`` in this process: (exit code, stderr). argparse's errors exit via SystemExit."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code: int | str | None = main(argv)
        except SystemExit as error:
            code = error.code
    return code, err.getvalue()


def snapshot(directory: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under ``directory``: names, sizes and contents."""
    return {
        str(path.relative_to(directory)): path.read_bytes() if path.is_file() else None
        for path in sorted(directory.rglob("*"))
    }


def make_run_dir(path: Path) -> Path:
    """A folder holding a finished run's files (all that prepare_out_dir and --force look at)."""
    path.mkdir(parents=True)
    config = {**TrainConfig(**TINY_CONFIG).to_dict(), "version": "0", "git_commit": "unknown"}
    (path / "config.json").write_text(json.dumps(config))
    (path / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "lr": 0.1, "test_acc": 0.5}) + "\n")
    (path / "summary.json").write_text(json.dumps({"status": "finished", "epochs": 1}))
    torch.save({"epoch": 1}, path / "checkpoint.pt")
    return path


def make_other_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "keep.txt").write_text("earlier results, not a run")
    return path


REAL_LOAD_DATASET = data_module.load_dataset


@pytest.fixture(autouse=True, scope="module")
def no_training() -> Iterator[None]:
    """Every test here must stop before training; loading the data is where training starts.

    So a bad value that validation lets through fails its test at once, not after a run.
    """

    def load_dataset(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("training started: the bad input was not caught before it")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(data_module, "load_dataset", load_dataset)
        yield


@pytest.fixture(scope="module")
def existing(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("existing")
    return {"run": make_run_dir(root / "run"), "other": make_other_dir(root / "other")}


def assert_names(err: str, setting: str, value_text: str) -> None:
    words = {setting, setting.replace("_", "-"), WORD.get(setting, setting)}
    assert any(word in err for word in words), f"the message does not name {setting!r}: {err}"
    assert value_text in err, f"the message does not name the value {value_text}: {err}"
    assert "Traceback" not in err


# -- strategies ----------------------------------------------------------------------------------
def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


NAME = st.text(string.ascii_letters + string.digits + "-_.", min_size=1, max_size=10)
NOT_A_NUMBER = NAME.filter(lambda text: not _is_number(text))
NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])
FLOAT = st.floats(allow_nan=True, allow_infinity=True)


def unknown_name(known: tuple[str, ...] | list[str]) -> st.SearchStrategy[str]:
    return NAME.filter(lambda text: text not in known)


def below_one() -> st.SearchStrategy[int]:
    return st.integers(min_value=-(10**9), max_value=0)


# Per setting: bad values as Python values (the config layer and suite files), and the context
# needed for the value to be looked at (epsilon, alpha and steps are an attack's settings).
CONFIG_CASES: dict[str, tuple[st.SearchStrategy[Any], dict[str, Any]]] = {}
NOT_AN_INT = st.one_of(FLOAT, NOT_A_NUMBER, st.booleans(), st.lists(st.integers(1, 9), max_size=2))
TOO_BIG = st.integers(min_value=2**31, max_value=10**30)  # more than any count torch takes
for _name in ("epochs", "batch_size", "robust_every", "eval_pgd_steps"):
    CONFIG_CASES[_name] = (st.one_of(below_one(), TOO_BIG, NOT_AN_INT, st.none()), {})
# step mode: each with the other given (a bad value, not a missing partner, is what is tried here)
for _name, _partner in (("train_steps", {"round_steps": 1}), ("round_steps", {"train_steps": 4})):
    CONFIG_CASES[_name] = (st.one_of(below_one(), TOO_BIG, NOT_AN_INT), _partner)
for _name in ("train_subset", "robust_samples"):  # None means "all"
    CONFIG_CASES[_name] = (st.one_of(below_one(), TOO_BIG, NOT_AN_INT), {})
CONFIG_CASES["seed"] = (st.one_of(st.integers(-(10**9), -1), NOT_AN_INT, st.none()), {})
CONFIG_CASES["cutout"] = (st.one_of(st.integers(-(10**9), -1), NOT_AN_INT, st.none()), {})
NOT_A_FLOAT = st.one_of(NOT_A_NUMBER, st.lists(st.floats(0.1, 0.9), min_size=1, max_size=2))
CONFIG_CASES["lr"] = (
    st.one_of(
        st.floats(max_value=0.0), NON_FINITE, NOT_A_NUMBER, st.booleans(),
        # a list (a grid) with one bad value in it
        st.tuples(st.lists(st.floats(0.01, 1.0), max_size=2), st.floats(max_value=0.0) | NON_FINITE).map(
            lambda pair: [*pair[0], pair[1]]
        ),
    ),
    {"method": "step"},
)  # fmt: skip
CONFIG_CASES["weight_decay"] = (  # bools and inf: see test_config_bad_values_validation_misses
    st.one_of(FLOAT.filter(lambda x: not x >= 0), NOT_A_FLOAT),
    {},
)
CONFIG_CASES["val_fraction"] = (
    st.one_of(FLOAT.filter(lambda x: not 0 < x < 1), NOT_A_FLOAT, st.booleans(), st.none()),
    {},
)
CONFIG_CASES["random_erasing"] = (  # bools: see test_config_bad_values_validation_misses
    st.one_of(FLOAT.filter(lambda x: not 0 <= x <= 1), NOT_A_FLOAT, st.none()),
    {},
)
CONFIG_CASES["epsilon"] = (
    st.one_of(FLOAT.filter(lambda x: not 0 <= x <= 1), NOT_A_FLOAT, st.booleans(), st.none()),
    PGD,
)
CONFIG_CASES["alpha"] = (
    st.one_of(st.floats(max_value=0.0), NON_FINITE, NOT_A_FLOAT, st.booleans(), st.none()),
    PGD,
)
CONFIG_CASES["steps"] = (st.one_of(below_one(), NOT_AN_INT, st.none()), PGD)
CONFIG_CASES["dataset"] = (st.one_of(unknown_name(DATASETS), st.integers(), st.none()), {})
CONFIG_CASES["model"] = (st.one_of(unknown_name(MODELS), st.integers()), {})
CONFIG_CASES["method"] = (st.one_of(unknown_name(METHODS), st.integers(), st.none()), {})
CONFIG_CASES["loss_pass"] = (st.one_of(unknown_name(["batches", "full"]), st.integers(), st.none()), {})
CONFIG_CASES["adversarial"] = (st.one_of(unknown_name(["fgsm", "pgd"]), st.integers()), {})
CONFIG_CASES["device"] = (  # "cuda..." passes validation where a GPU is present
    st.one_of(unknown_name(["auto", "cpu"]).filter(lambda text: not text.startswith("cuda")), st.integers()),
    {},
)


def draw_bad_value(
    data: st.DataObject, setting: str, in_suite: bool = False
) -> tuple[Any, dict[str, Any], str]:
    """A bad value of ``setting``, the context it needs, and how a message names it."""
    values, context = CONFIG_CASES[setting]
    if in_suite:  # TOML has no null
        values = values.filter(lambda value: value is not None)
    value = data.draw(values, label=setting)
    if setting == "lr" and isinstance(value, list):
        return value, context, repr(value[-1])  # the bad value inside a grid
    return value, context, repr(value)


# -- the config layer ----------------------------------------------------------------------------
@pytest.mark.parametrize("setting", sorted(CONFIG_CASES))
@SWEEP
@given(data=st.data())
def test_config_rejects_every_bad_value_naming_it(setting: str, data: st.DataObject) -> None:
    value, context, expected = draw_bad_value(data, setting)
    config = TrainConfig.from_dict({**TINY_CONFIG, **context, setting: value})
    with pytest.raises(RunError) as raised:
        validate(config)
    assert_names(str(raised.value), setting, expected)


@SWEEP
@given(key=NAME.filter(lambda text: text not in {f for f in TrainConfig().to_dict()}))
def test_config_rejects_unknown_settings_naming_them(key: str) -> None:
    with pytest.raises(RunError, match=r"unknown settings \[" + re.escape(repr(key))):
        TrainConfig.from_dict({**TINY_CONFIG, key: 1})


MISSED = "validate() does not check it, so the run starts (and fails or runs wrongly) later"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        pytest.param({"weight_decay": math.inf}, "weight_decay.*inf", id="weight_decay=inf"),
        pytest.param({"weight_decay": True}, "weight_decay.*True", id="weight_decay=True"),
        pytest.param({"random_erasing": True}, "random_erasing.*True", id="random_erasing=True"),
        pytest.param({"model_options": 5}, "model_options.*5", id="model_options=5"),
        pytest.param({"model_options": {"channels": -1}}, "channels.*-1", id="model_options-channels=-1"),
        pytest.param({"model_options": {"colour": 1}}, "colour", id="model_options-unknown"),
        pytest.param({"method_args": {"colour": 1}}, "colour", id="method_args-unknown"),
        pytest.param({"method_args": [1]}, r"method_args.*\[1\]", id="method_args=list"),
        pytest.param({"epsilon": 5.0}, "epsilon.*5.0", id="epsilon=5-without-adversarial"),
        pytest.param({"alpha": -1.0}, "alpha.*-1.0", id="alpha=-1-without-adversarial"),
        pytest.param({"steps": 0}, "steps.*0", id="steps=0-without-adversarial"),
    ],
)
def test_config_bad_values_validation_misses(values: dict[str, Any], message: str) -> None:
    with pytest.raises(RunError, match=message):
        validate(TrainConfig.from_dict({**TINY_CONFIG, **values}))


# -- the command line ----------------------------------------------------------------------------
def _int_option(text_values: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(text_values, NOT_A_NUMBER, st.floats(allow_nan=False).map(repr))


def _float_option(bad: st.SearchStrategy[float]) -> st.SearchStrategy[str]:
    return st.one_of(bad.map(repr), NOT_A_NUMBER)


PGD_ARGS = ["--adversarial", "pgd", "--epsilon", "0.03", "--alpha", "0.01", "--steps", "2"]
# option -> (bad values as typed, arguments that make the option matter)
CLI_CASES: dict[str, tuple[st.SearchStrategy[str], list[str]]] = {
    "epochs": (_int_option(below_one().map(str)), []),
    "batch-size": (_int_option(below_one().map(str)), []),
    "train-subset": (_int_option(below_one().map(str)), []),
    "robust-every": (_int_option(below_one().map(str)), []),
    "robust-samples": (_int_option(below_one().map(str)), []),
    "eval-pgd-steps": (_int_option(below_one().map(str)), []),
    "seed": (_int_option(st.integers(-(10**9), -1).map(str)), []),
    "cutout": (_int_option(st.integers(-(10**9), -1).map(str)), []),
    "lr": (_float_option(st.floats(max_value=0.0) | NON_FINITE), []),
    "weight-decay": (_float_option(FLOAT.filter(lambda x: not x >= 0)), []),
    "val-fraction": (_float_option(FLOAT.filter(lambda x: not 0 < x < 1)), []),
    "random-erasing": (_float_option(FLOAT.filter(lambda x: not 0 <= x <= 1)), []),
    "epsilon": (_float_option(FLOAT.filter(lambda x: not 0 <= x <= 1)), PGD_ARGS),
    "alpha": (_float_option(st.floats(max_value=0.0) | NON_FINITE), PGD_ARGS),
    "steps": (_int_option(below_one().map(str)), PGD_ARGS),
    "dataset": (unknown_name(DATASETS), []),
    "model": (unknown_name(MODELS), []),
    "method": (unknown_name(METHODS), []),
    "loss-pass": (unknown_name(["batches", "full"]), []),
    "adversarial": (unknown_name(["fgsm", "pgd"]), []),
    "device": (unknown_name(["auto", "cpu"]).filter(lambda text: not text.startswith("cuda")), []),
    "model-option": (NAME.filter(lambda text: "=" not in text), []),  # not key=value
    "method-option": (NAME.filter(lambda text: "=" not in text), []),
}


@pytest.mark.parametrize("option", sorted(CLI_CASES))
@SWEEP
@given(data=st.data())
def test_cli_train_rejects_every_bad_value_and_touches_nothing(
    existing: dict[str, Path], option: str, data: st.DataObject
) -> None:
    values, context = CLI_CASES[option]
    text = data.draw(values, label=option)
    out = existing[data.draw(st.sampled_from(["run", "other"]), label="existing directory")]
    flags = data.draw(st.sampled_from([[], ["--resume"], ["--force"]]), label="flags")
    before = snapshot(out)
    # `--option=value`: a value starting with '-' (-1e-05, -inf) is then never taken for an option
    code, err = run_cli(["train", "--out", str(out), *TINY, *context, f"--{option}={text}", *flags])
    assert code == 2, err
    assert_names(err, option.replace("-", "_"), text)
    assert snapshot(out) == before


def test_cli_names_a_bad_value_inside_an_lr_grid(existing: dict[str, Path]) -> None:
    before = snapshot(existing["other"])
    code, err = run_cli(["train", "--out", str(existing["other"]), *TINY, "--method", "step",
                         "--lr", "0.1", "-0.5"])  # fmt: skip
    assert code == 2 and "lr must be a finite number > 0" in err and "-0.5" in err, err
    code, err = run_cli(["train", "--out", str(existing["other"]), *TINY, "--method", "step",
                         "--lr", "0.1", "nan"])  # fmt: skip
    assert code == 2 and "lr must be a finite number > 0" in err and "nan" in err, err
    code, err = run_cli(["train", "--out", str(existing["other"]), *TINY, "--lr", "0.1", "0.2"])
    assert code == 2 and "an LR grid ([0.1, 0.2])" in err and "'aalr'" in err, err
    assert snapshot(existing["other"]) == before


@pytest.mark.parametrize(
    ("option", "value"),
    [("--model-option", "channels=-1"), ("--model-option", "colour=1"), ("--method-option", "colour=1")],
)
def test_cli_bad_options_are_caught_before_an_existing_run_is_touched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, option: str, value: str
) -> None:
    # The data may load here: a fix may build the model for the data before touching the directory.
    monkeypatch.setattr(data_module, "load_dataset", REAL_LOAD_DATASET)
    out = make_run_dir(tmp_path / "run")
    before = snapshot(out)
    code, err = run_cli(["train", "--out", str(out), *TINY, option, value, "--force"])
    assert code == 2
    assert value.split("=")[0] in err and "Traceback" not in err
    assert snapshot(out) == before  # --force must not delete a run for a setting that cannot run


# -- suite files ---------------------------------------------------------------------------------
def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def write_suite(path: Path, defaults: dict[str, Any]) -> Path:
    lines = ['name = "bad"', "[defaults]"]
    lines += [f"{key} = {toml_value(value)}" for key, value in defaults.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


SUITE_DEFAULTS: dict[str, Any] = {"dataset": "mnist1d", "seeds": [0], "methods": ["sgdr"], **TINY_CONFIG}
SUITE_STRUCTURE_CASES: list[tuple[dict[str, Any], str, str]] = [
    ({"methods": ["sgdr", "magic"]}, "method", "'magic'"),
    ({"seeds": [0, -3]}, "seeds", "-3"),
    ({"seeds": []}, "seeds", "[]"),
    ({"seed": 3}, "seed", "seeds"),
    ({"colour": "blue"}, "settings", "'colour'"),
]


def check_compare_rejects(
    existing: Path, suite_dir: Path, overrides: dict[str, Any], setting: str, text: str
) -> None:
    path = write_suite(suite_dir / "bad.toml", {**SUITE_DEFAULTS, **overrides})
    before = snapshot(existing)
    code, err = run_cli(["compare", "--suite", str(path), "--out", str(existing), "--no-progress"])
    assert code == 2, err
    assert str(path) in err
    assert_names(err, setting, text)
    assert snapshot(existing) == before


# A suite sets 'method' and 'seed' through its 'methods' and 'seeds' lists.
@pytest.mark.parametrize("setting", sorted(set(CONFIG_CASES) - {"method", "seed"}))
@settings(max_examples=5, deadline=None)
@given(data=st.data())
def test_compare_rejects_a_suite_with_a_bad_value_and_touches_nothing(
    existing: dict[str, Path], tmp_path_factory: pytest.TempPathFactory, setting: str, data: st.DataObject
) -> None:
    value, context, text = draw_bad_value(data, setting, in_suite=True)
    overrides = {**context, setting: value}
    if "method" in overrides:
        overrides["methods"] = [overrides.pop("method")]
    target = data.draw(st.sampled_from(["run", "other"]), label="existing directory")
    check_compare_rejects(existing[target], tmp_path_factory.mktemp("suite"), overrides, setting, text)


@pytest.mark.parametrize(("overrides", "setting", "text"), SUITE_STRUCTURE_CASES)
def test_compare_rejects_a_badly_built_suite_and_touches_nothing(
    existing: dict[str, Path], tmp_path: Path, overrides: dict[str, Any], setting: str, text: str
) -> None:
    check_compare_rejects(existing["run"], tmp_path, overrides, setting, text)


def test_compare_names_a_suite_file_that_is_not_toml(tmp_path: Path, existing: dict[str, Path]) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("name = 'x'\n[defaults\n")
    before = snapshot(existing["other"])
    code, err = run_cli(["compare", "--suite", str(path), "--out", str(existing["other"])])
    assert code == 2 and str(path) in err and "not valid TOML" in err, err
    assert snapshot(existing["other"]) == before


# -- a method whose optional package is not installed -------------------------------------------
PEER_MODULES = ("prodigyopt", "dadaptation", "schedulefree", "dog")


def uninstall(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """As if ``modules`` were not installed: find_spec finds nothing and ``import`` fails."""
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


def test_train_with_a_missing_peer_package_exits_2_and_touches_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uninstall(monkeypatch, "prodigyopt")
    out = tmp_path / "run"
    code, err = run_cli(["train", "--method", "prodigy", "--out", str(out), *TINY])
    assert code == 2
    assert err == (
        "aalr train: error: method 'prodigy' needs the package 'prodigyopt', which is not installed: "
        "pip install 'aalr[peers]'\n"
    )
    assert not out.exists()
    existing = make_run_dir(tmp_path / "existing")
    before = snapshot(existing)
    code, err = run_cli(["train", "--method", "prodigy", "--out", str(existing), *TINY, "--force"])
    assert code == 2 and "'prodigyopt'" in err, err
    assert snapshot(existing) == before  # --force must not delete a run for a method that cannot run


def test_a_missing_peer_package_is_a_run_error_to_the_library(monkeypatch: pytest.MonkeyPatch) -> None:
    uninstall(monkeypatch, "dog")
    with pytest.raises(
        RunError,
        match=r"^method 'dog' needs the package 'dog-optimizer', which is not installed: "
        r"pip install 'aalr\[peers\]'$",
    ):
        validate(TrainConfig(method="dog", **TINY_CONFIG))


def test_compare_names_every_missing_peer_package_before_any_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uninstall(monkeypatch, *PEER_MODULES)
    out = tmp_path / "quick"
    code, err = run_cli(["compare", "--suite", "quick", "--out", str(out), "--no-progress"])
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("aalr compare: error: "), err
    assert "quick.toml: " in err
    assert err.endswith(
        "method 'prodigy' needs the package 'prodigyopt', method 'dadapt' needs the package "
        "'dadaptation', methods 'schedulefree' and 'schedulefree-adamw' need the package 'schedulefree', "
        "method 'dog' needs the package 'dog-optimizer', which are not installed: pip install 'aalr[peers]'\n"
    )
    assert not out.exists()  # no run folder, not even the output folder


def test_compare_checks_the_packages_of_every_experiment_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uninstall(monkeypatch, "dog")
    path = tmp_path / "peers.toml"
    path.write_text(
        'name = "peers"\n[defaults]\ndataset = "mnist1d"\nseeds = [0]\nmethods = ["sgdr"]\n'
        "epochs = 1\ntrain_subset = 64\n"
        '[[experiment]]\nname = "first"\n[[experiment]]\nname = "second"\nmethods = ["sgdr", "dog"]\n'
    )
    out = make_other_dir(tmp_path / "out")
    before = snapshot(out)
    code, err = run_cli(["compare", "--suite", str(path), "--out", str(out), "--no-progress"])
    assert code == 2
    assert f"{path}: method 'dog' needs the package 'dog-optimizer', which is not installed" in err, err
    assert snapshot(out) == before


# -- unwritable output, full disk ----------------------------------------------------------------
Usage = collections.namedtuple("Usage", "total used free")


def full_disk(free_mib: int) -> Callable[[Any], Usage]:
    def disk_usage(path: Any) -> Usage:
        return Usage(total=2**40, used=2**40 - free_mib * 2**20, free=free_mib * 2**20)

    return disk_usage


def test_an_output_path_under_a_regular_file_is_reported_before_training(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, err = run_cli(["train", "--out", str(blocker / "sub"), *TINY])
    assert code == 2
    assert f"{blocker / 'sub'}" in err and "not writable" in err
    assert blocker.read_text() == "x" and sorted(tmp_path.iterdir()) == [blocker]


def test_a_read_only_output_directory_is_reported_before_training(tmp_path: Path) -> None:
    out = make_other_dir(tmp_path / "ro")
    out.chmod(0o500)
    try:
        try:  # root (as in many containers) writes whatever the mode says: nothing to test then
            (out / ".probe").write_text("x")
        except PermissionError:
            pass
        else:
            (out / ".probe").unlink()
            pytest.skip("file modes do not stop this user (root) from writing: cannot make a read-only dir")
        before = snapshot(out)
        code, err = run_cli(["train", "--out", str(out), *TINY])
        assert code == 2 and str(out) in err and "not writable" in err, err
        assert snapshot(out) == before
    finally:
        out.chmod(0o700)


@pytest.mark.parametrize("target", ["new", "other", "run"])
def test_a_full_disk_is_reported_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    out = tmp_path / "out"
    if target == "other":
        make_other_dir(out)
    elif target == "run":
        make_run_dir(out)
        (out / "summary.json").unlink()  # an unfinished run: --resume would train
    before = snapshot(out) if out.exists() else {}
    monkeypatch.setattr(shutil, "disk_usage", full_disk(free_mib=3))
    code, err = run_cli(["train", "--out", str(out), *TINY, *(["--resume"] if target == "run" else [])])
    assert code == 2
    assert str(out) in err and "3 MiB free" in err
    assert snapshot(out) == before  # nothing written (a new folder may be created, empty)


def test_compare_into_a_path_under_a_regular_file_exits_2(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    path = write_suite(tmp_path / "s.toml", SUITE_DEFAULTS)
    code, err = run_cli(["compare", "--suite", str(path), "--out", str(blocker / "sub"), "--no-progress"])
    assert code == 2 and str(blocker / "sub") in err, err


def test_compare_on_a_full_disk_exits_2_before_any_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_suite(tmp_path / "s.toml", SUITE_DEFAULTS)
    out = tmp_path / "out"
    monkeypatch.setattr(shutil, "disk_usage", full_disk(free_mib=3))
    code, err = run_cli(["compare", "--suite", str(path), "--out", str(out), "--no-progress"])
    assert code == 2 and "3 MiB free" in err, err
    assert not out.exists() or snapshot(out) == {}


def test_helpers_see_a_change(tmp_path: Path) -> None:
    # The "nothing changed" checks above are only as good as snapshot(): it must see each kind of change.
    out = make_run_dir(tmp_path / "r")
    before = snapshot(out)
    for change in (
        lambda: (out / "config.json").write_text("{}"),
        lambda: (out / "new").mkdir(),
        lambda: (out / "metrics.jsonl").unlink(),
    ):
        change()
        assert snapshot(out) != before
        before = snapshot(out)
