"""``litlab-report [SWEEP_DIR]``: a sweep's jobs in one table, grouped over seeds, with plots.

A folder of single runs (``logs/train/runs``) is read the same way: its runs side by side.

Reads each job directory as it is (``metrics.json``, ``error.txt``, ``.hydra/overrides.yaml``,
TensorBoard events), so it works on a sweep that is still running and on one whose jobs
crashed. Writes ``report.md``, ``report.csv`` and ``report.png`` into the sweep directory.
"""

import argparse
import contextlib
import csv
import json
import math
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from litlab.jobs import ERROR_FILE
from litlab.runs import METRICS_FILE

#: Job states listed under "Failed jobs", with their error.
NOT_DONE = ("failed", "interrupted", "unreadable")


@dataclass
class Job:
    """One job directory of a sweep, as far as it got."""

    path: Path
    overrides: dict[str, str]
    status: str  # completed | running | one of NOT_DONE
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""

    @property
    def number(self) -> int:
        head = self.path.name.split("_", 1)[0]
        return int(head) if head.isdigit() else -1

    @property
    def tag(self) -> str:
        """The job's number in its sweep; a single run's directory name (``logs/train/runs/<timestamp>``)."""
        return str(self.number) if self.number >= 0 else self.path.name


def newest_sweep(log_dir: Path) -> Path:
    """The sweep under ``<log_dir>/<task_name>/multiruns/`` started last."""
    sweeps = [p for p in log_dir.glob("*/multiruns/*") if p.is_dir()]
    if not sweeps:
        raise FileNotFoundError(f"no sweep under {log_dir}/<task_name>/multiruns/: run `litlab-train -m ...` first")
    return max(sweeps, key=_started)


def _started(sweep: Path) -> float:
    """When a sweep started: its directory's timestamp name, else when Hydra wrote its multirun.yaml.

    Not the directory's own time, which each new job changes; a named sweep
    (``hydra.sweep.dir=.../multiruns/lr_search``) has no timestamp to read.
    """
    from datetime import datetime

    try:
        return datetime.strptime(sweep.name, "%Y-%m-%d_%H-%M-%S_%f").timestamp()
    except ValueError:
        started = sweep / "multirun.yaml"
        return (started if started.is_file() else sweep).stat().st_mtime


def as_override(key: str, value: str) -> str:
    """``key=value`` as on a command line (a deletion, ``~key``, has no value)."""
    return key if key.startswith("~") and not value else f"{key}={value}"


def read_overrides(job_dir: Path) -> dict[str, str]:
    """A job's overrides as key -> value (keys as given, ``+trainer.x``, ``~key``); ``ValueError`` if damaged."""
    from litlab.resume import stored_overrides

    if not (job_dir / ".hydra" / "overrides.yaml").is_file():
        return {}
    # Keys as given: the common line and the labels paste back as overrides.
    return dict((*o.split("=", 1), "")[:2] for o in stored_overrides(job_dir))


def read_job(job_dir: Path) -> Job:
    """The job as far as its files tell; files that do not parse make it ``unreadable``, naming them."""
    try:
        overrides = read_overrides(job_dir)
    except Exception as e:  # a YAML error of any kind: the report still covers the other jobs
        return Job(job_dir, {}, "unreadable", error=f".hydra/overrides.yaml: {str(e).splitlines()[0]}")
    summary: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):  # not written yet
        summary = json.loads((job_dir / METRICS_FILE).read_text())
    if not isinstance(summary, dict) or not isinstance(summary.get("metrics", {}), dict):
        return Job(job_dir, overrides, "unreadable", error=f"{METRICS_FILE}: not litlab's summary object")
    error_file = job_dir / ERROR_FILE
    # No metrics.json and no error.txt: still running (or killed without a trace).
    status = summary.get("status", "completed") if summary else "failed" if error_file.is_file() else "running"
    error = summary.get("error", "")
    if status != "completed" and not error and error_file.is_file():
        try:
            lines = error_file.read_text().strip().splitlines()
        except (OSError, ValueError) as e:  # not UTF-8 text (UnicodeDecodeError), unreadable
            return Job(job_dir, overrides, "unreadable", _numbers(summary), f"{ERROR_FILE}: {_reason(e)}")
        error = lines[-1] if lines else ""
    return Job(job_dir, overrides, status, _numbers(summary), error)


def _numbers(summary: dict[str, Any]) -> dict[str, float]:
    """The numbers of a ``metrics.json`` (a NaN is written as null: left out)."""
    return {k: float(v) for k, v in summary.get("metrics", {}).items() if isinstance(v, int | float)}


