"""``aalr train | compare | report | list``: the command line.

Bad input exits with code 2 and a message naming the value and what is allowed (argparse's own
convention), before anything in an output directory is touched.

``torchrun --nproc_per_node N -m aalr train ...`` trains one run on N processes (see
:mod:`aalr.harness.distributed`); rank 0 alone prints, the other ranks log errors only.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a process that Ctrl-C ended
INTERRUPTED_HINTS = {
    "train": "; the same command with --resume continues from the last checkpoint",
    "compare": "; the same command again skips the finished runs and resumes the interrupted one",
}


def _key_value(text: str) -> tuple[str, Any]:
    """``key=value`` with the value read as JSON when it parses (numbers, true/false, lists)."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def _add_train(sub: Any) -> None:
    p = sub.add_parser("train", help="train one model with one LR method")
    p.add_argument(
        "--dataset",
        default="mnist1d",
        help="mnist1d (default, embedded), digits, fashion-mnist, mnist, cifar10, cifar100",
    )
    p.add_argument("--model", default=None, help="default: the data set's default model (see `aalr list`)")
    p.add_argument("--method", default="aalr", help="aalr, aalr-rollback, step, sgdr, ... (see `aalr list`)")
    p.add_argument("--epochs", type=int, default=None, help="passes over the training data (default 30)")
    p.add_argument(
        "--train-steps",
        type=int,
        default=None,
        help="step mode: train this many optimizer steps (instead of --epochs), in rounds of --round-steps",
    )
    p.add_argument(
        "--round-steps",
        type=int,
        default=None,
        help="step mode: optimizer steps per round (one decision of the method, evaluation, checkpoint)",
    )
    p.add_argument(
        "--context", type=int, default=None, help="bytes per window of a byte data set (default 64)"
    )
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--lr",
        type=float,
        nargs="+",
        default=None,
        help="the starting LR; several for step/const: a grid chosen on --val-fraction of the training data",
    )
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--random-erasing", type=float, default=0.0, help="probability (paper: 0.5)")
    p.add_argument("--cutout", type=int, default=0, help="cutout square size in pixels (0: off)")
    p.add_argument("--train-subset", type=int, default=None, help="use only the first N training samples")
    p.add_argument(
        "--loss-pass",
        choices=("batches", "full"),
        default="batches",
        help="epoch loss: mean of the minibatch losses (default) or an extra full pass",
    )
    p.add_argument("--model-option", type=_key_value, action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--method-option", type=_key_value, action="append", default=[], metavar="KEY=VALUE")
    p.add_argument(
        "--adversarial",
        choices=("fgsm", "pgd"),
        default=None,
        help="adversarial training: train on FGSM or PGD examples (default: natural training)",
    )
    p.add_argument(
        "--epsilon",
        type=float,
        default=8 / 255,
        help="the attacks' L-inf radius in pixel units (default 8/255)",
    )
    p.add_argument(
        "--alpha",
        type=float,
        default=None,
        help="the attack's step: needed by --adversarial pgd; with fgsm, a random start then a step of alpha "
        "(fast FGSM); evaluation's PGD uses it too (default there: epsilon / 4)",
    )
    p.add_argument(
        "--attack-steps",
        "--steps",
        dest="steps",
        type=int,
        default=1,
        help="PGD steps of the training attack (not optimizer steps: see --train-steps; default 1)",
    )
    p.add_argument(
        "--eval-pgd-steps", type=int, default=10, help="PGD steps of the robust evaluation (default 10)"
    )
    p.add_argument(
        "--robust-every",
        type=int,
        default=1,
        help="robust accuracy (FGSM, PGD) every N epochs and at the last (adversarial runs; default 1)",
    )
    p.add_argument(
        "--robust-samples",
        type=int,
        default=1000,
        help="test samples the robust accuracy is measured on (default 1000)",
    )
    p.add_argument("--out", required=True, help="the run's output directory")
    p.add_argument("--tensorboard", default=None, metavar="DIR", help="also write TensorBoard events to DIR")
    p.add_argument("--device", default="auto", help="auto (cuda when present), cpu, cuda, cuda:N")
    _add_numerics(p, suite=False)
    p.add_argument("--data-dir", default=None)
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    again.add_argument("--force", action="store_true", help="overwrite another run in --out")
    p.add_argument("--no-progress", action="store_true")


def _add_numerics(p: argparse.ArgumentParser, *, suite: bool) -> None:
    """--precision and --channels-last: how the model step runs (they may change on --resume). For a
    suite, unset means each run's own setting (the suite's, else the default)."""
    default = "each run's setting in the suite, else " if suite else ""
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),  # train.PRECISIONS; cli imports no torch to build its parser
        default=None if suite else "auto",
        help=f"auto: bf16 autocast on CUDA, fp32 on the CPU; bf16: bf16 autocast also on the CPU (fast "
        f"where it has AVX512-BF16 or AMX; changes results); fp32: never (default: {default}auto)",
    )
    p.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="image models in channels_last memory format (default: "
        f"{default}on CUDA only; on the CPU it is faster for convolutions but changes results at "
        "rounding level)",
    )


