"""Suites: many training runs described as data (a TOML file), run one after another.

A suite file names the runs of one comparison::

    name = "quick"
    description = "what it shows and what it costs"
    [defaults]                          # train settings for every run
    dataset = "mnist1d"
    epochs = 30
    seeds = [0, 1]
    methods = ["aalr", "step"]
    [defaults.method_options.step]      # settings for one method only
    lr = [0.2, 0.1]
    [[experiment]]                      # optional; none means one experiment named after the suite
    name = "bs32"
    batch_size = 32

Settings merge in this order, later winning: ``defaults``, the experiment, then
``method_options[method]`` (the defaults' and the experiment's, the experiment's winning).
Tables (e.g. ``augment``) merge key by key; everything else is replaced whole.

:func:`run_suite` runs the runs in order (experiment, then seed, then method, so every method has
a first seed before any has a second) and skips finished ones, so a killed suite continues where
it stopped. It writes ``suite.json`` (the run order, which the report keeps) and ``failures.jsonl``
(one line per run that raised) into the output folder.

A finished run is reused only if it was made with the settings the suite gives it now
(:func:`run_settings` of both agree); otherwise :func:`run_suite` refuses before any run starts, naming
each setting with both values, so that an edited suite never mixes old results into new tables.
:func:`read_json_object` reads the JSON files of a results folder and says, in a :class:`UnusableFile`,
why one cannot be used; the report lists these reasons.
"""

from __future__ import annotations

import copy
import datetime
import fnmatch
import json
import re
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aalr.harness import guard
from aalr.harness.rundir import is_finished, read_summary

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "SUITES_DIR",
    "RunSpec",
    "Suite",
    "UnusableFile",
    "available_suites",
    "is_finished",
    "load_suite",
    "read_json_object",
    "read_summary",
    "read_text_file",
    "run_settings",
    "run_suite",
]

TOP_LEVEL_KEYS = ("name", "description", "defaults", "experiment")
# Keys of [defaults] and [[experiment]] that the suite itself interprets (the rest go to train.py).
SUITE_KEYS = ("seeds", "methods", "method_options")
# Set by the runner for each run; a suite that sets them is wrong (or meant "seeds"/"methods").
RESERVED_KEYS = {
    "method": "list the methods in 'methods'",
    "seed": "list the seeds in 'seeds'",
    "suite": "it is set to the suite's name",
    "experiment": "it is set to the [[experiment]] name",
    "resume": "the runner sets it for partly finished runs",
}
# Names become folder names: keep them to one safe path component.
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
# How a run was made, not what it trained: never a reason to refuse a finished run or to tell two apart.
_MADE_WITH = frozenset({"version", "git_commit"})


# The suites live inside the package (``aalr/suites``), so a wheel carries them; the repository's
# ``suites`` is a link to that folder.
SUITES_DIR: Path = Path(__file__).resolve().parent.parent / "suites"


@dataclass
class RunSpec:
    """One run of a suite: its place (experiment, method, seed) and its full train settings."""

    experiment: str
    method: str
    seed: int
    config: dict[str, Any]

    def run_dir(self, root: Path | str) -> Path:
        """Where the run writes its results: ``root/<experiment>/<method>/seed<k>``."""
        return Path(root) / self.experiment / self.method / f"seed{self.seed}"


@dataclass
class Suite:
    """A parsed suite file: its name, description and every run, in the order they run."""

    name: str
    description: str
    runs: list[RunSpec]
    path: Path | None = field(default=None)

    @property
    def experiments(self) -> list[str]:
        """Experiment names in file order."""
        return list(dict.fromkeys(run.experiment for run in self.runs))

    @property
    def methods(self) -> list[str]:
        """Method names in order of first appearance."""
        return list(dict.fromkeys(run.method for run in self.runs))


def available_suites() -> list[str]:
    """Names of the suites shipped in :data:`SUITES_DIR` (file names without ``.toml``), sorted."""
    if not SUITES_DIR.is_dir():
        return []
    return sorted(p.stem for p in SUITES_DIR.glob("*.toml"))


