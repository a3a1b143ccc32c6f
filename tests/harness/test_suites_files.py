"""Every suite shipped in suites/ loads and every one of its runs passes the training settings' checks."""

from __future__ import annotations

import pytest

from aalr.cli import suite_run_fn  # noqa: F401  (the CLI module wires suites to train.run)
from aalr.harness.config import TrainConfig, validate
from aalr.harness.suite import available_suites, load_suite


def check(config: dict) -> None:
    validate(TrainConfig.from_dict({k: v for k, v in config.items() if k != "resume"}))


@pytest.mark.parametrize("name", available_suites())
def test_shipped_suite_is_valid(name):
    suite = load_suite(name, validate=check)
    assert suite.runs and suite.description


def test_the_documented_suites_exist():
    assert {
        "quick",
        "fmnist",
        "batchsize",
        "fmnist-adversarial",
        "table1-cifar10",
        "table2-cifar100",
        "table3-cifar10-fgsm",
        "table4-pgd",
    } <= set(available_suites())


def test_quick_runs_every_method():
    # every method but those added after its committed results (which tests/test_results_replay.py
    # replays): they are in `aalr list` and tested in tests/harness/test_practitioner_methods.py
    from aalr.harness.methods import METHODS, PRACTITIONER_METHODS

    assert set(load_suite("quick").methods) == set(METHODS) - set(PRACTITIONER_METHODS)
