"""trainer=ddp_cpu: two gloo ranks from the command line and inside a multirun."""

import subprocess
from pathlib import Path

import pytest
from conftest import BIN, FAST, cli, read_metrics

pytestmark = pytest.mark.slow

TEST_SAMPLES = 359  # digits' test split: 180 + 179 samples on the two ranks


def one_tensorboard_run(run_dir: Path) -> None:
    events = list(run_dir.rglob("events.out.tfevents.*"))
    assert events and {e.parent for e in events} == {run_dir}


def test_ddp_cpu_run_matches_single_process_accuracy(tmp_path):
    for name in ("single", "ddp"):
        (tmp_path / name).mkdir()
    cli("litlab-train", *FAST, cwd=tmp_path / "single")
    ddp_cwd = tmp_path / "ddp"
    proc = cli("litlab-train", *FAST, "trainer=ddp_cpu", cwd=ddp_cwd)
    assert "Starting with 2 processes" in proc.stdout + proc.stderr
    (run_dir,) = (ddp_cwd / "logs" / "train" / "runs").iterdir()  # no directory from the second rank
    assert sorted(p.name for p in (ddp_cwd / "logs").rglob("metrics.json")) == ["metrics.json"]
    one_tensorboard_run(run_dir)
    acc = read_metrics(run_dir)["metrics"]["test/acc"]
    # Reduced across ranks: a fraction of the whole test set, not of one rank's 180 samples.
    assert abs(acc * TEST_SAMPLES - round(acc * TEST_SAMPLES)) < 1e-3
    (single_dir,) = (tmp_path / "single" / "logs" / "train" / "runs").iterdir()
    single_acc = read_metrics(single_dir)["metrics"]["test/acc"]
    assert abs(acc - single_acc) <= 0.01, (acc, single_acc)


def test_ddp_cpu_inside_a_multirun(tmp_path):
    cli("litlab-train", "-m", *FAST, "trainer=ddp_cpu", "seed=1,2", "trainer.max_epochs=2", cwd=tmp_path)
    logs = tmp_path / "logs" / "train"
    assert not (logs / "runs").exists(), "no stray run directory from a child rank"
    (sweep,) = (logs / "multiruns").iterdir()
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [j.name.split("_")[0] for j in jobs] == ["0", "1"]
    for job in jobs:
        assert read_metrics(job)["steps"] == 2 * 20  # 20 steps an epoch: each rank takes half the batches
        one_tensorboard_run(job)


def test_a_ddp_run_resumes(tmp_path):
    """Each rank restores; only rank 0 marks the TensorBoard file (the others' loggers hold no writer)."""
    cli("litlab-train", *FAST, "trainer=ddp_cpu", "trainer.max_epochs=1", cwd=tmp_path)
    (run_dir,) = (tmp_path / "logs" / "train" / "runs").iterdir()
    proc = cli("litlab-train", "ckpt_path=last", "trainer.max_epochs=2", cwd=tmp_path)
    assert "Resumed at step 20" in proc.stdout + proc.stderr
    assert read_metrics(run_dir)["steps"] == 2 * 20
    one_tensorboard_run(run_dir)


def test_a_ddp_run_resumed_mid_epoch_ends_with_the_same_metrics(tmp_path):
    """Each rank gets its own running train metrics back (they hold its share of the epoch so far)."""
    steps = [
        "trainer.max_epochs=2",
        "trainer.deterministic=true",
        "callbacks.model_checkpoint.every_n_train_steps=25",  # 20 steps an epoch per rank: mid epoch 2
        "callbacks.model_checkpoint.save_top_k=-1",
        "callbacks.model_checkpoint.filename='step_{step}'",
    ]
    cli("litlab-train", *FAST, "trainer=ddp_cpu", *steps, cwd=tmp_path)
    (run_dir,) = (tmp_path / "logs" / "train" / "runs").iterdir()
    whole = read_metrics(run_dir)["metrics"]
    cli("litlab-train", f"ckpt_path={run_dir / 'checkpoints' / 'step_25.ckpt'}", cwd=tmp_path)
    resumed = read_metrics(run_dir)["metrics"]
    assert {k: v for k, v in resumed.items() if k.startswith("train/")} == {
        k: v for k, v in whole.items() if k.startswith("train/")
    }
    assert resumed == whole


def torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2", "-m", "litlab.train", *args]
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-5000:]
    return proc


def test_torchrun_ranks_share_one_run_directory_and_resume_in_it(tmp_path):
    """Each rank composed its own ${now:...} run directory; a resume's overrides reached rank 0 only."""
    torchrun(*FAST, "trainer=ddp_cpu", "trainer.max_epochs=1", cwd=tmp_path)
    (run_dir,) = (tmp_path / "logs" / "train" / "runs").iterdir()
    proc = torchrun("ckpt_path=last", "trainer.max_epochs=2", cwd=tmp_path)
    assert "Resumed at step 20" in proc.stdout + proc.stderr
    assert [run_dir] == list((tmp_path / "logs" / "train" / "runs").iterdir())
    assert read_metrics(run_dir)["steps"] == 2 * 20
    log = (run_dir / "train.log").read_text()
    assert log.count("MEMBER: 1/2") == 2 and "MEMBER: 2/2" not in log, "the log file is rank 0's"
    one_tensorboard_run(run_dir)
