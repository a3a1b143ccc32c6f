"""The scripts whose output the README quotes: the AALR+ goal verdict and the variant comparison."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from aalr.harness.config import TrainConfig

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def fake_run(root: Path, experiment: str, method: str, seed: int, acc: float) -> None:
    """A finished one-epoch run as the harness writes it (the report counts only such runs)."""
    run_dir = root / experiment / method / f"seed{seed}"
    run_dir.mkdir(parents=True)
    config = TrainConfig(
        dataset="cifar10", model="resnet18", method=method, seed=seed, epochs=1, experiment=experiment
    )  # two experiments are two settings
    (run_dir / "config.json").write_text(json.dumps(config.to_dict()))
    record = {"epoch": 1, "lr": 0.1, "train_loss": 1.0, "test_acc": acc, "action": "none", "reason": ""}
    (run_dir / "metrics.jsonl").write_text(json.dumps(record) + "\n")
    summary = {
        "experiment": experiment, "method": method, "seed": seed, "final_test_acc": acc,
        "status": "finished", "dataset": "cifar10", "model": "resnet18", "epochs": 1, "peak_test_acc": acc,
        "lr_trajectory": [0.1], "wall_seconds": 1.0,
    }  # fmt: skip
    (run_dir / "summary.json").write_text(json.dumps(summary))


def printed(script: str, *args: str) -> str:
    """What ``benchmarks/<script>`` prints with ``args``; it must exit 0."""
    command = [sys.executable, str(BENCHMARKS / script), *args]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def budget_rows(root: Path) -> dict[str, list[str]]:
    out = printed("budget_goal.py", str(root))
    rows = [line.strip("|").split("|") for line in out.splitlines()[2:]]
    return {cells[0].strip(): [c.strip() for c in cells] for cells in rows}


@pytest.mark.parametrize(
    ("plus", "tuned", "verdict"),
    [
        ([0.90, 0.91], [0.90], "yes"),  # worst 90.0 >= every reference mean (89.0), within 0.5 of 90.0
        ([0.90, 0.93], [0.906], "no"),  # worst 90.0 is 0.6 below the tuned grid's mean
        ([0.885, 0.95], [0.88], "no"),  # worst 88.5 is below the references' mean 89.0
        ([0.90, 0.91], None, "cannot tell (no tuned grid here)"),
        ([0.885, 0.95], None, "no (no tuned grid here)"),
    ],
)
def test_budget_goal_verdict(tmp_path, plus, tuned, verdict):
    for seed, acc in enumerate(plus):
        fake_run(tmp_path, "task-8", "aalr-plus", seed, acc)
    for method in ("sgdr", "step", "prodigy"):
        for seed, acc in enumerate((0.88, 0.90)):  # mean 89.0
            fake_run(tmp_path, "task-8", method, seed, acc)
    for seed, acc in enumerate(tuned or []):
        fake_run(tmp_path, "task-8-tuned", "step", seed, acc)
    row = budget_rows(tmp_path)["task-8"]
    assert row[-1] == verdict
    assert row[1] == f"{100 * sum(plus) / len(plus):.2f} ({100 * min(plus):.2f}) [{len(plus)}]"


def test_aalr_plus_variants_runs_and_refuses_unknown_names(tmp_path):
    script = str(BENCHMARKS / "aalr_plus_variants.py")
    args = ["--out", str(tmp_path), "--tasks", "m30", "--seeds", "0"]
    out = subprocess.run(
        [sys.executable, script, *args, "--variants", "steps,restart-short"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = [line for line in out.splitlines() if line.startswith(("| steps", "| restart"))]
    assert len(rows) == 2
    made = [line for line in out.splitlines() if line.startswith("runs made at commit(s): ")]
    assert len(made) == 1 and made[0].endswith("(2 runs)")  # one commit made both runs
    config = json.loads((tmp_path / "restart-short" / "m30" / "seed0" / "config.json").read_text())
    # 30 epochs // 10; the finish named, so the run keeps its meaning if the default changes
    assert config["method_args"] == {"phase1_failure": "restart", "phase1_patience": 3, "finish": "steps"}
    bad = subprocess.run(
        [sys.executable, script, *args, "--variants", "sine"], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2 and "unknown variant(s) ['sine']" in bad.stderr


def test_rounds4_trains_the_epoch_runs_steps_in_quarter_epoch_rounds():
    import importlib.util

    spec = importlib.util.spec_from_file_location("variants", BENCHMARKS / "aalr_plus_variants.py")
    assert spec is not None and spec.loader is not None
    variants = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(variants)
    tasks = variants.TASKS
    # MNIST-1D: 4000 / 128 -> 32 steps an epoch; Fashion-MNIST 5000 images -> 40 (the last batch partial)
    assert variants.mode_for("rounds4", tasks["m15"]) == {"train_steps": 480, "round_steps": 8}
    assert variants.mode_for("rounds4", tasks["f8"]) == {"train_steps": 320, "round_steps": 10}
    assert variants.mode_for("cosine", tasks["f8"]) == {"epochs": 8}
    assert "rounds_per_epoch" not in variants.options_for("rounds4", 8)  # not a tuner option


def test_throughput_reports_every_loop_and_the_ceiling(tmp_path):
    script = str(BENCHMARKS / "throughput.py")
    out_file = tmp_path / "throughput.md"
    args = ["--data", "digits", "--samples", "256", "--repeats", "1", "--workers", "0"]
    out = subprocess.run(
        [sys.executable, script, *args, "--random-erasing", "0.5", "--out", str(out_file)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rates = [
        line for line in out.splitlines() if line.startswith("| ") and line.split("|")[2].strip().isdigit()
    ]
    assert [row.split("|")[1].split(",")[0].split(" (")[0].strip() for row in rates] == [
        "model step alone",
        "ours",
        "conventional",
        "conventional",
    ]
    assert all(int(row.split("|")[2]) > 0 for row in rates)
    assert "ratio ours / conventional:" in out and "ceiling bound / conventional:" in out
    assert "ours reaches" in out
    assert out_file.read_text().strip() == out.strip()
    bad = subprocess.run(
        [sys.executable, script, *args, "--batch-size", "0"], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2 and "--batch-size must be >= 1, got 0" in bad.stderr
    some = subprocess.run(
        [sys.executable, script, *args, "--loops", "tensor"], capture_output=True, text=True, check=True
    ).stdout  # ours always runs; no ceiling line without the bound
    assert "| ours" in some and "| conventional, tensor" in some and "PIL" not in some
    assert "ratio ours / conventional:" in some and "ceiling" not in some
    layout = subprocess.run(
        [sys.executable, script, *args, "--loops", "bound,bound-default,tensor", "--channels-last"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "fp32, channels_last for ours and the bound, contiguous for the other loops" in layout
    assert "ours reaches" in layout
    assert "model step alone, channels_last / fp32 in the default format: " in layout
    assert "| model step alone, fp32 and default memory format" in layout
    assert "ceiling in fp32, default format / conventional (a data pipeline's most): " in layout
    both = subprocess.run(  # bf16 on the CPU, as the harness's --precision bf16
        [sys.executable, script, *args, "--precision", "bf16"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "bf16 autocast for ours and the bound, fp32 for the other loops" in both
    assert "model step alone, bf16 / fp32 in the default format: " in both
    assert "ratio ours / conventional (bf16 against fp32 in the default format): " in both
    assert "| model step alone, fp32 and default memory format" in both  # added by itself: other numerics
    assert "fp32 and default memory format" not in out and "a data pipeline's most" not in out  # fp32 default
    unknown = subprocess.run(
        [sys.executable, script, *args, "--loops", "ours,dali"], capture_output=True, text=True, check=False
    )
    assert unknown.returncode == 2 and "unknown loop(s) ['dali']" in unknown.stderr


def test_pil_round_trip_gives_the_same_samples_as_the_tensor_path():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from throughput import PerSample, PerSamplePIL
    finally:
        sys.path.remove(str(BENCHMARKS))
    import torch

    from aalr.harness.augment import augment_for

    g = torch.Generator().manual_seed(0)
    for shape in ((5, 1, 8, 8), (5, 3, 8, 8)):
        x = torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)
        y = torch.arange(5)
        augment = augment_for("digits")
        for i in range(5):
            a, b = PerSample(x, y, augment)[i], PerSamplePIL(x, y, augment)[i]
            assert torch.equal(a[0], b[0]) and a[1] == b[1]


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("bf16", [False, True])
def test_throughput_loops_compute_in_the_numerics_they_are_given(bf16, channels_last):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from throughput import bound, ours
    finally:
        sys.path.remove(str(BENCHMARKS))
    import torch

    from aalr.harness.augment import augment_for
    from aalr.harness.models import build_model

    # 3 channels, so that a batch's layout shows; the loops lay out the batches, main() the model
    model = build_model("fmnist-cnn", num_classes=10, input_shape=(3, 8, 8), width=0.25)
    seen = set()
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(
        lambda module, inputs, out: seen.add(
            (
                out.dtype,
                inputs[0].is_contiguous(memory_format=torch.channels_last) and not inputs[0].is_contiguous(),
            )
        )
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    y = torch.randint(0, 10, (64,))
    g = torch.Generator().manual_seed(0)
    assert ours(model, optimizer, x, y, augment_for("cifar10"), 32, g, bf16, channels_last) == 64
    assert bound(model, optimizer, x, y, 32, bf16, channels_last) == 64
    assert seen == {(torch.bfloat16 if bf16 else torch.float32, channels_last)}


def test_spike_runs_the_three_variants_and_refuses_bad_arguments(tmp_path):
    script = str(BENCHMARKS / "spike.py")
    out = tmp_path / "runs.json"
    args = ["--seeds", "0", "--steps", "80", "--spike-steps", "2", "--json", str(out)]
    printed = subprocess.run(
        [sys.executable, script, *args], capture_output=True, text=True, check=True
    ).stdout
    runs = json.loads(out.read_text())
    assert [r["variant"] for r in runs] == ["clean", "rollback", "no-rollback"]
    assert all(len(r["losses"]) == 80 and 0 < r["tuner_share"] < 1 for r in runs)
    assert runs[0]["fault"] is None and runs[1]["fault"] == [40, 42]
    # the same initial weights and batches: every run's losses agree until the fault begins
    assert runs[0]["losses"][:40] == runs[1]["losses"][:40] == runs[2]["losses"][:40]
    assert runs[1]["losses"][40] != runs[0]["losses"][40] or runs[1]["losses"][41] != runs[0]["losses"][41]
    assert "| clean | 0 |" in printed and "tuner share of wall time" in printed
    bad = subprocess.run(
        [sys.executable, script, "--steps", "50"], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2 and "--steps must be a multiple of 40" in bad.stderr


def fake_lm_run(root: Path, experiment: str, method: str, seed: int, bpb: float) -> None:
    fake_run(root, experiment, method, seed, 0.5)
    path = root / experiment / method / f"seed{seed}" / "summary.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "final_test_bpb": bpb}))


@pytest.mark.parametrize(
    ("plus", "tuned", "verdict"),
    [
        (
            [2.40, 2.45],
            [2.43],
            "yes",
        ),  # worst 2.45 <= the best untuned mean 2.50; mean 2.425 within 1 % of 2.43
        ([2.40, 2.52], [2.43], "no"),  # worst 2.52 above the best untuned mean 2.50
        ([2.47, 2.48], [2.40], "no"),  # mean 2.475 is 3.1 % above the tuned grid's 2.40
    ],
)
def test_lm_goal_verdict(tmp_path, plus, tuned, verdict):
    for seed, bpb in enumerate(plus):
        fake_lm_run(tmp_path, "steps800", "aalr-plus-adamw", seed, bpb)
    for method, mean in (("adamw-cosine", 2.6), ("wsd", 2.5)):
        for seed, bpb in enumerate((mean - 0.01, mean + 0.01)):
            fake_lm_run(tmp_path, "steps800", method, seed, bpb)
    for seed, bpb in enumerate(tuned):
        fake_lm_run(tmp_path, "steps800-tuned", "adamw-cosine", seed, bpb)
    out = printed("lm_goal.py", str(tmp_path))
    (row,) = [line for line in out.splitlines() if line.startswith("| steps800 |")]
    assert row.split("|")[-2].strip().startswith(verdict + ":"), row


def goal_run(root: Path, experiment: str, method: str, seed: int, acc: float, epochs: int, **summary) -> None:
    """A finished run of ``epochs`` epochs (``summary`` on top: a grid's chosen_lr and lr_grid)."""
    fake_run(root, experiment, method, seed, acc)
    run_dir = root / experiment / method / f"seed{seed}"
    config = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**config, "epochs": epochs, "val_fraction": 0.2}))
    line = (run_dir / "metrics.jsonl").read_text().strip()
    (run_dir / "metrics.jsonl").write_text(
        "".join(line.replace('"epoch": 1', f'"epoch": {e}') + "\n" for e in range(1, epochs + 1))
    )
    record = json.loads((run_dir / "summary.json").read_text())
    (run_dir / "summary.json").write_text(json.dumps({**record, "epochs": epochs, **summary}))


