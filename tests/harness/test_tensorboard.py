"""Tests of the TensorBoard log (aalr.harness.tensorboard): rows written by hand, events read back with
TensorBoard's own EventAccumulator, each tag's (step, value) list compared whole."""

from __future__ import annotations

import importlib
import itertools
import json
import math
import re
import struct
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aalr.harness.tensorboard import (
    ACTION_CODES,
    MISSING_PACKAGE,
    TensorBoardLog,
    TensorBoardUnavailable,
    require_tensorboard,
    tag_for,
    write_run,
)

TEXT_TAG = "aalr/decision/text_summary"  # SummaryWriter.add_text appends "/text_summary" to the tag
NAN = "nan"  # NaN != NaN, so read-back values compare with NaN spelled as this

Events = tuple[dict[str, list[tuple[int, Any]]], list[tuple[int, str]]]

# Rows as train.py writes them: an AALR save, a restore with a diverged (NaN) loss, an epoch with
# robust accuracies, and a run's "numerics" text, which is not a number and is not written.
ROWS: list[dict[str, Any]] = [
    {
        "epoch": 1,
        "lr": 0.1,
        "next_lr": 0.1,
        "train_loss": 2.19,
        "test_loss": 1.83,
        "test_acc": 0.245,
        "action": "save_best",
        "reason": "phase 1: stable epoch 1/10; checkpoint",
        "numerics": "cpu fp32",
        "seconds": 0.078,
    },
    {
        "epoch": 2,
        "lr": 0.1,
        "next_lr": 0.05,
        "train_loss": math.nan,
        "test_loss": 2.31,
        "test_acc": 0.0985,
        "action": "restore_initial",
        "reason": "phase 1: loss not finite; halve LR, restart from the initial weights",
        "numerics": "cpu fp32",
        "seconds": 0.081,
    },
    {
        "epoch": 3,
        "lr": 0.05,
        "next_lr": 0.05,
        "train_loss": 1.65,
        "test_loss": 1.48,
        "test_acc": 0.405,
        "action": "restore_best",
        "reason": "phase 2: restore the best checkpoint",
        "numerics": "cpu fp32",
        "fgsm_acc": 0.669,
        "pgd_acc": 0.613,
        "seconds": 0.079,
    },
]


def f32(value: float) -> float:
    """``value`` as TensorBoard stores a scalar: a float32."""
    return float(struct.unpack("f", struct.pack("f", value))[0])


def expected(*steps: tuple[int, float]) -> list[tuple[int, Any]]:
    return [(step, NAN if math.isnan(value) else f32(value)) for step, value in steps]


# -- reading events back -------------------------------------------------------------------------
@pytest.fixture
def read_events(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path], Events]:
    """``read_events(log_dir)``: ({tag: [(step, value)]}, [(step, decision text)]) as TensorBoard
    reads the folder: every event kept, those an earlier writer left past a ``purge_step`` dropped.

    Scalars are read with ``event_accumulator``; the text with ``plugin_event_accumulator``, which is
    what ``tensorboard`` serves from (the older reader purges scalars but keeps stale text; the
    default Rust reader drops a tag's stale steps whenever a step comes again).

    TensorBoard reads a folder's event files in name order: the second a file was opened, the host,
    the process id, then a per-process counter, compared as text ("10" before "9"). Two writers that
    one test opens in the same second would be read out of order once the counter passes 9, so here
    it starts at a million (the same number of digits for the whole test)."""
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    from tensorboard.backend.event_processing import plugin_event_accumulator
    from tensorboard.summary.writer import event_file_writer

    counter = itertools.count(10**6)
    monkeypatch.setattr(event_file_writer, "_global_uid", types.SimpleNamespace(get=lambda: next(counter)))

    def read(log_dir: Path) -> Events:
        events = accumulator.EventAccumulator(str(log_dir), size_guidance={accumulator.SCALARS: 0})
        events.Reload()
        scalars = {
            tag: [(e.step, NAN if math.isnan(e.value) else e.value) for e in events.Scalars(tag)]
            for tag in events.Tags()["scalars"]
        }
        served = plugin_event_accumulator.EventAccumulator(str(log_dir), tensor_size_guidance={"text": 0})
        served.Reload()
        text_tags = served.PluginTagToContent("text") if "text" in served.ActivePlugins() else {}
        assert set(text_tags) <= {TEXT_TAG}
        texts = []
        if TEXT_TAG in text_tags:
            texts = [(e.step, e.tensor_proto.string_val[0].decode()) for e in served.Tensors(TEXT_TAG)]
        return scalars, texts

    return read


