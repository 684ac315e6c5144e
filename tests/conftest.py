"""Shared helpers: run litlab-train as a user would (a process) or in-process (fast)."""

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from litlab.config import config_dir

# Set before torch loads (it is not loaded yet; CLI subprocesses inherit it): tiny models on a few
# shared cores gain nothing from more intra-op threads, only contention (the suite ran 6x slower).
os.environ.setdefault("OMP_NUM_THREADS", "1")

PYTHON = sys.executable
BIN = Path(sys.executable).parent


def cuda(test):
    """A GPU-only test: skipped without a CUDA GPU; ``pytest -m cuda`` selects them (scripts/gpu_check.sh)."""
    import torch

    return pytest.mark.cuda(pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")(test))


# Quiet runs: no config print.
FAST = ["print_config=false"]


def cli(*args: str, cwd: Path, timeout: float = 240, check: bool = True) -> subprocess.CompletedProcess:
    """Run a litlab console script in ``cwd`` and capture its output."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # The console scripts sit beside this interpreter, whether or not its venv is activated.
    script = Path(sys.executable).parent / args[0]
    proc = subprocess.run([str(script), *args[1:]], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


# One interpreter for many command lines that end before a Hydra job starts (refused, or --help): each
# is run as its script runs it (``sys.exit(main())`` with that argv, in its own working directory),
# its output and exit status kept apart. A process each spent ~4 s importing, ~0.5 s checking.
_EACH = """
import contextlib, io, json, os, sys, traceback, warnings
from importlib.metadata import entry_points

spec, results_file = sys.argv[1:]
cases, results = json.load(open(spec)), []
for command, args, cwd in cases:
    (script,) = entry_points(group="console_scripts", name=command)
    main = script.load()
    sys.argv = [os.path.join(os.path.dirname(sys.executable), command), *args]
    os.chdir(cwd)
    out, err = io.StringIO(), io.StringIO()
    # catch_warnings: a warning shown for an earlier command line is shown again, as in a fresh process.
    with warnings.catch_warnings(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main()
        except SystemExit as e:
            code = e.code
        except BaseException:
            traceback.print_exc()
            code = 1
        if code is not None and not isinstance(code, int):  # as sys.exit(message) ends a script
            print(code, file=sys.stderr)
            code = 1
    results.append({"returncode": code or 0, "stdout": out.getvalue(), "stderr": err.getvalue()})
json.dump(results, open(results_file, "w"))
"""


def cli_each(
    cases: dict[str, tuple[str, ...]], work: Path, prepare: Callable[[Path], None] | None = None
) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """``{name: (command, *args)}`` each run as ``cli(command, *args, cwd=..., check=False)`` runs it, in one process.

    Each command line gets a working directory of its own under ``work``, empty but for what
    ``prepare(cwd)`` puts there; returns ``{name: (completed process, its working directory)}``.
    Only for command lines that end before Hydra runs a job (``--help``, or refused by litlab's
    checks): one that got past them would run its job inside that process, beside the next ones.
    """
    dirs = {name: work / f"case{i}" for i, name in enumerate(cases)}
    for cwd in dirs.values():
        cwd.mkdir(parents=True)
        if prepare is not None:
            prepare(cwd)
    spec, out = work / "cases.json", work / "results.json"
    spec.write_text(json.dumps([[line[0], list(line[1:]), str(dirs[name])] for name, line in cases.items()]))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    driver = subprocess.run(
        [sys.executable, "-c", _EACH, str(spec), str(out)], capture_output=True, text=True, timeout=240, env=env
    )
    assert driver.returncode == 0, driver.stderr[-5000:]
    results = json.loads(out.read_text())
    return {
        name: (subprocess.CompletedProcess(list(line), r["returncode"], r["stdout"], r["stderr"]), dirs[name])
        for (name, line), r in zip(cases.items(), results, strict=True)
    }


def cli_at_once(
    cases: dict[str, tuple[str, ...]], work: Path, prepare: Callable[[Path], None] | None = None, timeout: float = 240
) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """``{name: (command, *args)}`` each run as ``cli(command, *args, cwd=..., check=False)`` runs it, all at once.

    For command lines that run a job (which ``cli_each`` cannot share a process for): the suite
    itself runs on one core (one thread: OMP_NUM_THREADS=1), so the second one is otherwise idle.
    Each gets a working directory of its own under ``work``, empty but for what ``prepare(cwd)``
    puts there; returns ``{name: (completed process, its working directory)}``.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    started = {}
    for i, (name, line) in enumerate(cases.items()):
        cwd = work / f"case{i}"
        cwd.mkdir(parents=True)
        if prepare is not None:
            prepare(cwd)
        command = [str(BIN / line[0]), *line[1:]]
        popen = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        started[name] = (command, popen, cwd)
    ran = {}
    for name, (command, popen, cwd) in started.items():
        try:
            stdout, stderr = popen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for _, other, _ in started.values():
                other.kill()
            raise
        ran[name] = (subprocess.CompletedProcess(command, popen.returncode, stdout, stderr), cwd)
    return ran


@pytest.fixture(scope="session")
def help_texts(tmp_path_factory) -> dict[str, str]:
    """What ``--help`` prints for litlab-train, litlab-predict and litlab-export (one process for the three)."""
    commands = ("litlab-train", "litlab-predict", "litlab-export")
    ran = cli_each({command: (command, "--help") for command in commands}, tmp_path_factory.mktemp("help"))
    for command, (proc, _) in ran.items():
        assert proc.returncode == 0, (command, proc.stderr[-3000:])
    return {command: proc.stdout for command, (proc, _) in ran.items()}


def compose_cfg(overrides: list[str], run_dir: Path, config_name: str = "train") -> DictConfig:
    """Compose the real config tree as the CLI would, with ``run_dir`` as the run directory."""
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.hydra.runtime.cwd = str(run_dir.parent)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]  # as in the CLI: the task sees the hydra node only through ${hydra:...}
    run_dir.mkdir(parents=True, exist_ok=True)
    return cfg


@pytest.fixture
def train_in_process(tmp_path):
    """Call ``litlab.train.train`` on a composed config; returns (metrics, run_dir)."""
    from litlab.train import train

    counter = iter(range(1000))

    def run(*overrides: str) -> tuple[dict, Path]:
        run_dir = tmp_path / f"run{next(counter)}"
        cfg = compose_cfg([*FAST, f"paths.root_dir={tmp_path}", *overrides], run_dir)
        metrics = train(cfg)
        return metrics, run_dir

    return run


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