def tuned_goal(root: Path) -> list[dict]:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from tuned_goal import judge
    finally:
        sys.path.remove(str(BENCHMARKS))
    from aalr.harness.report import collect

    return judge(collect(root))


@pytest.mark.parametrize(
    ("plus", "grid", "untuned", "halves"),
    [
        ((0.90, 0.90), 0.901, 0.88, (True, True)),  # mean 90.0 >= 90.1 - 0.2; worst 90.0 >= 88.0
        ((0.90, 0.90), 0.903, 0.88, (False, True)),  # mean 90.0 < 90.3 - 0.2
        ((0.90, 0.87), 0.88, 0.88, (True, False)),  # worst 87.0 below the untuned mean 88.0
    ],
)
def test_tuned_goal_halves(tmp_path, plus, grid, untuned, halves):
    for seed, acc in enumerate(plus):
        goal_run(tmp_path, "t-10", "aalr-plus", seed, acc, 10)
        goal_run(tmp_path, "t-10", "sgd-cosine", seed, untuned, 10)
        goal_run(tmp_path, "t-10", "aalr", seed, 0.95, 10)  # an AALR method is not a peer
        goal_run(
            tmp_path, "t-10-tuned", "step", seed, grid, 10, chosen_lr=0.1, lr_grid={"0.1": 0.9, "0.2": 0.8}
        )
    goal_run(tmp_path, "t-40", "aalr-plus", 0, 0.99, 40)  # cost 40 > the grid's 10 + 2 x 8 = 26
    (task,) = tuned_goal(tmp_path)  # t-40 (AALR+ alone) is part of t-10's row, not a task
    assert task["task"] == "t-10" and (task["grid"][3], task["untuned"][3]) == halves, task
    assert task["untuned"][0] == "sgd-cosine"
    # at the grid's cost (26 epochs) the only AALR+ run is the 10-epoch one
    mean = 100 * sum(plus) / 2
    assert task["matched"] == [("step", 26.0, "t-10", pytest.approx(mean), mean > 100 * grid)]
    assert task["verdict"] == "no"  # each case misses one part


