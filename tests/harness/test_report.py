"""Tests of the results report (aalr.harness.report) on run folders written by hand."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import shutil
import statistics
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aalr.cli import main
from aalr.harness import report
from aalr.harness.report import (
    collect,
    cost_families,
    cost_series,
    plot_accuracy,
    plot_batchsize,
    plot_cost,
    plot_lr_trajectories,
    scaling_guides,
    summarize,
    to_csv,
    to_markdown,
    write_report,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_run(
    root: Path,
    experiment: str,
    method: str,
    seed: int,
    *,
    final: float,
    peak: float,
    status: str = "finished",
    epochs: int = 4,
    lrs: list[float] | None = None,
    accs: list[float] | None = None,
    config: dict[str, Any] | None = None,
    summary: dict[str, Any] | None = None,
    metrics_extra: list[dict[str, Any]] | None = None,
) -> Path:
    """Writes config.json, metrics.jsonl and summary.json the way train.py does."""
    run_dir = root / experiment / method / f"seed{seed}"
    run_dir.mkdir(parents=True)
    lrs = lrs or [0.1 * 2 ** (i % 3) for i in range(epochs)]
    accs = accs or [peak * (i + 1) / epochs for i in range(epochs)]
    cfg = {
        "dataset": "cifar10",
        "model": "resnet18",
        "method": method,
        "seed": seed,
        "epochs": epochs,
        "batch_size": 128,
        "adversarial": None,
        "augment": {"flip": True},
        "suite": "t",
        "experiment": experiment,
    }
    cfg.update(config or {})
    (run_dir / "config.json").write_text(json.dumps(cfg))
    lines = []
    for i in range(epochs):
        row = {
            "epoch": i + 1,
            "lr": lrs[i],
            "train_loss": 1.0 / (i + 1),
            "test_loss": None,
            "test_acc": accs[i],
        }
        row.update((metrics_extra or [{}] * epochs)[i])
        lines.append(json.dumps(row))
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    summ = {
        "status": status,
        "method": method,
        "dataset": cfg["dataset"],
        "model": cfg["model"],
        "seed": seed,
        "epochs": epochs,
        "final_test_acc": final,
        "peak_test_acc": peak,
        "peak_epoch": epochs,
        "lr_trajectory": lrs,
        "wall_seconds": 10.0 + seed,
        "experiment": experiment,
        "suite": "t",
    }
    summ.update(summary or {})
    (run_dir / "summary.json").write_text(json.dumps(summ))
    return run_dir


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """Experiment "e1": aalr with 3 seeds, sgdr with 3 seeds of which one diverged, adam with 1 seed."""
    root = tmp_path / "runs"
    for seed, (final, peak) in enumerate([(0.90, 0.91), (0.92, 0.93), (0.85, 0.88)]):
        make_run(root, "e1", "aalr", seed, final=final, peak=peak)
    for seed, (final, peak, status) in enumerate(
        [(0.80, 0.82, "finished"), (0.10, 0.10, "diverged"), (0.84, 0.86, "finished")]
    ):
        make_run(root, "e1", "sgdr", seed, final=final, peak=peak, status=status)
    make_run(root, "e1", "adam", 0, final=0.70, peak=0.75)
    return root


def entry(summary_rows: list[dict[str, Any]], method: str) -> dict[str, Any]:
    return next(e for e in summary_rows if e["method"] == method)


# ---------------------------------------------------------------------------------------------
# collect


def test_collect_joins_config_summary_and_metrics_and_ignores_unfinished_runs(results: Path) -> None:
    unfinished = results / "e1" / "clr" / "seed0"
    unfinished.mkdir(parents=True)
    (unfinished / "config.json").write_text(json.dumps({"method": "clr"}))
    (unfinished / "metrics.jsonl").write_text('{"epoch": 1}\n')
    cut_short = results / "e1" / "clr" / "seed1"
    cut_short.mkdir(parents=True)
    (cut_short / "summary.json").write_text('{"status": "fini')

    rows = collect(results)
    assert len(rows) == 7
    assert {r["method"] for r in rows} == {"aalr", "sgdr", "adam"}
    row = next(r for r in rows if r["method"] == "aalr" and r["seed"] == 1)
    assert row["final_test_acc"] == 0.92  # from the summary
    assert row["batch_size"] == 128  # from the config
    assert row["config"]["augment"] == {"flip": True}
    assert [m["epoch"] for m in row["metrics"]] == [1, 2, 3, 4]
    assert row["metrics"][0]["test_loss"] is None
    assert Path(row["run_dir"]) == results / "e1" / "aalr" / "seed1"


def test_collect_leaves_out_grid_runs_on_the_validation_split(results: Path) -> None:
    parent = results / "e1" / "step" / "seed0"
    make_run(results, "e1", "step", 0, final=0.9, peak=0.9, summary={"chosen_lr": 0.1})
    make_run(parent / "grid", "lr0.1", "step", 0, final=0.5, peak=0.5, config={"validation_split": True})
    rows = collect(results)
    assert [r["run_dir"] for r in rows if r["method"] == "step"] == [str(parent)]


def test_collect_keeps_the_suite_order_when_the_runner_wrote_it(results: Path) -> None:
    order = [("e1", m, s) for s in (0, 1, 2) for m in ("sgdr", "aalr", "adam")]
    (results / "suite.json").write_text(
        json.dumps({"name": "t", "runs": [{"run_dir": f"{e}/{m}/seed{s}"} for e, m, s in order]})
    )
    rows = collect(results)
    listed = [o for o in order if (results / o[0] / o[1] / f"seed{o[2]}").is_dir()]
    assert [(r["experiment"], r["method"], r["seed"]) for r in rows] == listed
    assert [e["method"] for e in summarize(rows)] == ["sgdr", "aalr", "adam"]


def test_collect_without_suite_order_sorts_by_folder(results: Path) -> None:
    rows = collect(results)
    assert [Path(r["run_dir"]).relative_to(results).as_posix() for r in rows] == sorted(
        Path(r["run_dir"]).relative_to(results).as_posix() for r in rows
    )


def test_collect_leaves_out_a_run_with_broken_metrics_naming_file_and_line(
    results: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = results / "e1" / "adam" / "seed0" / "metrics.jsonl"
    with metrics.open("a") as handle:
        handle.write('{"epoch": 5, "lr": \n')
    rows = collect(results)
    assert len(rows) == 6 and "adam" not in {r["method"] for r in rows}
    (skipped,) = rows.skipped
    assert (skipped.path, skipped.run_dir) == (metrics, metrics.parent)
    assert skipped.reason.startswith("line 5: not valid JSON (Expecting value: line 1 column 20")
    assert f"{metrics} is unreadable: line 5: not valid JSON" in caplog.text
    with pytest.raises(ValueError, match=r"results folder .*nowhere does not exist"):
        collect(tmp_path / "nowhere")


def test_runs_outside_a_suite_are_grouped_by_dataset_and_model(tmp_path: Path) -> None:
    make_run(
        tmp_path,
        "x",
        "aalr",
        0,
        final=0.5,
        peak=0.6,
        config={"experiment": None},
        summary={"experiment": None},
    )
    assert collect(tmp_path)[0]["experiment"] == "cifar10-resnet18"


# ---------------------------------------------------------------------------------------------
# summarize


def test_summarize_means_sample_std_worst_and_failures(results: Path) -> None:
    summary = summarize(collect(results))
    assert [(e["experiment"], e["method"]) for e in summary] == [
        ("e1", "aalr"),
        ("e1", "adam"),
        ("e1", "sgdr"),
    ]

    aalr = entry(summary, "aalr")
    assert aalr["n"] == 3 and aalr["failed"] == 0
    # finals 0.90, 0.92, 0.85: mean 0.89; deviations 0.01, 0.03, -0.04; sum of squares 0.0026 / (3 - 1)
    assert aalr["final_mean"] == pytest.approx(0.89)
    assert aalr["final_std"] == pytest.approx(math.sqrt(0.0013))
    assert aalr["final_worst"] == pytest.approx(0.85)
    # peaks 0.91, 0.93, 0.88: mean 2.72 / 3; deviations 0.01/3, 0.07/3, -0.08/3;
    # sum of squares (0.0001 + 0.0049 + 0.0064) / 9 = 0.0114 / 9, divided by 3 - 1
    assert aalr["peak_mean"] == pytest.approx(2.72 / 3)
    assert aalr["peak_std"] == pytest.approx(math.sqrt(0.0114 / 9 / 2))
    assert aalr["wall_seconds_mean"] == pytest.approx(11.0)
    assert (aalr["dataset"], aalr["model"], aalr["batch_size"], aalr["epochs"]) == (
        "cifar10",
        "resnet18",
        128,
        4,
    )

    sgdr = entry(summary, "sgdr")
    assert sgdr["failed"] == 1
    # The diverged run counts as measured: finals 0.80, 0.10, 0.84.
    assert sgdr["final_mean"] == pytest.approx(1.74 / 3)
    assert sgdr["final_worst"] == pytest.approx(0.10)

    adam = entry(summary, "adam")
    assert adam["n"] == 1
    assert adam["final_std"] is None and adam["peak_std"] is None
    assert adam["final_mean"] == pytest.approx(0.70)


def test_summarize_robust_accuracies_and_chosen_lr(tmp_path: Path) -> None:
    adversarial = {"kind": "pgd", "epsilon": 8 / 255, "alpha": 2 / 255, "steps": 7}
    for seed, (fgsm, pgd, lr) in enumerate(
        [((0.50, 0.55), (0.40, 0.45), 0.1), ((0.54, 0.57), (0.44, 0.46), 0.05)]
    ):
        make_run(
            tmp_path,
            "adv",
            "step",
            seed,
            final=0.80,
            peak=0.82,
            config={"adversarial": adversarial},
            summary={
                "robust": {
                    "fgsm": {"final": fgsm[0], "peak": fgsm[1]},
                    "pgd": {"final": pgd[0], "peak": pgd[1], "steps": 10},
                },
                "chosen_lr": lr,
                "lr_grid": {"0.1": 0.7, "0.05": 0.72},
            },
        )
    (step,) = summarize(collect(tmp_path))
    assert step["fgsm_n"] == 2 and step["pgd_n"] == 2
    assert step["fgsm_final_mean"] == pytest.approx(0.52)
    assert step["fgsm_final_std"] == pytest.approx(math.sqrt(2 * 0.02**2))
    assert step["fgsm_peak_mean"] == pytest.approx(0.56)
    assert step["pgd_final_mean"] == pytest.approx(0.42)
    assert step["pgd_peak_mean"] == pytest.approx(0.455)
    assert step["pgd_steps"] == 10
    assert step["chosen_lr_mean"] == pytest.approx(0.075)
    assert step["adversarial"] == adversarial

    text = to_markdown([step])
    assert (
        "| Method | Seeds | Clean Final acc (%) mean ± std | Worst seed | Clean Peak acc (%) mean ± std |"
        in text
    )
    assert (
        "FGSM final (%) | FGSM peak (%) | PGD-10 final (%) | PGD-10 peak (%) | Chosen LR (mean) "
        "| Cost (epochs) | Failed |" in text
    )
    assert "| step | 2 | 80.00 ± 0.00 | 80.00 | 82.00 ± 0.00 | 52.00 ± 2.83 | 56.00 ± 1.41 |" in text
    assert "| 42.00 ± 2.83 | 45.50 ± 0.71 | 0.075 | 12.0 | 0/2 |" in text  # 4 epochs + 2 x 4 (no split given)
    assert "adversarial training with PGD (ε = 8/255, α = 2/255, 7 steps)" in text


# ---------------------------------------------------------------------------------------------
# Tables


def test_markdown_has_the_paper_layout_and_marks_failures(results: Path) -> None:
    text = to_markdown(summarize(collect(results)), title="Table 1")
    assert text.startswith("# Table 1\n")
    assert "## e1: cifar10 / resnet18, 4 epochs, batch size 128" in text
    assert (
        "| Method | Seeds | Final acc (%) mean ± std | Worst seed | Peak acc (%) mean ± std "
        "| Cost (epochs) | Failed |" in text
    )
    # Hand-computed: 100 * sqrt(0.0013) = 3.6056, 100 * sqrt(0.0114 / 18) = 2.5166, 100 * 2.72 / 3 = 90.667.
    assert "| aalr | 3 | 89.00 ± 3.61 | 85.00 | 90.67 ± 2.52 | 4.0 | 0/3 |" in text
    # sgdr finals 0.80, 0.10, 0.84: mean 58.00; deviations 22, -48, 26 points -> std sqrt(3464 / 2) = 41.62.
    assert "| sgdr | 3 | 58.00 ± 41.62 † | 10.00 † | 59.33 ± 42.77 † | 4.0 | 1/3 |" in text
    assert "| adam | 1 | 70.00 ± – | 70.00 | 75.00 ± – | 4.0 | 0/1 |" in text
    assert "sample standard deviation (ddof=1)" in text
    assert "– where there is only one seed" in text
    assert "paper's Tables 1-4 report peak accuracy" in text
    assert "† Some runs of this method diverged" in text


def test_markdown_has_one_table_per_experiment(results: Path) -> None:
    make_run(results, "e2", "aalr", 0, final=0.6, peak=0.7, config={"model": "vgg16", "batch_size": 64})
    text = to_markdown(summarize(collect(results)))
    assert text.count("| Method | Seeds |") == 2
    assert "## e2: cifar10 / vgg16, 4 epochs, batch size 64" in text
    assert "†" not in text.split("## e2")[1].split("- Accuracies")[0]


def test_heading_says_how_the_runs_computed_where_they_recorded_it(results: Path) -> None:
    assert "computed in" not in to_markdown(summarize(collect(results)))  # older runs: nothing claimed
    ways = {"numerics": ["cpu fp32", "cpu bf16 channels_last"]}  # resumed in other numerics
    make_run(results, "e2", "aalr", 0, final=0.6, peak=0.7, summary=ways)
    make_run(results, "e2", "aalr", 1, final=0.6, peak=0.7, summary={"numerics": ["cpu fp32"]})
    make_run(results, "e2", "sgdr", 0, final=0.6, peak=0.7)  # made before runs recorded it
    summary = summarize(collect(results))
    e2_aalr = next(e for e in summary if e["experiment"] == "e2" and e["method"] == "aalr")
    assert (
        e2_aalr["numerics"] == ["cpu fp32", "cpu bf16 channels_last"] and e2_aalr["numerics_unrecorded"] == 0
    )
    text = to_markdown(summary)
    heading = next(line for line in text.splitlines() if line.startswith("## e2"))
    assert heading.endswith(
        "; computed in cpu fp32 and cpu bf16 channels_last"
        " (1 run(s) with epochs made before this was recorded)"
    )
    assert "computed in" not in next(line for line in text.splitlines() if line.startswith("## e1"))
    parsed = {(r["experiment"], r["method"]): r for r in csv.DictReader(io.StringIO(to_csv(summary)))}
    assert parsed["e2", "aalr"]["numerics"] == "cpu fp32;cpu bf16 channels_last"
    assert parsed["e2", "sgdr"]["numerics"] == "" and parsed["e2", "sgdr"]["numerics_unrecorded"] == "1"
    assert parsed["e2", "aalr"]["numerics_unrecorded"] == "0"


@pytest.mark.parametrize(
    ("recorded", "ways", "unrecorded"),
    [
        ({"numerics": "cpu bf16"}, ["cpu bf16"], 0),  # a lone string is one way
        ({"numerics": ["cpu fp32", None, 3]}, ["cpu fp32"], 0),  # what is not a way is left out, not printed
        ({"numerics": []}, [], 1),  # nothing recorded
        ({"numerics": ["cpu fp32"], "numerics_unrecorded_epochs": 2}, ["cpu fp32"], 1),  # resumed old run
        ({"numerics": ["cpu fp32"], "numerics_unrecorded_epochs": 0}, ["cpu fp32"], 0),
    ],
)
def test_numerics_are_read_with_care(tmp_path: Path, recorded, ways, unrecorded) -> None:
    make_run(tmp_path, "e", "aalr", 0, final=0.6, peak=0.7, summary=recorded)
    (entry_,) = summarize(collect(tmp_path))
    assert entry_["numerics"] == ways and entry_["numerics_unrecorded"] == unrecorded
    heading = to_markdown([entry_]).splitlines()[0]
    assert "None" not in heading
    if ways:
        assert f"computed in {ways[0]}" in heading
        assert ("made before this was recorded" in heading) == bool(unrecorded)


def test_csv_parses_back_to_the_summary(results: Path) -> None:
    summary = summarize(collect(results))
    parsed = list(csv.DictReader(io.StringIO(to_csv(summary))))
    assert [r["method"] for r in parsed] == [e["method"] for e in summary]
    for row, e in zip(parsed, summary, strict=True):
        assert row["experiment"] == "e1"
        assert int(row["n"]) == e["n"] and int(row["failed"]) == e["failed"]
        assert float(row["final_mean"]) == pytest.approx(e["final_mean"])
        assert float(row["peak_mean"]) == pytest.approx(e["peak_mean"])
        assert float(row["final_worst"]) == pytest.approx(e["final_worst"])
        if e["final_std"] is None:
            assert row["final_std"] == ""
        else:
            assert float(row["final_std"]) == pytest.approx(e["final_std"])
        assert row["fgsm_final_mean"] == ""


# ---------------------------------------------------------------------------------------------
# Plots


def png_width(path: Path) -> int:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 5000, "a plot with lines and labels is more than a few bytes"
    return int(struct.unpack(">I", data[16:20])[0])


def test_lr_and_accuracy_plots_are_pngs(results: Path, tmp_path: Path) -> None:
    rows = collect(results)
    assert png_width(plot_lr_trajectories(rows, tmp_path / "lr.png", experiment="e1")) > 100
    assert png_width(plot_accuracy(rows, tmp_path / "plots" / "acc.png")) > 100
    with pytest.raises(ValueError, match=r"no runs of experiment 'e9' to plot; experiments: e1"):
        plot_lr_trajectories(rows, tmp_path / "x.png", experiment="e9")
    with pytest.raises(ValueError, match=r"no runs of experiment 'e9'"):
        plot_accuracy(rows, tmp_path / "x.png", experiment="e9")


def test_accuracy_plot_draws_robust_curves_where_present(tmp_path: Path) -> None:
    extra = [{"fgsm_acc": 0.3}, {}, {"fgsm_acc": 0.4, "pgd_acc": 0.35}, {}]
    make_run(tmp_path / "runs", "adv", "aalr", 0, final=0.8, peak=0.8, metrics_extra=extra)
    assert png_width(plot_accuracy(collect(tmp_path / "runs"), tmp_path / "acc.png")) > 100


def test_scaling_guides_by_hand() -> None:
    guides = scaling_guides(0.1, 32, [32, 128, 512])
    assert guides[32] == pytest.approx((0.1, 0.1))
    assert guides[128] == pytest.approx((0.2, 0.4))  # sqrt(4) = 2, 128 / 32 = 4
    assert guides[512] == pytest.approx((0.4, 1.6))  # sqrt(16) = 4, 512 / 32 = 16
    with pytest.raises(ValueError, match=r"reference batch size must be positive, got 0"):
        scaling_guides(0.1, 0, [32])


def batchsize_runs(root: Path, erasing: bool) -> None:
    fmnist = {"dataset": "fashion-mnist", "model": "resnet20"}
    for batch_size, lr in ((32, 0.025), (128, 0.1), (512, 0.2)):
        for seed in (0, 1):
            lrs = [lr, 2 * lr, lr, lr / 2]
            config = {"batch_size": batch_size, **fmnist}
            make_run(root, f"bs{batch_size}", "aalr", seed, final=0.9, peak=0.95, lrs=lrs, config=config)
    if erasing:
        config = {"batch_size": 128, "augment": {"flip": True, "random_erasing": 0.5}, **fmnist}
        make_run(root, "bs128-erasing", "aalr", 0, final=0.9, peak=0.95, lrs=[0.05] * 4, config=config)
    make_run(root, "bs128", "step", 0, final=0.9, peak=0.95, config={"batch_size": 128})


def test_batchsize_plot_has_a_panel_for_random_erasing(tmp_path: Path) -> None:
    batchsize_runs(tmp_path / "plain", erasing=False)
    batchsize_runs(tmp_path / "both", erasing=True)
    one = png_width(plot_batchsize(collect(tmp_path / "plain"), tmp_path / "one.png"))
    two = png_width(plot_batchsize(collect(tmp_path / "both"), tmp_path / "two.png"))
    assert two > 1.6 * one
    with pytest.raises(
        ValueError, match=r"no runs of method 'dog' with a batch size to plot; methods: aalr, step"
    ):
        plot_batchsize(collect(tmp_path / "plain"), tmp_path / "x.png", method="dog")


def cost_runs(root: Path) -> None:
    """A task at 4 epochs (one run; a 2-LR grid in "e-4-tuned") and at 8 epochs, and another model."""
    for seed, final in enumerate((0.90, 0.80)):
        make_run(root, "e-4", "aalr", seed, final=final, peak=final)
        grid = {"chosen_lr": 0.1, "lr_grid": {"0.1": 0.9, "0.2": 0.8}}
        make_run(root, "e-4-tuned", "step", seed, final=0.95, peak=0.95, summary=grid,
                 config={"val_fraction": 0.25})  # fmt: skip
    make_run(root, "e-8", "aalr", 0, final=0.96, peak=0.96, epochs=8)
    make_run(root, "e-8", "adam", 0, final=0.5, peak=0.5, epochs=8)
    make_run(root, "wide-4", "aalr", 0, final=0.7, peak=0.7, config={"model": "resnet50"})


def test_cost_families_join_the_budgets_of_one_model_and_data(tmp_path: Path) -> None:
    cost_runs(tmp_path)
    families = cost_families(collect(tmp_path))  # in the order the runs come (here: of their folders)
    assert [sorted(f) for f in families] == [["e-4", "e-4-tuned", "e-8"], ["wide-4"]]


def test_cost_series_put_a_grid_at_its_runs_cost_and_join_budgets(tmp_path: Path) -> None:
    cost_runs(tmp_path)
    summary = summarize(collect(tmp_path))
    series = cost_series(summary, ["e-4", "e-4-tuned", "e-8"])
    assert sorted(series) == ["aalr", "adam", "step [-tuned]"]
    flat = {label: [round(v, 9) for point in points for v in point] for label, points in series.items()}
    assert flat["aalr"] == [4.0, 85.0, 80.0, 8.0, 96.0, 96.0]  # one line through both budgets
    assert flat["step [-tuned]"] == [4.0 + 2 * 4 * 0.75, 95.0, 95.0]  # the final run and 2 grid runs
    assert png_width(plot_cost(summary, tmp_path / "cost.png", experiments=["e-4", "e-4-tuned", "e-8"])) > 100
    with pytest.raises(ValueError, match=r"no runs with a known cost and result in experiments \['e9'\]"):
        plot_cost(summary, tmp_path / "x.png", experiments=["e9"])


def test_write_report_plots_cost_per_family_of_several_methods(tmp_path: Path) -> None:
    cost_runs(tmp_path / "runs")
    text = write_report(tmp_path / "runs", tmp_path / "out").read_text()
    name = "cost_cifar10_resnet18.png"
    assert f"![e-4-tuned, e-4, e-8: final result against total training cost]({name})" in text
    png_width(tmp_path / "out" / name)
    assert not (tmp_path / "out" / "cost_cifar10_resnet50.png").exists(), "one method alone: no cost plot"


# ---------------------------------------------------------------------------------------------
# write_report


def test_write_report_writes_tables_and_plots(results: Path, tmp_path: Path) -> None:
    make_run(results, "e2", "aalr", 0, final=0.6, peak=0.7)
    out = tmp_path / "report"
    path = write_report(results, out)
    assert path == out / "report.md"
    text = path.read_text()
    assert "| aalr | 3 | 89.00 ± 3.61 | 85.00 | 90.67 ± 2.52 | 4.0 | 0/3 |" in text
    assert "![e1: learning rate](lr_e1.png)" in text
    for name in ("lr_e1.png", "acc_e1.png", "lr_e2.png", "acc_e2.png"):
        png_width(out / name)
    assert not list(out.glob("batchsize_*.png")), "one batch size: no batch-size plot"
    parsed = list(csv.DictReader(io.StringIO((out / "results.csv").read_text())))
    assert [(r["experiment"], r["method"]) for r in parsed] == [
        ("e1", "aalr"), ("e1", "adam"), ("e1", "sgdr"), ("e2", "aalr"),
    ]  # fmt: skip


def test_write_report_adds_the_batchsize_plot_and_defaults_to_the_root(tmp_path: Path) -> None:
    batchsize_runs(tmp_path, erasing=True)
    path = write_report(tmp_path)
    assert path == tmp_path / "report.md"
    png_width(tmp_path / "batchsize_fashion-mnist_resnet20.png")
    assert "(batchsize_fashion-mnist_resnet20.png)" in path.read_text()


def test_write_report_without_finished_runs_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "e" / "aalr" / "seed0").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"no finished runs \(folders with summary.json\) under"):
        write_report(tmp_path)


# ---------------------------------------------------------------------------------------------
# What counts, and what the report leaves out and why


def test_a_summary_that_is_no_run_summary_does_not_count(results: Path) -> None:
    # `{}` parses as a JSON object; it is no finished run's summary, so no seed (also once
    # read_summary itself refuses it: the reason then comes from the same checks)
    (results / "e1" / "adam" / "seed0" / "summary.json").write_text("{}")
    rows = collect(results)
    assert "adam" not in {r["method"] for r in rows}
    (skipped,) = rows.skipped
    assert skipped.reason == "lacks 'status', 'epochs', 'final_test_acc', 'peak_test_acc'"


def test_the_report_counts_only_the_runs_read_summary_calls_finished(
    results: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the runner's test of "finished" is the report's too: what read_summary refuses never counts
    refused = results / "e1" / "aalr" / "seed1"
    original = report.read_summary
    monkeypatch.setattr(report, "read_summary", lambda d: None if Path(d) == refused else original(d))
    rows = collect(results)
    assert [r["seed"] for r in rows if r["method"] == "aalr"] == [0, 2]
    (skipped,) = rows.skipped
    assert skipped.path == refused / "summary.json"
    assert skipped.reason == "not a finished run's summary (read_summary refuses it)"


def copy_run(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def test_copies_of_one_run_count_once_and_the_report_says_where_they_are(tmp_path: Path) -> None:
    run = make_run(tmp_path / "made", "e1", "aalr", 0, final=0.9, peak=0.91)
    d = tmp_path / "d"
    for name in ("a", "b", "c"):  # cp -r run d/a; cp -r run d/b; cp -r run d/c
        copy_run(run, d / name)
    rows = collect(d)
    assert [r["run_dir"] for r in rows] == [str(d / "a")]
    assert [(s.path, s.duplicate_of) for s in rows.skipped] == [(d / "b", d / "a"), (d / "c", d / "a")]
    (aalr,) = summarize(rows)
    assert aalr["n"] == 1 and aalr["final_std"] is None  # one seed: no spread, not "± 0.00"
    text = write_report(d, tmp_path / "out").read_text()
    assert "| aalr | 1 | 90.00 ± – | 90.00 | 91.00 ± – | 4.0 | 0/1 |" in text
    assert "Duplicates skipped (2): runs with the same settings and seed as a run counted" in text
    assert "- `b`: the same as `a`\n- `c`: the same as `a`\n" in text


def test_a_run_is_a_duplicate_whatever_says_how_or_where_it_ran_but_not_with_another_seed(
    tmp_path: Path,
) -> None:
    run = make_run(tmp_path, "e1", "aalr", 0, final=0.9, peak=0.91)
    twin = copy_run(run, tmp_path / "e1" / "aalr" / "seed0-again")
    config = json.loads((twin / "config.json").read_text())
    config.update(data_dir="/elsewhere", device="cuda", precision="bf16", git_commit="x", version="9")
    (twin / "config.json").write_text(json.dumps(config))
    summary = json.loads((twin / "summary.json").read_text())
    (twin / "summary.json").write_text(json.dumps({**summary, "final_test_acc": 0.5}))  # made again
    other = make_run(tmp_path, "e1", "aalr", 1, final=0.8, peak=0.81)
    rows = collect(tmp_path)
    assert [r["run_dir"] for r in rows] == [str(run), str(other)]
    assert [(s.path, s.duplicate_of) for s in rows.skipped] == [(twin, run)]


def test_runs_that_differ_in_a_setting_are_rows_of_their_own(tmp_path: Path) -> None:
    outside = {"experiment": None, "suite": None}
    for seed, epochs in ((0, 3), (1, 3), (0, 5)):
        make_run(tmp_path, f"e{epochs}", "aalr", seed, final=0.5 + epochs / 100, peak=0.9, epochs=epochs,
                 config=outside, summary=outside)  # fmt: skip
    options = {**outside, "method_args": {"finish": "linear"}}
    make_run(tmp_path, "lin", "aalr", 0, final=0.7, peak=0.9, epochs=5, config=options, summary=outside)
    make_run(tmp_path, "sgdr", "sgdr", 0, final=0.6, peak=0.9, config=outside, summary=outside)
    summary = summarize(collect(tmp_path))
    assert [(e["method"], e["settings"], e["n"], e["seeds"]) for e in summary] == [
        ("aalr", ["epochs=3"], 2, [0, 1]),
        ("aalr", ["epochs=5"], 1, [0]),
        ("aalr", ["epochs=5", "method_args.finish=linear"], 1, [0]),
        ("sgdr", [], 1, [0]),
    ]
    assert summary[1]["final_mean"] == pytest.approx(0.55)
    text = to_markdown(summary)
    assert "## cifar10-resnet18: cifar10 / resnet18, 3, 5, 4 epochs, batch size 128" in text
    assert "| aalr (epochs=3) | 2 | 53.00 ± 0.00 |" in text
    assert "| aalr (epochs=5) | 1 | 55.00 ± – |" in text
    assert "| aalr (epochs=5, method_args.finish=linear) | 1 | 70.00 ± – |" in text
    assert "| sgdr | 1 |" in text
    parsed = list(csv.DictReader(io.StringIO(to_csv(summary))))
    assert [(r["method"], r["settings"]) for r in parsed] == [
        ("aalr", "epochs=3"), ("aalr", "epochs=5"), ("aalr", "epochs=5;method_args.finish=linear"),
        ("sgdr", ""),
    ]  # fmt: skip


def record_failure(root: Path, experiment: str, method: str, seed: int, error: str) -> None:
    record = {"experiment": experiment, "method": method, "seed": seed, "run_dir": "x", "error": error}
    with (root / "failures.jsonl").open("a") as handle:
        handle.write(json.dumps({**record, "traceback": "Traceback ...\n"}) + "\n")


def test_failed_runs_stay_in_their_row_and_are_listed_with_their_error(results: Path) -> None:
    order = [("e1", m, s) for s in (0, 1, 2) for m in ("aalr", "dog", "sgdr", "adam")]
    (results / "suite.json").write_text(
        json.dumps({"name": "t", "runs": [{"run_dir": f"{e}/{m}/seed{s}"} for e, m, s in order]})
    )
    record_failure(results, "e1", "aalr", 0, "RuntimeError: an old failure; the run finished since")
    record_failure(results, "e1", "adam", 1, "RuntimeError: first try")
    record_failure(results, "e1", "adam", 1, "RuntimeError: value cannot be converted\nmore lines")
    record_failure(results, "e1", "dog", 0, "ValueError: dog exploded")
    record_failure(results, "e1", "dog", 1, "ValueError: dog exploded again")
    rows = collect(results)
    assert [(f.method, f.seed, f.error) for f in rows.failed] == [
        ("adam", 1, "RuntimeError: value cannot be converted"),  # the last record of a run, first line
        ("dog", 0, "ValueError: dog exploded"),
        ("dog", 1, "ValueError: dog exploded again"),
    ]
    summary = summarize(rows)
    assert [(e["method"], e["n"], e["crashed"]) for e in summary] == [
        ("aalr", 3, 0), ("dog", 0, 2), ("sgdr", 3, 0), ("adam", 1, 1),
    ]  # fmt: skip
    text = to_markdown(summary)
    assert "| aalr | 3 | 89.00 ± 3.61 |" in text
    assert "| dog | 0 of 2 (2 crashed) | – | – | – | – | 0/0 |" in text
    assert "| adam | 1 of 2 (1 crashed) | 70.00 ± – | 70.00 | 75.00 ± – | 4.0 | 0/1 |" in text
    assert 'Seeds "n of m (k crashed)": k of the m runs raised and have no result' in text
    assert "## Not counted\n\nRuns that crashed (3): they raised and left no summary.json" in text
    assert "- `e1/adam/seed1`: RuntimeError: value cannot be converted\n" in text
    parsed = {r["method"]: r for r in csv.DictReader(io.StringIO(to_csv(summary)))}
    assert (parsed["dog"]["n"], parsed["dog"]["crashed"], parsed["adam"]["crashed"]) == ("0", "2", "1")
    path = write_report(results, results / "report")
    assert "- `e1/dog/seed1`: ValueError: dog exploded again" in path.read_text()


def test_a_report_of_runs_that_all_failed_still_writes_and_says_so(tmp_path: Path) -> None:
    record_failure(tmp_path, "e", "aalr", 0, "RuntimeError: boom")
    text = write_report(tmp_path).read_text()
    assert "| aalr | 0 of 1 (1 crashed) |" in text and "- `e/aalr/seed0`: RuntimeError: boom" in text


def test_damaged_bookkeeping_files_are_named_and_the_rest_still_counts(results: Path) -> None:
    (results / "suite.json").write_bytes(b"\xff")
    record_failure(results, "e1", "dog", 0, "ValueError: dog exploded")
    with (results / "failures.jsonl").open("a") as handle:
        handle.write('{"experiment": "e1", "method": "d\n[1]\n{"experiment": "e1"}\n')
    rows = collect(results)
    assert len(rows) == 7 and [f.method for f in rows.failed] == ["dog"]
    assert [(s.path.name, s.reason.split(" (")[0]) for s in rows.skipped] == [
        ("suite.json", "not UTF-8 text"),
        ("failures.jsonl", "line 2: not a failure record"),
        ("failures.jsonl", "line 3: not a failure record"),
        ("failures.jsonl", "line 4: lacks 'method', 'seed', 'error'"),
    ]
    assert rows.skipped[0].reason.endswith("; its runs are ordered by folder")


# Every way a run's file can be damaged: (file, how, the reason the report must give).
def _set(key: str, value: object) -> Callable[[Path], object]:
    return lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), key: value}))


def _drop(key: str) -> Callable[[Path], object]:
    return lambda p: p.write_text(
        json.dumps({k: v for k, v in json.loads(p.read_text()).items() if k != key})
    )


def _directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


DAMAGE: dict[str, tuple[str, Callable[[Path], object], str]] = {
    "summary not UTF-8": (
        "summary.json",
        lambda p: p.write_bytes(b'{"status": "\xff"}'),
        r"not UTF-8 text \(byte 0xff on line 1\)",
    ),
    "summary truncated": (
        "summary.json",
        lambda p: p.write_bytes(p.read_bytes()[:-9]),
        r"not valid JSON \(.*line 1 column",
    ),
    "summary a list": ("summary.json", lambda p: p.write_text("[1, 2]"), r"a JSON array, not an object"),
    "summary {}": (
        "summary.json",
        lambda p: p.write_text("{}"),
        r"lacks 'status', 'epochs', 'final_test_acc', 'peak_test_acc'",
    ),
    "summary lacks status": ("summary.json", _drop("status"), r"lacks 'status'"),
    "summary accuracy a string": (
        "summary.json",
        _set("final_test_acc", "high"),
        r"'final_test_acc' is 'high', not a number or null",
    ),
    "summary seed a string": ("summary.json", _set("seed", "1"), r"'seed' is '1', not an integer"),
    "summary empty": ("summary.json", lambda p: p.write_text(""), r"empty"),
    "summary a directory": ("summary.json", _directory, r"a directory, not a file"),
    "config not UTF-8": (
        "config.json",
        lambda p: p.write_bytes(b"{\n\x80}"),
        r"not UTF-8 text \(byte 0x80 on line 2\)",
    ),
    "config truncated": ("config.json", lambda p: p.write_bytes(p.read_bytes()[:20]), r"not valid JSON \("),
    "config a string": ("config.json", lambda p: p.write_text('"aalr"'), r"a JSON string, not an object"),
    "config lacks method": ("config.json", _drop("method"), r"lacks 'method'"),
    "config seed a string": ("config.json", _set("seed", "0"), r"'seed' is '0', not an integer"),
    "config empty": ("config.json", lambda p: p.write_text("\n"), r"empty"),
    "config a directory": ("config.json", _directory, r"a directory, not a file"),
    "config missing": ("config.json", lambda p: p.unlink(), r"missing"),
    "metrics not UTF-8": (
        "metrics.jsonl",
        lambda p: p.write_bytes(p.read_bytes() + b"\xff\n"),
        r"not UTF-8 text \(byte 0xff on line 5\)",
    ),
    "metrics truncated": (
        "metrics.jsonl",
        lambda p: p.write_bytes(p.read_bytes()[:-10]),
        r"line 4: not valid JSON \(",
    ),
    "metrics a line of the wrong type": (
        "metrics.jsonl",
        lambda p: p.write_text("[1]\n" + p.read_text()),
        r"line 1: \[1\] is not a JSON object",
    ),
    "metrics a line short": (
        "metrics.jsonl",
        lambda p: p.write_text("".join(p.read_text().splitlines(keepends=True)[:-1])),
        r"3 epoch line\(s\), but summary.json says 4 epochs",
    ),
    "metrics empty": ("metrics.jsonl", lambda p: p.write_text(""), r"empty"),
    "metrics a directory": ("metrics.jsonl", _directory, r"a directory, not a file"),
    "metrics missing": ("metrics.jsonl", lambda p: p.unlink(), r"missing"),
}


def damaged_tree(root: Path, damages: list[list[str]]) -> tuple[list[Path], dict[Path, str]]:
    """One good run per entry of ``damages`` (seeds 0, 1, ...), then each damaged as its entry says:
    the good runs, and each damaged file with the reason it must be listed with."""
    good: list[Path] = []
    expected: dict[Path, str] = {}
    for seed, kinds in enumerate(damages):
        run_dir = make_run(root, "e", "aalr", seed, final=0.5 + seed / 100, peak=0.9)
        for kind in kinds:
            name, damage, reason = DAMAGE[kind]
            damage(run_dir / name)
            # a line short is short of the epochs summary.json gives, which a damaged one cannot say
            if kind != "metrics a line short" or not any(k.startswith("summary") for k in kinds):
                expected[run_dir / name] = reason
        if not kinds:
            good.append(run_dir)
    return good, expected


def check_damaged_tree(root: Path, good: list[Path], expected: dict[Path, str]) -> None:
    rows = collect(root)
    assert [Path(r["run_dir"]) for r in rows] == good
    assert rows.failed == [] and all(s.duplicate_of is None for s in rows.skipped)
    listed = {s.path: s.reason for s in rows.skipped}
    assert set(listed) == set(expected) and len(rows.skipped) == len(expected)
    for path, reason in expected.items():
        assert re.fullmatch(reason + ".*", listed[path]), (path, listed[path], reason)
        assert next(s for s in rows.skipped if s.path == path).run_dir == path.parent
    entries = summarize(rows)
    assert sum(e["n"] for e in entries) == len(good)
    if good:
        assert entries[0]["final_mean"] == pytest.approx(
            statistics.fmean(0.5 + int(p.name[4:]) / 100 for p in good)
        )
    text = to_markdown(entries)
    for path in expected:
        assert f"- `{path.relative_to(root).as_posix()}`: " in text


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.lists(st.sampled_from(sorted(DAMAGE)), max_size=3, unique_by=lambda kind: DAMAGE[kind][0]),
        min_size=1,
        max_size=6,
    )
)
def test_any_damage_leaves_out_exactly_the_damaged_runs_and_lists_each_file(damages: list[list[str]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        good, expected = damaged_tree(root, damages)
        check_damaged_tree(root, good, expected)


def test_every_kind_of_damage_at_once_the_report_still_writes_and_lists_it(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    good, expected = damaged_tree(root, [[kind] for kind in DAMAGE] + [[], []])
    check_damaged_tree(root, good, expected)
    text = write_report(root, tmp_path / "out").read_text()
    assert "| aalr | 2 | " in text
    assert f"Files that could not be used ({len(DAMAGE)}); the run each belongs to is left out:" in text
    for path, reason in expected.items():
        line = next(
            x for x in text.splitlines() if x.startswith(f"- `{path.relative_to(root).as_posix()}`: ")
        )
        assert re.fullmatch(reason + ".*", line.split("`: ", 1)[1])
    assert text.index("## Not counted") < text.index("## Plots")
    png_width(tmp_path / "out" / "acc_e.png")


def test_a_run_without_summary_is_unfinished_not_damaged(tmp_path: Path) -> None:
    good, _ = damaged_tree(tmp_path, [[], []])
    (good[1] / "summary.json").unlink()
    (good[1] / "config.json").write_bytes(b"\xff")  # still being written, perhaps: not looked at
    rows = collect(tmp_path)
    assert [Path(r["run_dir"]) for r in rows] == [good[0]] and rows.skipped == []


def test_aalr_report_prints_what_it_left_out_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # printf '\xff\n' >> d/a/metrics.jsonl; aalr report d
    run = make_run(tmp_path / "d", "e", "aalr", 0, final=0.9, peak=0.91)
    make_run(tmp_path / "d", "e", "aalr", 1, final=0.8, peak=0.81)
    with (run / "metrics.jsonl").open("ab") as handle:
        handle.write(b"\xff\n")
    assert main(["report", str(tmp_path / "d"), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "| aalr | 1 | 80.00 ± – | 80.00 | 81.00 ± – | 4.0 | 0/1 |" in printed
    assert "- `e/aalr/seed0/metrics.jsonl`: not UTF-8 text (byte 0xff on line 5)" in printed
    assert "- `e/aalr/seed0/metrics.jsonl`: not UTF-8 text" in (tmp_path / "out" / "report.md").read_text()


@pytest.mark.parametrize(
    ("row", "cost"),
    [
        ({"epochs": 30, "epochs_planned": 30}, 30.0),  # one run
        ({"epochs": 12, "epochs_planned": 30}, 12.0),  # diverged at 12: what it trained
        ({"epochs": 30, "lr_grid": {"0.1": 0.9, "0.2": 0.8}, "config": {"val_fraction": 0.2}}, 30 + 2 * 24.0),
        (  # a language model's grid trains on all the training text (its validation part is separate)
            {
                "epochs": 20,
                "train_steps": 800,
                "steps": 800,
                "lr_grid": {"1e-3": 2.5, "3e-3": 2.4, "1e-2": 2.6},
                "final_test_bpb": 2.4,
                "config": {"val_fraction": 0.1},
            },
            800 + 3 * 800.0,
        ),
        ({"status": "finished"}, None),
    ],
)
def test_training_cost_counts_the_grids_runs(row: dict, cost: float | None) -> None:
    assert report.training_cost(row) == cost


def test_every_table_gives_the_cost_beside_the_accuracy(tmp_path: Path) -> None:
    make_run(tmp_path, "m", "aalr-plus", 0, final=0.9, peak=0.9, epochs=10)
    grid = {"lr_grid": {"0.1": 0.9, "0.2": 0.91}, "chosen_lr": 0.2}
    make_run(
        tmp_path, "m", "step", 0, final=0.92, peak=0.92, epochs=10, config={"val_fraction": 0.5}, summary=grid
    )
    lines = to_markdown(summarize(collect(tmp_path))).splitlines()
    header = next(line for line in lines if line.startswith("| Method"))
    assert header.endswith("| Cost (epochs) | Failed |")
    assert next(line for line in lines if line.startswith("| aalr-plus")).endswith("| 10.0 | 0/1 |")
    assert next(line for line in lines if line.startswith("| step")).endswith(
        "| 20.0 | 0/1 |"
    )  # 10 + 2 x 10 x 0.5