def _resolve(name_or_path: str | Path) -> Path:
    text = str(name_or_path)
    if text.endswith(".toml") or "/" in text or "\\" in text:
        path = Path(text)
        if not path.is_file():
            raise ValueError(f"suite file {path} does not exist")
        return path
    path = SUITES_DIR / f"{text}.toml"
    if not path.is_file():
        names = ", ".join(available_suites()) or "(none)"
        raise ValueError(
            f"unknown suite {text!r}; available suites: {names} (or give a path to a .toml file)"
        )
    return path


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``override``; nested tables merge key by key, other values are replaced."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _check_name(path: Path, where: str, value: object) -> str:
    if not isinstance(value, str) or not _NAME_PATTERN.match(value):
        raise ValueError(
            f"{path}: {where} must be a non-empty string of letters, digits and . _ + - "
            f"(it becomes a folder name), got {value!r}"
        )
    return value


def _check_settings(path: Path, where: str, table: object) -> dict[str, Any]:
    """Checks one settings table ([defaults], an [[experiment]] or a method_options entry)."""
    if not isinstance(table, dict):
        raise ValueError(f"{path}: {where} must be a table, got {type(table).__name__}")
    for key, why in RESERVED_KEYS.items():
        if key in table:
            raise ValueError(f"{path}: key {key!r} is not allowed in {where}: {why}")
    if "seeds" in table:
        seeds = table["seeds"]
        if not isinstance(seeds, list) or not seeds:
            raise ValueError(
                f"{path}: 'seeds' in {where} must be a non-empty list of integers, got {seeds!r}"
            )
        for seed in seeds:
            # bool is an int subclass; `seeds = [true]` is a typo, not a seed.
            if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
                raise ValueError(
                    f"{path}: 'seeds' in {where} must hold non-negative integers, got {seed!r} in {seeds!r}"
                )
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"{path}: 'seeds' in {where} lists a seed twice: {seeds!r}")
    if "methods" in table:
        methods = table["methods"]
        if not isinstance(methods, list) or not methods:
            raise ValueError(
                f"{path}: 'methods' in {where} must be a non-empty list of method names, got {methods!r}"
            )
        for method in methods:
            _check_name(path, f"each of 'methods' in {where}", method)
        if len(set(methods)) != len(methods):
            raise ValueError(f"{path}: 'methods' in {where} lists a method twice: {methods!r}")
    if "method_options" in table:
        options = table["method_options"]
        if not isinstance(options, dict):
            raise ValueError(
                f"{path}: 'method_options' in {where} must be a table of per-method tables, got {options!r}"
            )
        for method, settings in options.items():
            inner = f"method_options.{method} in {where}"
            _check_settings(path, inner, settings)
            for key in SUITE_KEYS:
                if key in settings:
                    raise ValueError(
                        f"{path}: key {key!r} is not allowed in {inner}: it applies to a whole experiment"
                    )
    return table


def _parse(path: Path, data: dict[str, Any]) -> tuple[str, str, list[tuple[str, dict[str, Any]]]]:
    """Checks a parsed suite file; returns its name, description and (experiment, settings) pairs."""
    unknown = sorted(set(data) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ValueError(
            f"{path}: unknown top-level key(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(TOP_LEVEL_KEYS)} (train settings go under [defaults] or [[experiment]])"
        )
    if "name" not in data:
        raise ValueError(f"{path}: missing top-level key 'name' (the suite's name)")
    name = data["name"]
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{path}: 'name' must be a non-empty string, got {name!r}")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ValueError(f"{path}: 'description' must be a string, got {description!r}")
    defaults = _check_settings(path, "[defaults]", data.get("defaults", {}))

    raw_experiments = data.get("experiment")
    if raw_experiments is None:
        return name, description, [(_check_name(path, "the suite's 'name'", name), defaults)]
    if not isinstance(raw_experiments, list) or not raw_experiments:
        raise ValueError(f"{path}: 'experiment' must be a non-empty array of tables ([[experiment]])")
    experiments: list[tuple[str, dict[str, Any]]] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_experiments, start=1):
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: experiment {index} must be a table ([[experiment]])")
        if "name" not in raw:
            raise ValueError(f"{path}: experiment {index} has no 'name'")
        exp_name = _check_name(path, f"the name of experiment {index}", raw["name"])
        if exp_name in seen:
            raise ValueError(
                f"{path}: duplicate experiment name {exp_name!r}; each [[experiment]] needs its own"
            )
        seen.add(exp_name)
        settings = {k: v for k, v in raw.items() if k != "name"}
        _check_settings(path, f"experiment {exp_name!r}", settings)
        experiments.append((exp_name, _deep_merge(defaults, settings)))
    return name, description, experiments


