"""The tuner under torch.distributed (2 gloo processes on the CPU): ranks that see different local
losses take the same decisions, and a restore leaves every rank of a DDP model with the same weights."""

from __future__ import annotations

import json
import math
import os
import socket
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from aalr import AALR, AALRConfig, AALRPolicy

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available"),
]
WORLD = 2
NAN = float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _entry(rank: int, fn, port: int, folder: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=WORLD,
        timeout=timedelta(seconds=30),  # a rank that skips a collective fails the test instead of hanging
    )
    try:
        fn(rank, Path(folder))
        dist.barrier()
    finally:
        dist.destroy_process_group()
    # A gloo worker thread may still be freeing the tensors of a finished all_reduce when the
    # interpreter shuts down; that aborts the process now and then (the race pytorch/pytorch#179291
    # describes). The results are written: leave without the interpreter's teardown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_ranks(fn, folder: Path, timeout: float = 60.0) -> None:
    context = mp.start_processes(
        _entry, args=(fn, free_port(), str(folder)), nprocs=WORLD, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + timeout
    while not context.join(timeout=1.0):  # re-raises a rank's exception
        if time.monotonic() > deadline:
            for process in context.processes:
                process.terminate()
            pytest.fail(f"the {WORLD} ranks did not finish within {timeout} s")


# -- different local losses, one decision --------------------------------------------------------
INITIAL_LOSS = 2.0
MEANS = [2.1, 1.9, 1.8, 1.7, 1.75, 1.72, 1.6, NAN, 1.5, 1.4, 1.45, 1.3]
# rank 0 sees mean + offset, rank 1 mean - offset: alone, each would decide otherwise
OFFSETS = [-0.3, 0.3, -0.4, 0.25, -0.2, 0.1, 0.3, 0.0, -0.3, 0.2, -0.25, 0.15]
CONFIG = {"phase1_patience": 2, "rollback": True}


def local_losses(rank: int) -> list[float]:
    sign = 1 if rank == 0 else -1
    return [mean + sign * offset for mean, offset in zip(MEANS, OFFSETS, strict=True)]


def _decide_on_local_losses(rank: int, folder: Path) -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    tuner = AALR(model, optimizer, initial_loss=INITIAL_LOSS, rules="paper", **CONFIG)
    lrs = []
    for loss in local_losses(rank):
        tuner.step(torch.tensor(loss, dtype=torch.float64))
        lrs.append(tuner.optimizer.param_groups[0]["lr"])
    record = {"history": tuner.history, "lrs": lrs, "weights": model.weight.tolist()}
    (folder / f"rank{rank}.json").write_text(json.dumps(record))


def replay(losses: list[float]) -> tuple[list[str], list[float]]:
    policy = AALRPolicy(initial_loss=INITIAL_LOSS, config=AALRConfig(**CONFIG))
    decisions = [policy.step(loss) for loss in losses]
    return [d.action for d in decisions], [math.ldexp(0.1, d.lr_exponent) for d in decisions]


def _start_from_local_initial_losses(rank: int, folder: Path) -> None:
    model = nn.Linear(3, 2)
    # each rank measured the initial loss on its own shard: L* must still be one number for all
    tuner = AALR(
        model, torch.optim.SGD(model.parameters(), lr=0.1), initial_loss=2.0 + (0.5 if rank else -0.5)
    )
    (folder / f"rank{rank}.json").write_text(json.dumps({"best": tuner.best_loss}))


def test_the_initial_loss_is_averaged_over_ranks(tmp_path):
    run_ranks(_start_from_local_initial_losses, tmp_path)
    assert [json.loads((tmp_path / f"rank{r}.json").read_text())["best"] for r in range(WORLD)] == [2.0, 2.0]


def test_ranks_fed_different_losses_decide_alike_on_the_mean(tmp_path):
    run_ranks(_decide_on_local_losses, tmp_path)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]
    actions, lrs = replay(MEANS)
    # the scenario matters: either rank alone would take other decisions
    for rank in range(WORLD):
        assert replay(local_losses(rank))[0] != actions
    assert {"restore_initial", "save_best", "restore_best"} <= set(actions)
    for rank, record in enumerate(ranks):
        history = record["history"]
        assert [r["action"] for r in history] == actions
        assert record["lrs"] == lrs
        for entry, mean, local in zip(history, MEANS, local_losses(rank), strict=True):
            if math.isnan(mean):
                assert entry["loss"] is None or math.isnan(entry["loss"])  # JSON writes NaN as NaN
            else:
                assert entry["loss"] == pytest.approx(mean, abs=1e-12)
                assert entry["local_loss"] == local
    assert ranks[0]["weights"] == ranks[1]["weights"]
    strip = [[{k: v for k, v in r.items() if k != "local_loss"} for r in rank["history"]] for rank in ranks]
    assert json.dumps(strip[0]) == json.dumps(strip[1])


