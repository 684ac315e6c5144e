"""litlab-train end to end: the default run, the run directory, accuracy, checkpoints."""

import json
import re
import subprocess
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import BIN, FAST, PYTHON, cli, cli_at_once, cli_each, read_metrics
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import litlab
from litlab.tasks import Classifier, load_task


@pytest.fixture(scope="module")
def default_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """`litlab-train` with no arguments, exactly as the README says."""
    cwd = tmp_path_factory.mktemp("default")
    proc = cli("litlab-train", cwd=cwd)
    (run_dir,) = (cwd / "logs" / "train" / "runs").iterdir()
    return proc, run_dir


def test_default_run_trains_digits_mlp(default_run):
    proc, run_dir = default_run
    assert f"Run directory: {run_dir}" in proc.stdout
    assert "test/acc" in proc.stdout
    m = read_metrics(run_dir)
    assert m["metrics"]["test/acc"] >= 0.95
    assert {"train/loss", "val/loss", "val/acc", "test/f1", "val/loss_best"} <= set(m["metrics"])
    assert all(isinstance(v, float) for v in m["metrics"].values())


def test_run_directory_layout(default_run):
    _, run_dir = default_run
    assert {"config.yaml", "overrides.yaml", "hydra.yaml"} <= {p.name for p in (run_dir / ".hydra").iterdir()}
    ckpts = {p.name for p in (run_dir / "checkpoints").iterdir()}
    assert "last.ckpt" in ckpts and len(ckpts) == 2
    assert Path(read_metrics(run_dir)["best_checkpoint"]).name in ckpts
    assert list(run_dir.glob("events.out.tfevents.*"))
    # Lightning's messages reach the run's log too, though litlab's config check imported it first.
    log = (run_dir / "train.log").read_text()
    assert re.search(r"^\[[\d-]+ [\d:,]+\]\[lightning\.pytorch\S*\]\[INFO\] - GPU available", log, re.M), log


def test_default_run_prints_no_unexplained_warning(default_run):
    proc, _ = default_run
    text = proc.stdout + proc.stderr
    assert "Warning" not in text and "warn" not in text.lower(), text[-3000:]
    # Lightning prints its warnings as "file.py:line: message", without a category.
    assert not re.search(r"\.py:\d+: ", text), text[-3000:]
    assert "💡" not in text
    # Each Lightning message once: the duplicate console handler is gone.
    assert text.count("GPU available") == 1
    # Nor Lightning's notes on settings litlab chose (its own summary callback, validation per epoch).
    assert "Trainer already configured" not in text and "was configured so validation" not in text


def test_tensorboard_events_hold_curves_and_hparams(default_run):
    _, run_dir = default_run
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "val/loss", "val/acc", "test/acc", "val/loss_best"} <= tags
    assert len(acc.Scalars("val/loss")) >= 5, "one point per epoch"
    rss = acc.Scalars("memory/host_peak_rss_mb")
    assert len(rss) == len(acc.Scalars("train/loss")) and 50 < rss[-1].value < 8000
    assert "memory/gpu_peak_mb" not in tags, "no GPU here"
    assert "hparams" in acc.PluginTagToContent("hparams") or acc.PluginTagToContent("hparams")


def test_checkpoint_is_weights_only_and_rebuilds_without_hydra(default_run):
    _, run_dir = default_run
    best = read_metrics(run_dir)["best_checkpoint"]
    ckpt = torch.load(best, weights_only=True)
    assert ckpt["task"] == "classification"
    assert ckpt["versions"]["torch"] == torch.__version__ and ckpt["versions"]["litlab"] == litlab.__version__
    assert ckpt["config"]["model"]["net"]["arch"] == "mlp"
    assert ckpt["config"]["data"]["_target_"] == "litlab.data.DigitsDataModule"
    model = Classifier.load_from_checkpoint(best, weights_only=True).eval()
    same = load_task(best).eval()
    x = torch.randn(4, 1, 8, 8)
    torch.testing.assert_close(model(x), same(x))


def test_eval_reproduces_test_metrics(default_run, tmp_path):
    _, run_dir = default_run
    m = read_metrics(run_dir)
    proc = cli("litlab-eval", f"ckpt_path={m['best_checkpoint']}", cwd=tmp_path)
    (eval_dir,) = (tmp_path / "logs" / "eval" / "runs").iterdir()
    assert f"Run directory: {eval_dir}" in proc.stdout
    assert read_metrics(eval_dir)["metrics"]["test/acc"] == pytest.approx(m["metrics"]["test/acc"])