def load_suite(
    name_or_path: str | Path,
    *,
    validate: Callable[[dict[str, Any]], None] | None = None,
) -> Suite:
    """Reads a suite by name (a file in :data:`SUITES_DIR`) or by path to a ``.toml`` file.

    ``validate``, if given, is called with every run's merged config and may raise ``ValueError``
    (e.g. for an unknown method, dataset or model); its message is re-raised naming the file, the
    experiment and the method. The registries it would check live elsewhere, hence a callback.
    """
    path = _resolve(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path}: not valid TOML: {error}") from error
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not a UTF-8 text file, so not TOML ({error})") from error
    name, description, experiments = _parse(path, data)

    runs: list[RunSpec] = []
    used_options: set[str] = set()
    for exp_name, settings in experiments:
        if "methods" not in settings:
            raise ValueError(
                f"{path}: experiment {exp_name!r} has no 'methods' (set it in [defaults] or there)"
            )
        if "seeds" not in settings:
            raise ValueError(
                f"{path}: experiment {exp_name!r} has no 'seeds' (set it in [defaults] or there)"
            )
        options: dict[str, Any] = settings.get("method_options", {})
        base = {k: v for k, v in settings.items() if k not in SUITE_KEYS}
        for seed in settings["seeds"]:
            for method in settings["methods"]:
                used_options.add(method)
                config = _deep_merge(base, options.get(method, {}))
                config.update(method=method, seed=seed, suite=name, experiment=exp_name)
                if validate is not None:
                    try:
                        validate(config)
                    except ValueError as error:
                        raise ValueError(
                            f"{path}: experiment {exp_name!r}, method {method!r}: {error}"
                        ) from error
                runs.append(RunSpec(experiment=exp_name, method=method, seed=seed, config=config))

    # Options for a method no experiment runs are almost surely a misspelt method name.
    named_options: set[str] = set(data.get("defaults", {}).get("method_options", {}))
    for raw in data.get("experiment", []):
        named_options |= set(raw.get("method_options", {}))
    stray = sorted(named_options - used_options)
    if stray:
        raise ValueError(
            f"{path}: method_options for {', '.join(map(repr, stray))}, which no experiment runs; "
            f"methods run: {', '.join(sorted(used_options))}"
        )
    return Suite(name=name, description=description, runs=runs, path=path)


class UnusableFile(ValueError):
    """A file of a results folder that cannot be used: ``path`` and ``reason`` ("empty", "not valid
    JSON (...)", ...), the words a report lists it with."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def _json_type(value: object) -> str:
    names = {bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def read_text_file(path: Path, *, allow_empty: bool = False) -> str:
    """The UTF-8 text of ``path``; raises :class:`UnusableFile` if it is missing, a directory,
    unreadable, empty or blank (unless ``allow_empty``) or not UTF-8 (naming the first bad byte and
    its line)."""
    if path.is_dir():
        raise UnusableFile(path, "a directory, not a file")
    if not path.exists():
        raise UnusableFile(path, "missing")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UnusableFile(path, f"cannot be read ({error.strerror or error})") from error
    if not data.strip() and not allow_empty:
        raise UnusableFile(path, "empty")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise UnusableFile(path, f"not UTF-8 text (byte 0x{data[error.start]:02x} on line {line})") from error


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; raises :class:`UnusableFile` saying why there is none."""
    text = read_text_file(path)
    try:
        value = json.loads(text)
    except ValueError as error:
        raise UnusableFile(path, f"not valid JSON ({error})") from error
    if not isinstance(value, dict):
        raise UnusableFile(path, f"a JSON {_json_type(value)}, not an object")
    return value