# -- a DDP model, a NaN on one rank only --------------------------------------------------------
def _train_epoch(ddp: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> float:
    total = 0.0
    for xb, yb in zip(x.chunk(3), y.chunk(3), strict=True):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(ddp(xb), yb)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(xb)
    return total / len(x)


def _restore_after_a_nan_on_one_rank(rank: int, folder: Path) -> None:
    g = torch.Generator().manual_seed(10 + rank)  # each rank its own data
    x, y = torch.randn(24, 4, generator=g), torch.randint(0, 3, (24,), generator=g)
    for sync in (True, False):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        ddp = DistributedDataParallel(model)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        tuner = AALR(model, optimizer, initial_loss=10.0, phase1_patience=1, sync_distributed=sync)
        states = {}
        tuner.step(_train_epoch(ddp, optimizer, x, y))  # phase 1 done: checkpoint
        states["best"] = {k: v.clone() for k, v in model.state_dict().items()}
        loss = _train_epoch(ddp, optimizer, x, y)
        states["trained"] = {k: v.clone() for k, v in model.state_dict().items()}
        tuner.step(NAN if rank == 1 else loss)  # only rank 1's loss is NaN
        states["after_step"] = {k: v.clone() for k, v in model.state_dict().items()}
        _train_epoch(ddp, optimizer, x, y)
        states["later"] = {k: v.clone() for k, v in model.state_dict().items()}
        states["momentum"] = {
            str(i): s["momentum_buffer"].clone() for i, s in enumerate(optimizer.state.values())
        }
        torch.save(
            {"states": states, "actions": [r["action"] for r in tuner.history]},
            folder / f"sync{sync}-rank{rank}.pt",
        )


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_nan_on_one_rank_restores_every_rank_to_the_same_weights(tmp_path):
    run_ranks(_restore_after_a_nan_on_one_rank, tmp_path)
    load = lambda sync, rank: torch.load(tmp_path / f"sync{sync}-rank{rank}.pt", weights_only=True)  # noqa: E731
    synced = [load(True, r) for r in range(WORLD)]
    for rank in synced:
        assert rank["actions"] == ["save_best", "restore_best"]
        states = rank["states"]
        assert not same(states["trained"], states["best"])  # the restore had something to undo
        assert same(states["after_step"], states["best"])
    for key in ("best", "after_step", "later", "momentum"):
        assert same(synced[0]["states"][key], synced[1]["states"][key]), key
    # Without the tuner's all_reduce only rank 1 restores, and DDP does not re-broadcast weights:
    # the ranks' models drift apart (ReduceLROnPlateau's failure under DDP).
    unsynced = [load(False, r) for r in range(WORLD)]
    assert [r["actions"] for r in unsynced] == [["save_best", "none"], ["save_best", "restore_best"]]
    assert not same(unsynced[0]["states"]["later"], unsynced[1]["states"]["later"])
