"""hparams_search=optuna: a real, seeded Optuna search of a few trials through litlab-train -m."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import cli, cli_each
from omegaconf import OmegaConf

MLP_SIZES = {"[64]", "[256]", "[64,64]", "[256,256]", "[64,64,64]", "[256,256,256]"}


def search(cwd: Path, *overrides: str) -> tuple[str, Path, dict]:
    cwd.mkdir(exist_ok=True)
    proc = cli("litlab-train", "-m", "print_config=false", "debug=limit", "hparams_search=optuna", *overrides, cwd=cwd)
    (sweep_dir,) = (cwd / "logs" / "train" / "multiruns").iterdir()
    return proc.stdout, sweep_dir, OmegaConf.to_container(OmegaConf.load(sweep_dir / "optuna_results.yaml"))


def test_optuna_search_samples_the_space_and_saves_the_best(tmp_path):
    # A command-line sweep joins the configured space; a split that leaves no training data makes its
    # trials fail when the data loads (values that config validation can see are refused before any trial).
    # A plain value among the params is given to every trial (it was dropped: the trials had the default).
    fixed = "hydra.sweeper.params={model.net.dropout:0.3}"
    stdout, sweep_dir, results = search(tmp_path, "hydra.sweeper.n_trials=3", "data.val_split=choice(0.9,0.1)", fixed)
    trials = results["trials"]
    assert [t["number"] for t in trials] == [0, 1, 2] and results["direction"] == "minimize"
    for t in trials:
        params = dict(o.split("=", 1) for o in t["overrides"])
        space = {"model.optimizer.lr", "data.batch_size", "model.net.hidden_sizes"}
        assert set(params) == space | {"data.val_split"}
        assert 1e-4 <= float(params["model.optimizer.lr"]) <= 3e-2
        assert params["model.net.hidden_sizes"] in MLP_SIZES and params["data.val_split"] in {"0.9", "0.1"}
        job = Path(t["job_dir"])
        assert job.parent == sweep_dir and job.name.startswith(f"{t['number']}_")
        summary = json.loads((job / "metrics.json").read_text())
        assert OmegaConf.load(job / ".hydra" / "config.yaml").model.net.dropout == 0.3
        if params["data.val_split"] == "0.9":  # recorded as failed, and the search went on
            assert t["state"] == "failed" and summary["status"] == "failed" and "no training samples" in t["error"]
        else:
            assert t["state"] == "complete" and t["value"] == summary["metrics"]["val/loss_best"]
    done = [t for t in trials if t["state"] == "complete"]
    assert 0 < len(done) < 3, "with this seed the trials take both values"
    best = min(done, key=lambda t: t["value"])
    assert results["best_value"] == best["value"] and results["best_overrides"] == best["overrides"]
    assert results["n_failed"] == 3 - len(done)
    assert f"Best of 3 trials ({3 - len(done)} failed): val/loss_best={best['value']:.4g}" in stdout


@pytest.mark.slow
def test_optuna_search_is_reproducible_with_its_seed(tmp_path):
    runs = [search(tmp_path / str(i), "hydra.sweeper.n_trials=2", "model=cnn")[2] for i in range(2)]
    assert [t["overrides"] for t in runs[0]["trials"]] == [t["overrides"] for t in runs[1]["trials"]]
    assert any(o.startswith("model.net.channels=") for o in runs[0]["trials"][0]["overrides"])


def test_a_stopped_search_saves_the_trials_so_far(tmp_path):
    """Ctrl-C between trials (or a job stopped by SIGTERM) left no optuna_results.yaml."""
    line = ["-m", "print_config=false", "debug=limit", "hparams_search=optuna", "hydra.sweeper.n_trials=4"]
    proc = subprocess.Popen(
        [Path(sys.executable).parent / "litlab-train", *line], cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("logs/train/multiruns/*/1_*")) and time.monotonic() < deadline:
        time.sleep(0.05)  # the second trial's directory: the first one is told
    proc.send_signal(signal.SIGINT)
    stderr = proc.communicate(timeout=120)[1]
    (saved,) = tmp_path.glob("logs/train/multiruns/*/optuna_results.yaml")
    results = OmegaConf.load(saved)
    assert proc.returncode == 130, stderr
    assert results.trials[0].state == "complete" and results.best_value == results.trials[0].value
    assert results.stopped == f"after {results.n_trials} of 4 trials" and results.n_trials < 4
    assert f"The search stopped after {results.n_trials} of 4 trials; results so far: {saved}" in stderr


def test_optuna_net_params_follow_each_trials_model(tmp_path):
    """With model=mlp,cnn a cnn trial got the MLP's hidden_sizes (net_params of the composed config's net),
    which Hydra refused: the search ended at that trial."""
    _, _, results = search(tmp_path, "model=mlp,cnn", "hydra.sweeper.n_trials=2", "seed=1")
    net_keys = {"mlp": "model.net.hidden_sizes", "cnn": "model.net.channels"}
    models = set()
    for t in results["trials"]:
        params = dict(o.split("=", 1) for o in t["overrides"])
        models.add(params["model"])
        assert t["state"] == "complete" and set(net_keys.values()) & set(params) == {net_keys[params["model"]]}
    assert models == {"mlp", "cnn"}, "with this seed the trials take both models"


def test_a_log_tagged_range_samples_integers_on_a_log_scale():
    """``tag(log, range(16, 257))`` was sampled uniformly: the tag was dropped."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from optuna.distributions import IntDistribution

    from hydra_plugins.litlab_optuna.sweeper import distribution
    from litlab.rules import ConfigError

    parse = OverridesParser.create().parse_override
    assert distribution(parse("data.batch_size=tag(log, range(16, 257))")) == IntDistribution(16, 256, log=True)
    assert distribution(parse("data.batch_size=range(16, 257)")) == IntDistribution(16, 256)
    for bad in ("tag(log, range(16, 257, 16))", "tag(log, range(0.1, 1, 0.1))"):  # Optuna's log scale steps by 1
        with pytest.raises(ConfigError, match=r"^data\.batch_size=tag\(log, range.*: Optuna cannot sample it: "):
            distribution(parse(f"data.batch_size={bad}"))


