"""``python -m mvf_lightning results RUNS_DIR ...``: one table row per run, finished or not.

A run is found as a W&B run folder (``wandb/offline-run-*-<id>`` or ``wandb/run-*-<id>``,
read from its ``.wandb`` log), a CSV logger folder (``metrics.csv``), or a folder holding the
evaluation callback's ``evaluation/<stage>_epoch<EEEE>.json`` files. The resolved
``config.yaml`` mvf_lightning saves beside a run (for W&B runs in ``<save_dir>/<project>/<id>/``)
joins the run of the same id. Evaluation JSONs win over logger summaries. Each row shows what
differs from the other runs' configs (or from ``--base``), the epochs reached, the final value
of each metric and the mean over evaluation sets (Penn Action: over actions). ``--plot DIR``
also draws each metric over the epochs (one line per run) and the final values as a bar chart
(:mod:`mvf_lightning.visualization.run_plots`). Lightning-free.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import re
import socket
import struct
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError, DataError, ExistingFileError, MissingFileError
from .run_status import STATUS_FILE, read_status
from .sweep import _short_keys

STATUSES = ("finished", "failed (exit N)", "stopped (why, exit N)", "requeued", "running",
            "evaluated", "unreadable (why)")
"""From the run's ``status.json`` (written by every fit, :mod:`mvf_lightning.tracking.run_status`):
finished (exit 0), failed (an error), stopped (SIGTERM or Ctrl-C, with a checkpoint to resume;
or its process is gone without a word; or silent for longer than ``--active-minutes``),
requeued (Slurm continues it in a new attempt), running. Runs from before ``status.json``:
finished when W&B recorded exit 0 or max_epochs was reached, failed on W&B's non-zero exit,
running when written to in the last ``--active-minutes``, else stopped. A folder that only
``validate`` or ``test`` wrote (its evaluation JSONs say so, and no fit recorded a status) is
evaluated. A run whose files cannot be read is listed as unreadable, with the reason."""

_WANDB_DIR = re.compile(r"^(?:offline-)?run-\d{8}_\d{6}-(?P<id>[^.\s]+)$")
_EVAL_JSON = re.compile(r"^(?P<stage>[a-z]+)_epoch(?P<epoch>\d+)\.json$")
_METRIC = re.compile(r"^(?P<stage>val|test)/(?P<dataset>[^/]+)/(?P<set>.+)/(?P<metric>[^/]+)$")
# Keys that name where a run writes, not what it does: never reported as a difference.
_LOCATION_KEYS = {"dirpath", "save_dir", "default_root_dir", "cache_dir", "ckpt_path", "dir",
                  "output_dir"}


@dataclass
class Run:
    """One run: where it is, how it ended, its resolved config and final metric values."""

    name: str
    path: Path
    status: str = "stopped"
    run_id: str | None = None
    config: dict = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    epochs: int | None = None
    max_epochs: int | None = None
    source: str = ""
    differs: str = ""
    history: dict[str, dict[int, list[float]]] = field(default_factory=dict)
    """``metric -> {epoch (0-based): [values logged in it]}``, for the plots."""

    def series(self, metric: str) -> list[tuple[int, float]]:
        """``[(epochs trained, value)]`` of ``metric``: one point per epoch, the mean of the
        values logged in it (one value for evaluation metrics, several for step metrics)."""
        by_epoch = self.history.get(metric, {})
        return [(epoch + 1, sum(v) / len(v)) for epoch, v in sorted(by_epoch.items()) if v]


def _add_point(history: dict, metric: str, epoch: Any, value: Any) -> None:
    if isinstance(epoch, (int, float)) and isinstance(value, (int, float)) and not isinstance(
        value, bool
    ):
        history.setdefault(metric, {}).setdefault(int(epoch), []).append(float(value))


# ----------------------------------------------------------------------------- W&B run logs

def _wandb_records(path: Path) -> Iterator[bytes]:
    """Records of a ``.wandb`` file (LevelDB log format: 32 KiB blocks, 7-byte record
    headers, records split into first/middle/last pieces). A record still being written
    ends the scan."""
    data = path.read_bytes()
    if data[:4] != b":W&B":
        raise DataError(f"{path}: not a W&B run log (no ':W&B' header)")
    block, pos, pending = 32768, 7, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a header is zero padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:
            pos += left
            continue
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if len(chunk) < length:
            return
        if kind == 1:
            yield chunk
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            yield pending + chunk
            pending = b""


def _item_key(item: Any) -> str:
    return item.key or ".".join(item.nested_key)


def read_wandb_run(folder: Path) -> dict[str, Any]:
    """id, name, sweep id, config, final summary values, history rows (one dict per logged
    step) and exit code of a W&B run folder."""
    try:
        from wandb.proto import wandb_internal_pb2 as pb
    except ImportError as e:  # pragma: no cover - wandb is a dependency
        raise RuntimeError("reading W&B run folders needs the `wandb` package") from e
    logs = sorted(folder.glob("*.wandb"))
    if not logs:
        raise DataError(f"{folder}: no .wandb run log in this W&B run folder")
    out: dict[str, Any] = {"config": {}, "summary": {}, "exit_code": None, "name": "",
                           "history": []}
    for data in _wandb_records(logs[0]):
        record = pb.Record()
        try:
            record.ParseFromString(data)
        except Exception:  # a torn record at the end of a live log
            break
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out.update(id=record.run.run_id, name=record.run.display_name,
                       sweep_id=record.run.sweep_id)
            items = record.run.config.update
        elif kind == "config":
            items = record.config.update
        elif kind in ("summary", "history"):
            items = record.summary.update if kind == "summary" else record.history.item
            row = {}
            for item in items:
                key = _item_key(item)
                if not key.startswith("_"):
                    row[key] = out["summary"][key] = json.loads(item.value_json)
            if kind == "history":
                out["history"].append(row)
            continue
        elif kind == "exit":
            out["exit_code"] = record.exit.exit_code
            continue
        else:
            continue
        for item in items:
            out["config"][_item_key(item)] = json.loads(item.value_json)
    return out


# ----------------------------------------------------------------------------- run folders

def _load_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise DataError(f"{path}: not valid YAML ({e})") from e
    return data if isinstance(data, dict) else {}


def _newest_config(folder: Path) -> dict:
    files = sorted(folder.glob("config*.yaml"), key=lambda p: p.stat().st_mtime)
    return _load_yaml(files[-1]) if files else {}


def _evaluation_json(path: Path, stage: str) -> tuple[dict[str, float], Any, Any]:
    """One evaluation JSON's values, as ``<stage>/<dataset>/<set>/<metric>``, its epoch and
    its global step."""
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from e
    dataset = data.get("dataset", "eval")
    sets = data.get("sets", data.get("results", {}))
    groups = {**{s: v for s, v in sets.items() if isinstance(v, dict)},
              "mean": data.get("mean", {})}
    metrics = {}
    for set_name, values in groups.items():
        for metric, value in (values or {}).items():
            if isinstance(value, (int, float)):
                metrics[f"{stage}/{dataset}/{set_name}/{metric}"] = float(value)
    return metrics, data.get("epoch"), data.get("global_step")


def _evaluated_only(folder: Path) -> bool:
    """Whether every evaluation JSON of ``folder`` says ``validate`` or ``test`` wrote it (a
    folder of evaluations, not of a fit; JSONs from before the ``command`` field say
    nothing)."""
    commands = set()
    for path in (folder / "evaluation").glob("*.json"):
        try:
            commands.add(json.loads(path.read_text()).get("command"))
        except (OSError, ValueError, AttributeError):
            return False
    return bool(commands) and commands <= {"validate", "test"}


def _evaluation_metrics(
    folder: Path, history: dict | None = None
) -> tuple[dict[str, float], int | None]:
    """Metrics of the newest evaluation JSON per stage, as ``<stage>/<dataset>/<set>/<metric>``,
    and the newest val epoch; every JSON's values go into ``history`` (by its epoch; an older
    JSON that cannot be read is left out of the plots, not the table)."""
    found: dict[str, list[tuple[int, Path]]] = {}
    for path in (folder / "evaluation").glob("*.json"):
        m = _EVAL_JSON.match(path.name)
        if m:
            found.setdefault(m["stage"], []).append((int(m["epoch"]), path))
    metrics: dict[str, float] = {}
    epoch = None
    for stage, files in found.items():
        files.sort()
        newest, newest_epoch, _ = _evaluation_json(files[-1][1], stage)
        metrics.update(newest)
        if stage == "val" and isinstance(newest_epoch, int):
            epoch = max(epoch or 0, newest_epoch)
        if history is None:
            continue
        for file_epoch, path in files:
            try:
                values, _, step = _evaluation_json(path, stage)
            except DataError:
                continue
            # After no training step (``validate`` of an untrained model) the point sits at 0
            # epochs trained (history keys are 0-based epochs, drawn at epoch + 1).
            at = -1 if step == 0 else file_epoch
            for key, value in values.items():
                # one point per epoch: the evaluation, not what a logger also kept of it
                history[key] = {**history.get(key, {}), at: [value]}
    return metrics, epoch


def _csv_metrics(
    path: Path, history: dict | None = None
) -> tuple[dict[str, float], int | None]:
    """Last value of each column of a CSV logger's metrics.csv, and the highest epoch; every
    value goes into ``history`` by its row's epoch.
    A row cut short by a kill (the file's last line) is ignored; any other value that is
    not a number makes the file unreadable, named with its line."""
    metrics: dict[str, float] = {}
    epoch = None
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: not a CSV metrics table ({e})") from None
    for line, row in enumerate(rows, start=2):
        if None in row or None in row.values():  # more or fewer fields than the header
            if line == len(rows) + 1:
                continue  # the last line, cut short while being written
            raise DataError(f"{path} line {line}: not as many fields as the header")
        row_epoch = row.get("epoch")
        for key, value in row.items():
            if value in ("", None) or key is None:
                continue
            try:
                number = float(value)
            except ValueError:
                raise DataError(f"{path} line {line}: {key}={value!r} is not a number") from None
            if key == "epoch":
                epoch = max(epoch or 0, int(number))
            elif key != "step":
                metrics[key] = number
                if history is not None and row_epoch not in ("", None):
                    _add_point(history, key, float(row_epoch), number)
    return metrics, epoch


def _status(finished: bool, newest_write: float, active_s: float) -> str:
    """For a run folder without ``status.json``: a guess from its files."""
    if finished:
        return "finished"
    return "running" if time.time() - newest_write < active_s else "stopped"


def _process_gone(record: dict) -> bool:
    """Whether the process a ``running`` record names ran on this machine and has ended."""
    if record.get("host") != socket.gethostname() or not isinstance(record.get("pid"), int):
        return False
    try:
        os.kill(record["pid"], 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _recorded_status(folder: Path | None, newest_write: float, active_s: float) -> str | None:
    """The status a run folder's ``status.json`` records, or None without one."""
    record = read_status(folder) if folder is not None else None
    if record is None:
        return None
    state, code, reason = record["status"], record.get("exit_code"), record.get("reason") or ""
    if state == "finished":
        return "finished"
    if state == "failed":
        return f"failed (exit {code if code is not None else '?'})"
    if state == "stopped":
        return f"stopped ({reason or 'interrupted'}, exit {code})"
    if state == "requeued":
        return "requeued"
    if _process_gone(record):
        return "stopped (its process is gone)"
    try:
        updated = time.mktime(time.strptime(record["updated"][:19], "%Y-%m-%dT%H:%M:%S"))
    except (KeyError, ValueError):
        updated = 0.0
    silent = time.time() - max(updated, newest_write)
    if silent < active_s:
        return "running"
    return f"stopped (silent for {silent / 3600:.1f} h)"


def _max_epochs(config: dict) -> int | None:
    value = (config.get("trainer") or {}).get("max_epochs")
    return int(value) if isinstance(value, (int, float)) and value >= 0 else None


def _reached_max(epochs: int | None, max_epochs: int | None) -> bool:
    return epochs is not None and max_epochs is not None and epochs >= max_epochs


def _run_folders(root: Path) -> Iterator[tuple[str, Path]]:
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = [d for d in dirs if d not in ("checkpoints", "media", "files", "logs", "tmp")]
        if _WANDB_DIR.match(here.name) and any(f.endswith(".wandb") for f in files):
            yield "wandb", here
            dirs[:] = []
        elif "metrics.csv" in files:
            yield "csv", here
        elif "evaluation" in dirs and any((here / "evaluation").glob("*_epoch*.json")):
            if (here / "wandb").is_dir():  # a W&B save_dir: JSONs of several runs mixed
                print(f"results: skipped {here / 'evaluation'}: it belongs to no single run "
                      "(W&B runs keep theirs in <save_dir>/<project>/<run id>/evaluation)",
                      file=sys.stderr)
                continue
            yield "evaluation", here


def collect_runs(roots: Sequence[Path], active_minutes: float = 10.0) -> list[Run]:
    """Every run under ``roots``, in the order found (sorted paths)."""
    active_s = active_minutes * 60
    config_dirs: dict[str, Path] = {}  # run id -> folder of mvf_lightning's config.yaml
    found: list[tuple[str, Path, Path]] = []
    for root in roots:
        if not root.is_dir():
            raise MissingFileError(f"results: {root} is not a folder")
        for pattern in ("config*.yaml", STATUS_FILE):
            for path in sorted(root.rglob(pattern)):
                config_dirs.setdefault(path.parent.name, path.parent)
        found += [(kind, folder, root) for kind, folder in _run_folders(root)]
    runs, seen = [], set()
    # W&B folders first: they claim the config / evaluation folder of their run id.
    for kind, folder, root in sorted(found, key=lambda f: (f[0] != "wandb", str(f[1]))):
        if folder in seen:
            continue
        seen.add(folder)
        try:
            if kind == "wandb":
                runs.append(_wandb_run(folder, config_dirs, active_s, seen))
            else:
                runs.append(_local_run(kind, folder, root, active_s))
        except (OSError, ValueError) as e:  # one bad run never costs the table
            name = str(folder.relative_to(root)) if folder != root else folder.name
            reason = " ".join(str(e).split())
            runs.append(Run(name=name, path=folder, source=kind, status=f"unreadable ({reason})"))
    return runs


def _wandb_run(folder: Path, config_dirs: dict[str, Path], active_s: float, seen: set) -> Run:
    data = read_wandb_run(folder)
    run_id = data.get("id") or _WANDB_DIR.match(folder.name)["id"]
    run = Run(name=data["name"] or run_id, path=folder, run_id=run_id, source="wandb")
    extra = config_dirs.get(run_id)
    if extra is not None:
        seen.add(extra)
    # The saved config.yaml first: the W&B copy also lists the config files and linked keys.
    run.config = (_newest_config(extra) if extra else {}) or data["config"].get("cli") or {}
    metrics = {k: float(v) for k, v in data["summary"].items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    epoch = metrics.pop("epoch", None)
    run.epochs = None if epoch is None else int(epoch) + 1
    for row in data["history"]:
        for key, value in row.items():
            if key not in ("epoch", "trainer/global_step"):
                _add_point(run.history, key, row.get("epoch"), value)
    if extra is not None:
        evaluated, eval_epoch = _evaluation_metrics(extra, run.history)
        metrics.update(evaluated)
        if eval_epoch is not None:
            run.epochs = max(run.epochs or 0, eval_epoch + 1)
    run.metrics = metrics
    run.max_epochs = _max_epochs(run.config)
    code = data["exit_code"]
    newest = max(p.stat().st_mtime for p in folder.glob("*.wandb"))
    recorded = _recorded_status(extra, newest, active_s)
    if recorded is not None:
        run.status = recorded
    elif code:
        run.status = f"failed (exit {code})"
    else:
        finished = code == 0 or _reached_max(run.epochs, run.max_epochs)
        run.status = _status(finished, newest, active_s)
    return run


def _local_run(kind: str, folder: Path, root: Path, active_s: float) -> Run:
    name = str(folder.relative_to(root)) if folder != root else folder.name
    run = Run(name=name, path=folder, source=kind, config=_newest_config(folder))
    files = [folder / "metrics.csv"] if kind == "csv" else []
    if kind == "csv":
        run.metrics, run.epochs = _csv_metrics(folder / "metrics.csv", run.history)
        run.epochs = None if run.epochs is None else run.epochs + 1
    evaluated, eval_epoch = _evaluation_metrics(folder, run.history)
    run.metrics.update(evaluated)
    if eval_epoch is not None:
        run.epochs = max(run.epochs or 0, eval_epoch + 1)
    files += list((folder / "evaluation").glob("*.json"))
    run.max_epochs = _max_epochs(run.config)
    newest = max((p.stat().st_mtime for p in files if p.exists()), default=0.0)
    run.status = _recorded_status(folder, newest, active_s)
    if run.status is None and _evaluated_only(folder):
        run.status, run.epochs = "evaluated", None
    elif run.status is None:
        run.status = _status(_reached_max(run.epochs, run.max_epochs), newest, active_s)
    return run


# ----------------------------------------------------------------------------- the table

def add_set_means(run: Run) -> None:
    """Add ``<stage>/<dataset>/mean/<metric>`` where only per-set values were logged, with the
    evaluation protocol's own regrouping and mean."""
    from ..evaluation.protocol import MEAN, mean_over_sets, results_from_metrics

    pairs = {(m["stage"], m["dataset"]) for k in run.metrics if (m := _METRIC.match(k))}
    for stage, dataset in sorted(pairs):
        sets = results_from_metrics(run.metrics, stage, dataset)
        sets.pop(MEAN, None)
        for metric, value in mean_over_sets(sets).items():
            key = f"{stage}/{dataset}/{MEAN}/{metric}"
            if key not in run.metrics and math.isfinite(value):
                run.metrics[key] = value
        # The same per epoch, for the plots, where only per-set values were logged.
        prefix = f"{stage}/{dataset}/"
        per_set = {k: h for k, h in run.history.items() if k.startswith(prefix)}
        for epoch in sorted({e for h in per_set.values() for e in h}):
            at_epoch = {k: h[epoch][-1] for k, h in per_set.items() if h.get(epoch)}
            sets = results_from_metrics(at_epoch, stage, dataset)
            sets.pop(MEAN, None)
            for metric, value in mean_over_sets(sets).items():
                key = f"{prefix}{MEAN}/{metric}"
                if epoch not in run.history.get(key, {}) and math.isfinite(value):
                    run.history.setdefault(key, {})[epoch] = [value]


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(value, list) and any(isinstance(v, dict) for v in value):
        out = {}
        for i, v in enumerate(value):
            out.update(_flatten(v, f"{prefix}{i}."))
        return out
    return {prefix[:-1]: value}


def _comparable(config: dict) -> dict[str, Any]:
    flat = _flatten({k: v for k, v in config.items() if k != "config"})  # the files given
    return {k: v for k, v in flat.items()
            if not k.startswith("trainer.logger") and k.split(".")[-1] not in _LOCATION_KEYS}


def mark_differences(runs: list[Run], base: dict | None = None) -> None:
    """Set each run's ``differs``: the settings that differ from ``base``, or (without one)
    the settings whose values are not the same in every run that has a config."""
    flats = [_comparable(r.config) if r.config else None for r in runs]
    ref = _comparable(base) if base is not None else {}
    if base is not None:
        order = dict.fromkeys([*ref, *(k for f in flats if f for k in f)])  # base's order
        keys = [k for k in order if any(f and f.get(k) != ref.get(k) for f in flats)]
    else:
        with_config = [f for f in flats if f]
        union = list(dict.fromkeys(k for f in with_config for k in f))  # config order
        keys = [k for k in union if len({json.dumps(f.get(k)) for f in with_config}) > 1]
    # A chosen class shows as its owner's name and the class's: `loss=TCC`, not
    # `class_path=mvf_lightning.losses.TCC`.
    shown = {k: k.removesuffix(".class_path") for k in keys}
    short = _short_keys(list(dict.fromkeys(shown.values())))
    for run, flat in zip(runs, flats):
        if flat is None:
            run.differs = "(no config)"
            continue
        changed = [k for k in keys if base is None or flat.get(k) != ref.get(k)]
        run.differs = " ".join(f"{short[shown[k]]}={_format(flat.get(k), k)}" for k in changed)


def _format(value: Any, key: str = "") -> str:
    if key.endswith("class_path") and isinstance(value, str):
        return value.rsplit(".", 1)[-1]
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ",".join(_format(v) for v in value) + "]"
    return "-" if value is None else str(value)


def _table_columns(runs: list[Run]) -> list[str]:
    """Markdown columns: the final training loss and each evaluation mean."""
    keys = {k for r in runs for k in r.metrics}
    means = sorted(k for k in keys if (m := _METRIC.match(k)) and m["set"] == "mean")
    return [k for k in ("train/loss",) if k in keys] + means


def to_rows(runs: list[Run], all_metrics: bool) -> list[dict[str, Any]]:
    columns = sorted({k for r in runs for k in r.metrics}) if all_metrics else _table_columns(runs)
    rows = []
    for run in runs:
        epochs = "-" if run.epochs is None else str(run.epochs)
        if run.max_epochs is not None:
            epochs += f"/{run.max_epochs}"
        row = {"run": run.name, "status": run.status, "differs": run.differs, "epochs": epochs}
        row.update({c: run.metrics.get(c) for c in columns})
        if all_metrics:
            row.update(path=str(run.path), run_id=run.run_id or "", source=run.source)
        rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no runs found)"
    header = list(rows[0])

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "nan" if math.isnan(v) else f"{v:.4f}"
        return "-" if v in (None, "") else str(v).replace("|", "\\|")

    titles = [re.sub(r"^val/", "", h).replace("/mean/", " ") for h in header]
    lines = ["| " + " | ".join(titles) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(r[h]) for h in header) + " |" for r in rows]
    return "\n".join(lines)