def _reason(error: Exception) -> str:
    """One line on why a file could not be read, without the path (the caller names the file)."""
    if isinstance(error, UnicodeDecodeError):
        return f"not UTF-8 text (byte {error.start})"
    if isinstance(error, OSError):
        return error.strerror or type(error).__name__
    return " ".join(str(error).split())


def read_sweep(sweep_dir: Path) -> list[Job]:
    """Every job that has started: directories holding Hydra's ``.hydra`` record."""
    jobs = [read_job(p) for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()]
    return sorted(jobs, key=lambda j: (j.number, j.path.name))


def swept_keys(jobs: list[Job]) -> list[str]:
    """Override keys whose value differs between jobs, in first-seen order."""
    keys = list(dict.fromkeys(k for j in jobs for k in j.overrides))
    return [k for k in keys if len({j.overrides.get(k) for j in jobs}) > 1]


def sweep_settings(sweep_dir: Path) -> dict[str, Any]:
    """From the sweep's ``multirun.yaml``: ``optimized_metric``, the search's direction, the monitor and mode."""
    path = sweep_dir / "multirun.yaml"
    if not path.is_file():
        return {}
    from omegaconf import DictConfig, OmegaConf

    import litlab.config  # noqa: F401  (registers the resolvers the stored config uses: best_of)

    try:
        cfg = OmegaConf.load(path)
    except Exception as e:  # a YAML error of any kind, or bytes that are not text
        raise ValueError(f"{path}: not readable YAML ({' '.join(str(e).split())})") from None
    if not isinstance(cfg, DictConfig):
        raise ValueError(f"{path}: not a Hydra config (a mapping of keys), but a {type(cfg).__name__}")
    keys = {"metric": "optimized_metric", "monitor": "callbacks.model_checkpoint.monitor"}
    keys |= {"mode": "callbacks.model_checkpoint.mode", "direction": "hydra.sweeper.direction"}
    return {k: OmegaConf.select(cfg, v, default=None, throw_on_resolution_failure=False) for k, v in keys.items()}


def direction(metric: str, settings: dict[str, Any]) -> str:
    """``min`` or ``max`` for ``metric``: the search's direction for the metric it optimized, the checkpoint's
    mode for ``<monitor>_best``, else the way the tasks' metrics of its name improve (``min`` for a name no
    task logs: ``--mode`` says otherwise)."""
    searched = str(settings.get("direction") or "")[:3]
    if metric == settings.get("metric") and searched in ("min", "max"):
        return searched
    if settings.get("monitor") and metric == f"{settings['monitor']}_best" and settings.get("mode") in ("min", "max"):
        return settings["mode"]
    from litlab.tasks import metric_modes

    return metric_modes().get(metric.split("/")[-1].removesuffix("_best"), "min")


def fmt(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.4g}"


def mean_std(values: list[float]) -> str:
    if not values:
        return ""
    if len(values) == 1:
        return fmt(values[0])
    return f"{statistics.fmean(values):.4g} ± {statistics.stdev(values):.2g}"


def table(header: list[str], rows: list[list[str]]) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *map(line, rows)])