def run_settings(config: dict[str, Any]) -> dict[str, Any]:
    """What a run trained: its settings (a config.json, or a suite's config for a run), each one it
    does not name at today's default, without those that say how it ran rather than what (device,
    precision, channels_last, data_dir, progress: a resume may change them) or with what code
    (version, git_commit).

    Two runs with equal settings trained the same thing. A setting added after a run was made is
    taken at its default, which keeps the old behaviour; a key that is no longer a setting is kept
    unless it is empty (None, {} or []), as the former name of ``method_args`` is in older runs.
    """
    from aalr.harness.config import TrainConfig
    from aalr.harness.rundir import RESUMABLE_DIFFERENCES

    defaults = TrainConfig().to_dict()
    ignored = RESUMABLE_DIFFERENCES | _MADE_WITH
    merged = {**defaults, **config}
    steps, per_round = merged.get("train_steps"), merged.get("round_steps")
    if (
        config.get("epochs") is None
        and isinstance(steps, int)
        and isinstance(per_round, int)
        and per_round > 0
    ):
        merged["epochs"] = steps // per_round  # step mode: epochs counts rounds (TrainConfig.from_dict)
    return {
        key: value
        for key, value in merged.items()
        if key not in ignored and (key in defaults or value not in (None, {}, []))
    }


