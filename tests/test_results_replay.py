"""The committed evidence agrees with the code: every AALR run in results/ replays to the same decisions.

The policy's decisions depend only on the losses it is given. So feeding each committed run's logged
epoch losses (and initial loss) to today's :class:`AALRPolicy`, with the settings in its config.json,
must give back the logged action and next LR at every epoch. A change to the rules that would have
changed a committed run fails here until that run is re-made (and its table with it).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest

from aalr.harness.methods import AALR_METHODS, REGISTRY, default_lr
from aalr.policy import AALRConfig, AALRPolicy

RESULTS = Path(__file__).resolve().parent.parent / "results"
FIELDS = {f.name for f in dataclasses.fields(AALRConfig)}


def _aalr_runs() -> list[Path]:
    runs = []
    for config_file in sorted(RESULTS.rglob("config.json")):
        run = config_file.parent
        method = json.loads(config_file.read_text()).get("method")
        if (run / "summary.json").exists() and method in AALR_METHODS:
            runs.append(run)
    return runs


def _policy_config(config: dict[str, Any]) -> AALRConfig:
    # as aalr.harness.methods builds the tuner for these methods
    given = {**config.get("method_options", {}), **config.get("method_args", {})}  # older configs: the former
    options = {k: v for k, v in given.items() if k in FIELDS}
    tuner = REGISTRY[config["method"]].tuner
    assert tuner is not None
    options = {**tuner.keywords(config["epochs"]), **options, "rollback": tuner.rollback}
    return AALRConfig.for_rules(tuner.rules, **options)


def replay(run: Path) -> str | None:
    """None when the run's logged decisions are the current policy's; else the first difference."""
    config = json.loads((run / "config.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    policy = AALRPolicy(initial_loss=summary["initial_loss"], config=_policy_config(config))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    if len(rows) != summary["epochs"]:
        return f"metrics.jsonl has {len(rows)} epochs, the summary {summary['epochs']}"
    eta0 = config.get("lr") if config.get("lr") is not None else default_lr(config["method"])
    if rows[0]["lr"] != eta0:
        return f"the first epoch trained at {rows[0]['lr']}, the settings say {eta0}"
    for previous, row in itertools.pairwise(rows):
        if row["lr"] != previous["next_lr"]:
            return f"epoch {row['epoch']} trained at {row['lr']}, the epoch before set {previous['next_lr']}"
    for row in rows:
        loss = math.nan if row["train_loss"] is None else row["train_loss"]
        decision = policy.step(loss)
        lr = eta0 * 2.0**decision.lr_exponent * decision.lr_scale
        if decision.action != row["action"] or not math.isclose(lr, row["next_lr"], rel_tol=1e-9):
            return (
                f"epoch {row['epoch']}: logged {row['action']} with next LR {row['next_lr']:.6g}, "
                f"the policy now gives {decision.action} with {lr:.6g} ({decision.reason})"
            )
    return None


RUNS = _aalr_runs()


def test_results_hold_aalr_runs():
    assert len(RUNS) >= 200  # the quick, fmnist, budget, batchsize, adversarial and variant runs


@pytest.mark.parametrize("run", RUNS, ids=[str(r.relative_to(RESULTS)) for r in RUNS])
def test_committed_run_replays(run):
    assert replay(run) is None, replay(run)


def test_replay_notices_a_changed_rule(monkeypatch):
    # the check can fail: with phase 1 one epoch shorter, a committed run no longer replays
    run = next(r for r in RUNS if json.loads((r / "config.json").read_text())["method"] == "aalr")
    assert replay(run) is None
    original = _policy_config

    def shorter(config: dict[str, Any]) -> AALRConfig:
        return dataclasses.replace(original(config), phase1_patience=original(config).phase1_patience - 1)

    monkeypatch.setattr(sys.modules[__name__], "_policy_config", shorter)
    assert replay(run) is not None