def test_tuned_goal_compares_a_grid_with_aalr_plus_at_its_cost(tmp_path):
    for seed in (0, 1):
        goal_run(tmp_path, "t-10", "aalr-plus", seed, 0.90, 10)
        goal_run(tmp_path, "t-10", "adam", seed, 0.80, 10)
        goal_run(
            tmp_path, "t-10-tuned", "step", seed, 0.90, 10, chosen_lr=0.1, lr_grid={"0.1": 0.9, "0.2": 0.8}
        )
        goal_run(tmp_path, "t-20", "aalr-plus", seed, 0.93, 20)  # 20 <= 26: the run at equal cost
        goal_run(tmp_path, "t-30", "aalr-plus", seed, 0.99, 30)  # 30 > 26: more than the grid cost
    ten = next(v for v in tuned_goal(tmp_path) if v["task"] == "t-10")
    assert ten["matched"] == [("step", 26.0, "t-20", pytest.approx(93.0), True)]
    assert ten["verdict"] == "yes"
    out = printed("tuned_goal.py", str(tmp_path))
    assert "| t-10 | 90.00 (90.00), 10 | step 90.00, +0.00 pp ok | adam 80.00, +10.00 pp ok |" in out
    assert "step (cost 26): t-20 93.00 above | yes |" in out
    short = printed("tuned_goal.py", str(tmp_path), "--headline")
    assert "| t-10 | 90.00 (90.00) | 80.00 (adam) | 90.00 (step, 2.6x) | 93.00 |" in short