def test_eval_tests_at_the_precision_the_run_trained_at(tmp_path):
    """A bf16-mixed run tested again gives its own numbers (at 32-true its loss differs in the 3rd digit)."""
    cli("litlab-train", "trainer.precision=bf16-mixed", "trainer.max_epochs=2", *FAST, cwd=tmp_path)
    (run_dir,) = (tmp_path / "logs" / "train" / "runs").iterdir()
    cli("litlab-eval", f"ckpt_path={run_dir}", *FAST, cwd=tmp_path)
    (eval_dir,) = (tmp_path / "logs" / "eval" / "runs").iterdir()
    held, again = read_metrics(run_dir)["metrics"], read_metrics(eval_dir)["metrics"]
    assert again["test/loss"] == pytest.approx(held["test/loss"], rel=1e-6)
    # float16 autocast needs a GPU: without one such a run is tested at bf16-mixed, as Lightning trained it here.
    from litlab.eval import trained_precision

    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert trained_precision(str(run_dir / "checkpoints" / "last.ckpt")) == "bf16-mixed"
    ckpt["config"]["trainer"]["precision"] = "16-mixed"
    torch.save(ckpt, tmp_path / "fp16.ckpt")
    assert trained_precision(str(tmp_path / "fp16.ckpt")) == ("16-mixed" if torch.cuda.is_available() else "bf16-mixed")


@pytest.mark.parametrize("model,threshold", [("cnn", 0.97), ("transformer", 0.93)])
def test_models_reach_accuracy_on_digits(train_in_process, model, threshold):
    metrics, _ = train_in_process(f"model={model}")
    assert metrics["test/acc"] >= threshold


def test_help_lists_groups_and_options(help_texts):
    out = help_texts["litlab-train"]
    assert "litlab-train" in out
    for line in (
        "model: cnn, mlp, rnn, transformer",
        "trainer: cpu, ddp, ddp_cpu, default, gpu, mps",
        "logger: csv, none, tensorboard",
    ):
        assert line in out
    from litlab.config import config_dir

    launchers = sorted(p.stem for p in (config_dir() / "hydra" / "launcher").glob("*.yaml"))
    assert f"(launchers: {', '.join(launchers)})" in out  # Hydra's own groups are not listed above


JOB_LOGGING = {"stdout": False, "disabled": False, "default": True}  # the option, and whether it keeps train.log


@pytest.fixture(scope="module")
def job_logging_runs(tmp_path_factory):
    """A fast_dev_run with each of JOB_LOGGING's options, the three processes started at once."""
    run = ("litlab-train", *FAST, "debug=fast_dev_run", "logger=none")
    return cli_at_once({o: (*run, f"hydra/job_logging={o}") for o in JOB_LOGGING}, tmp_path_factory.mktemp("logging"))


@pytest.mark.parametrize("option", JOB_LOGGING)
def test_hydra_job_logging_options_replace_litlab_s(job_logging_runs, option):
    """Hydra's own job_logging options work: litlab's settings live in an option of their own."""
    proc, cwd = job_logging_runs[option]
    assert proc.returncode == 0, proc.stderr[-5000:]
    log_file = JOB_LOGGING[option]
    (run_dir,) = (cwd / "logs" / "train" / "runs").iterdir()
    assert (run_dir / "train.log").exists() == log_file
    assert ("GPU available" in proc.stdout) == (option != "disabled")


@pytest.mark.parametrize("option,handlers", [("litlab", "[console]"), ("default", "[console]"), ("stdout", None)])
def test_ddp_ranks_log_as_chosen_and_leave_the_log_file_to_rank_zero(tmp_path, option, handlers):
    from conftest import compose_cfg

    from litlab.distributed import child_command

    compose_cfg([f"hydra/job_logging={option}", "hydra.job_logging.root.level=WARNING"], tmp_path / "run")
    command, _ = child_command(1)
    logging = [c for c in command if "job_logging" in c]
    assert logging == [
        f"hydra/job_logging={option}",
        "hydra.job_logging.root.level=WARNING",
        *([f"hydra.job_logging.root.handlers={handlers}"] if handlers else []),
    ]


def test_two_runs_in_the_same_second_get_their_own_directories(tmp_path):
    cmd = [str(BIN / "litlab-train"), *FAST, "debug=fast_dev_run", "logger=none"]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(2)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    assert len(list((tmp_path / "logs" / "train" / "runs").iterdir())) == 2


def user_conf(cwd: Path) -> None:
    """A user's config dir, my_conf, with an experiment of its own."""
    (cwd / "my_conf" / "experiment").mkdir(parents=True)
    (cwd / "my_conf" / "experiment" / "tiny.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /model: cnn\ntask_name: tiny\nmodel:\n  net:\n    channels: [4]\n"
    )


