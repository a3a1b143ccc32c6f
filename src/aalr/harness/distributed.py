"""Data-parallel training under ``torchrun``: the launch, the process group, sharding, a few collectives.

A process that torchrun did not start (no ``WORLD_SIZE`` > 1 in its environment) never touches
``torch.distributed``: every helper here then answers as rank 0 of 1 and does nothing, so a single
process trains exactly as before.

Under torchrun every rank holds the whole data set and the same seeded generators. Each epoch's
permutation is the same on every rank; :func:`shard` gives rank ``r`` every ``world_size``-th index
from ``r`` after dropping the last ``n % world_size`` (a different few each epoch), so every rank runs
the same number of steps and the ranks' ``k``-th batches together are the single-process ``k``-th
batch. ``nccl`` on GPUs, ``gloo`` on the CPU. Messages between ranks are JSON text in byte tensors:
nothing is pickled.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Launch:
    """Where this process stands in a torchrun launch."""

    rank: int
    local_rank: int
    world_size: int


def _env_int(environ: Mapping[str, str], name: str) -> int:
    raw = environ.get(name, "")
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from None


def launch_from_env(environ: Mapping[str, str] | None = None) -> Launch | None:
    """The torchrun launch of this process, or ``None`` for a single process (``WORLD_SIZE`` unset or 1).

    Only reads the environment: it starts nothing, so a bad setting fails here without any wait.
    """
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env:
        return None
    world_size = _env_int(env, "WORLD_SIZE")
    if world_size < 1:
        raise ValueError(f"WORLD_SIZE must be >= 1, got {world_size}")
    if world_size == 1:
        return None
    missing = [name for name in TORCHRUN_VARIABLES if name not in env]
    if missing:
        raise ValueError(
            f"WORLD_SIZE={world_size} but {', '.join(missing)} not set; start the processes with torchrun"
        )
    rank, local_rank = _env_int(env, "RANK"), _env_int(env, "LOCAL_RANK")
    if not 0 <= rank < world_size:
        raise ValueError(f"RANK must be in [0, {world_size}) for WORLD_SIZE={world_size}, got {rank}")
    if not 0 <= local_rank < world_size:
        raise ValueError(f"LOCAL_RANK must be in [0, {world_size}), got {local_rank}")
    return Launch(rank=rank, local_rank=local_rank, world_size=world_size)


def device_for(name: str, launch: Launch) -> torch.device:
    """This rank's device: ``cpu``; ``cuda`` (or ``auto`` with CUDA present) means ``cuda:LOCAL_RANK``."""
    if name.startswith("cuda:"):
        raise ValueError(
            f"device {name!r} names one GPU, but each of the {launch.world_size} ranks needs its own; "
            "use --device cuda (rank r of a node takes cuda:LOCAL_RANK) or --device cpu"
        )
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    count = torch.cuda.device_count()
    if launch.local_rank >= count:
        raise ValueError(
            f"LOCAL_RANK {launch.local_rank} needs cuda:{launch.local_rank}, but this node has {count} "
            f"CUDA device(s); start at most {count} processes per node (--nproc_per_node)"
        )
    return torch.device("cuda", launch.local_rank)


def init_process_group(launch: Launch, device: torch.device) -> None:
    """Join the torchrun process group (``nccl`` for CUDA, ``gloo`` for the CPU) unless joined already."""
    if dist.is_available() and dist.is_initialized():
        if dist.get_world_size() != launch.world_size:
            raise ValueError(
                f"a process group of {dist.get_world_size()} ranks exists, but WORLD_SIZE={launch.world_size}"
            )
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL and the tuner's all_reduce use the current device
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")


def shutdown() -> None:
    """Leave the process group (a no-op for a single process)."""
    if active():
        dist.destroy_process_group()


# -- where this process stands ---------------------------------------------------------------------
def active() -> bool:
    """True in a process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0: the one rank that writes files and prints."""
    return rank() == 0