BAD_SEARCHES = {
    # Sweeps of the command line, which only the sweeper sees (they were a traceback, exit 1).
    "glob": (
        "data.batch_size=glob(*)",
        "data.batch_size=glob(*): an Optuna search takes choice(), range() or interval()",
    ),
    "log-scale-from-below-0": (
        "model.optimizer.lr=tag(log,interval(-1,1))",
        "model.optimizer.lr=tag(log,interval(-1,1)): Optuna cannot sample it: `low > 0` must hold for `log=True`",
    ),
    # Keys no job's config has: Hydra refused them as the first trial was composed, ending the search.
    "misspelled-param": (
        "++hydra.sweeper.params={model.net.dropuot:'interval(0.0,0.5)'}",
        "model.net.dropuot: the search sets it, but the config has no such key; did you mean model.net.dropout?",
    ),
    "misspelled-net-param-of-a-swept-model": (
        "model=mlp,cnn ++hydra.sweeper.net_params.cnn={model.net.chanels:'choice([8],[16])'}",
        "model.net.chanels: the search sets it, but the config with model=cnn has no such key; "
        "did you mean model.net.channels?",
    ),
    # Stored studies (stored_studies puts them in each directory): Optuna merged a search the other way into
    # one, failed a trial with RUNNING left on changed choices, and a storage that did not open was a traceback.
    "storage-cannot-open": (
        "hydra.sweeper.storage=sqlite:////nonexistent/dir/x.db",
        "hydra.sweeper.storage=sqlite:////nonexistent/dir/x.db: cannot open it (",
    ),
    "stored-study-maximizes": (
        "hydra.sweeper.storage=sqlite:///maximized.db",
        "hydra.sweeper.direction=minimize: the stored study train (sqlite:///maximized.db) maximizes; ",
    ),
    "stored-study-other-choices": (
        "hydra.sweeper.storage=sqlite:///batch_sizes.db",
        "data.batch_size: the stored study train (sqlite:///batch_sizes.db) sampled it from choice(8, 16), "
        "not choice(32, 64, 128) (",
    ),
    # Settings, checked before Hydra starts (they were Hydra's "Error in call to target", exit 1).
    "n_trials-not-a-number": ("hydra.sweeper.n_trials=abc", "hydra.sweeper.n_trials=abc: must be an integer >= 1"),
}


def stored_studies(cwd: Path) -> None:
    """Studies named ``train`` (the sweeper's default study_name): one maximized, one that sampled other batch sizes."""
    import optuna
    from optuna.distributions import CategoricalDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(storage=f"sqlite:///{cwd / 'maximized.db'}", study_name="train", direction="maximize")
    study = optuna.create_study(storage=f"sqlite:///{cwd / 'batch_sizes.db'}", study_name="train")
    sizes = {"data.batch_size": CategoricalDistribution(["8", "16"])}
    study.add_trial(optuna.trial.create_trial(params={"data.batch_size": "8"}, distributions=sizes, value=1.0))


@pytest.fixture(scope="module")
def bad_searches(tmp_path_factory):
    """Each search of BAD_SEARCHES started by litlab-train -m in a directory of its own (one process for all)."""
    lines = {
        name: ("litlab-train", "-m", "hparams_search=optuna", *override.split(" "))
        for name, (override, _) in BAD_SEARCHES.items()
    }
    return cli_each(lines, tmp_path_factory.mktemp("bad_searches"), stored_studies)


@pytest.mark.parametrize("case", BAD_SEARCHES)
def test_optuna_bad_search_is_one_line_and_exit_2(bad_searches, case):
    proc, cwd = bad_searches[case]
    message = BAD_SEARCHES[case][1]
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"litlab: error: {message}") and proc.stderr.count("\n") == 1, proc.stderr
    assert not (cwd / "logs").exists()


@pytest.mark.slow
def test_a_continued_study_samples_new_trials(tmp_path):
    """A study kept in a database and continued drew the same first trials again (its sampler restarted at its seed)."""
    storage = f"hydra.sweeper.storage=sqlite:///{tmp_path / 'optuna.db'}"
    first = search(tmp_path / "a", "hydra.sweeper.n_trials=1", storage, "trainer.max_epochs=1")[2]["trials"]
    stdout, _, results = search(tmp_path / "b", "hydra.sweeper.n_trials=1", storage, "trainer.max_epochs=1")
    assert "Continuing study train (1 trials so far)" in stdout
    assert results["trials"][0]["overrides"] != first[0]["overrides"]