@pytest.fixture(scope="module")
def user_conf_runs(tmp_path_factory):
    """experiment=tiny of a user's my_conf, named by --config-dir or by hydra.searchpath, and a misspelled key
    beside --config-dir: the three processes started at once, each in a directory holding my_conf."""
    work = tmp_path_factory.mktemp("user_conf")
    user_conf(work)  # for hydra.searchpath, which takes an absolute path
    tiny = ("experiment=tiny", *FAST, "debug=limit", "trainer.max_epochs=1")
    lines = {
        "--config-dir": ("litlab-train", "--config-dir", "my_conf", *tiny),
        "hydra.searchpath": ("litlab-train", f"hydra.searchpath=[file://{work / 'my_conf'}]", *tiny),
        "misspelled": ("litlab-train", "--config-dir", "my_conf", "experiment=tiny", "model.net.chanels=[8]"),
    }
    return cli_at_once(lines, work, prepare=user_conf)


@pytest.mark.parametrize("how", ["--config-dir", "hydra.searchpath"])
def test_user_config_dir_adds_an_experiment(user_conf_runs, how):
    proc, cwd = user_conf_runs[how]
    assert proc.returncode == 0, proc.stderr[-5000:]
    (run_dir,) = (cwd / "logs" / "tiny" / "runs").iterdir()
    cfg = (run_dir / ".hydra" / "config.yaml").read_text()
    assert "channels:\n    - 4" in cfg and "arch: cnn" in cfg
    if how != "--config-dir":
        return
    # The command line is checked with the user's options, before Hydra starts ...
    proc, refused_in = user_conf_runs["misspelled"]
    assert proc.returncode == 2 and "model.net.chanels: no such key; did you mean model.net.channels?" in proc.stderr
    assert not (refused_in / "logs").exists()
    # ... and a resume goes on in the run's own directory (it used to start a new one).
    where = ["--config-dir", "my_conf"]
    cli("litlab-train", *where, "experiment=tiny", "ckpt_path=last", "trainer.max_epochs=2", cwd=cwd)
    assert list((cwd / "logs" / "tiny" / "runs").iterdir()) == [run_dir]
    assert json.loads((run_dir / "metrics.json").read_text())["steps"] == 10


@pytest.mark.parametrize(
    "argv, overrides",
    [
        (["-m", "seed=1,2"], ["seed=1,2"]),
        (["--config-dir", "/c", "seed=1"], ["hydra.searchpath=[file:///c]", "seed=1"]),
        (["--config-dir=/c", "seed=1"], ["hydra.searchpath=[file:///c]", "seed=1"]),
        (["-cd", "/c", "--cfg", "job"], None),  # a flag the checks do not follow: left to the job
        (["-cd", "/c", "hydra.searchpath=[file:///d]"], None),
    ],
)
def test_command_line_splits_into_flags_and_overrides(argv, overrides):
    from litlab.command_line import _split_argv

    flags, got = _split_argv(argv)
    assert got == overrides
    assert flags == [a for a in argv if a.startswith("-") or a == "/c"]  # what a resume's command line keeps


def test_local_settings_need_no_package_header(tmp_path):
    """conf/local/default.yaml (here in a --config-dir) sets top-level keys as written."""
    (tmp_path / "my_conf" / "local").mkdir(parents=True)
    (tmp_path / "my_conf" / "local" / "default.yaml").write_text("seed: 7\ntrainer:\n  max_epochs: 3\n")
    proc = cli("litlab-train", "--config-dir", "my_conf", "--cfg", "job", cwd=tmp_path)
    assert "\nseed: 7\n" in proc.stdout and "  max_epochs: 3\n" in proc.stdout