def plot_labels(runs: Sequence[Run]) -> list[str]:
    """Each run's label in the pictures: the settings that differ between the runs (what
    :func:`mark_differences` found), else its name; with its name too where two runs would
    read the same."""
    labels = [r.differs if r.differs and r.differs != "(no config)" else r.name for r in runs]
    repeated = {label for label in labels if labels.count(label) > 1}
    return [f"{r.name}: {label}" if label in repeated and label != r.name else label
            for r, label in zip(runs, labels)]


def plot_metrics(runs: Sequence[Run], all_metrics: bool) -> list[str]:
    """The metrics drawn: the table's (final training loss, each evaluation mean), or every
    metric any run logged with ``--all-metrics``."""
    if all_metrics:
        return sorted({k for r in runs for k in (*r.metrics, *r.history)})
    return _table_columns(list(runs))


def write_plots(runs: Sequence[Run], out_dir: Path, all_metrics: bool = False) -> list[Path]:
    """``<out_dir>/<metric>.png`` (each metric over the epochs, one line per run) and
    ``<out_dir>/final_values.png`` (a bar chart of the final values); runs with no metric at
    all (unreadable ones) are left out. Returns the files written."""
    from ..visualization.run_plots import RunCurves, plot_runs

    runs = list(runs)
    labels = dict(zip(map(id, runs), plot_labels(runs)))
    drawn = [r for r in runs if r.metrics or r.history]
    metrics = plot_metrics(drawn, all_metrics)
    curves = []
    for run in drawn:
        series = {m: run.series(m) for m in metrics}
        averaged = {m for m in metrics if any(len(v) > 1 for v in run.history.get(m, {}).values())}
        curves.append(RunCurves(label=labels[id(run)], curves=series,
                                final={m: run.metrics[m] for m in metrics if m in run.metrics},
                                averaged=averaged))
    settings = any(r.differs and r.differs != "(no config)" for r in drawn)
    title = "run (settings that differ)" if settings else "run"
    return plot_runs(curves, metrics, out_dir, legend_title=title)