def write(log_dir: Path, rows: list[dict[str, Any]]) -> None:
    with TensorBoardLog(log_dir) as log:
        for row in rows:
            log.epoch(row)


# -- what is written -----------------------------------------------------------------------------
def test_every_number_of_a_row_under_its_tag_at_its_epoch(tmp_path: Path, read_events: Any) -> None:
    write(tmp_path, ROWS)
    scalars, texts = read_events(tmp_path)
    assert scalars == {
        "lr": expected((1, 0.1), (2, 0.1), (3, 0.05)),
        "lr/next": expected((1, 0.1), (2, 0.05), (3, 0.05)),
        "train/loss": expected((1, 2.19), (2, math.nan), (3, 1.65)),
        "test/loss": expected((1, 1.83), (2, 2.31), (3, 1.48)),
        "test/acc": expected((1, 0.245), (2, 0.0985), (3, 0.405)),
        "robust/fgsm_acc": expected((3, 0.669)),
        "robust/pgd_acc": expected((3, 0.613)),
        "time/seconds": expected((1, 0.078), (2, 0.081), (3, 0.079)),
        "aalr/action": expected((1, 1), (2, 2), (3, 3)),
    }
    assert texts == [
        (1, "save_best: phase 1: stable epoch 1/10; checkpoint"),
        (2, "restore_initial: phase 1: loss not finite; halve LR, restart from the initial weights"),
        (3, "restore_best: phase 2: restore the best checkpoint"),
    ]


@pytest.mark.parametrize(
    ("action", "code"),
    [
        ("none", 0),
        ("save_best", 1),
        ("restore_initial", 2),
        ("restore_best", 3),
        ("decay", 4),
        ("restart", 5),
    ],
)
def test_action_codes_as_documented(action: str, code: int) -> None:
    assert ACTION_CODES[action] == code


def test_each_action_its_code_and_an_unknown_one_minus_one(tmp_path: Path, read_events: Any) -> None:
    actions = [*ACTION_CODES, "something_new"]
    write(tmp_path, [{"epoch": i, "action": a, "reason": f"r{i}"} for i, a in enumerate(actions, start=1)])
    scalars, texts = read_events(tmp_path)
    assert scalars == {"aalr/action": expected((1, 0), (2, 1), (3, 2), (4, 3), (5, 4), (6, 5), (7, -1))}
    assert texts == [(i, f"{a}: r{i}") for i, a in enumerate(actions, start=1)]


def test_non_finite_and_null_are_nan_and_other_values_skipped(tmp_path: Path, read_events: Any) -> None:
    rows = [
        {"epoch": 1, "train_loss": math.inf, "test_loss": -math.inf, "lr": None, "flag": True, "note": "x"},
        {"epoch": 2, "train_loss": math.nan, "test_loss": 3, "lr": 0.5, "flag": False, "note": "y"},
    ]
    write(tmp_path, rows)
    scalars, texts = read_events(tmp_path)
    assert scalars == {
        "train/loss": expected((1, math.nan), (2, math.nan)),
        "test/loss": expected((1, math.nan), (2, 3.0)),
        "lr": expected((1, math.nan), (2, 0.5)),
    }
    assert texts == []  # no action in these rows


@pytest.mark.parametrize(
    ("key", "tag"),
    [
        ("lr", "lr"),
        ("next_lr", "lr/next"),
        ("train_loss", "train/loss"),
        ("test_loss", "test/loss"),
        ("test_acc", "test/acc"),
        ("train_acc", "train/acc"),
        ("fgsm_acc", "robust/fgsm_acc"),
        ("pgd_acc", "robust/pgd_acc"),
        ("seconds", "time/seconds"),
        ("eval_seconds", "time/eval_seconds"),
        ("grad_norm", "grad_norm"),
        ("train", "train"),
    ],
)
def test_tag_scheme(key: str, tag: str) -> None:
    assert tag_for(key) == tag


# -- resume and rewrite --------------------------------------------------------------------------
def test_resumed_run_does_not_duplicate_epochs(tmp_path: Path, read_events: Any) -> None:
    # the first session wrote epochs 1-3 but was killed before its checkpoint at epoch 3; the second
    # resumes from the checkpoint at epoch 2 and computes epoch 3 again (here: other values)
    first = [
        {"epoch": e, "lr": 0.1, "train_loss": 2.0 / e, "action": "none", "reason": f"a{e}"} for e in (1, 2, 3)
    ]
    again = [
        {"epoch": e, "lr": 0.2, "train_loss": 5.0 / e, "action": "save_best", "reason": f"b{e}"}
        for e in (3, 4)
    ]
    write(tmp_path, first)
    write(tmp_path, again)
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 2  # appended, not replaced
    scalars, texts = read_events(tmp_path)
    assert scalars == {
        "lr": expected((1, 0.1), (2, 0.1), (3, 0.2), (4, 0.2)),
        "train/loss": expected((1, 2.0), (2, 1.0), (3, 5.0 / 3), (4, 1.25)),
        "aalr/action": expected((1, 0), (2, 0), (3, 1), (4, 1)),
    }
    assert texts == [(1, "none: a1"), (2, "none: a2"), (3, "save_best: b3"), (4, "save_best: b4")]


