"""Checks that need a CUDA device (skipped elsewhere): run by benchmarks/gpu_check.sh on a GPU machine.

Snapshots of GPU tensors are kept on the CPU and restored exactly; a harness run on CUDA uses bf16
autocast (unless --precision fp32) and channels_last and writes CPU-loadable checkpoints.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from aalr import AALR

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_gpu_snapshots_live_on_the_cpu_and_restore_exactly():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 4)).cuda()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    tuner = AALR(model, optimizer, initial_loss=2.0, phase1_patience=1)
    x, y = torch.randn(64, 16, device="cuda"), torch.randint(0, 4, (64,), device="cuda")

    def epoch() -> float:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.item()

    tuner.step(epoch())
    snapshot = tuner.snapshots.get("best")
    assert all(t.device.type == "cpu" for t in snapshot["model"].values())
    assert all(
        t.device.type == "cpu"
        for s in snapshot["optimizer"]["state"].values()
        for t in s.values()
        if isinstance(t, torch.Tensor)
    )
    best = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    for _ in range(2):
        epoch()
        tuner.step(float("nan"))  # restore twice from the same snapshot
        assert all(v.device.type == "cuda" for v in model.state_dict().values())
        assert all(torch.equal(v.cpu(), best[k]) for k, v in model.state_dict().items())
        for state in optimizer.state.values():
            assert all(
                t.device.type == "cuda" for k, t in state.items() if k != "step" and torch.is_tensor(t)
            )


def test_snapshots_take_no_gpu_memory():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 10)).cuda()  # 16 MiB of weights
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(256, 2048, device="cuda"), torch.randint(0, 10, (256,), device="cuda")
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()  # momentum buffers exist
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    tuner = AALR(model, optimizer, initial_loss=5.0, phase1_patience=1)
    tuner.step(1.0)  # initial and best snapshots both taken
    tuner.step(float("nan"))  # and a restore
    torch.cuda.synchronize()
    assert tuner.snapshot_nbytes() > 30 * 2**20
    assert torch.cuda.memory_allocated() - before < 2**20  # the copies live on the host


@pytest.mark.parametrize(("precision", "bf16"), [("auto", True), ("fp32", False)])
def test_harness_run_on_cuda_uses_the_precision_asked_and_channels_last(
    tmp_path, monkeypatch, write_cifar10, precision, bf16
):
    from aalr.harness import models
    from aalr.harness import train as train_module

    seen: dict[str, set[bool]] = {"autocast": set(), "channels_last": set()}
    real_build = models.build_model

    def record(module, inputs, out):  # every forward pass: initial loss, training, evaluation
        seen["autocast"].add(torch.is_autocast_enabled("cuda") and out.dtype == torch.bfloat16)
        seen["channels_last"].add(  # the weights and the batch: 3 channels, so the layout shows
            module.weight.is_contiguous(memory_format=torch.channels_last)
            and inputs[0].is_contiguous(memory_format=torch.channels_last)
            and not inputs[0].is_contiguous()
        )

    def build(*args, **kwargs):
        model = real_build(*args, **kwargs)
        next(
            m for m in model.modules() if isinstance(m, nn.Conv2d) and m.in_channels > 1
        ).register_forward_hook(record)
        return model

    monkeypatch.setattr(models, "build_model", build)
    write_cifar10(tmp_path / "data")
    summary = train_module.run(
        {
            "dataset": "cifar10",
            "model": "resnet20",
            "method": "aalr",
            "epochs": 3,
            "batch_size": 64,
            "device": "cuda",
            "precision": precision,
            "data_dir": str(tmp_path / "data"),
            "progress": False,
        },
        tmp_path / "run",
    )
    assert seen == {"autocast": {bf16}, "channels_last": {True}}
    assert summary["numerics"] == [f"cuda {'bf16' if bf16 else 'fp32'} channels_last"]
    assert summary["status"] == "finished"
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["train_loss"]) for r in rows)
    checkpoint = torch.load(tmp_path / "run" / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert all(t.device.type == "cpu" for t in checkpoint["model"].values())
