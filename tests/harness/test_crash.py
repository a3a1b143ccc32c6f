"""Crash safety: a run killed with SIGKILL anywhere resumes (``aalr train --resume``) to the result of
a run never killed; a corrupted checkpoint is named and the previous one used, never a silent restart.

Each killed run is a real process that dies by SIGKILL (no ``finally``, no ``atexit``). Starting
Python and importing torch takes seconds, so a small server process (``SERVER`` below) imports
everything once, with one thread, and forks a child per command; the child installs a fault hook
(chosen by the test, no change to src/) and calls ``aalr.cli.main(argv)``, exactly as
``python -m aalr`` would. One test also resumes through a plain ``python -m aalr`` subprocess.
All runs are on the CPU with one thread, so an uninterrupted run is reproducible to the bit.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import aalr
from aalr.cli import main

EPOCHS = 4
SUBSET = 512  # 4 batches of 128 per epoch
COMMAND_TIMEOUT_S = 180
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
# The server runs in a folder of its own, where a relative PYTHONPATH (PYTHONPATH=src) finds no src/
# and another installed aalr would be tested: the children import aalr from where this process did.
CHILD_ENV = {
    **os.environ,
    **ONE_THREAD,
    "PYTHONPATH": os.pathsep.join(
        [str(Path(aalr.__file__).resolve().parents[1]), *filter(None, [os.environ.get("PYTHONPATH")])]
    ),
}

# AALR with phase1_patience=1 takes a best-weights snapshot after epoch 1 and doubles its LR, so a
# kill in epochs 2..4 must carry the tuner's snapshot and policy state through the checkpoint.
METHOD_ARGS = {
    "aalr": ["--method", "aalr", "--lr", "0.5", "--method-option", "phase1_patience=1"],
    "sgdr": ["--method", "sgdr"],
    "prodigy": ["--method", "prodigy"],
}

SERVER = textwrap.dedent(
    r'''
    """Fork a child per command (one JSON line on stdin); reply with how it ended (one JSON line)."""
    import errno
    import io
    import json
    import os
    import random
    import signal
    import sys
    import time
    import traceback
    from pathlib import Path

    import numpy as np
    import torch

    torch.set_num_threads(1)  # before any fork; children compute with one thread, reproducibly

    import aalr.cli
    from aalr.harness import loop, rundir
    from aalr.harness.data import load_dataset

    for name in sys.argv[2:]:  # generated once here (and cached there); children inherit them
        load_dataset(name, sys.argv[1])
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)  # the first optimizer imports dynamo


    def die():
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)


    def counter(at):
        calls = [0]

        def hit():
            calls[0] += 1
            return calls[0] == at

        return hit


    def install(fault):
        kind, at = fault["kind"], fault.get("at", 0)
        hit = counter(at + 1 if kind in ("batch", "interrupt") else at)
        if kind == "batch":  # dies when asking for batch at+1: after `at` optimizer steps
            real_batches = loop.BatchStream.take  # each epoch's (or round's) batches

            def batches(*args, **kwargs):
                for index in real_batches(*args, **kwargs):
                    if hit():
                        die()
                    yield index

            loop.BatchStream.take = batches
        elif kind == "half_written":  # the at-th torch.save writes half its bytes, then dies
            real_save = torch.save

            def save(obj, f, *args, **kwargs):
                if hit():
                    buffer = io.BytesIO()
                    real_save(obj, buffer, *args, **kwargs)
                    data = buffer.getvalue()
                    f.write(data[: len(data) // 2])
                    f.flush()
                    os.fsync(f.fileno())
                    die()
                return real_save(obj, f, *args, **kwargs)

            torch.save = save
        elif kind == "temp_written":  # the at-th checkpoint's temp file is complete, nothing renamed
            real_atomic = rundir.atomic_torch_save

            def atomic(obj, path):
                real_atomic(obj, path)
                if hit():
                    die()

            rundir.atomic_torch_save = atomic
        elif kind == "prev_renamed":  # checkpoint.pt -> checkpoint.prev.pt done, the temp not renamed
            real_replace = os.replace

            def replace(src, dst, **kwargs):
                real_replace(src, dst, **kwargs)
                if os.path.basename(dst) == "checkpoint.prev.pt" and hit():
                    die()

            os.replace = replace
        elif kind == "metrics_written":  # the at-th metrics.jsonl is written, its checkpoint is not
            real_write = rundir.atomic_write_text

            def write(path, text):
                real_write(path, text)
                if Path(path).name == "metrics.jsonl" and hit():
                    die()

            rundir.atomic_write_text = write
        elif kind == "summary":  # everything saved but summary.json
            real_json = rundir.write_json

            def write_json(path, value):
                if Path(path).name == "summary.json" and hit():
                    die()
                real_json(path, value)

            rundir.write_json = write_json
        elif kind == "disk_full":  # the at-th torch.save fails as on a full disk, half written
            real_save = torch.save

            def save(obj, f, *args, **kwargs):
                if hit():
                    buffer = io.BytesIO()
                    real_save(obj, buffer, *args, **kwargs)
                    f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                return real_save(obj, f, *args, **kwargs)

            torch.save = save
        elif kind == "disk_full_after_first_checkpoint":  # every write into the run dir hits a full disk
            import tempfile

            out = Path(fault["out"])
            real_mkstemp = tempfile.mkstemp

            def mkstemp(*args, **kwargs):
                fd, name = real_mkstemp(*args, **kwargs)
                if Path(name).parent == out and (out / "checkpoint.pt").exists():
                    full = os.open("/dev/full", os.O_WRONLY)  # writes fail with ENOSPC, as on a full disk
                    os.dup2(full, fd)
                    os.close(full)
                return fd, name

            tempfile.mkstemp = mkstemp
        elif kind == "interrupt":  # Ctrl-C when asking for batch at+1: after `at` optimizer steps
            real_batches = loop.BatchStream.take  # each epoch's (or round's) batches

            def batches(*args, **kwargs):
                for index in real_batches(*args, **kwargs):
                    if hit():
                        raise KeyboardInterrupt
                    yield index

            loop.BatchStream.take = batches
        elif kind == "pause":  # before the first batch: say so (a file), wait for the go (a file)
            real_batches = loop.BatchStream.take  # each epoch's (or round's) batches

            def batches(*args, **kwargs):
                if not os.path.exists(fault["ready"]):
                    Path(fault["ready"]).write_text(str(os.getpid()))
                    for _ in range(6000):
                        if os.path.exists(fault["go"]):
                            break
                        time.sleep(0.02)
                yield from real_batches(*args, **kwargs)

            loop.BatchStream.take = batches
        elif kind == "file_ops":  # every change to the files under fault["under"], recorded or killed
            install_file_ops(fault)
        elif kind == "count_epochs":  # no fault: records each epoch this process trains
            real_batches = loop.BatchStream.take  # each epoch's (or round's) batches

            def batches(*args, **kwargs):
                with open(fault["record"], "a") as handle:
                    handle.write("epoch\n")
                yield from real_batches(*args, **kwargs)

            loop.BatchStream.take = batches
        elif kind == "rng":  # each epoch draws from python's, numpy's and torch's global RNGs
            real_batches = loop.BatchStream.take  # each epoch's (or round's) batches

            def batches(*args, **kwargs):
                if hit():
                    die()
                draws = [random.random(), float(np.random.rand()), float(torch.rand(()))]
                with open(fault["record"], "a") as handle:
                    handle.write(json.dumps(draws) + "\n")
                yield from real_batches(*args, **kwargs)

            loop.BatchStream.take = batches
        else:
            raise ValueError(f"unknown fault kind {kind!r}")


    def install_file_ops(fault):
        """Wrap every call that changes a folder's entries (create, rename, unlink, mkdir, rmdir;
        shutil.rmtree and pathlib go through these). With "record": append each change under
        fault["under"] to that file; else die by SIGKILL right after the change numbered fault["at"]."""
        under = os.path.realpath(fault["under"]) + os.sep
        calls = [0]

        def where(path, dir_fd):
            path = os.fsdecode(path)
            if dir_fd is not None and not os.path.isabs(path):
                path = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), path)
            return os.path.join(os.path.realpath(os.path.dirname(path) or "."), os.path.basename(path))

        def changed(op, *paths):
            if not any(p.startswith(under) for p in paths):
                return
            calls[0] += 1
            if fault.get("record"):
                with open(fault["record"], "a") as handle:
                    handle.write(json.dumps([op, *[p[len(under):] for p in paths]]) + "\n")
            elif calls[0] == fault["at"]:
                die()

        def wrap_two(name):
            real = getattr(os, name)

            def call(src, dst, *, src_dir_fd=None, dst_dir_fd=None):
                real(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
                changed(name, where(src, src_dir_fd), where(dst, dst_dir_fd))

            setattr(os, name, call)

        def wrap_one(name):
            real = getattr(os, name)

            def call(path, *args, dir_fd=None, **kwargs):
                real(path, *args, dir_fd=dir_fd, **kwargs)
                changed(name, where(path, dir_fd))

            setattr(os, name, call)

        real_open = os.open

        def open_(path, flags, mode=0o777, *, dir_fd=None):
            fd = real_open(path, flags, mode, dir_fd=dir_fd)
            if flags & os.O_CREAT:
                changed("create", where(path, dir_fd))
            return fd

        for name in ("replace", "rename"):
            wrap_two(name)
        for name in ("unlink", "remove", "rmdir", "mkdir"):
            wrap_one(name)
        os.open = open_


    def child(command):
        fd = os.open(command["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        code = 99
        try:
            if command.get("fault"):
                install(command["fault"])
            code = aalr.cli.main(command["argv"])
        except SystemExit as error:
            code = error.code if isinstance(error.code, int) else 2
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)


    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            child(command)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            reply = {"signal": os.WTERMSIG(status), "code": None}
        else:
            reply = {"signal": None, "code": os.WEXITSTATUS(status)}
        print(json.dumps(reply), flush=True)
    '''
)


class Server:
    """The pytest side of ``SERVER``: send a command, wait (with a timeout) for how it ended."""

    def __init__(self, root: Path, datasets: tuple[str, ...] = ("mnist1d",)) -> None:
        self.root = root
        self.data_dir = root / "data"
        script = root / "crash_server.py"
        script.write_text(SERVER)
        env = CHILD_ENV
        self.process = subprocess.Popen(
            [sys.executable, str(script), str(self.data_dir), *datasets],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=root,
            env=env,
        )
        self.count = 0
        assert self._reply() == {"ready": True}

    def _reply(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], COMMAND_TIMEOUT_S)
        if not ready:
            self.process.kill()
            pytest.fail(f"the crash server gave no answer within {COMMAND_TIMEOUT_S} s")
        line = self.process.stdout.readline()
        if not line:
            pytest.fail(f"the crash server died (exit code {self.process.wait()})")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def train(self, argv: list[str], fault: dict[str, Any] | None = None) -> tuple[dict[str, Any], str]:
        """Run ``aalr <argv>`` in a forked child; return how it ended and what it printed."""
        log = self.start(argv, fault)
        return self.wait(log)

    def start(self, argv: list[str], fault: dict[str, Any] | None = None) -> Path:
        """Start ``aalr <argv>`` in a forked child without waiting; :meth:`wait` with the log returned."""
        assert self.process.stdin is not None
        self.count += 1
        log = self.root / f"child{self.count}.log"
        command = {"argv": argv, "fault": fault, "log": str(log)}
        self.process.stdin.write((json.dumps(command) + "\n").encode())
        self.process.stdin.flush()
        return log

    def wait(self, log: Path) -> tuple[dict[str, Any], str]:
        reply = self._reply()
        return reply, log.read_text() if log.exists() else ""

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    instance = Server(tmp_path_factory.mktemp("crash"))
    yield instance
    instance.close()


def train_argv(method: str, out: Path, data_dir: Path, *extra: str) -> list[str]:
    return [
        "train", "--dataset", "mnist1d", *METHOD_ARGS[method], "--epochs", str(EPOCHS),
        "--batch-size", "128", "--train-subset", str(SUBSET), "--seed", "0", "--device", "cpu",
        "--out", str(out), "--data-dir", str(data_dir), "--no-progress", *extra,
    ]  # fmt: skip


def metrics(out: Path) -> list[dict[str, Any]]:
    """metrics.jsonl without the wall-clock field, the one thing a resumed run may change."""
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{key: value for key, value in row.items() if key != "seconds"} for row in rows]


def assert_equal_states(mine: Any, theirs: Any, where: str) -> None:
    """Nested dicts/lists of tensors and plain values, equal to the bit (NaN equals NaN)."""
    assert type(mine) is type(theirs), where
    if isinstance(theirs, torch.Tensor):
        assert mine.dtype == theirs.dtype and mine.shape == theirs.shape, where
        torch.testing.assert_close(mine, theirs, rtol=0, atol=0, equal_nan=True, msg=where)
    elif isinstance(theirs, dict):
        assert mine.keys() == theirs.keys(), where
        for key in theirs:
            assert_equal_states(mine[key], theirs[key], f"{where}/{key}")
    elif isinstance(theirs, list | tuple):
        assert len(mine) == len(theirs), where
        for index, (a, b) in enumerate(zip(mine, theirs, strict=True)):
            assert_equal_states(a, b, f"{where}/{index}")
    elif isinstance(theirs, float) and theirs != theirs:
        assert mine != mine, where
    else:
        assert mine == theirs, where


def assert_same_run(out: Path, reference: Path) -> None:
    assert (out / "summary.json").exists(), "the resumed run did not finish"
    assert metrics(out) == metrics(reference)
    mine = torch.load(out / "checkpoint.pt", weights_only=True)
    theirs = torch.load(reference / "checkpoint.pt", weights_only=True)
    # the final weights, and the optimizer's and tuner's state (momentum, Prodigy's d, AALR's policy)
    assert_equal_states(mine["model"], theirs["model"], "model")
    assert_equal_states(mine["method"], theirs["method"], "method")
    summary = json.loads((out / "summary.json").read_text())
    expected = json.loads((reference / "summary.json").read_text())
    for key in ("status", "epochs", "final_test_acc", "peak_test_acc", "lr_trajectory", "initial_loss"):
        assert summary[key] == expected[key], key


def saved_epochs(out: Path) -> dict[str, int | str]:
    """The epoch in each checkpoint file present ("unreadable" for a file torch cannot load)."""
    found: dict[str, int | str] = {}
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        if (out / name).exists():
            try:
                found[name] = int(torch.load(out / name, weights_only=True)["epoch"])
            except Exception:
                found[name] = "unreadable"
    return found


@pytest.fixture(scope="module")
def references(server: Server) -> dict[str, Path]:
    """Per method, the directory of a run never killed (trained on first use)."""

    class Lazy(dict[str, Path]):
        def __missing__(self, method: str) -> Path:
            out = server.root / f"reference-{method}"
            reply, log = server.train(train_argv(method, out, server.data_dir))
            assert reply == {"signal": None, "code": 0}, log
            self[method] = out
            return out

    return Lazy()


# (fault, the checkpoints on disk right after the kill). The expected files show that each kill
# landed where its name says; metrics.jsonl is written before each epoch's checkpoint.
KILL_POINTS: dict[str, tuple[dict[str, Any], dict[str, int | str]]] = {
    "first-epoch": ({"kind": "batch", "at": 2}, {}),
    "mid-epoch": ({"kind": "batch", "at": 6}, {"checkpoint.pt": 1}),
    "checkpoint-half-written": ({"kind": "half_written", "at": 2}, {"checkpoint.pt": 1}),
    "checkpoint-temp-written": ({"kind": "temp_written", "at": 2}, {"checkpoint.pt": 1}),
    "between-renames": ({"kind": "prev_renamed", "at": 1}, {"checkpoint.prev.pt": 1}),
    "after-metrics": ({"kind": "metrics_written", "at": 3}, {"checkpoint.pt": 2, "checkpoint.prev.pt": 1}),
    "before-summary": ({"kind": "summary", "at": 1}, {"checkpoint.pt": 4, "checkpoint.prev.pt": 3}),
}


def resume_counting_epochs(server: Server, argv: list[str], record: Path) -> int:
    """Resume the run of ``argv``; return how many epochs the resumed process trained."""
    reply, log = server.train([*argv, "--resume"], {"kind": "count_epochs", "record": str(record)})
    assert reply == {"signal": None, "code": 0}, log
    return len(record.read_text().splitlines()) if record.exists() else 0


@pytest.mark.parametrize("point", KILL_POINTS)
@pytest.mark.parametrize("method", METHOD_ARGS)
def test_a_run_killed_anywhere_resumes_to_the_uninterrupted_result(
    server: Server, references: dict[str, Path], method: str, point: str
) -> None:
    fault, expected_files = KILL_POINTS[point]
    out = server.root / f"killed-{method}-{point}"
    argv = train_argv(method, out, server.data_dir)
    reply, log = server.train(argv, fault)
    assert reply["signal"] == signal.SIGKILL, (
        f"the fault hook never fired (loop.py or rundir.py changed?): {reply} {log}"
    )
    assert not (out / "summary.json").exists(), "a killed run must never look finished"
    assert saved_epochs(out) == expected_files
    if point == "after-metrics":
        assert len(metrics(out)) == 3  # one line ahead of the newest checkpoint: resume must redo it

    # Only the epochs after the newest good checkpoint are trained again: equal results alone
    # would not tell a resume from a silent restart from scratch.
    newest = max([epoch for epoch in expected_files.values() if isinstance(epoch, int)], default=0)
    assert resume_counting_epochs(server, argv, out.parent / f"{out.name}.epochs") == EPOCHS - newest
    assert_same_run(out, references[method])


def test_resume_restores_python_numpy_and_torch_global_rngs(server: Server, tmp_path: Path) -> None:
    # Each epoch draws from the three global generators (as an augmentation written with
    # `random` or numpy would); the draws of a killed-and-resumed run must be those of one run.
    def run_with_draws(out: Path, record: Path, die_at: int = 0, resume: bool = False) -> dict[str, Any]:
        argv = train_argv("sgdr", out, server.data_dir, *(["--resume"] if resume else []))
        reply, log = server.train(argv, {"kind": "rng", "at": die_at, "record": str(record)})
        assert (reply["signal"] == signal.SIGKILL) if die_at else (reply["code"] == 0), log
        return reply

    run_with_draws(tmp_path / "whole", tmp_path / "whole.jsonl")
    run_with_draws(tmp_path / "killed", tmp_path / "killed.jsonl", die_at=3)  # after epoch 2's checkpoint
    run_with_draws(tmp_path / "killed", tmp_path / "killed.jsonl", resume=True)
    whole = (tmp_path / "whole.jsonl").read_text().splitlines()
    assert len(whole) == EPOCHS and len(set(whole)) == EPOCHS  # the draws do move the generators
    assert (tmp_path / "killed.jsonl").read_text().splitlines() == whole


def test_resume_through_a_plain_python_m_aalr_process(
    server: Server, references: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "killed"
    argv = train_argv("aalr", out, server.data_dir)
    reply, log = server.train(argv, KILL_POINTS["mid-epoch"][0])
    assert reply["signal"] == signal.SIGKILL, log
    done = subprocess.run(
        [sys.executable, "-m", "aalr", *argv, "--resume"],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        env=CHILD_ENV,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "finished: final test accuracy" in done.stdout
    assert_same_run(out, references["aalr"])


def test_a_failed_checkpoint_write_keeps_the_previous_checkpoint(
    server: Server, references: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "r"
    argv = train_argv("prodigy", out, server.data_dir)
    reply, log = server.train(argv, {"kind": "disk_full", "at": 2})
    assert reply["code"] not in (None, 0) and "No space left on device" in log, log
    assert not (out / "summary.json").exists()
    assert saved_epochs(out) == {"checkpoint.pt": 1}
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")] == []  # cleaned up on the way out
    assert resume_counting_epochs(server, argv, tmp_path / "epochs") == EPOCHS - 1
    assert_same_run(out, references["prodigy"])


def finished_copy(reference: Path, out: Path) -> Path:
    """A copy of a finished run that looks killed just after its last checkpoint."""
    shutil.copytree(reference, out)
    (out / "summary.json").unlink()
    return out


def test_a_truncated_checkpoint_is_named_and_the_previous_one_used(
    server: Server, references: dict[str, Path], tmp_path: Path
) -> None:
    out = finished_copy(references["aalr"], tmp_path / "r")
    data = (out / "checkpoint.pt").read_bytes()
    (out / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    reply, log = server.train(
        [*train_argv("aalr", out, server.data_dir), "--resume"],
        {"kind": "count_epochs", "record": str(tmp_path / "epochs")},
    )
    assert reply == {"signal": None, "code": 0}, log
    assert f"{out / 'checkpoint.pt'}" in log and "cannot be loaded" in log
    assert "checkpoint.prev.pt" in log  # says which checkpoint it resumed from
    assert len((tmp_path / "epochs").read_text().splitlines()) == 1  # epoch 4, from epoch 3's checkpoint
    assert_same_run(out, references["aalr"])


def flip_a_byte_of_the_largest_tensor(path: Path) -> None:
    """Corrupt one byte of tensor data in place; the zip structure stays valid."""
    with zipfile.ZipFile(path) as archive:
        storages = [item for item in archive.infolist() if "/data/" in item.filename]
        info = max(storages, key=lambda item: item.file_size)
    data = bytearray(path.read_bytes())
    name_length = int.from_bytes(data[info.header_offset + 26 : info.header_offset + 28], "little")
    extra_length = int.from_bytes(data[info.header_offset + 28 : info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_length + extra_length
    data[start + info.file_size // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_checkpoint_with_a_flipped_byte_is_named_and_the_previous_one_used(
    server: Server, references: dict[str, Path], tmp_path: Path
) -> None:
    out = finished_copy(references["sgdr"], tmp_path / "r")
    flip_a_byte_of_the_largest_tensor(out / "checkpoint.pt")
    reply, log = server.train([*train_argv("sgdr", out, server.data_dir), "--resume"])
    assert reply == {"signal": None, "code": 0}, log
    assert f"{out / 'checkpoint.pt'}" in log and "cannot be loaded" in log
    assert_same_run(out, references["sgdr"])


def snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("prev", ["corrupt", "missing"])
def test_no_good_checkpoint_exits_2_naming_the_files_and_changes_nothing(
    server: Server, references: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], prev: str
) -> None:
    out = finished_copy(references["sgdr"], tmp_path / "r")
    data = (out / "checkpoint.pt").read_bytes()
    (out / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    if prev == "corrupt":
        (out / "checkpoint.prev.pt").write_bytes(b"\0" * 1000)
    else:
        (out / "checkpoint.prev.pt").unlink()
    before = snapshot(out)
    # In this process: the checkpoint is read before any training, so this is fast.
    code = main([*train_argv("sgdr", out, server.data_dir), "--resume"])
    err = capsys.readouterr().err
    assert code == 2
    assert str(out / "checkpoint.pt") in err and "no good checkpoint" in err
    if prev == "corrupt":
        assert str(out / "checkpoint.prev.pt") in err
    assert snapshot(out) == before  # in particular, no restart from scratch


def test_a_resumed_run_removes_the_temp_files_of_the_killed_one(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "r"
    argv = train_argv("sgdr", out, server.data_dir)
    reply, log = server.train(argv, KILL_POINTS["checkpoint-temp-written"][0])
    assert reply["signal"] == signal.SIGKILL, log
    assert any(p.name.endswith(".tmp") for p in out.iterdir())  # what the kill left behind
    reply, log = server.train([*argv, "--resume"])
    assert reply["code"] == 0, log
    assert sorted(p.name for p in out.iterdir() if p.name.endswith(".tmp")) == []
