"""Launchers as config: joblib (parallel processes), submitit local, and the SLURM settings."""

import json
import os
import re
from datetime import datetime
from pathlib import Path

import pytest
from conftest import cli, compose_cfg
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.plugins import Plugins
from omegaconf import OmegaConf

from litlab.config import config_dir
from litlab.report import read_sweep
from litlab.resources import parallel_jobs, usable_cores

TINY = ["print_config=false", "debug=limit"]


def run_sweep(tmp_path: Path, *overrides: str) -> Path:
    cli("litlab-train", "-m", *TINY, *overrides, cwd=tmp_path)
    (sweep_dir,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    return sweep_dir


def log_span(job: Path) -> tuple[datetime, datetime]:
    stamps = re.findall(r"^\[([\d-]+ [\d:,]+)\]", (job / "train.log").read_text(), flags=re.M)
    return tuple(datetime.strptime(s, "%Y-%m-%d %H:%M:%S,%f") for s in (stamps[0], stamps[-1]))


def check_own_directories(sweep_dir: Path, seeds: list[int], suffix: str = "") -> list[Path]:
    """Each job's files name its own directory and its own seed: nothing crossed over."""
    jobs = sorted((p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()), key=lambda p: p.name)
    assert [p.name for p in jobs] == [f"{i}_debug=limit,seed={s}{suffix}" for i, s in enumerate(seeds)]
    for job, seed in zip(jobs, seeds, strict=True):
        summary = json.loads((job / "metrics.json").read_text())
        assert summary["run_dir"] == str(job) and Path(summary["best_checkpoint"]).parent == job / "checkpoints"
        assert OmegaConf.load(job / ".hydra" / "config.yaml").seed == seed
        assert f"seed={seed}" in OmegaConf.to_container(OmegaConf.load(job / ".hydra" / "overrides.yaml"))
    return jobs


@pytest.mark.slow
def test_joblib_runs_jobs_in_parallel_processes_with_split_threads(tmp_path):
    # Jobs long enough (30 short epochs, ~2 s) to overlap whatever the spread of their start-ups.
    sweep_dir = run_sweep(
        tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=1,2", "trainer.max_epochs=30"
    )
    jobs = check_own_directories(sweep_dir, [1, 2], ",trainer.max_epochs=30")
    # Two worker processes (the pid is in each event file's name) whose runs overlapped in time.
    pids = {re.search(r"\.(\d+)\.\d+$", f.name)[1] for job in jobs for f in job.glob("events.out.tfevents.*")}
    assert len(pids) == 2 and str(os.getpid()) not in pids
    (start_0, end_0), (start_1, end_1) = map(log_span, jobs)
    assert start_0 < end_1 and start_1 < end_0, "the two jobs did not run at the same time"
    threads = max(1, usable_cores() // 2)
    for job in jobs:
        assert f"{threads} torch thread(s) for this job" in (job / "train.log").read_text()


@pytest.mark.slow
def test_submitit_local_runs_each_job_in_its_own_process(tmp_path):
    sweep_dir = run_sweep(tmp_path, "hydra/launcher=submitit_local", "seed=1,2")
    check_own_directories(sweep_dir, [1, 2])
    assert list((sweep_dir / ".submitit").iterdir()), "submitit's job folders"
    assert [j.status for j in read_sweep(sweep_dir)] == ["completed", "completed"]  # .submitit is not a job


# Our launcher configs extend the plugins' on purpose; litlab.jobs silences this outside pytest.
SCHEMA_NOTICE = r"ignore:\s*'hydra/launcher/\w+' is validated against ConfigStore schema"


@pytest.mark.filterwarnings(SCHEMA_NOTICE)
def test_joblib_default_n_jobs_and_threads(tmp_path):
    compose_cfg(["hydra/launcher=joblib"], tmp_path / "run")
    launcher = HydraConfig.get().launcher
    assert launcher.n_jobs == parallel_jobs() == min(4, usable_cores())
    assert launcher._target_.endswith("JoblibLauncher")


@pytest.mark.filterwarnings(SCHEMA_NOTICE)
def test_slurm_launcher_and_trainer_follow_the_allocation(tmp_path):
    overrides = ["hydra/launcher=submitit_slurm", "trainer=slurm", "hydra.launcher.partition=gpu"]
    overrides += ["hydra.launcher.gpus_per_node=4", "hydra.launcher.nodes=2", "hydra.launcher.timeout_min=30"]
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    launcher = cfg.hydra.launcher
    assert (launcher.partition, launcher.gpus_per_node, launcher.tasks_per_node, launcher.nodes) == ("gpu", 4, 4, 2)
    # One DDP process per allocated GPU, across the nodes: what Lightning checks against SLURM_NTASKS.
    assert (cfg.trainer.strategy, cfg.trainer.accelerator, cfg.trainer.devices, cfg.trainer.num_nodes) == (
        "ddp",
        "gpu",
        4,
        2,
    )
    plugin = Plugins.instance()._instantiate(launcher)
    assert type(plugin).__name__ == "SlurmLauncher"
    assert plugin.params["timeout_min"] == 30 and plugin.params["tasks_per_node"] == 4


def test_long_overrides_make_a_valid_directory_name():
    from litlab.config import _dirname

    long = ",".join(f"model.net.key_{i}=0.123456789" for i in range(20))
    assert len(_dirname(long).encode()) <= 203 and _dirname(long).startswith("model.net.key_0=")
    assert _dirname("model/optimizer=sgd,seed=1") == "model.optimizer=sgd,seed=1"