def _differences(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """``key: A in the run, B in the suite`` for each setting on which the two settings differ."""
    mine, theirs = run_settings(saved), run_settings(wanted)
    missing = "(not set)"
    return [
        f"{key}: {mine.get(key, missing)!r} in the run, {theirs.get(key, missing)!r} in the suite"
        for key in sorted(set(mine) | set(theirs))
        if mine.get(key, missing) != theirs.get(key, missing)
    ]


def _select(suite: Suite, only: str | None, out_root: Path) -> list[RunSpec]:
    """Runs matching ``only``: an experiment, a method, or a glob over ``experiment/method/seed<k>``."""
    if only is None:
        return list(suite.runs)
    chosen = [
        run
        for run in suite.runs
        if only in (run.experiment, run.method)
        or fnmatch.fnmatchcase(run.run_dir(out_root).relative_to(out_root).as_posix(), only)
    ]
    if not chosen:
        raise ValueError(
            f"only={only!r} matches no run of suite {suite.name!r}; give an experiment "
            f"({', '.join(suite.experiments)}), a method ({', '.join(suite.methods)}) "
            "or a pattern such as 'experiment/method/seed0'"
        )
    return chosen


def _write_order(suite: Suite, out_root: Path) -> None:
    """Writes out_root/suite.json: the suite's run order, so the report lists methods as the suite does."""
    path = out_root / "suite.json"
    if path.is_file():
        try:
            previous = json.loads(path.read_text(encoding="utf-8")).get("name")
        except (ValueError, AttributeError):
            previous = None
        if previous is not None and previous != suite.name:
            raise ValueError(
                f"{out_root} holds results of suite {previous!r}, not {suite.name!r}; "
                "give each suite its own output folder"
            )
    order = {
        "name": suite.name,
        "description": suite.description,
        "runs": [
            {
                "experiment": run.experiment,
                "method": run.method,
                "seed": run.seed,
                "run_dir": run.run_dir(out_root).relative_to(out_root).as_posix(),
            }
            for run in suite.runs
        ],
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(order, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def _record_failure(out_root: Path, run: RunSpec, run_dir: Path, message: str, trace: str) -> None:
    record = {
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "experiment": run.experiment,
        "method": run.method,
        "seed": run.seed,
        "run_dir": str(run_dir),
        "error": message,
        "traceback": trace,
    }
    with (out_root / "failures.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def _refuse_other_settings(suite: Suite, selected: list[RunSpec], out_root: Path) -> None:
    """Raises ValueError, before any run, if a selected run's folder holds a run (finished or not) made
    with other settings than the suite gives it now, or one whose settings cannot be read."""
    shown, problems = 5, []
    for run in selected:
        path = run.run_dir(out_root) / "config.json"
        if not path.exists() and not is_finished(path.parent):
            continue  # nothing there yet, or a run that failed before its first checkpoint
        where = run.run_dir(out_root).relative_to(out_root).as_posix()
        try:
            differences = _differences(read_json_object(path), run.config)
        except UnusableFile as error:
            problems.append(f"{where}: its settings cannot be checked: config.json is {error.reason}")
            continue
        if differences:
            problems.append(f"{where}: {'; '.join(differences)}")
    if problems:
        more = f"\n  ... and {len(problems) - shown} more" if len(problems) > shown else ""
        raise ValueError(
            f"{out_root} holds {len(problems)} run(s) made with other settings than suite {suite.name!r} "
            "gives them now (or whose settings cannot be read); they are not reused, so that old and new "
            "results never mix:\n  "
            + "\n  ".join(problems[:shown])
            + more
            + "\nGive another --out, or delete those runs' folders to run them again with the suite's "
            "settings."
        )


def run_suite(
    suite: Suite,
    out_root: Path | str,
    run_fn: Callable[[dict[str, Any], Path], object],
    *,
    only: str | None = None,
    progress: Callable[[str], None] = print,
) -> list[Path]:
    """Runs every run of ``suite`` (or those matching ``only``) with ``run_fn(config, run_dir)``.

    Finished runs are skipped. First, though, every selected run's folder that holds a run (a
    config.json or a summary) is checked against the settings the suite gives it now
    (:func:`run_settings`); a difference, or a config.json that cannot be read, raises ValueError
    naming the run, the setting and both values, before anything is run or written. A run folder
    that exists with something in it but no summary is
    passed on with ``config["resume"] = True`` (train.py resumes from its checkpoint, or starts
    afresh if it has none); other runs get ``resume = False``. A run that raises, or returns
    without writing its summary, is reported through ``progress`` and appended to
    ``out_root/failures.jsonl``, and the suite goes on; the last line through ``progress`` then says
    how many failed. KeyboardInterrupt still stops it.

    Returns the folders of the selected runs that are finished when the suite ends, in run order.
    """
    out_root = Path(out_root)
    selected = _select(suite, only, out_root)
    _refuse_other_settings(suite, selected, out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    _write_order(suite, out_root)
    return _run_selected(selected, out_root, run_fn, progress)


def _run_selected(
    selected: list[RunSpec],
    out_root: Path,
    run_fn: Callable[[dict[str, Any], Path], object],
    progress: Callable[[str], None],
) -> list[Path]:
    finished: list[Path] = []
    failed = 0
    total = len(selected)
    for index, run in enumerate(selected, start=1):
        run_dir = run.run_dir(out_root)
        label = f"[{index}/{total}] {run.experiment}/{run.method}/seed{run.seed}"
        if is_finished(run_dir):
            progress(f"{label}: finished already, skipped")
            finished.append(run_dir)
            continue
        config = copy.deepcopy(run.config)
        config["resume"] = run_dir.is_dir() and any(run_dir.iterdir())
        progress(f"{label}: {'resuming' if config['resume'] else 'starting'}")
        try:
            run_fn(config, run_dir)
        except guard.OutDirInUse:
            # another `aalr compare` (e.g. one given another --only) is running it: not a failure
            progress(f"{label}: running in another aalr process, skipped")
            continue
        except Exception as error:  # one broken run must not end a suite of hundreds
            message = f"{type(error).__name__}: {error}"
            progress(f"{label}: FAILED ({message}); recorded in {out_root / 'failures.jsonl'}")
            _record_failure(out_root, run, run_dir, message, traceback.format_exc())
            failed += 1
            continue
        summary = read_summary(run_dir)
        if summary is None:
            message = "run_fn returned without writing summary.json"
            progress(f"{label}: FAILED ({message})")
            _record_failure(out_root, run, run_dir, message, "")
            failed += 1
            continue
        finished.append(run_dir)
        final, bpb = summary.get("final_test_acc"), summary.get("final_test_bpb")
        if isinstance(bpb, (int, float)):  # a language model
            result = f"final test bits per byte {bpb:.4f}"
        else:
            result = f"final test acc {100 * final:.2f}%" if isinstance(final, (int, float)) else "done"
        progress(f"{label}: {summary.get('status', 'finished')}, {result}")
    if failed:
        progress(f"{failed} of {total} run(s) failed; each is recorded in {out_root / 'failures.jsonl'}")
    return finished