@dataclass
class Report:
    sweep_dir: Path
    jobs: list[Job]
    metric: str
    mode: str
    #: Each job's curve of ``curve_tag()`` (``read_curves``): None until read.
    curves: dict[Path, tuple[list[int], list[float]]] | None = None
    #: Files of a job that could not be read for the plot, each naming the job and the file.
    unread: list[str] = field(default_factory=list)

    @property
    def swept(self) -> list[str]:
        return swept_keys(self.jobs)

    def label(self, job: Job) -> str:
        return self.setting(job) or job.path.name

    def setting(self, job: Job, skip: tuple[str, ...] = ()) -> str:
        """The job's swept overrides, but those in ``skip``."""
        return ",".join(f"{k}={job.overrides.get(k, '(default)')}" for k in self.swept if k not in skip)

    def metric_columns(self) -> list[str]:
        seen = dict.fromkeys(k for j in self.jobs for k in j.metrics if k.startswith("test/"))
        return [self.metric, *(k for k in seen if k != self.metric)]

    def ranked(self) -> list[Job]:
        """Completed jobs best first, then running ones, then the failed."""
        sign = 1 if self.mode == "min" else -1

        def key(job: Job) -> tuple[int, float, int]:
            value = job.metrics.get(self.metric)
            if job.status == "completed" and value is not None and not math.isnan(value):
                return (0, sign * value, job.number)
            return (1 if job.status == "running" else 2, 0.0, job.number)

        return sorted(self.jobs, key=key)

    def groups(self) -> list[tuple[str, list[Job]]]:
        """Completed jobs grouped by their swept overrides other than ``seed``."""
        if "seed" not in self.swept:
            return []
        groups: dict[str, list[Job]] = {}
        for job in self.jobs:
            if job.status == "completed":
                groups.setdefault(self.setting(job, skip=("seed",)) or "(only the seed differs)", []).append(job)
        sign = 1 if self.mode == "min" else -1
        values = {k: [j.metrics[self.metric] for j in v if self.metric in j.metrics] for k, v in groups.items()}
        return sorted(groups.items(), key=lambda kv: sign * statistics.fmean(values[kv[0]] or [math.inf * sign]))

    def markdown(self) -> str:
        counts = {s: sum(j.status == s for j in self.jobs) for s in ("completed", "running", *NOT_DONE)}
        common = {k: v for k, v in (self.jobs[0].overrides.items() if self.jobs else []) if k not in self.swept}
        columns = self.metric_columns()
        tally = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        out = [
            f"# Sweep report: {self.sweep_dir}",
            "",
            f"{len(self.jobs)} jobs ({tally}), sorted by {self.metric} ({self.mode}).",
        ]
        if common:
            out.append(f"Common to all jobs: {' '.join(as_override(k, v) for k, v in common.items())}")
        rows = [[j.tag, self.label(j), j.status, *(fmt(j.metrics.get(c)) for c in columns)] for j in self.ranked()]
        out += ["", "## Jobs", "", table(["#", "overrides", "status", *columns], rows)]
        if groups := self.groups():
            rows = [
                [name, str(len(jobs)), *(mean_std([j.metrics[c] for j in jobs if c in j.metrics]) for c in columns)]
                for name, jobs in groups
            ]
            out += ["", "## Grouped over seeds (mean ± std)", "", table(["overrides", "n", *columns], rows)]
        failed = [j for j in self.jobs if j.status in NOT_DONE]
        if failed:
            rows = [[j.tag, self.label(j), j.status, j.error] for j in failed]
            out += ["", "## Failed jobs", "", table(["#", "overrides", "status", "error"], rows)]
        if self.unread:
            out += ["", "## Files not read (their curves are not plotted)", "", *(f"- {u}" for u in self.unread)]
        return "\n".join(out) + "\n"

    def write_csv(self, path: Path) -> None:
        metrics = list(dict.fromkeys(k for j in self.jobs for k in sorted(j.metrics)))
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["job", "status", *self.swept, *metrics, "error"])
            for j in self.ranked():
                values = [j.metrics.get(m, "") for m in metrics]
                writer.writerow(
                    [j.path.name, j.status, *(j.overrides.get(k, "") for k in self.swept), *values, j.error]
                )

    def curve_tag(self) -> str:
        name = self.metric.removesuffix("_best")
        return name if name.startswith("val/") else "val/loss"

    def read_curves(self) -> None:
        """Every job's curve; a damaged file is named in ``unread``, and the other jobs' curves still drawn."""
        self.curves, tag = {}, self.curve_tag()
        for job in self.jobs:
            try:
                self.curves[job.path] = read_curve(job.path, tag)
            except ValueError as e:
                self.curves[job.path] = [], []
                self.unread.append(f"job {job.tag}: {e}")

    def plot(self, path: Path) -> None:
        """Validation curve of every job, and the metric against each swept numeric parameter."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        numeric = [
            k for k in self.swept if k != "seed" and all(_number(j.overrides.get(k)) is not None for j in self.jobs)
        ]
        fig, axes = plt.subplots(
            1,
            1 + len(numeric),
            figsize=(7 + 4 * len(numeric), 4.5),
            squeeze=False,
            width_ratios=[7] + [4] * len(numeric),
        )
        if self.curves is None:
            self.read_curves()
        assert self.curves is not None
        ax, tag, drawn = axes[0][0], self.curve_tag(), False
        for job in self.jobs:
            steps, values = self.curves[job.path]
            label = self.label(job)
            # Long labels (Optuna trials) would swamp the plot: the job number points to the table.
            if job.number >= 0:
                label = f"#{job.number}" + (f" {label}" if len(label) <= 40 else "")
            if steps:
                ax.plot(steps, values, marker=".", label=label + ("" if job.status == "completed" else " *"))
                drawn = True
        ax.set(xlabel="step", ylabel=tag, title=f"{tag} of every job (* not completed)")
        if not drawn:
            note = f"no job logged {tag}\n(logger=none, or none got to a validation)"
            ax.text(0.5, 0.5, note, ha="center", va="center", transform=ax.transAxes)
        elif len(self.jobs) <= 12:
            ax.legend(fontsize=7)
        done = [j for j in self.jobs if self.metric in j.metrics]
        for ax, key in zip(axes[0][1:], numeric, strict=True):
            xs = [_number(j.overrides[key]) for j in done]
            ax.scatter(xs, [j.metrics[self.metric] for j in done])
            positive = [x for x in xs if x and x > 0]
            if len(positive) == len(xs) and xs and max(xs) / min(xs) > 20:
                ax.set_xscale("log")
            ax.set(xlabel=key, ylabel=self.metric, title=f"{self.metric} vs {key}")
        fig.tight_layout()
        fig.savefig(path, dpi=80)
        plt.close(fig)


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def read_curve(job_dir: Path, tag: str) -> tuple[list[int], list[float]]:
    """The scalar ``tag`` from a job's TensorBoard events, else its ``logger=csv`` table (empty if neither has it)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    table = job_dir / "csv" / "metrics.csv"  # Lightning's CSVLogger, as conf/logger/csv.yaml places it
    if not list(job_dir.glob("events.out.tfevents.*")) and table.is_file():
        try:
            return _csv_curve(table, tag)
        except (OSError, ValueError, csv.Error) as e:  # UnicodeDecodeError too: the file is named
            raise ValueError(f"{table}: {_reason(e)}") from None

    acc = EventAccumulator(str(job_dir), size_guidance={"scalars": 0, "images": 1, "tensors": 1})
    acc.Reload()
    if tag not in acc.Tags()["scalars"]:
        return [], []
    events = acc.Scalars(tag)
    return [e.step for e in events], [e.value for e in events]


