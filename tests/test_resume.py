"""Fault injection: kill -9 mid-training and mid-write, SIGTERM; the resumed run equals an uninterrupted one."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import BIN, FAST, cli, compose_cfg, read_metrics
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from litlab.command_line import check_command_line
from litlab.models import MLP
from litlab.optim import build_optimizer, build_scheduler

FAULTS = Path(__file__).parent / "faults.py"
# Two epochs of 20 steps; a checkpoint every 7 steps (Lightning holds the first ones back
# until validation has produced the monitored val/loss: they are at steps 21, 28 and 35).
RUN = [
    *FAST,
    "trainer.max_epochs=2",
    "+trainer.limit_train_batches=20",
    "trainer.deterministic=true",
    "trainer.log_every_n_steps=5",
    "callbacks.model_checkpoint.every_n_train_steps=7",
    "callbacks.progress_bar.refresh_rate=0",
]


def faulty(cwd: Path, env: dict[str, str], *overrides: str, flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """litlab-train with a fault from tests/faults.py, as a real process."""
    return subprocess.run(
        [sys.executable, str(FAULTS), *flags, *RUN, *overrides],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=240,
        # A shell's background job ignores SIGINT, and so would the child: its Ctrl-C must arrive.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every TensorBoard scalar of a run as TensorBoard shows it (purged steps dropped)."""
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def image_steps(run_dir: Path) -> dict[str, list[int]]:
    """The steps of each TensorBoard image of a run (the confusion matrices), purged steps dropped."""
    acc = EventAccumulator(str(run_dir), size_guidance={"images": 0})
    acc.Reload()
    return {tag: [e.step for e in acc.Images(tag)] for tag in acc.Tags()["images"]}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run (in-process: same code, same config, faster)."""
    from litlab.train import train

    root = tmp_path_factory.mktemp("reference")
    run_dir = root / "run"
    train(compose_cfg([*RUN, f"paths.root_dir={root}"], run_dir))
    return run_dir


def only_run(cwd: Path) -> Path:
    (run_dir,) = (cwd / "logs" / "train" / "runs").iterdir()
    return run_dir


def assert_same_run(resumed: Path, reference: Path) -> None:
    assert read_metrics(resumed)["metrics"] == read_metrics(reference)["metrics"]
    assert read_metrics(resumed)["steps"] == read_metrics(reference)["steps"] == 40
    got, want = scalars(resumed), scalars(reference)
    assert set(got) == set(want)
    for tag in want:  # every step once, with the same value: nothing repeated, nothing missing
        if tag.startswith("memory/"):  # a measurement of the process, not of the training
            assert [s for s, _ in got[tag]] == [s for s, _ in want[tag]], tag
        else:
            assert got[tag] == want[tag], tag
    assert image_steps(resumed) == image_steps(reference)


@pytest.mark.slow
def test_kill_9_mid_epoch_then_resume_equals_uninterrupted_run(tmp_path, reference):
    killed = faulty(tmp_path, {"FAULT_KILL_AT_STEP": "30"})
    assert killed.returncode == -signal.SIGKILL
    run_dir = only_run(tmp_path)
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 28, "the newest checkpoint is mid-epoch (epoch 1, batch 8)"

    proc = cli("litlab-train", "ckpt_path=last", cwd=tmp_path)  # the old overrides come back by themselves
    assert only_run(tmp_path) == run_dir, "resumed in the same run directory"
    assert f"Run directory: {run_dir}" in proc.stdout
    assert not list((run_dir / "checkpoints").glob("*-v*.ckpt")), "no last-v1.ckpt beside last.ckpt"
    assert_same_run(run_dir, reference)


@pytest.mark.slow
def test_kill_9_after_an_epoch_end_checkpoint_then_resume_equals_uninterrupted_run(tmp_path, reference):
    """The checkpoint of a validation: its confusion matrix and the next epoch's learning rate were purged."""
    assert faulty(tmp_path, {"FAULT_KILL_AT_STEP": "20"}).returncode == -signal.SIGKILL
    run_dir = only_run(tmp_path)
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 20
    cli("litlab-train", f"ckpt_path={run_dir}", cwd=tmp_path)
    assert_same_run(run_dir, reference)
    assert image_steps(run_dir)["val/confusion_matrix"] == [19, 39], "beside val/acc, at the epoch's last step"