def test_rows_must_come_in_increasing_epochs(tmp_path: Path) -> None:
    with TensorBoardLog(tmp_path) as log:
        log.epoch({"epoch": 2, "lr": 0.1})
        with pytest.raises(ValueError, match=r"epoch 2 after epoch 2: rows must come in increasing epochs"):
            log.epoch({"epoch": 2, "lr": 0.1})
        with pytest.raises(ValueError, match=r"epoch 1 after epoch 2"):
            log.epoch({"epoch": 1, "lr": 0.1})
        assert log.last_epoch == 2


@pytest.mark.parametrize("epoch", [None, "1", 1.0, True, -1])
def test_a_row_needs_an_int_epoch(tmp_path: Path, epoch: Any) -> None:
    row = {"lr": 0.1} if epoch is None else {"epoch": epoch, "lr": 0.1}
    with TensorBoardLog(tmp_path) as log, pytest.raises(ValueError, match=r"needs 'epoch', an int >= 0"):
        log.epoch(row)


def test_closed_log_refuses_rows(tmp_path: Path) -> None:
    log = TensorBoardLog(tmp_path)
    log.close()
    log.close()  # twice is fine
    with pytest.raises(ValueError, match=r"is closed"):
        log.epoch({"epoch": 1})


def test_log_dir_that_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "tb"
    path.write_text("x")
    with pytest.raises(ValueError, match=r"TensorBoard log folder '.*tb' is a file, not a folder"):
        TensorBoardLog(path)


def test_nothing_written_before_the_first_row(tmp_path: Path) -> None:
    with TensorBoardLog(tmp_path / "tb"):
        pass
    assert list((tmp_path / "tb").iterdir()) == []  # made (so a bad path fails early), but empty


# -- a finished run's metrics.jsonl --------------------------------------------------------------
def write_metrics(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    """metrics.jsonl as train.py writes it: a non-finite number becomes null."""
    run_dir.mkdir(parents=True, exist_ok=True)
    safe = [
        {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in r.items()} for r in rows
    ]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in safe))


def test_write_run_gives_the_live_log_and_rewriting_does_not_double(tmp_path: Path, read_events: Any) -> None:
    write(tmp_path / "live", ROWS)
    write_metrics(tmp_path / "run", ROWS)
    assert write_run(tmp_path / "run", tmp_path / "after") == len(ROWS)
    live = read_events(tmp_path / "live")
    assert read_events(tmp_path / "after") == live
    assert live[0]["train/loss"][1] == (2, NAN)  # null in the file, NaN in both logs
    write_run(tmp_path / "run", tmp_path / "after")  # e.g. `aalr report --tensorboard` run twice
    assert read_events(tmp_path / "after") == live


def test_write_run_without_metrics(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"metrics\.jsonl"):
        write_run(tmp_path, tmp_path / "tb")


def test_write_run_with_a_bad_line(tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"metrics\.jsonl, line 2: expected a JSON object, got list"):
        write_run(tmp_path, tmp_path / "tb")


# Committed runs (results/): AALR with robust accuracies, a save and a restart from the initial
# weights; AALR with both restores and null (diverged) losses; the step schedule's decays.
RESULTS = Path(__file__).resolve().parents[2] / "results"
REAL_RUNS = [
    "fmnist-adversarial/fmnist-adversarial/aalr/seed0",
    "batchsize/bs512/aalr/seed0",
    "fmnist-adversarial/fmnist-adversarial/step/seed0",
]
REAL_TAGS = {
    "lr": "lr",
    "next_lr": "lr/next",
    "train_loss": "train/loss",
    "test_loss": "test/loss",
    "test_acc": "test/acc",
    "fgsm_acc": "robust/fgsm_acc",
    "pgd_acc": "robust/pgd_acc",
    "seconds": "time/seconds",
}
REAL_CODES = {"none": 0, "save_best": 1, "restore_initial": 2, "restore_best": 3, "decay": 4}