def _train_config(args: argparse.Namespace) -> dict[str, Any]:
    from aalr.harness.config import RunError, TrainConfig

    lr: float | list[float] | None = args.lr
    if isinstance(lr, list) and len(lr) == 1:
        lr = lr[0]
    if args.epochs is not None and args.train_steps is not None:
        raise RunError(
            f"--epochs {args.epochs} and --train-steps {args.train_steps} both give the run's length: "
            "give --epochs (passes over the data) or --train-steps with --round-steps (optimizer steps)"
        )
    config: dict[str, Any] = {
        "dataset": args.dataset,
        "model": args.model,
        "method": args.method,
        "train_steps": args.train_steps,
        "round_steps": args.round_steps,
        "context": args.context,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "lr": lr,
        "weight_decay": args.weight_decay,
        "val_fraction": args.val_fraction,
        "random_erasing": args.random_erasing,
        "cutout": args.cutout,
        "train_subset": args.train_subset,
        "loss_pass": args.loss_pass,
        "model_options": dict(args.model_option),
        "method_args": dict(args.method_option),
        "adversarial": args.adversarial,
        "epsilon": args.epsilon,
        "alpha": args.alpha,
        "steps": args.steps,
        "eval_pgd_steps": args.eval_pgd_steps,
        "robust_every": args.robust_every,
        "robust_samples": args.robust_samples,
        "device": args.device,
        "precision": args.precision,
        "channels_last": args.channels_last,
        "data_dir": args.data_dir,
        "progress": not args.no_progress,
    }
    if args.train_steps is None:  # step mode sets epochs to the number of rounds (TrainConfig.from_dict)
        config["epochs"] = args.epochs if args.epochs is not None else TrainConfig().epochs
    return config


def _cmd_train(args: argparse.Namespace) -> int:
    from aalr.harness import distributed
    from aalr.harness.methods import require_installed
    from aalr.harness.train import run

    require_installed([args.method])  # a method whose optional package is missing: bad input, at once
    if args.tensorboard is not None:
        from aalr.harness.tensorboard import require_tensorboard

        require_tensorboard()
    from aalr.harness.rundir import is_finished, nothing_to_resume

    # read before the run: a finished run is not trained again, and the user should hear that it was not
    finished_before = args.resume and is_finished(Path(args.out))
    if args.resume and nothing_to_resume(Path(args.out)) and distributed.is_main():
        print(
            f"aalr train: warning: --resume: no run in {args.out!r} to resume; starting a new one",
            file=sys.stderr,
        )
    try:
        summary = run(
            _train_config(args),
            Path(args.out),
            resume=args.resume,
            force=args.force,
            tensorboard=args.tensorboard,
        )
        if not distributed.is_main():
            return 0
    finally:
        distributed.shutdown()
    final, peak = summary.get("final_test_acc"), summary.get("peak_test_acc")
    length = (
        f"{summary['steps']} steps in {summary['rounds']} rounds"
        if "steps" in summary
        else f"{summary['epochs']} epochs"
    )
    if "final_test_bpb" in summary:
        print(
            f"{summary['status']}: final test bits per byte {summary['final_test_bpb']:.4f}, best "
            f"{summary['best_test_bpb']:.4f} (on {summary['eval_bytes']} held-out bytes), {length}, "
            f"{summary['wall_seconds']:.1f} s"
        )
    else:
        print(
            f"{summary['status']}: final test accuracy {100 * (final or 0):.2f}%, peak "
            f"{100 * (peak or 0):.2f}% (epoch {summary.get('peak_epoch')}), {length}, "
            f"{summary['wall_seconds']:.1f} s"
        )
    print("LR trajectory: " + " ".join(f"{lr:.4g}" for lr in summary["lr_trajectory"]))
    if "robust" in summary:
        for name, values in summary["robust"].items():
            print(f"{name} accuracy: final {100 * values['final']:.2f}%, peak {100 * values['peak']:.2f}%")
    print(f"results in {args.out}")
    if finished_before:
        print(
            f"aalr train: --resume: the run in {args.out!r} had finished already, so nothing was trained; "
            "the result above is the saved one (--force in place of --resume starts it over)",
            file=sys.stderr,
        )
    return 0