@pytest.mark.slow
def test_kill_9_while_writing_last_ckpt_keeps_the_previous_one(tmp_path, reference):
    killed = faulty(tmp_path, {"FAULT_KILL_IN_SAVE": "3"})  # last.ckpt: epoch end 20, steps 21, 28
    assert killed.returncode == -signal.SIGKILL
    run_dir = only_run(tmp_path)
    (partial,) = (run_dir / "checkpoints").glob(".last.ckpt.*.tmp")
    with pytest.raises(RuntimeError):
        torch.load(partial, weights_only=True)  # what an in-place write would have left as last.ckpt
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 21

    cli("litlab-train", f"ckpt_path={run_dir}", cwd=tmp_path)
    assert not partial.exists()
    assert_same_run(run_dir, reference)


def test_sigterm_saves_a_checkpoint_and_says_how_to_resume(tmp_path):
    proc = faulty(tmp_path, {"FAULT_SIGNAL_AT_STEP": "23:TERM"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    run_dir = only_run(tmp_path)
    assert f"Resume with: litlab-train ckpt_path={run_dir}" in proc.stderr
    assert (proc.stdout + proc.stderr).count("Resume with") == 1, "once on a terminal"
    assert "Resume with" in (run_dir / "train.log").read_text()
    assert "weights_only" not in proc.stdout + proc.stderr
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 24
    assert not (run_dir / "metrics.json").exists(), "a stopped run reports no final metrics"


@pytest.mark.slow
def test_ctrl_c_is_recorded_as_interrupted_and_the_run_resumes_exactly(tmp_path, reference):
    proc = faulty(tmp_path, {"FAULT_SIGNAL_AT_STEP": "30:INT"})
    assert proc.returncode == 130, proc.stderr[-2000:]
    run_dir = only_run(tmp_path)
    assert f"Interrupted at step 30; newest checkpoint: {run_dir}/checkpoints/last.ckpt" in proc.stderr
    assert f"Resume with: litlab-train ckpt_path={run_dir}" in proc.stderr
    assert "Traceback" not in proc.stderr, "the traceback is in error.txt"
    assert read_metrics(run_dir)["status"] == "interrupted"
    assert (run_dir / "error.txt").is_file()
    cli("litlab-train", f"ckpt_path={run_dir}", cwd=tmp_path)
    assert_same_run(run_dir, reference)
    assert not (run_dir / "error.txt").exists(), "the completed run keeps no stale error record"


def test_ctrl_c_during_the_final_test_keeps_the_training_record_and_says_how_to_finish(tmp_path, monkeypatch, capsys):
    """It was recorded as failed (SystemExit: 1), without best_checkpoint, and "nothing to resume" was printed."""
    from litlab.jobs import run_job
    from litlab.tasks.base import Task
    from litlab.train import train

    def interrupted(self, batch, batch_idx):
        raise KeyboardInterrupt

    overrides = [*FAST, f"paths.root_dir={tmp_path}", "debug=limit", "trainer.max_epochs=1"]
    run_dir = tmp_path / "run"
    monkeypatch.setattr(Task, "test_step", interrupted)
    sigint = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(KeyboardInterrupt):  # one_line_errors makes it exit 130
            run_job(train, compose_cfg(overrides, run_dir))
    finally:
        signal.signal(signal.SIGINT, sigint)  # Lightning ignores any further Ctrl-C once it has one
    record = read_metrics(run_dir)
    assert record["status"] == "interrupted" and record["interrupted_in"] == "test", record
    assert record["error"] == "KeyboardInterrupt: during the test; the checkpoints of training are kept"
    assert Path(record["best_checkpoint"]).is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert record["steps"] == 5 and "val/loss_best" in record["metrics"]
    err = capsys.readouterr().err
    assert "Interrupted during the test, after training to step 5; the checkpoints are kept (best: " in err
    assert f"Resume with: litlab-train ckpt_path={run_dir} (it runs the test)" in err
    assert "nothing to resume" not in err

    monkeypatch.undo()  # the resume the hint prints: nothing left to train, the test runs
    metrics = train(compose_cfg([*overrides, f"ckpt_path={run_dir}"], run_dir))
    assert "test/loss" in metrics and "status" not in read_metrics(run_dir)


@pytest.mark.slow
def test_a_real_ctrl_c_during_the_final_test_exits_130_and_the_run_finishes_on_resume(tmp_path):
    proc = faulty(tmp_path, {"FAULT_SIGNAL_IN_TEST": "INT"})
    assert proc.returncode == 130, proc.stderr[-2000:]
    run_dir = only_run(tmp_path)
    assert f"Resume with: litlab-train ckpt_path={run_dir} (it runs the test)" in proc.stderr
    assert "Traceback" not in proc.stderr and "nothing to resume" not in proc.stderr
    record = read_metrics(run_dir)
    assert record["status"] == "interrupted" and record["interrupted_in"] == "test"
    assert Path(record["best_checkpoint"]).is_file()
    resumed = cli("litlab-train", f"ckpt_path={run_dir}", cwd=tmp_path)
    assert "test/loss" in resumed.stdout and "test/loss" in read_metrics(run_dir)["metrics"]
    assert "status" not in read_metrics(run_dir) and not (run_dir / "error.txt").exists()


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["TERM", "USR1"])
def test_preempted_run_resumes_exactly(tmp_path, reference, sig):
    proc = faulty(tmp_path, {"FAULT_SIGNAL_AT_STEP": f"30:{sig}"})
    assert proc.returncode == 0 and "Resume with" in proc.stderr, proc.stderr[-2000:]
    run_dir = only_run(tmp_path)
    cli("litlab-train", f"ckpt_path={run_dir}", cwd=tmp_path)
    assert_same_run(run_dir, reference)


@pytest.mark.slow
def test_preempted_mid_accumulation_window_resumes_exactly(tmp_path):
    """The checkpoint waits for the window's optimizer step: taken after its first batch, the
    resumed step saw 3 of its 4 batches."""
    from litlab.train import train

    accumulate = "trainer.accumulate_grad_batches=4"
    train(compose_cfg([*RUN, accumulate, f"paths.root_dir={tmp_path}"], tmp_path / "reference"))
    proc = faulty(tmp_path, {"FAULT_SIGNAL_AT_STEP": "7:TERM"}, accumulate)  # as the window's first batch starts
    assert proc.returncode == 0 and "Stopped by a termination signal at step 8" in proc.stderr, proc.stderr[-2000:]
    run_dir = only_run(tmp_path)
    cli("litlab-train", f"ckpt_path={run_dir}", cwd=tmp_path)
    assert read_metrics(run_dir)["metrics"] == read_metrics(tmp_path / "reference")["metrics"]


@pytest.mark.slow
def test_a_dataloader_run_preempted_mid_epoch_resumes_exactly(tmp_path):
    """Variable-length sequences go through a DataLoader (padding collate): it replayed the epoch from its start."""
    from litlab.train import train

    sequences = ["data=sequences", "model=rnn", "model.net.hidden_size=16", "model.net.dropout=0.2"]
    train(compose_cfg([*RUN, *sequences, f"paths.root_dir={tmp_path}"], tmp_path / "reference"))
    proc = faulty(tmp_path, {"FAULT_SIGNAL_AT_STEP": "27:TERM"}, *sequences)  # epoch 1, batch 7
    assert proc.returncode == 0 and "Resume with" in proc.stderr, proc.stderr[-2000:]
    run_dir = only_run(tmp_path)
    resumed = cli("litlab-train", f"ckpt_path={run_dir}", cwd=tmp_path)
    assert "not resumable" not in resumed.stderr
    assert read_metrics(run_dir)["metrics"] == read_metrics(tmp_path / "reference")["metrics"]


def test_requeued_job_resumes_from_its_own_last_ckpt(train_in_process):
    """A requeued job (submitit) starts again in its run directory, with no ckpt_path given."""
    from litlab.train import train

    quick = ["debug=limit", "logger=none", "test=false"]
    _, run_dir = train_in_process(*quick, "trainer.max_epochs=1")
    assert read_metrics(run_dir)["steps"] == 5
    train(compose_cfg([*FAST, f"paths.root_dir={run_dir.parent}", *quick, "trainer.max_epochs=2"], run_dir))
    assert read_metrics(run_dir)["steps"] == 10, "went on from epoch 1 instead of starting over"


def test_a_resumed_run_keeps_its_csv_log(train_in_process, recwarn):
    """Lightning's CSVLogger deleted metrics.csv at a resume: the curves started again at the resumed step."""
    import csv

    from litlab.train import train

    quick = ["debug=limit", "logger=csv", "test=false"]
    _, run_dir = train_in_process(*quick, "trainer.max_epochs=1")
    table = run_dir / "csv" / "metrics.csv"
    before = [r for r in csv.DictReader(table.open()) if int(r["step"]) < 5]  # resumed at step 5, as TensorBoard
    train(compose_cfg([*FAST, f"paths.root_dir={run_dir.parent}", *quick, "trainer.max_epochs=2"], run_dir))
    rows = list(csv.DictReader(table.open()))
    assert rows[: len(before)] == before, "the first epoch's rows, as they were"
    assert {r["epoch"] for r in rows if r["train/loss"]} == {"0", "1"}
    assert not [w for w in recwarn if "will be deleted" in str(w.message)]


def test_a_resume_takes_the_schedule_settings_it_follows_and_refuses_the_others(train_in_process):
    """cosine's warmup_ratio and min_lr_ratio shape the schedule over the new total; its lr is restored."""
    from litlab.rules import ConfigError

    _, run_dir = train_in_process("debug=limit", "logger=none", "trainer.max_epochs=1")
    resume = [f"ckpt_path={run_dir}", f"paths.root_dir={run_dir.parent}", "debug=limit", "trainer.max_epochs=2"]
    check_command_line([*resume, "model.scheduler.min_lr_ratio=0.5", "model.scheduler.warmup_ratio=0.2"])
    with pytest.raises(ConfigError, match=r"model\.optimizer\.lr=0\.003, this config has 0\.1"):
        check_command_line([*resume, "model.optimizer.lr=0.1"])


def test_resuming_a_finished_run_keeps_its_metrics(train_in_process):
    """Nothing left to train logs no train/val metrics; metrics.json keeps the earlier ones."""
    from litlab.train import train

    quick = ["debug=limit", "logger=none", "trainer.max_epochs=1"]
    _, run_dir = train_in_process(*quick)
    before = read_metrics(run_dir)["metrics"]
    train(compose_cfg([*FAST, f"paths.root_dir={run_dir.parent}", *quick], run_dir))
    after = read_metrics(run_dir)["metrics"]
    assert {"train/loss", "val/loss", "val/acc", "test/acc"} <= set(after)
    assert after["train/loss"] == before["train/loss"] and after["test/acc"] == before["test/acc"]


def test_resumed_with_more_epochs_the_schedule_runs_to_the_new_end(train_in_process, caplog):
    """README's `ckpt_path=last trainer.max_epochs=40`: OneCycleLR used to fail one step past its old end."""
    from litlab.train import train

    quick = ["debug=limit", "logger=none", "test=false", "model/scheduler=onecycle"]
    _, run_dir = train_in_process(*quick, "trainer.max_epochs=1")
    train(compose_cfg([*FAST, f"paths.root_dir={run_dir.parent}", *quick, "trainer.max_epochs=2"], run_dir))
    assert read_metrics(run_dir)["steps"] == 10
    assert "OneCycle schedule ran over 5 steps, this run has 10; from step 5 on" in caplog.text
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    lr = last["optimizer_states"][0]["param_groups"][0]["lr"]
    opt = build_optimizer(MLP([4], 2), "adamw", lr=last["hyper_parameters"]["optimizer"]["lr"])
    planned = build_scheduler(opt, 10, "onecycle")["scheduler"]
    for _ in range(10):
        opt.step()
        planned.step()
    assert lr == pytest.approx(opt.param_groups[0]["lr"]), "where an uninterrupted 10-step schedule ends"


def test_a_resume_past_the_runs_end_is_refused():
    """Lightning would train nothing and test again, and .hydra/ would record the smaller limit."""
    from litlab.resume import check_not_past

    at_epoch_3 = {"epoch": 2, "global_step": 120}  # saved during (or at the end of) its third epoch
    for trainer in ({"max_epochs": 3, "max_steps": -1}, {"max_epochs": 40}, {"max_epochs": -1, "max_steps": 120}):
        check_not_past(at_epoch_3, trainer, "ckpt_path=last")
    with pytest.raises(ValueError, match=r"at epoch 3, step 120, past trainer.max_epochs=2; raise trainer.max_epochs"):
        check_not_past(at_epoch_3, {"max_epochs": 2, "max_steps": -1}, "ckpt_path=last")
    with pytest.raises(ValueError, match=r"past trainer\.max_steps=100"):
        check_not_past(at_epoch_3, {"max_epochs": 3, "max_steps": 100}, "ckpt_path=last")


@pytest.mark.slow
def test_a_resume_that_cannot_work_is_refused_and_leaves_the_run_as_it_was(tmp_path):
    cli("litlab-train", *FAST, "debug=limit", "trainer.max_epochs=1", "logger=none", cwd=tmp_path)
    run_dir = only_run(tmp_path)
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    plain = tmp_path / "weights.pt"
    torch.save(torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"], plain)
    cases = {
        "another net": ([f"ckpt_path={run_dir}", "model=cnn"], "changed: model.net.arch"),
        "other data": ([f"ckpt_path={run_dir}", "data=synthetic"], "net is not the one this config builds"),
        "a plain state dict": ([f"ckpt_path={plain}"], "not a checkpoint litlab wrote"),
        "another net in its directory": (
            [f"hydra.run.dir={run_dir}", "model=cnn"],
            "resumes (as a requeued job does): the checkpoint's net is not the one this config builds",
        ),
        "another freeze": (
            [f"ckpt_path={run_dir}", "model.freeze=[head]"],
            "model.freeze=[], this config freezes [head]",
        ),
        "another optimizer": (
            [f"ckpt_path={run_dir}", "model/optimizer=sgd"],
            "model.optimizer=adamw, this config has sgd",
        ),
        "another lr": (
            [f"ckpt_path={run_dir}", "model.optimizer.lr=1e-6"],
            "model.optimizer.lr=0.003, this config has 1e-06",
        ),
        "no schedule": (
            [f"ckpt_path={run_dir}", "model.scheduler=null"],
            "model.scheduler=cosine, this config has null",
        ),
        "fewer steps than it trained": ([f"ckpt_path={run_dir}", "trainer.max_steps=3"], "past trainer.max_steps=3"),
        "fewer steps, in its directory": (
            [f"hydra.run.dir={run_dir}", "trainer.max_steps=3"],
            "past trainer.max_steps=3",
        ),
    }
    for name, (args, message) in cases.items():
        proc = cli("litlab-train", *args, cwd=tmp_path, check=False)
        assert proc.returncode == 2 and message in proc.stderr, (name, proc.stderr[-2000:])
        assert len(proc.stderr.strip().splitlines()) == 1, (name, proc.stderr)

    record = run_dir / ".hydra" / "overrides.yaml"
    record.write_text("- [damaged\n")
    proc = cli("litlab-train", f"ckpt_path={run_dir}", "trainer.max_epochs=2", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "overrides.yaml is not a list of overrides" in proc.stderr, proc.stderr
    record.write_bytes(before[record])
    truncated = run_dir / "checkpoints" / "last.ckpt"
    truncated.write_bytes(before[truncated][:1000])
    proc = cli("litlab-train", "ckpt_path=last", "trainer.max_epochs=2", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "last.ckpt is not a readable checkpoint: truncated" in proc.stderr, proc.stderr
    truncated.write_bytes(before[truncated])
    after = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    assert after == before, "config, overrides, metrics.json and checkpoints untouched; no error.txt"
    assert list((tmp_path / "logs" / "train" / "runs").iterdir()) == [run_dir], "no new run directory either"


@pytest.mark.slow
def test_a_run_with_group_options_resumes_from_ckpt_path_alone(tmp_path):
    """README's `ckpt_path=last trainer.max_epochs=N` after `model=cnn data=synthetic`: the run's options come back.

    The checks used to test the checkpoint against the config of the command line alone
    (the default MLP on digits), and refused every run that had chosen another model or data.
    """
    run = [*FAST, "debug=limit", "logger=none", "model=cnn", "data=synthetic", "data.input_shape=[1,8,8]"]
    cli("litlab-train", *run, "trainer.max_epochs=1", cwd=tmp_path)
    run_dir = only_run(tmp_path)
    proc = cli("litlab-train", "ckpt_path=last", "trainer.max_epochs=2", cwd=tmp_path)
    assert only_run(tmp_path) == run_dir and f"Run directory: {run_dir}" in proc.stdout
    assert read_metrics(run_dir)["epochs"] == 2
    assert (
        torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["config"]["model"]["net"]["arch"] == "cnn"
    )


def test_last_ckpt_is_the_newest_epoch_even_when_the_monitor_stops_improving(train_in_process):
    """Lightning 2.6 alone rewrites last.ckpt only with a new best: here after epoch 0 only."""
    worse = ["model.optimizer.lr=0.0", "model.scheduler=null"]  # val/loss never improves after the first epoch
    _, run_dir = train_in_process("debug=limit", "trainer.max_epochs=3", "logger=none", "test=false", *worse)
    checkpoints = run_dir / "checkpoints"
    assert torch.load(checkpoints / "epoch_000-step_000005.ckpt", weights_only=True)["global_step"] == 5
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["global_step"] == 15


def test_tell_prints_once_where_logging_is_not_configured(capsys):
    import logging

    from litlab.jobs import tell

    logger = logging.getLogger("litlab.tests.unconfigured")
    logger.propagate = False  # no handler anywhere above it: logging's last resort would print it too
    tell(logger, "Stopped; resume with: ...")
    assert capsys.readouterr().err.count("Stopped; resume with") == 1


def test_the_printed_resume_argument_reads_back_whole():
    """A sweep job's directory holds `=` and `,`: the hint quotes it for the shell and for Hydra."""
    import shlex

    from hydra.core.override_parser.overrides_parser import OverridesParser

    from litlab.callbacks.preemption import as_argument

    plain = "/logs/train/runs/2026-11-26_06-55-39_399316"
    job = "/logs/train/multiruns/2026-11-26_07-00-00/1_model=cnn,seed=2"
    assert as_argument(plain) == plain
    for run_dir in (plain, job):
        (word,) = shlex.split(f"ckpt_path={as_argument(run_dir)}")
        assert OverridesParser.create().parse_override(word).value() == run_dir


@pytest.mark.slow
def test_a_run_started_in_a_runs_directory_keeps_that_runs_config_and_record(tmp_path):
    """hydra.run.dir=<run> resumes the run as a requeued job does: with its overrides, not the defaults."""
    cli("litlab-train", *FAST, "debug=limit", "trainer.max_epochs=1", "logger=none", cwd=tmp_path)
    run_dir = only_run(tmp_path)
    before = {p: p.read_bytes() for p in (run_dir / "checkpoints").iterdir()}
    cli("litlab-train", f"hydra.run.dir={run_dir}", cwd=tmp_path)  # finished: nothing left to train
    assert read_metrics(run_dir)["epochs"] == 1, "not the default 20 epochs"
    assert {p: p.read_bytes() for p in (run_dir / "checkpoints").iterdir()} == before, "best checkpoint kept"
    assert "trainer.max_epochs=1" in (run_dir / ".hydra" / "overrides.yaml").read_text()

    # Another command pointed there is refused before it writes anything; so is a run that would not train.
    record = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    proc = cli("litlab-train", f"hydra.run.dir={run_dir}", "train=false", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "with train=false it would test the initial weights" in proc.stderr
    for command in ("litlab-eval", "litlab-export"):
        proc = cli(command, f"ckpt_path={run_dir}", f"hydra.run.dir={run_dir}", cwd=tmp_path, check=False)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip() == (
            f"litlab: error: hydra.run.dir={run_dir} holds a litlab-train run; {command} would write its own "
            "config and metrics.json over that run's record: choose another directory"
        )
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == record


@pytest.mark.slow
def test_a_failed_attempt_to_go_on_with_a_finished_run_keeps_its_results(tmp_path):
    import numpy as np

    x = np.random.default_rng(0).normal(size=(120, 4)).astype(np.float32)
    np.savez(tmp_path / "blobs.npz", x=x, y=(x[:, 0] > 0).astype(np.int64))
    data = ["data=arrays", f"data.path={tmp_path / 'blobs.npz'}", "data.input_shape=[4]", "data.num_classes=2"]
    cli("litlab-train", *FAST, *data, "trainer.max_epochs=1", "logger=none", cwd=tmp_path)
    run_dir = only_run(tmp_path)
    finished = read_metrics(run_dir)
    (tmp_path / "blobs.npz").rename(tmp_path / "moved.npz")
    proc = cli("litlab-train", "ckpt_path=last", "trainer.max_epochs=2", cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "blobs.npz" in proc.stderr, proc.stderr
    after = read_metrics(run_dir)
    assert "status" not in after and after["metrics"] == finished["metrics"], "still the finished run's results"
    assert after["last_attempt"]["status"] == "failed" and "blobs.npz" in after["last_attempt"]["error"]

    # Told where the file is now (a key only the run's data option has), it goes on.
    cli("litlab-train", "ckpt_path=last", "trainer.max_epochs=2", f"data.path={tmp_path / 'moved.npz'}", cwd=tmp_path)
    after = read_metrics(run_dir)
    assert after["epochs"] == 2 and "last_attempt" not in after and "status" not in after


def test_a_failed_attempt_that_replaced_the_best_checkpoint_leaves_no_stale_record(tmp_path):
    from litlab.jobs import record_failure

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "metrics.json").write_text(
        json.dumps({"best_checkpoint": str(tmp_path / "checkpoints" / "epoch_000.ckpt"), "metrics": {"val/loss": 1.0}})
    )
    record_failure(tmp_path, RuntimeError("died in epoch 3"))  # epoch_000.ckpt was replaced by the attempt
    after = read_metrics(tmp_path)
    assert after["status"] == "failed" and after["best_checkpoint"] is None and "last_attempt" not in after


@pytest.mark.slow
def test_a_renamed_job_resumes_in_its_directory(tmp_path):
    """hydra.job.name names jobs (SLURM); the command a directory belongs to is its config's name."""
    cli(
        "litlab-train",
        *FAST,
        "debug=limit",
        "trainer.max_epochs=1",
        "logger=none",
        "hydra.job.name=myexp",
        cwd=tmp_path,
    )
    run_dir = only_run(tmp_path)
    cli("litlab-train", f"hydra.run.dir={run_dir}", "trainer.max_epochs=2", cwd=tmp_path)
    assert read_metrics(run_dir)["epochs"] == 2


@pytest.mark.slow
def test_a_directory_holding_another_run_or_sweep_is_refused_before_anything_is_written(tmp_path):
    """Without last.ckpt (callbacks=none) a second run wrote its record over the first's; a reused
    hydra.sweep.dir rewrote the earlier sweep's multirun.yaml and jobs."""
    quick = [*FAST, "debug=limit", "trainer.max_epochs=1", "logger=none"]
    run_dir, sweep_dir = tmp_path / "run", tmp_path / "sweep"
    cli("litlab-train", *quick, "callbacks=none", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    cli("litlab-train", "-m", *quick, "seed=1,2", f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    before = {p: p.read_bytes() for d in (run_dir, sweep_dir) for p in d.rglob("*") if p.is_file()}
    cases = {
        "another run": (["callbacks=none", "model=cnn", f"hydra.run.dir={run_dir}"], "holds another run"),
        "the finished run again": (["callbacks=none", f"hydra.run.dir={run_dir}"], "holds this run, finished"),
        "another sweep": (["-m", "seed=3,4", f"hydra.sweep.dir={sweep_dir}"], "holds an earlier sweep"),
    }
    for name, (args, message) in cases.items():
        proc = cli("litlab-train", *quick, *args, cwd=tmp_path, check=False)
        assert proc.returncode == 2 and message in proc.stderr, (name, proc.stderr[-2000:])
    after = {p: p.read_bytes() for d in (run_dir, sweep_dir) for p in d.rglob("*") if p.is_file()}
    assert after == before


def test_a_checkpoint_that_does_not_fit_on_disk_is_named_and_the_run_recorded(tmp_path):
    """A full disk (here a file size limit, as `ulimit -f` sets) made torch say "unexpected pos"."""
    import resource

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))  # a checkpoint is ~650 kB

    proc = subprocess.run(
        [str(BIN / "litlab-train"), *FAST, "debug=limit", "trainer.max_epochs=1", "hydra.run.dir=run"],
        cwd=tmp_path,
        preexec_fn=small_files,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 1
    assert "could not write the checkpoint" in proc.stderr and "(disk full, or over a file size limit?)" in proc.stderr
    assert not list((tmp_path / "run" / "checkpoints").glob("*.ckpt")), "no file under a checkpoint's name"
    assert read_metrics(tmp_path / "run")["status"] == "failed"


def test_a_sweep_stopped_by_sigterm_does_not_exit_0(tmp_path):
    """A scheduler took the sweep for finished: exit 0 after its first job, the others never run."""
    proc = faulty(tmp_path, {"FAULT_SIGNAL_AT_STEP": "5:TERM"}, "seed=1,2", flags=("-m",))
    assert proc.returncode == 143, proc.stderr[-2000:]
    assert "Resume with" in proc.stderr and "the jobs after it did not run" in proc.stderr
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    assert [p.name[0] for p in sweep.iterdir() if p.is_dir()] == ["0"]
