"""`aalr train` under torchrun: sharding, launch checks that fail before any rank waits, and a
2-process gloo run that writes one output directory, matches a 1-process run and resumes exactly."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from aalr.cli import main
from aalr.harness import distributed
from aalr.harness.config import RunError
from aalr.harness.distributed import Launch, device_for, launch_from_env, shard
from aalr.harness.train import run

FAST = {"dataset": "mnist1d", "epochs": 3, "batch_size": 128, "train_subset": 512, "progress": False}
TORCHRUN = {"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}


# -- sharding -----------------------------------------------------------------------------------------
def shard_reference(order: list[int], rank: int, world_size: int) -> list[int]:
    """Obviously right: positions r, r+W, r+2W, ... of the order, the last n % W positions left out."""
    usable = len(order) - len(order) % world_size
    return [order[i] for i in range(usable) if i % world_size == rank]


@pytest.mark.parametrize("n", [1, 10, 11, 17, 64])
@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_shards_are_equal_disjoint_and_together_make_the_single_process_batches(n, world_size):
    order = torch.randperm(n, generator=torch.Generator().manual_seed(n))
    shards = [shard(order, r, world_size) for r in range(world_size)]
    for rank, part in enumerate(shards):
        assert part.tolist() == shard_reference(order.tolist(), rank, world_size)
        assert len(part) == n // world_size == distributed.shard_size(n, world_size)
    kept = order[: n - n % world_size]
    assert sorted(torch.cat(shards).tolist()) == sorted(kept.tolist())  # each kept sample once
    global_batch = 2 * world_size
    per_rank = [part.split(global_batch // world_size) for part in shards]
    for k, batch in enumerate(kept.split(global_batch)):
        together = torch.cat([batches[k] for batches in per_rank])
        assert sorted(together.tolist()) == sorted(batch.tolist())


# -- the launch ---------------------------------------------------------------------------------------
def test_launch_from_env():
    assert launch_from_env({}) is None
    assert launch_from_env({"WORLD_SIZE": "1"}) is None
    assert launch_from_env(TORCHRUN) == Launch(rank=1, local_rank=1, world_size=2)


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"WORLD_SIZE": "two"}, "WORLD_SIZE must be an integer, got 'two'"),
        ({"WORLD_SIZE": "0"}, "WORLD_SIZE must be >= 1, got 0"),
        ({"MASTER_PORT": None}, "MASTER_PORT not set; start the processes with torchrun"),
        ({"RANK": "2"}, r"RANK must be in \[0, 2\) for WORLD_SIZE=2, got 2"),
        ({"LOCAL_RANK": "-1"}, r"LOCAL_RANK must be in \[0, 2\), got -1"),
    ],
)
def test_launch_errors(changes, match):
    env = {k: v for k, v in {**TORCHRUN, **changes}.items() if v is not None}
    with pytest.raises(ValueError, match=match):
        launch_from_env(env)


def test_device_for_a_rank():
    launch = Launch(rank=1, local_rank=1, world_size=2)
    assert device_for("cpu", launch) == torch.device("cpu")
    with pytest.raises(ValueError, match="device 'cuda:0' names one GPU, but each of the 2 ranks"):
        device_for("cuda:0", launch)
    if torch.cuda.device_count() <= 1:
        with pytest.raises(ValueError, match=r"LOCAL_RANK 1 needs cuda:1, but this node has \d CUDA"):
            device_for("cuda", launch)
    if not torch.cuda.is_available():
        assert device_for("auto", launch) == torch.device("cpu")


def test_single_process_helpers_do_nothing():
    assert not distributed.active()
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    assert distributed.sample_mean(torch.tensor(6.0, dtype=torch.float64), 4) == 1.5
    assert distributed.broadcast_json({"a": [1]}) == {"a": [1]}
    assert distributed.min_max_over_ranks(3) == (3, 3)
    distributed.barrier()
    with distributed.local_main_first():
        pass


def test_rank_seeds_differ_by_rank_and_epoch_and_repeat():
    seeds = {distributed.rank_seed(0, epoch, rank) for epoch in range(1, 4) for rank in range(3)}
    assert len(seeds) == 9
    assert distributed.rank_seed(0, 2, 1) == distributed.rank_seed(0, 2, 1) != distributed.rank_seed(1, 2, 1)


def test_bad_settings_under_torchrun_fail_before_any_rank_waits(tmp_path, monkeypatch):
    for name, value in TORCHRUN.items():  # MASTER_PORT 1: joining the group would fail or hang
        monkeypatch.setenv(name, value)
    started = time.monotonic()
    with pytest.raises(
        RunError, match="batch_size 127 is the global batch and must divide evenly among the 2"
    ):
        run({**FAST, "batch_size": 127}, tmp_path / "out")
    assert time.monotonic() - started < 5 and not dist.is_initialized()
    assert not (tmp_path / "out").exists()


def test_cli_under_torchrun_reports_errors_with_the_rank(tmp_path, monkeypatch, capsys):
    for name, value in TORCHRUN.items():
        monkeypatch.setenv(name, value)
    assert main(["train", "--batch-size", "127", "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    assert "aalr train (rank 1): error: batch_size 127" in capsys.readouterr().err
    assert main(["compare", "--suite", "quick", "--out", str(tmp_path / "y")]) == 2
    assert "under torchrun use `aalr train`" in capsys.readouterr().err


# -- two processes end to end -----------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def torchrun_train(out: Path, data_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN}
    env["OMP_NUM_THREADS"] = "1"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
        "-m", "aalr", "train", "--dataset", "mnist1d", "--epochs", str(FAST["epochs"]),
        "--batch-size", str(FAST["batch_size"]), "--train-subset", str(FAST["train_subset"]),
        "--device", "cpu", "--data-dir", str(data_dir), "--out", str(out), "--no-progress", *extra,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def without_seconds(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


@pytest.mark.slow
def test_two_gloo_processes_train_like_one_and_resume_exactly(tmp_path):
    data_dir = tmp_path / "data"
    one = run({**FAST, "device": "cpu", "data_dir": str(data_dir)}, tmp_path / "one")  # caches MNIST-1D
    two_dir = tmp_path / "runs" / "two"
    result = torchrun_train(two_dir, data_dir)
    assert result.stdout.count("results in") == 1  # rank 0 alone prints
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["two"]
    assert {p.name for p in two_dir.iterdir()} == {
        "config.json", "metrics.jsonl", "summary.json", "checkpoint.pt", "checkpoint.prev.pt",
    }  # fmt: skip
    two = json.loads((two_dir / "summary.json").read_text())
    rows_one, rows_two = metrics(tmp_path / "one"), metrics(two_dir)
    # 512 samples, global batch 128: each rank takes 64 of every batch; DDP's mean of the two
    # halves' gradients is the gradient of the whole batch. So the runs differ only by float
    # rounding (summation order): the same decisions, losses equal to ~1e-6, and test accuracy
    # within 1 point (10 of 1000 test samples on a near-tie). Wrong sharding or a loss that is
    # not averaged over ranks moves the loss by more than 1e-3.
    assert {r["numerics"] for r in rows_one} == {"cpu fp32"} and two["numerics"] == ["cpu fp32 2 ranks"]
    assert [r["action"] for r in rows_two] == [r["action"] for r in rows_one]
    assert two["lr_trajectory"] == one["lr_trajectory"]
    for a, b in zip(rows_one, rows_two, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
        assert b["test_loss"] == pytest.approx(a["test_loss"], rel=1e-5)
        assert abs(b["test_acc"] - a["test_acc"]) <= 0.01
    assert abs(two["final_test_acc"] - one["final_test_acc"]) <= 0.01

    # Interrupted after epoch 2: the previous checkpoint is that epoch's. Both ranks read it and
    # redo epoch 3 exactly.
    os.replace(two_dir / "checkpoint.prev.pt", two_dir / "checkpoint.pt")
    (two_dir / "summary.json").unlink()
    torchrun_train(two_dir, data_dir, "--resume")
    assert without_seconds(metrics(two_dir)) == without_seconds(rows_two)
    resumed = json.loads((two_dir / "summary.json").read_text())
    assert resumed["final_test_acc"] == two["final_test_acc"]