@pytest.mark.parametrize("run", REAL_RUNS)
def test_a_committed_run_every_value_of_its_file(tmp_path: Path, read_events: Any, run: str) -> None:
    run_dir = RESULTS / run
    if not (run_dir / "metrics.jsonl").is_file():
        pytest.skip(f"{run} is not in this checkout")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    want: dict[str, list[tuple[int, Any]]] = {}
    for row in rows:
        for key, tag in REAL_TAGS.items():
            if key in row:
                value = row[key]
                want.setdefault(tag, []).append((row["epoch"], NAN if value is None else f32(value)))
        want.setdefault("aalr/action", []).append((row["epoch"], float(REAL_CODES[row["action"]])))
    assert write_run(run_dir, tmp_path) == len(rows)
    scalars, texts = read_events(tmp_path)
    assert scalars == want
    assert texts == [(row["epoch"], f"{row['action']}: {row['reason']}") for row in rows]


# -- without the tensorboard package -------------------------------------------------------------
def test_without_tensorboard_a_clear_error_and_the_module_still_imports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(sys.modules):
        if name == "aalr.harness.tensorboard" or name.startswith("torch.utils.tensorboard"):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # makes `import tensorboard` raise ImportError
    fresh = importlib.import_module("aalr.harness.tensorboard")  # importing needs no tensorboard
    with pytest.raises(fresh.TensorBoardUnavailable, match=re.escape(MISSING_PACKAGE)):
        fresh.require_tensorboard()
    with pytest.raises(fresh.TensorBoardUnavailable, match=re.escape(MISSING_PACKAGE)) as caught:
        fresh.TensorBoardLog(tmp_path / "tb")
    assert isinstance(caught.value, ValueError)  # the CLI turns a ValueError into exit code 2
    assert str(caught.value) == "--tensorboard needs the package 'tensorboard': pip install 'aalr[harness]'"
    write_metrics(tmp_path / "run", ROWS)
    with pytest.raises(fresh.TensorBoardUnavailable):
        fresh.write_run(tmp_path / "run", tmp_path / "tb")
    assert issubclass(TensorBoardUnavailable, ValueError)


def test_require_tensorboard_with_it_installed() -> None:
    pytest.importorskip("tensorboard")
    require_tensorboard()  # no error


# -- the CLI: aalr train / compare --tensorboard DIR --------------------------------------------------
def test_aalr_train_writes_every_epoch_and_the_grid_runs(tmp_path: Path, read_events: Any) -> None:
    from aalr.cli import main

    out, board = tmp_path / "run", tmp_path / "tb"
    argv = ["train", "--dataset", "digits", "--model", "mlp", "--epochs", "3", "--no-progress"]
    assert (
        main(
            [*argv, "--method", "step", "--lr", "0.1", "0.05", "--out", str(out), "--tensorboard", str(board)]
        )
        == 0
    )
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    scalars, texts = read_events(board)
    assert scalars["lr"] == expected(*((row["epoch"], row["lr"]) for row in rows))
    assert scalars["test/acc"] == expected(*((row["epoch"], row["test_acc"]) for row in rows))
    assert [step for step, _ in texts] == [1, 2, 3]
    for lr in ("0.1", "0.05"):  # the grid's runs, each in its own folder
        grid_rows = (out / "grid" / f"lr{lr}" / "metrics.jsonl").read_text().splitlines()
        assert len(read_events(board / "grid" / f"lr{lr}")[0]["lr"]) == len(grid_rows) == 3


def test_aalr_compare_mirrors_the_runs_folders(tmp_path: Path, read_events: Any) -> None:
    from aalr.cli import main

    suite = tmp_path / "tiny.toml"
    suite.write_text(
        'name = "tiny"\ndescription = "two epochs"\n[defaults]\ndataset = "digits"\nmodel = "mlp"\n'
        'epochs = 2\nseeds = [0]\nmethods = ["aalr-plus", "const"]\n'
    )
    out, board = tmp_path / "out", tmp_path / "tb"
    assert (
        main(
            [
                "compare",
                "--suite",
                str(suite),
                "--out",
                str(out),
                "--tensorboard",
                str(board),
                "--no-progress",
            ]
        )
        == 0
    )
    for run in sorted(p.parent for p in out.rglob("summary.json") if "grid" not in p.parts):
        scalars, _ = read_events(board / run.relative_to(out))
        assert [step for step, _ in scalars["train/loss"]] == [1, 2]


def test_a_missing_tensorboard_is_bad_input_before_any_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from aalr.cli import main

    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # imported already by other tests
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--dataset",
            "digits",
            "--epochs",
            "1",
            "--out",
            str(out),
            "--tensorboard",
            str(tmp_path / "tb"),
        ]
    )
    assert code == 2
    assert (
        "--tensorboard needs the package 'tensorboard': pip install 'aalr[harness]'"
        in capsys.readouterr().err
    )
    assert not out.exists()