def suite_run_fn(
    overrides: dict[str, Any], *, out: Path | None = None, tensorboard: str | None = None
) -> Any:
    """The function the suite runner calls for each run: train.run with the suite's settings; with
    ``tensorboard``, each run's events go to the same place below it as its folder is below ``out``."""
    from aalr.harness.train import run

    def run_one(config: dict[str, Any], run_dir: Path) -> object:
        settings = {key: value for key, value in config.items() if key != "resume"}
        settings.update(overrides)
        board = None
        if tensorboard is not None and out is not None:
            board = Path(tensorboard) / Path(run_dir).relative_to(out)
        return run(settings, run_dir, resume=bool(config.get("resume")), tensorboard=board)

    return run_one


def _cmd_compare(args: argparse.Namespace) -> int:
    if _torchrun_rank() is not None:
        raise ValueError(
            "compare runs its runs one after another in one process; under torchrun use `aalr train` "
            "for each run"
        )
    from aalr.harness.config import RunError, TrainConfig, validate
    from aalr.harness.methods import MissingPackageError, require_installed
    from aalr.harness.report import collect, summarize, to_markdown, write_report
    from aalr.harness.rundir import check_writable
    from aalr.harness.suite import load_suite, run_suite

    overrides: dict[str, Any] = {"progress": not args.no_progress}
    if args.device:
        overrides["device"] = args.device
    if args.precision is not None:
        overrides["precision"] = args.precision
    if args.channels_last is not None:
        overrides["channels_last"] = args.channels_last
    if args.data_dir:
        overrides["data_dir"] = args.data_dir

    def check(config: dict[str, Any]) -> None:  # with the command line's overrides, as the runs get them
        settings = {key: value for key, value in config.items() if key != "resume"}
        settings.update(overrides)
        try:
            validate(TrainConfig.from_dict(settings))
        except RunError as error:
            raise ValueError(str(error)) from error

    # Every method's optional package first, for the whole suite at once: building the runs below
    # would stop at the first method that cannot be built.
    parsed = load_suite(args.suite)
    try:
        require_installed(parsed.methods)
    except MissingPackageError as error:
        raise ValueError(f"{parsed.path}: {error}") from error
    if args.tensorboard is not None:
        from aalr.harness.tensorboard import require_tensorboard

        require_tensorboard()
    suite = load_suite(args.suite, validate=check)
    out = Path(args.out)
    check_writable(out)  # an unusable output folder or a full disk is reported before any run
    run_suite(
        suite,
        out,
        suite_run_fn(overrides, out=out, tensorboard=args.tensorboard),
        only=args.only,
        progress=lambda line: print(line, flush=True),
    )
    rows = collect(out)
    report = write_report(out, rows=rows)
    print()
    print(to_markdown(summarize(rows), title=f"Suite {suite.name}"))
    print(f"report: {report}")
    if rows.failed:  # the report shows them; the exit code must too, or a script would take it as done
        print(
            f"aalr compare: {len(rows.failed)} run(s) failed; see the report and {out / 'failures.jsonl'}",
            file=sys.stderr,
        )
        return 1
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from aalr.harness.report import collect, summarize, to_markdown, write_report
    from aalr.harness.rundir import check_writable

    root = Path(args.runs)
    if not root.is_dir():
        raise ValueError(f"{str(root)!r} is not a directory of runs")
    if args.out is not None:
        check_writable(Path(args.out))  # a file or an unwritable folder: bad input, before any work
    rows = collect(root)
    report = write_report(root, Path(args.out) if args.out else None, rows=rows)
    print(to_markdown(summarize(rows)))
    print(f"report: {report}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from aalr.harness.data import DATASETS
    from aalr.harness.methods import METHODS, describe
    from aalr.harness.models import MODELS, default_model_for
    from aalr.harness.suite import available_suites

    print("datasets: " + ", ".join(f"{name} (default model {default_model_for(name)})" for name in DATASETS))
    print("models:   " + ", ".join(MODELS))
    print("suites:   " + ", ".join(available_suites()))
    print("methods:")
    width = max(map(len, METHODS))
    for name in METHODS:
        print(f"  {name:{width}s} {describe(name)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aalr", description="AALR: automated adaptive learning rates")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every AALR decision")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    p = sub.add_parser("compare", help="run a suite of runs (skipping finished ones) and print the table")
    p.add_argument("--suite", required=True, help="a suite name (see `aalr list`) or a TOML file")
    p.add_argument("--out", required=True)
    p.add_argument(
        "--tensorboard",
        default=None,
        metavar="DIR",
        help="also write TensorBoard events, one folder per run as under --out",
    )
    p.add_argument("--only", default=None, help="only the runs of this experiment (or method)")
    p.add_argument("--device", default=None)
    _add_numerics(p, suite=True)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--no-progress", action="store_true")
    p = sub.add_parser("report", help="tables and plots from finished runs")
    p.add_argument("runs", help="a directory of runs (e.g. the --out of compare)")
    p.add_argument("--out", default=None, help="where to write report.md, results.csv and plots")
    sub.add_parser("list", help="data sets, models, methods and suites")
    return parser


def _torchrun_rank() -> int | None:
    """This process's rank when torchrun started several (WORLD_SIZE > 1), else None."""
    if os.environ.get("WORLD_SIZE", "1") in ("", "1"):
        return None
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0  # a malformed RANK is reported by `train` itself


COMMANDS = {"train": _cmd_train, "compare": _cmd_compare, "report": _cmd_report, "list": _cmd_list}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "out", None) is not None and not args.out.strip():
        parser.error(f"{args.command}: --out is empty; give a folder name")
    rank = _torchrun_rank()
    level = logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(
        level=level if not rank else logging.ERROR, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return COMMANDS[args.command](args)
    except (ValueError, TypeError, FileNotFoundError) as error:
        where = f" (rank {rank})" if rank else ""
        print(f"aalr {args.command}{where}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as error:  # e.g. the disk filled up during a run: not bad input, but say it in one line
        hint = "; the run can continue with --resume" if args.command in ("train", "compare") else ""
        print(f"aalr {args.command}: error: {error}{hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: every checkpoint written so far is intact
        print(f"aalr {args.command}: interrupted{INTERRUPTED_HINTS.get(args.command, '')}", file=sys.stderr)
        return EXIT_INTERRUPTED


def entry() -> None:
    """The ``aalr`` command and ``python -m aalr``: ``main``, then exit with its code.

    Under torchrun the process leaves without the interpreter's teardown (after flushing its
    output): a gloo worker thread may still be freeing the tensors of a finished collective while
    the interpreter shuts down, which now and then aborts a rank whose run had finished and been
    written (the race pytorch/pytorch#179291 describes). ``main`` itself returns normally, so
    calling it in-process is unaffected.
    """
    code = main()
    if _torchrun_rank() is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