def write_out(rows: list[dict[str, Any]], path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise ExistingFileError(f"results: {path} exists (add --overwrite to replace it)")
    if path.suffix == ".json":
        text = json.dumps(rows, indent=2, allow_nan=True)
    elif path.suffix == ".csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["run"])
        writer.writeheader()
        writer.writerows(rows)
        text = buf.getvalue()
    else:
        raise ConfigError(f"results --out {path}: expected a .csv or .json file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mvf_lightning results",
        description="Collect finished, running and failed runs into one table "
        "(Markdown on stdout).",
    )
    parser.add_argument("runs_dirs", nargs="+", type=Path, help="folders holding runs")
    parser.add_argument("--out", type=Path, help="also write every metric to a .csv or .json")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--base", type=Path,
                        help="resolved config to diff against (e.g. from --print_config); "
                        "default: the settings that differ between the runs")
    parser.add_argument("--all-metrics", action="store_true",
                        help="every metric (per evaluation set too) in the Markdown table")
    parser.add_argument("--active-minutes", type=float, default=10.0,
                        help="an unfinished run written to this recently counts as running")
    parser.add_argument("--plot", type=Path, metavar="DIR",
                        help="also draw PNGs into DIR: each metric over the epochs (one line "
                        "per run) and final_values.png, a bar chart of the final values; "
                        "the table's metrics, every metric with --all-metrics (replaces "
                        "earlier pictures of the same names)")
    args = parser.parse_args(argv)
    runs = collect_runs(args.runs_dirs, args.active_minutes)
    for run in runs:
        add_set_means(run)
    mark_differences(runs, _load_yaml(args.base) if args.base else None)
    print(markdown(to_rows(runs, args.all_metrics)))
    if args.out:
        write_out(to_rows(runs, all_metrics=True), args.out, args.overwrite)
        print(f"\nwrote {len(runs)} runs to {args.out}", file=sys.stderr)
    if args.plot:
        written = write_plots(runs, args.plot, args.all_metrics)
        if written:
            drawn = sum(1 for r in runs if r.metrics or r.history)
            print(f"drew {len(written) - 1} metrics over the epochs and the final values of "
                  f"{drawn} run{'' if drawn == 1 else 's'}: {args.plot}/", file=sys.stderr)
        else:
            print(f"results --plot: no metrics to draw; nothing written to {args.plot}",
                  file=sys.stderr)
    return 0
