"""A real multirun with a failing job: job directories, the error record, the report, TensorBoard."""

import csv
import json
import shutil
import socket
import statistics
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from conftest import BIN, FAST, cli, compose_cfg

from litlab.jobs import run_job
from litlab.report import main as report_main
from litlab.report import report

# seed=oops fails the job's config check, after Hydra made the job's directory: one failing job per model.
# A Hydra flag the check does not follow (--config-name) skips litlab's check before Hydra starts,
# which would refuse the whole sweep (test_validate); so the job meets it as it would meet a failure
# only the job can see.
SWEEP = ["-m", "--config-name", "train", "print_config=false", "debug=limit", "model=mlp,cnn", "seed=1,2,oops"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    cwd = tmp_path_factory.mktemp("sweep")
    proc = cli("litlab-train", *SWEEP, cwd=cwd, check=False)
    (sweep_dir,) = (cwd / "logs" / "train" / "multiruns").iterdir()
    return proc, sweep_dir


def jobs(sweep_dir: Path) -> dict[str, Path]:
    return {p.name: p for p in sweep_dir.iterdir() if p.is_dir()}


def test_every_job_is_a_complete_run_directory(sweep):
    _, sweep_dir = sweep
    names = sorted(jobs(sweep_dir), key=lambda n: int(n.split("_")[0]))
    combos = [(m, s) for m in ("mlp", "cnn") for s in (1, 2, "oops")]
    assert names == [f"{i}_debug=limit,model={m},seed={s}" for i, (m, s) in enumerate(combos)]
    for name, job in jobs(sweep_dir).items():
        if name.endswith("oops"):
            continue
        summary = json.loads((job / "metrics.json").read_text())
        # Each job wrote only into its own directory, with its own config.
        assert summary["run_dir"] == str(job)
        assert Path(summary["best_checkpoint"]).parent == job / "checkpoints"
        ckpt = torch.load(job / "checkpoints" / "last.ckpt", weights_only=True)
        model, seed = name.split(",")[1:]
        assert f"model={ckpt['config']['model']['net']['arch']}" == model and f"seed={ckpt['config']['seed']}" == seed
        assert list(job.glob("events.out.tfevents.*")) and (job / ".hydra" / "config.yaml").is_file()
        assert "test/acc" in summary["metrics"]


def test_failing_job_is_recorded_and_does_not_stop_the_others(sweep):
    proc, sweep_dir = sweep
    assert proc.returncode == 1, "a sweep with a failed job exits non-zero, after all jobs ran"
    failed = {n: p for n, p in jobs(sweep_dir).items() if n.endswith("oops")}
    assert set(failed) == {"2_debug=limit,model=mlp,seed=oops", "5_debug=limit,model=cnn,seed=oops"}
    for job in failed.values():
        summary = json.loads((job / "metrics.json").read_text())
        assert summary["status"] == "failed" and "ConfigError" in summary["error"] and "seed=oops" in summary["error"]
        assert "Traceback" in (job / "error.txt").read_text()
    # The cnn jobs after the failed mlp job still ran to the end.
    assert (sweep_dir / "3_debug=limit,model=cnn,seed=1" / "checkpoints" / "last.ckpt").is_file()
    # The sweep ends with the first failure in one line, no traceback (each job's is in its error.txt).
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "litlab: error: job 2_debug=limit,model=mlp,seed=oops failed: seed=oops: must be an integer" in proc.stderr


def test_failed_job_reraises_after_recording(tmp_path):
    cfg = compose_cfg([*FAST], tmp_path / "run")

    def broken(cfg):
        raise RuntimeError("deliberate")

    with pytest.raises(RuntimeError, match="deliberate"):
        run_job(broken, cfg)
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary == {"run_dir": str(tmp_path / "run"), "status": "failed", "error": "RuntimeError: deliberate"}
    assert "raise RuntimeError" in (tmp_path / "run" / "error.txt").read_text()


def test_a_failure_on_another_rank_keeps_its_own_traceback(tmp_path, monkeypatch):
    """Rank 0 records the run (often only "connection closed by peer"); the failing rank's cause lies beside it."""
    from litlab.jobs import error_file, record_failure

    monkeypatch.setenv("RANK", "1")
    try:
        raise AttributeError("the cause")
    except AttributeError as e:
        record_failure(tmp_path, e)
    assert "AttributeError: the cause" in (tmp_path / "error-rank1.txt").read_text()
    assert error_file(tmp_path) == tmp_path / "error-rank1.txt"  # what that rank's one-line error names
    assert not (tmp_path / "metrics.json").exists() and not (tmp_path / "error.txt").exists()


@pytest.mark.slow
def test_single_run_error_exits_nonzero_and_is_recorded(tmp_path):
    # A value no config check can see: the data refuses its split when it loads, after the run directory exists.
    proc = cli("litlab-train", "print_config=false", "data.val_split=0.9", cwd=tmp_path, check=False)
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()  # no traceback on the terminal: it is in error.txt
    assert "leaves no training samples" in line and "error.txt" in line
    (run_dir,) = (tmp_path / "logs" / "train" / "runs").iterdir()
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "failed"


def test_report_ranks_groups_and_lists_failures(sweep):
    _, sweep_dir = sweep
    proc = cli("litlab-report", cwd=sweep_dir.parents[3])  # default: the newest sweep under ./logs
    text = (sweep_dir / "report.md").read_text()
    assert text.split("![curves")[0].strip() in proc.stdout
    assert "6 jobs (4 completed, 2 failed), sorted by val/loss_best (min)" in text
    assert (sweep_dir / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    rows = list(csv.DictReader((sweep_dir / "report.csv").open()))
    assert [r["status"] for r in rows] == ["completed"] * 4 + ["failed"] * 2
    values = [float(r["val/loss_best"]) for r in rows[:4]]
    assert values == sorted(values)
    assert all("oops" in r["error"] for r in rows[4:])

    # Grouped over seeds: mean ± std of the two seeds of each model, n = 2.
    grouped = text.split("## Grouped over seeds")[1].split("## Failed jobs")[0]
    for model in ("mlp", "cnn"):
        seeds = [float(r["val/loss_best"]) for r in rows if r["model"] == model and r["status"] == "completed"]
        row = next(line for line in grouped.splitlines() if line.startswith(f"| model={model} |"))
        assert f"| 2 | {statistics.fmean(seeds):.4g} ± {statistics.stdev(seeds):.2g} |" in row
    failed = text.split("## Failed jobs")[1]
    assert "model=mlp,seed=oops" in failed and "must be an integer" in failed


def test_report_on_a_sweep_still_running(sweep, tmp_path):
    _, sweep_dir = sweep
    partial = tmp_path / "partial"
    shutil.copytree(sweep_dir, partial)
    # A job that has started but not finished: Hydra's record and some curves, no metrics.json yet.
    (partial / "4_debug=limit,model=cnn,seed=2" / "metrics.json").unlink()
    shutil.rmtree(partial / "5_debug=limit,model=cnn,seed=oops")  # not started yet
    result = report(partial)
    status = {j.path.name.split("_")[0]: j.status for j in result.jobs}
    assert status == {"0": "completed", "1": "completed", "2": "failed", "3": "completed", "4": "running"}
    assert "| 4 | model=cnn,seed=2 | running |" in (partial / "report.md").read_text()
    assert (partial / "report.png").is_file()


def test_report_survives_damaged_jobs_and_groups_a_seed_only_sweep(sweep, tmp_path):
    _, sweep_dir = sweep
    partial = tmp_path / "partial"
    shutil.copytree(sweep_dir, partial, ignore=shutil.ignore_patterns("*model=cnn*", "*oops*"))
    names = sorted(p.name for p in partial.iterdir() if p.is_dir())
    assert names == ["0_debug=limit,model=mlp,seed=1", "1_debug=limit,model=mlp,seed=2"]
    text = report(partial).markdown()
    grouped = text.split("## Grouped over seeds")[1]
    assert "| (only the seed differs) | 2 |" in grouped, "both seeds in one group, not one group per job"

    shutil.copytree(sweep_dir, partial / "damaged")
    damaged = partial / "damaged"
    (damaged / "0_debug=limit,model=mlp,seed=1" / "metrics.json").write_text("[]")
    (damaged / "1_debug=limit,model=mlp,seed=2" / ".hydra" / "overrides.yaml").write_text("- [unclosed\n")
    summary = json.loads((damaged / "3_debug=limit,model=cnn,seed=1" / "metrics.json").read_text())
    summary["metrics"]["test/acc"] = None
    (damaged / "3_debug=limit,model=cnn,seed=1" / "metrics.json").write_text(json.dumps(summary))
    result = report(damaged)
    status = {j.path.name.split("_")[0]: j.status for j in result.jobs}
    assert status == {
        "0": "unreadable",
        "1": "unreadable",
        "2": "failed",
        "3": "completed",
        "4": "completed",
        "5": "failed",
    }
    failed = result.markdown().split("## Failed jobs")[1]
    assert "metrics.json: not litlab's summary object" in failed and ".hydra/overrides.yaml:" in failed


def test_report_bad_input(sweep, tmp_path, capsys):
    assert report_main([str(tmp_path / "nope")]) == 2
    assert "nope does not exist" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert report_main([str(tmp_path / "file")]) == 2
    assert "is a file, not a multirun directory" in capsys.readouterr().err
    assert report_main([str(sweep[1]), "--metric", "val/acc_bset", "--no-plot"]) == 2
    assert "--metric val/acc_bset: no job has it; choose one of test/acc," in capsys.readouterr().err
    assert report_main(["--log-dir", str(tmp_path)]) == 2
    assert "no sweep under" in capsys.readouterr().err
    assert report_main([str(tmp_path)]) == 2
    assert "holds no job directories" in capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, data: dict | None = None) -> object:
    body = json.dumps(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_tensorboard_server_lists_runs_tags_images_and_hparams(sweep):
    _, sweep_dir = sweep
    port = free_port()
    args = ["--logdir", str(sweep_dir), "--host", "127.0.0.1", "--port", str(port), "--reload_interval", "0"]
    server = subprocess.Popen([str(BIN / "tensorboard"), *args, "--load_fast", "false"], stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/data"
    done = sorted(n for n in jobs(sweep_dir) if not n.endswith("oops"))
    try:
        deadline, runs = time.monotonic() + 90, []
        while time.monotonic() < deadline and sorted(runs) != done:
            time.sleep(0.5)
            try:
                runs = get(f"{url}/runs")
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()[-2000:]
        # Each job is a run named by its overrides.
        assert sorted(runs) == done
        scalars = get(f"{url}/plugin/scalars/tags")
        images = get(f"{url}/plugin/images/tags")
        for run in done:
            assert {"train/loss", "val/loss", "val/acc", "test/acc", "val/loss_best"} <= set(scalars[run])
            assert {"val/confusion_matrix", "test/misclassified"} <= set(images[run])
        # The HParams tab: every job with its hyperparameters and final metrics.
        experiment = get(f"{url}/plugin/hparams/experiment", {"experimentName": ""})
        hparams = {h["name"]: h for h in experiment["hparamInfos"]}
        # The union of all jobs' hparams (mlp's hidden_sizes and cnn's channels), the swept ones marked.
        assert {"model.net.hidden_sizes", "model.net.channels", "model.optimizer.lr", "data.batch_size"} <= set(hparams)
        assert hparams["seed"]["differs"] and hparams["model.net.arch"]["differs"]
        assert {"test/acc", "val/loss_best"} <= {m["name"]["tag"] for m in experiment["metricInfos"]}
        query = {"experimentName": "", "sliceSize": 100, "includeMetrics": True, "colParams": []}
        query["allowedStatuses"] = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]
        groups = get(f"{url}/plugin/hparams/session_groups", query)
        sessions = {s["name"]: s for g in groups["sessionGroups"] for s in g["sessions"]}
        assert sorted(sessions) == done
        for run in done:
            values = {m["name"]["tag"]: m["value"] for m in sessions[run]["metricValues"]}
            expected = json.loads((sweep_dir / run / "metrics.json").read_text())["metrics"]["test/acc"]
            assert values["test/acc"] == pytest.approx(expected)
    finally:
        server.kill()
        server.wait(timeout=10)


@pytest.mark.slow
def test_report_compares_single_runs_too(tmp_path):
    for seed in (1, 2):
        cli("litlab-train", *FAST, "debug=fast_dev_run", "logger=none", f"seed={seed}", cwd=tmp_path)
    runs = tmp_path / "logs" / "train" / "runs"
    assert report_main([str(runs), "--no-plot"]) == 0
    text = (runs / "report.md").read_text()
    assert "2 jobs (2 completed)" in text
    rows = [line.split(" | ")[:2] for line in text.splitlines() if " | seed=" in line]
    # A single run's row is named by its directory (a sweep's by its job number).
    dirs = [d for d in runs.iterdir() if d.is_dir()]
    expected = [[f"| {d.name}", f"seed={json.loads((d / 'metrics.json').read_text())['seed']}"] for d in dirs]
    assert sorted(rows) == sorted(expected) and len(rows) == 2


def test_an_error_in_a_dataloader_worker_is_named_by_its_own_message():
    """torch wraps it as "Caught ValueError in DataLoader worker process 0." and the worker's traceback."""
    from litlab.jobs import headline

    wrapped = ValueError(
        "Caught ValueError in DataLoader worker process 1.\nOriginal Traceback (most recent call last):\n"
        '  File "folder.py", line 40, in read_checked\nValueError: cat/21.png has shape [3, 16, 16]\n'
    )
    assert headline(wrapped) == "cat/21.png has shape [3, 16, 16] (in DataLoader worker 1)"
    assert headline(ValueError("first\nsecond")) == "first ..."


def test_report_curves_come_from_csv_logs_too(tmp_path):
    """A logger=csv sweep drew an empty plot (and a legend warning): its curves are in csv/metrics.csv."""
    from litlab.report import read_curve

    (tmp_path / "csv").mkdir()
    table = "epoch,step,train/loss_step,val/loss\n0,3,2.5,\n0,4,,1.75\n1,9,,1.5\n"
    (tmp_path / "csv" / "metrics.csv").write_text(table)
    assert read_curve(tmp_path, "val/loss") == ([4, 9], [1.75, 1.5])
    assert read_curve(tmp_path / "csv", "val/loss") == ([], [])  # neither events nor a table


def test_report_common_overrides_paste_back(tmp_path):
    """ "Common to all jobs" dropped the + of added keys: pasted back, the command line was refused."""
    from omegaconf import OmegaConf

    for n, seed in enumerate((1, 2)):
        job = tmp_path / f"{n}_seed={seed}"
        (job / ".hydra").mkdir(parents=True)
        OmegaConf.save(
            OmegaConf.create(["+trainer.num_nodes=1", "~callbacks.ema", f"seed={seed}"]),
            job / ".hydra" / "overrides.yaml",
        )
        (job / "metrics.json").write_text(json.dumps({"metrics": {"val/loss_best": 1.0 + n}}))
    text = report(tmp_path, plot=False).markdown()
    assert "Common to all jobs: +trainer.num_nodes=1 ~callbacks.ema\n" in text


def test_report_names_damaged_files_and_covers_the_other_jobs(tmp_path, capsys):
    """A curve table without steps, a binary error.txt: a traceback (KeyError 'step', a codec error), no report."""
    from omegaconf import OmegaConf

    tables = {
        "0_seed=1": "epoch,step,val/loss\n0,4,1.75\n1,9,1.5\n",
        "1_seed=2": "epoch,val/loss\n0,1.75\n",  # no step column
        "2_seed=3": "epoch,step,val/loss\n0,4,1.75\n1,nine,1.5\n",
        "3_seed=4": "",
    }
    for n, (name, table) in enumerate(tables.items()):
        job = tmp_path / name
        (job / ".hydra").mkdir(parents=True)
        (job / "csv").mkdir()
        OmegaConf.save(OmegaConf.create([f"seed={n + 1}"]), job / ".hydra" / "overrides.yaml")
        (job / "csv" / "metrics.csv").write_text(table)
        if n < 3:
            (job / "metrics.json").write_text(json.dumps({"metrics": {"val/loss_best": 1.0 + n}}))
    (tmp_path / "3_seed=4" / "error.txt").write_bytes(b"\x80\x04\x95binary\xff")
    assert report_main([str(tmp_path), "--no-plot"]) == 0
    assert "| 3 | seed=4 | unreadable | error.txt: not UTF-8 text (byte 0) |" in capsys.readouterr().out
    result = report(tmp_path, plot=False)
    result.read_curves()  # as report() does with its plot, before report.md (the plot itself is slow)
    assert result.curves[tmp_path / "0_seed=1"] == ([4, 9], [1.75, 1.5]), "the other jobs' curves are drawn"
    text = result.markdown()
    assert "4 jobs (3 completed, 1 unreadable)" in text
    assert f"job 1: {tmp_path}/1_seed=2/csv/metrics.csv: no step column (columns: epoch, val/loss)" in text
    assert f"job 2: {tmp_path}/2_seed=3/csv/metrics.csv: line 3: step='nine', val/loss='1.5'" in text

    # A damaged sweep-level file: one line naming it, exit 2, the report written before kept as it was.
    before = (tmp_path / "report.md").read_text()
    (tmp_path / "multirun.yaml").write_text("hydra: [unclosed\n")
    assert report_main([str(tmp_path), "--no-plot"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"litlab-report: {tmp_path}/multirun.yaml: not readable YAML (") and err.count("\n") == 1
    assert (tmp_path / "report.md").read_text() == before


def test_the_newest_sweep_is_the_one_started_last(tmp_path):
    """A named sweep (hydra.sweep.dir=.../multiruns/lr_search) sorted after every timestamp, for good."""
    import os
    from datetime import datetime

    from litlab.report import newest_sweep

    named = tmp_path / "train" / "multiruns" / "lr_search"
    stamped = tmp_path / "train" / "multiruns" / "2026-11-26_18-00-00_000000"
    for sweep in (named, stamped):
        sweep.mkdir(parents=True)
        (sweep / "multirun.yaml").write_text("hydra: {}\n")
    stamp = datetime.strptime(stamped.name, "%Y-%m-%d_%H-%M-%S_%f").timestamp()
    os.utime(named / "multirun.yaml", (stamp - 60, stamp - 60))
    assert newest_sweep(tmp_path) == stamped
    os.utime(named / "multirun.yaml", (stamp + 60, stamp + 60))
    assert newest_sweep(tmp_path) == named
