"""Every suite shipped in suites/ loads and every one of its runs passes the training settings' checks."""

from __future__ import annotations

import pytest

from aalr.cli import suite_run_fn  # noqa: F401  (the CLI module wires suites to train.run)
from aalr.harness.config import TrainConfig, validate
from aalr.harness.methods import SUITE_DEFAULTS
from aalr.harness.suite import available_suites, load_suite


def check(config: dict) -> None:
    validate(TrainConfig.from_dict({k: v for k, v in config.items() if k != "resume"}))


@pytest.mark.parametrize("name", available_suites())
def test_shipped_suite_is_valid(name):
    suite = load_suite(name, validate=check)
    assert suite.runs and suite.description


def test_the_documented_suites_exist():
    assert {
        "demo",
        "quick",
        "fmnist",
        "batchsize",
        "fmnist-adversarial",
        "table1-cifar10",
        "table2-cifar100",
        "table3-cifar10-fgsm",
        "table4-pgd",
        "heldout",
    } <= set(available_suites())


def test_quick_runs_every_method():
    from aalr.harness.methods import METHODS

    assert set(load_suite("quick").methods) == set(METHODS)


def test_the_demo_is_a_part_of_quick_with_the_same_settings():
    """`make demo` runs a few of quick's methods; each run is the quick suite's run of that method and seed
    but for its names, so the demo's table compares row by row with results/quick's."""
    quick = {(r.method, r.seed): r.config for r in load_suite("quick").runs if r.experiment == "quick"}
    demo = load_suite("demo").runs
    assert {"aalr-plus", "aalr", "step"} <= {r.method for r in demo}
    for run in demo:
        names = ("suite", "experiment")
        mine = {k: v for k, v in run.config.items() if k not in names}
        assert mine == {k: v for k, v in quick[(run.method, run.seed)].items() if k not in names}, run.method


# Issue 16: the schedules practitioners use today untuned, and the two tuned anchors (LR chosen on a
# validation split) where a suite compares methods on a CPU task.
UNTUNED = set(SUITE_DEFAULTS)
ANCHORS = {"step", "sgd-cosine"}
WITH_ANCHORS = ("quick", "fmnist", "fmnist-adversarial", "budget", "heldout")


@pytest.mark.parametrize("name", [name for name in available_suites() if name != "lm"])
def test_every_image_suite_runs_the_untuned_defaults(name):
    """Every experiment of more than two methods runs all six (the language-model suite: below)."""
    suite = load_suite(name)
    for experiment in suite.experiments:
        methods = {run.method for run in suite.runs if run.experiment == experiment}
        if len(methods) > 2:
            assert methods >= UNTUNED, (experiment, UNTUNED - methods)


@pytest.mark.parametrize("name", WITH_ANCHORS)
def test_comparing_suites_hold_both_tuned_anchors(name):
    """Every task of these suites has the step schedule and SGD + cosine with a grid of 3+ LRs chosen on a
    validation split, on the task's own data, model and budget."""
    suite = load_suite(name, validate=check)
    tasks = [e for e in suite.experiments if len({r.method for r in suite.runs if r.experiment == e}) > 2]
    assert tasks
    for task in tasks:
        plain = next(run for run in suite.runs if run.experiment == task)
        grids = {
            run.method: run
            for run in suite.runs
            if run.experiment in (task, f"{task}-tuned") and isinstance(run.config.get("lr"), list)
        }
        assert set(grids) >= ANCHORS, (task, set(grids))
        for run in grids.values():
            assert len(run.config["lr"]) >= 3 and 0 < run.config["val_fraction"] < 1
            for key in ("dataset", "model", "model_options", "train_subset", "epochs", "batch_size"):
                assert run.config.get(key) == plain.config.get(key), (task, key)


def test_heldout_suite_compares_on_tasks_the_rules_were_not_chosen_on():
    """Issue 16: other models and seeds than AALR+'s rules were chosen on (mnist1d-cnn and fmnist-cnn,
    seeds 100-104); every task has the untuned methods and a "-tuned" twin with the two grid anchors."""
    suite = load_suite("heldout", validate=check)
    assert {run.seed for run in suite.runs} == {0, 1, 2}
    assert {run.config["model"] for run in suite.runs} == {"fmnist-bn-cnn", "fmnist-resnet", "mlp"}
    untuned = {*SUITE_DEFAULTS, "schedulefree", "prodigy", "aalr-plus"}
    matched = {"bn-cnn-27": "bn-cnn-8", "resnet-27": "resnet-8", "digits-mlp-204": "digits-mlp-60"}
    tasks = [name for name in suite.experiments if not name.endswith("-tuned") and name not in matched]
    assert len(tasks) >= 3
    assert set(suite.experiments) == set(tasks) | {f"{name}-tuned" for name in tasks} | set(matched)
    for name, task in matched.items():  # aalr-plus at the cost of the task's grids, the task otherwise
        runs = [run for run in suite.runs if run.experiment == name]
        grid = next(run for run in suite.runs if run.experiment == f"{task}-tuned")
        assert {run.method for run in runs} == {"aalr-plus"}
        assert runs[0].config["epochs"] == int(grid.config["epochs"] * (1 + 3 * 0.8))  # 8 -> 27, 60 -> 204
        for key in ("dataset", "model", "model_options", "train_subset", "batch_size"):
            assert runs[0].config.get(key) == grid.config.get(key), key
    for name in tasks:
        assert {run.method for run in suite.runs if run.experiment == name} == untuned
        tuned = [run for run in suite.runs if run.experiment == f"{name}-tuned"]
        assert {run.method for run in tuned} == {"step", "sgd-cosine"}
        assert all(len(run.config["lr"]) == 3 and run.config["val_fraction"] == 0.2 for run in tuned)
        plain = next(run for run in suite.runs if run.experiment == name)
        # the anchors are tuned on the same task: same data, model, budget
        for key in ("dataset", "model", "model_options", "train_subset", "epochs", "batch_size"):
            assert all(run.config.get(key) == plain.config.get(key) for run in tuned), key


def test_lm_suite_runs_the_adamw_defaults():
    """A transformer trains with AdamW: the LM suite runs the AdamW forms of the untuned defaults (SGD's
    are no practitioner's choice there) and the cosine anchor tuned on validation bits per byte."""
    suite = load_suite("lm", validate=check)
    for task in (e for e in suite.experiments if not e.endswith("-tuned")):
        methods = {run.method for run in suite.runs if run.experiment == task}
        assert methods >= {"adamw-cosine", "greedy-adamw", "aalr-plus-adamw", "schedulefree-adamw", "wsd"}
        tuned = [run for run in suite.runs if run.experiment == f"{task}-tuned"]
        assert {run.method for run in tuned} == {"adamw-cosine"}
        assert all(len(run.config["lr"]) >= 3 for run in tuned)