def _csv_curve(table: Path, tag: str) -> tuple[list[int], list[float]]:
    """``tag`` against ``step`` from a CSVLogger table; ``ValueError`` saying what in it is wrong."""
    steps: list[int] = []
    values: list[float] = []
    with open(table, newline="") as f:
        reader = csv.DictReader(f)
        for row in reader:
            if not row.get(tag):
                continue
            if "step" not in (reader.fieldnames or []):
                raise ValueError(f"no step column (columns: {', '.join(map(str, reader.fieldnames or []))})")
            try:
                steps.append(int(row["step"] or ""))
                values.append(float(row[tag]))
            except ValueError:
                got = f"step={row['step']!r}, {tag}={row[tag]!r}"
                raise ValueError(f"line {reader.line_num}: {got}, not an integer step and a number") from None
    return steps, values


def report(sweep_dir: Path, metric: str | None = None, mode: str | None = None, plot: bool = True) -> Report:
    """Read a sweep and write its report files next to its jobs."""
    if not sweep_dir.is_dir():
        what = "is a file, not a multirun directory" if sweep_dir.exists() else "does not exist"
        raise FileNotFoundError(f"sweep directory {sweep_dir} {what}")
    jobs = read_sweep(sweep_dir)
    if not jobs:
        raise FileNotFoundError(f"{sweep_dir} holds no job directories (with .hydra/): not a multirun or runs folder")
    settings = sweep_settings(sweep_dir)
    known = sorted({k for j in jobs for k in j.metrics})
    if metric and known and metric not in known:
        raise ValueError(f"--metric {metric}: no job has it; choose one of {', '.join(known)}")
    metric = metric or settings.get("metric") or "val/loss_best"
    result = Report(sweep_dir, jobs, metric, mode or direction(metric, settings))
    if plot:  # before report.md, which names a file that could not be read
        result.read_curves()
    (sweep_dir / "report.md").write_text(result.markdown() + "\n![curves and parameters](report.png)\n")
    result.write_csv(sweep_dir / "report.csv")
    if plot:
        result.plot(sweep_dir / "report.png")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="litlab-report", description=__doc__.splitlines()[0])
    parser.add_argument(
        "sweep_dir", nargs="?", type=Path, help="a multirun directory (default: the newest), or logs/<task>/runs"
    )
    parser.add_argument("--log-dir", type=Path, default=Path("logs"), help="where to look for the newest sweep")
    parser.add_argument("--metric", help="sort and group by this metric (default: the sweep's optimized_metric)")
    parser.add_argument("--mode", choices=("min", "max"), help="whether smaller or larger --metric is better")
    parser.add_argument("--no-plot", action="store_true", help="skip report.png")
    args = parser.parse_args(argv)
    try:
        sweep_dir = args.sweep_dir or newest_sweep(args.log_dir)
        result = report(sweep_dir, args.metric, args.mode, plot=not args.no_plot)
    except (FileNotFoundError, ValueError) as e:
        print(f"litlab-report: {e}", file=sys.stderr)
        return 2
    print(result.markdown())
    print(f"Written: {sweep_dir}/report.md, report.csv" + ("" if args.no_plot else ", report.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
