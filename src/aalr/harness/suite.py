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

from aalr.harness.rundir import is_finished, read_summary

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "SUITES_DIR",
    "RunSpec",
    "Suite",
    "available_suites",
    "is_finished",
    "load_suite",
    "read_summary",
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


def run_suite(
    suite: Suite,
    out_root: Path | str,
    run_fn: Callable[[dict[str, Any], Path], object],
    *,
    only: str | None = None,
    progress: Callable[[str], None] = print,
) -> list[Path]:
    """Runs every run of ``suite`` (or those matching ``only``) with ``run_fn(config, run_dir)``.

    Finished runs are skipped. A run folder that exists with something in it but no summary is
    passed on with ``config["resume"] = True`` (train.py resumes from its checkpoint, or starts
    afresh if it has none); other runs get ``resume = False``. A run that raises, or returns
    without writing its summary, is reported through ``progress`` and appended to
    ``out_root/failures.jsonl``, and the suite goes on. KeyboardInterrupt still stops it.

    Returns the folders of the selected runs that are finished when the suite ends, in run order.
    """
    out_root = Path(out_root)
    selected = _select(suite, only, out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    _write_order(suite, out_root)

    finished: list[Path] = []
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
        except Exception as error:  # one broken run must not end a suite of hundreds
            message = f"{type(error).__name__}: {error}"
            progress(f"{label}: FAILED ({message}); recorded in {out_root / 'failures.jsonl'}")
            _record_failure(out_root, run, run_dir, message, traceback.format_exc())
            continue
        summary = read_summary(run_dir)
        if summary is None:
            message = "run_fn returned without writing summary.json"
            progress(f"{label}: FAILED ({message})")
            _record_failure(out_root, run, run_dir, message, "")
            continue
        finished.append(run_dir)
        final = summary.get("final_test_acc")
        result = f"final test acc {100 * final:.2f}%" if isinstance(final, (int, float)) else "done"
        progress(f"{label}: {summary.get('status', 'finished')}, {result}")
    return finished