def _comm_device() -> torch.device:
    if "nccl" in str(dist.get_backend()):
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# -- collectives (no-ops for a single process) -----------------------------------------------------
def barrier() -> None:
    if not active():
        return
    if _comm_device().type == "cuda":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def sum_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of ``values`` over ranks (a new float64 tensor on ``values``' device)."""
    total = values.detach().to(torch.float64)
    if not active():
        return total.clone()
    moved = total.to(_comm_device())
    dist.all_reduce(moved, op=dist.ReduceOp.SUM)
    return moved.to(values.device)


def sample_mean(loss_sum: torch.Tensor, count: int) -> float:
    """The sample-weighted mean loss over all ranks: sum of the ranks' loss sums over their sample counts."""
    if not active():
        return float(loss_sum.item()) / count
    totals = sum_over_ranks(torch.stack([loss_sum.detach().double(), loss_sum.new_tensor(count).double()]))
    return float(totals[0].item()) / float(totals[1].item())


def broadcast_json(value: Any) -> Any:
    """Rank 0's ``value`` (JSON-able) on every rank. Sent as UTF-8 bytes: no pickle on either side."""
    if not active():
        return value
    device = _comm_device()
    data = json.dumps(value).encode() if is_main() else b""
    length = torch.tensor([len(data)], dtype=torch.int64, device=device)
    dist.broadcast(length, src=0)
    buffer = torch.zeros(int(length.item()), dtype=torch.uint8, device=device)
    if is_main():
        buffer.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    dist.broadcast(buffer, src=0)
    return json.loads(bytes(buffer.cpu().tolist()).decode())


def min_max_over_ranks(value: int) -> tuple[int, int]:
    """The smallest and the largest of an integer over ranks: do the ranks agree on it?"""
    if not active():
        return value, value
    both = torch.tensor([value, -value], dtype=torch.int64, device=_comm_device())
    dist.all_reduce(both, op=dist.ReduceOp.MAX)
    return -int(both[1].item()), int(both[0].item())


def sync_buffers(module: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP averages gradients, so parameters stay equal, but each rank updates its own running
    statistics in the last forward pass of an epoch; after this all ranks evaluate, snapshot and
    checkpoint one model.
    """
    if not active():
        return
    for buffer in module.buffers():
        dist.broadcast(buffer, src=0)


@contextlib.contextmanager
def local_main_first() -> Iterator[None]:
    """Local rank 0 of each node goes first (downloads, caches), the node's other ranks after it."""
    if not active():
        yield
        return
    first = int(os.environ.get("LOCAL_RANK", "0")) == 0
    if not first:
        barrier()
    try:
        yield
    finally:
        if first:
            barrier()


# -- data and randomness ----------------------------------------------------------------------------
def shard(order: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Rank ``rank``'s share of one epoch's permutation ``order`` (the same on every rank).

    The last ``len(order) % world_size`` indices are dropped, so every rank gets ``len(order) //
    world_size`` and runs the same number of steps; the share is strided, so with a per-rank batch
    of ``B / world_size`` the ranks' ``k``-th batches together are ``order[k*B:(k+1)*B]``.
    """
    usable = len(order) - len(order) % world_size
    return order[:usable][rank::world_size]


def shard_size(n: int, world_size: int) -> int:
    """How many of ``n`` samples each rank trains on per epoch (see :func:`shard`)."""
    return n // world_size


def rank_seed(seed: int, epoch: int, rank: int) -> int:
    """A seed of its own for each (run seed, epoch, rank): augmentation and dropout differ across ranks,
    and a resumed run reseeds exactly as the uninterrupted one did."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


def seed_epoch(seed: int, epoch: int, device_generator: torch.Generator) -> None:
    """Reseed this rank's augmentation/attack generator and torch's global RNG (dropout) for ``epoch``."""
    value = rank_seed(seed, epoch, rank())
    device_generator.manual_seed(value)
    torch.manual_seed(value)