def test_wheel_ships_the_config_tree(tmp_path):
    """A plain `pip install .` finds conf/ inside the package, from any directory."""
    repo = Path(__file__).resolve().parents[1]
    subprocess.run(
        [PYTHON, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(repo)],
        check=True,
        capture_output=True,
        timeout=240,
    )
    (wheel,) = tmp_path.glob("litlab-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert {"litlab/conf/train.yaml", "litlab/conf/model/cnn.yaml", "litlab/conf/trainer/ddp_cpu.yaml"} <= names
        zf.extractall(tmp_path / "site")
    out = subprocess.run(
        [PYTHON, "-c", "from litlab.config import config_dir; print(config_dir())"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path / "site")},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out == str(tmp_path / "site" / "litlab" / "conf")


def test_metrics_json_is_plain_json(default_run):
    _, run_dir = default_run
    json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.slow
def test_eval_needs_a_data_config_when_the_checkpoint_has_none(default_run, tmp_path):
    _, run_dir = default_run
    ckpt = torch.load(read_metrics(run_dir)["best_checkpoint"], weights_only=True)
    del ckpt["config"]
    torch.save(ckpt, tmp_path / "bare.ckpt")
    proc = cli("litlab-eval", f"ckpt_path={tmp_path / 'bare.ckpt'}", cwd=tmp_path, check=False)
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()  # one line; the traceback is in the run's error.txt
    assert "bare.ckpt stores no data config: give one, e.g. data=digits (traceback in " in line, line
    assert "Traceback" in Path(line.rsplit("(traceback in ", 1)[1].rstrip(")")).read_text()
    proc = cli("litlab-eval", f"ckpt_path={tmp_path / 'bare.ckpt'}", "data=digits", cwd=tmp_path)
    assert "test/acc" in proc.stdout


def test_a_value_only_the_built_object_refuses_is_named_with_its_cause(tmp_path):
    """Hydra wraps it as "Error in call to target 'X':" with the cause on a second line: the cause is shown."""
    proc = cli("litlab-train", "trainer.gradient_clip_algorithm=foo", cwd=tmp_path, check=False)
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("litlab: error: MisconfigurationException: `gradient_clip_algorithm` foo is invalid"), line
    assert "(building lightning.pytorch.trainer.trainer.Trainer) (traceback in " in line, line


def test_training_that_stops_before_the_first_validation_says_so(train_in_process, caplog, recwarn):
    """Not Lightning's hint to log the monitored key, which the task does: validation had not run yet."""
    metrics, run_dir = train_in_process("trainer.max_steps=3", "logger=none")
    assert "no best checkpoint by val/loss: training stopped at step 3, before the first validation" in caplog.text
    assert not [w for w in recwarn if "monitored key" in str(w.message)]
    assert "test/acc" in metrics and json.loads((run_dir / "metrics.json").read_text())["best_checkpoint"] is None


def test_a_run_without_validation_or_test_data_says_so(train_in_process, caplog, recwarn):
    """data.val_split=0: no best checkpoint, and why; Lightning's warnings of loaders with no batches are not shown."""
    metrics, _ = train_in_process("data.val_split=0", "data.test_split=0", "trainer.max_epochs=1", "logger=none")
    assert "no best checkpoint by val/loss: the data has no validation split" in caplog.text
    assert "no test metrics: the data has no test split" in caplog.text
    assert not [w for w in recwarn if "across ranks is zero" in str(w.message)]
    assert not [k for k in metrics if k.startswith(("val/", "test/"))]


def test_an_earlier_attempts_null_metric_is_not_printed(train_in_process, tmp_path):
    """A NaN metric is stored as null; a resumed run that merged the earlier metrics failed printing it."""
    (tmp_path / "run0").mkdir()
    (tmp_path / "run0" / "metrics.json").write_text(json.dumps({"metrics": {"old/nan": None, "old/kept": 1.5}}))
    metrics, _ = train_in_process("debug=fast_dev_run", "logger=none")
    assert metrics["old/kept"] == 1.5 and "old/nan" not in metrics


def test_no_validation_is_told_apart_from_no_validation_data(train_in_process, caplog):
    train_in_process("debug=limit", "trainer.max_epochs=1", "trainer.limit_val_batches=0", "logger=none")
    assert "no best checkpoint by val/loss: validation is off (trainer.limit_val_batches=0)" in caplog.text
    caplog.clear()
    train_in_process("debug=fast_dev_run", "logger=none")  # validates, but keeps no checkpoint by design
    assert "no best checkpoint" not in caplog.text


@pytest.fixture(scope="module")
def blocked_run_dirs(tmp_path_factory):
    """litlab-train and litlab-eval told to run in taken/run, where taken is a file (one process for both)."""
    lines = {
        "litlab-train": ("litlab-train", "hydra.run.dir=taken/run"),
        "litlab-eval": ("litlab-eval", "ckpt_path=nowhere.ckpt", "hydra.run.dir=taken/run"),
    }
    return cli_each(lines, tmp_path_factory.mktemp("blocked"), prepare=lambda cwd: (cwd / "taken").write_text("a file"))


@pytest.mark.parametrize("command", ["litlab-train", "litlab-eval"])
def test_a_run_directory_that_cannot_be_made_is_refused_in_one_line(blocked_run_dirs, command):
    """Hydra's own mkdir failed with a traceback (a file in the way; a read-only folder, for non-root users)."""
    proc, cwd = blocked_run_dirs[command]
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "litlab: error: hydra.run.dir=taken/run: taken is a file, not a directory"
    ], proc.stderr
    assert (cwd / "taken").read_text() == "a file"
