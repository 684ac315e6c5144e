"""Trainer features from config: precision, clipping, early stopping, schedules, debug modes."""

import lightning as L
import pytest
import torch
from conftest import FAST, compose_cfg, read_metrics
from torch.utils.data import TensorDataset

from litlab.data.base import DataModule
from litlab.models import NETS
from litlab.tasks import Regressor, Task, load_task

LIMIT = ["debug=limit"]


@pytest.mark.parametrize("model", sorted(NETS))
def test_fast_dev_run_every_model_on_digits(train_in_process, model):
    metrics, run_dir = train_in_process(f"model={model}", "debug=fast_dev_run")
    assert {"train/loss", "test/acc"} <= set(metrics)
    assert not list(run_dir.glob("checkpoints/*")), "nothing for a later ckpt_path=last to resume"


@pytest.mark.parametrize("precision", ["bf16-mixed", "bf16-true"])
def test_bf16_runs_on_cpu_with_the_default_callbacks(train_in_process, precision):
    metrics, _ = train_in_process(f"trainer.precision={precision}", "trainer=cpu", *LIMIT, "logger=tensorboard")
    assert metrics["train/loss"] == metrics["train/loss"]  # not NaN


def test_bf16_true_test_metrics_equal_float32_ones_of_the_same_checkpoint(train_in_process):
    # 1500 test samples of 2 classes: confusion-matrix cells pass 256, where a bfloat16 count stops
    # (256 + 1 rounds to 256); the run reported test/acc 0.75 where the checkpoint had 0.94.
    from hydra.utils import instantiate

    from litlab.checkpoint_data import checkpoint_config

    data = ["data=synthetic", "data.num_classes=2", "data.num_test=1500"]
    short = ["trainer.max_epochs=1", "+trainer.limit_train_batches=10"]
    metrics, run_dir = train_in_process("trainer.precision=bf16-true", "trainer=cpu", *data, *short)
    ckpt = read_metrics(run_dir)["best_checkpoint"]
    datamodule = instantiate(checkpoint_config(ckpt)["data"])
    trainer = L.Trainer(precision="32-true", logger=False, enable_progress_bar=False, enable_model_summary=False)
    (float32,) = trainer.test(load_task(ckpt), datamodule=datamodule, verbose=False)
    assert metrics["test/acc"] == pytest.approx(float32["test/acc"], abs=0.01)
    assert metrics["test/loss"] == pytest.approx(float32["test/loss"], rel=0.02)


def test_64_true_precision(train_in_process):
    train_in_process("trainer.precision=64-true", "trainer=cpu", "debug=fast_dev_run")


def _norm(module) -> float:
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))


def test_gradient_clipping_by_norm(train_in_process, monkeypatch):
    before, after = [], []
    clip = Task.clip_gradients

    def clip_and_record(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        before.append(_norm(self))
        clip(self, optimizer, gradient_clip_val, gradient_clip_algorithm)
        after.append(_norm(self))

    monkeypatch.setattr(Task, "clip_gradients", clip_and_record)
    train_in_process(
        "trainer.gradient_clip_val=0.5", "trainer.gradient_clip_algorithm=norm", "model.optimizer.lr=0.1", *LIMIT
    )
    assert max(before) > 0.5, "the test needs gradients that would exceed the bound"
    assert max(after) <= 0.5 + 1e-4
    assert len(after) == 10


def test_early_stopping_stops_a_stalled_run_and_tests_the_best(train_in_process, caplog):
    # lr=0: the weights never move, val/loss never improves after the first epoch.
    caplog.set_level("INFO", logger="litlab.train")
    metrics, run_dir = train_in_process(
        "model.optimizer.lr=0.0", "model.scheduler=null", "callbacks.early_stopping.patience=2", "trainer.max_epochs=30"
    )
    summary = read_metrics(run_dir)
    assert summary["epochs"] == 3, "first epoch, then two without improvement"
    assert summary["best_checkpoint"].endswith("epoch_000-step_000040.ckpt")
    assert "early stopping in epoch 2: Monitored metric val/loss did not improve in the last 2 records" in caplog.text
    # The tested model is the best checkpoint: scoring it again gives the same test metrics.
    task = load_task(summary["best_checkpoint"]).eval()
    dm = DigitsDataModuleFromConfig(run_dir)
    x, y = dm.splits["test"].tensors
    acc = (task(x).argmax(-1) == y).float().mean().item()
    assert acc == pytest.approx(metrics["test/acc"], abs=1e-6)


def DigitsDataModuleFromConfig(run_dir):
    from hydra.utils import instantiate

    ckpt = torch.load(read_metrics(run_dir)["best_checkpoint"], weights_only=True)
    dm = instantiate(ckpt["config"]["data"])
    dm.setup("test")
    return dm


@pytest.mark.parametrize(
    "overrides",
    [
        ["model/scheduler=onecycle"],
        ["model/scheduler=plateau"],
        ["model/scheduler=plateau", "trainer.check_val_every_n_epoch=2", "trainer.max_epochs=3"],
        ["model.scheduler=null"],
        ["model/optimizer=sgd"],
        ["model/optimizer=adam", "model.optimizer.lr=1e-3"],
        ["trainer.accumulate_grad_batches=2", "trainer.gradient_clip_val=1.0", "trainer.gradient_clip_algorithm=value"],
        ["trainer.val_check_interval=0.5", "trainer.deterministic=true"],
    ],
    ids=lambda o: " ".join(o),
)
def test_optimizer_schedule_and_trainer_options_run(train_in_process, overrides):
    metrics, _ = train_in_process(*overrides, *LIMIT)
    assert metrics["train/loss"] == metrics["train/loss"]


@pytest.mark.parametrize("debug", ["fast_dev_run", "overfit", "limit", "profiler"])
def test_debug_modes(train_in_process, debug):
    extra = ["trainer.max_epochs=3"] if debug in ("overfit", "profiler") else []
    train_in_process(f"debug={debug}", *extra)


@pytest.mark.parametrize("logger", ["csv", "none"])
def test_other_loggers(train_in_process, logger):
    _, run_dir = train_in_process(f"logger={logger}", "debug=limit")
    assert (run_dir / "metrics.json").exists()
    assert (logger == "csv") == (run_dir / "csv" / "metrics.csv").exists()


def test_no_callbacks_and_test_only_switches(train_in_process):
    metrics, run_dir = train_in_process("callbacks=none", "trainer.enable_checkpointing=false", "debug=limit")
    assert read_metrics(run_dir)["best_checkpoint"] is None and "test/acc" in metrics
    assert not (run_dir / "checkpoints").exists()
    metrics, _ = train_in_process("test=false", "debug=limit")
    assert not any(k.startswith("test/") for k in metrics)


def test_same_seed_same_result(train_in_process):
    a, _ = train_in_process("seed=7", "trainer.deterministic=true", *LIMIT)
    b, _ = train_in_process("seed=7", "trainer.deterministic=true", *LIMIT)
    c, _ = train_in_process("seed=8", "trainer.deterministic=true", *LIMIT)
    assert a == b
    assert a["train/loss"] != c["train/loss"]


def test_seed_null_draws_a_seed_that_repeats_the_run(train_in_process):
    drawn, run_dir = train_in_process("seed=null", "trainer.deterministic=true", *LIMIT)
    seed = read_metrics(run_dir)["seed"]
    assert isinstance(seed, int)
    again, _ = train_in_process(f"seed={seed}", "trainer.deterministic=true", *LIMIT)
    assert drawn == again


def test_resume_last_continues_training(train_in_process):
    _, run_dir = train_in_process("trainer.max_epochs=2", "callbacks.early_stopping.patience=100")
    _, second_dir = train_in_process(
        "trainer.max_epochs=3", f"ckpt_path={run_dir}", "callbacks.early_stopping.patience=100"
    )
    resumed = read_metrics(second_dir)
    assert resumed["epochs"] == 3 and resumed["steps"] == read_metrics(run_dir)["steps"] * 3 // 2


class Waves(DataModule):
    """y = sin(x) + cos(2x): a small regression problem."""

    def load(self):
        g = torch.Generator().manual_seed(0)
        x = torch.rand(600, 2, generator=g) * 6 - 3
        y = torch.stack([x[:, 0].sin() + (2 * x[:, 1]).cos()], dim=1)
        return [TensorDataset(x[i : i + 200], y[i : i + 200]) for i in (0, 200, 400)]


def test_regressor_learns(tmp_path):
    dm = Waves(task="regression", input_shape=[2], num_targets=1, batch_size=32)
    task = Regressor(
        input_shape=[2],
        num_targets=1,
        net={"arch": "mlp", "hidden_sizes": [64, 64]},
        optimizer={"name": "adamw", "lr": 1e-2},
        scheduler=None,
    )
    trainer = L.Trainer(
        max_epochs=40,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(task, datamodule=dm)
    (result,) = trainer.test(task, datamodule=dm, verbose=False)
    assert (
        result["test/mse"] < 0.05
        and result["test/mae"] < 0.2
        and result["test/loss"] == pytest.approx(result["test/mse"])
    )


def test_a_step_budget_shorter_than_an_epoch_finishes(train_in_process):
    metrics, run_dir = train_in_process("trainer.max_steps=5")
    assert read_metrics(run_dir)["steps"] == 5 and "test/acc" in metrics


def test_progress_bar_redraws_by_the_clock_and_at_the_end(monkeypatch):
    from litlab.callbacks import ProgressBar, progress_bar

    now = [100.0]
    monkeypatch.setattr(progress_bar.time, "monotonic", lambda: now[0])
    bar = ProgressBar(min_interval=0.5)
    draws = []
    for batch in range(1, 11):  # 10 batches, 0.2 s apart
        now[0] += 0.2
        if bar._should_update(batch, 10):
            draws.append(batch)
    assert draws == [1, 4, 7, 10]  # the first, then every 0.5 s or more, and the last
    assert not ProgressBar(refresh_rate=0)._should_update(10, 10)
    # The method overridden is Lightning's own: were it renamed, the bar would redraw every batch.
    from lightning.pytorch.callbacks import TQDMProgressBar

    assert callable(TQDMProgressBar._should_update)


def test_without_a_configured_bar_litlab_adds_its_own_not_lightnings():
    """callbacks=none would get Lightning's TQDM bar, which redraws (and reads its metrics) every batch."""
    from lightning.pytorch.callbacks import TQDMProgressBar

    from litlab.callbacks import ProgressBar
    from litlab.callbacks.progress_bar import with_progress_bar

    (bar,) = with_progress_bar([], {})
    assert isinstance(bar, ProgressBar)
    assert with_progress_bar([], {"enable_progress_bar": False}) == []
    lightning_bar = TQDMProgressBar()
    assert with_progress_bar([lightning_bar], {}) == [lightning_bar]  # a bar the user chose stays


def test_progress_bar_shows_the_step_loss_logged_without_prog_bar():
    """train/loss_step is logged without prog_bar (Lightning would read it back every step); the bar shows it."""
    from types import SimpleNamespace

    from litlab.callbacks import ProgressBar

    trainer = SimpleNamespace(
        loggers=[], progress_bar_metrics={"val/loss": 0.5}, logged_metrics={"train/loss_step": torch.tensor(0.25)}
    )
    assert ProgressBar().get_metrics(trainer, None) == {"train/loss_step": 0.25, "val/loss": 0.5}
    assert ProgressBar(step_metrics=[]).get_metrics(trainer, None) == {"val/loss": 0.5}


def test_threads_key_sets_torch_threads_for_the_run(train_in_process):
    before = torch.get_num_threads()  # 1: conftest sets OMP_NUM_THREADS
    try:
        train_in_process("threads=3", "debug=fast_dev_run")
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_seed_null_is_one_seed_for_all_ranks(monkeypatch):
    from litlab.rules import ConfigError
    from litlab.seed import run_seed

    for key in ("LOCAL_RANK", "WORLD_SIZE", "TORCHELASTIC_RUN_ID", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PL_GLOBAL_SEED", "123")  # left by an earlier job of an in-process sweep
    assert run_seed(None) != run_seed(None)
    monkeypatch.setenv("LOCAL_RANK", "1")  # a DDP rank started by rank 0, which drew 123
    assert run_seed(None) == 123 and run_seed(5) == 5
    monkeypatch.delenv("LOCAL_RANK")
    # The tasks of one srun step (SLURM, submitit): no parent to inherit from, but a step id they share.
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_STEP_ID", "0")
    monkeypatch.setenv("SLURM_PROCID", "1")
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "2")
    first = run_seed(None)
    assert run_seed(None) == first
    monkeypatch.setenv("SLURM_STEP_ID", "1")  # the next step of the same allocation: another run
    assert run_seed(None) != first
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "1")  # one task (say, a script in an salloc -n4 shell)
    assert run_seed(None) != run_seed(None)
    # torchrun: its run id, unless it has none to give.
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "abc")
    assert run_seed(None) == run_seed(None)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")
    with pytest.raises(ConfigError, match="torchrun: give --rdzv-id"):
        run_seed(None)


def test_a_resumed_seed_null_run_keeps_its_seed(tmp_path):
    from litlab.train import train

    def run(epochs: int) -> int:  # the second run finds the first one's last.ckpt, as a requeued job does
        overrides = [*FAST, f"paths.root_dir={tmp_path}", "seed=null", f"trainer.max_epochs={epochs}", "logger=none"]
        train(compose_cfg(overrides, tmp_path / "run"))
        return read_metrics(tmp_path / "run")["seed"]

    assert run(1) == run(2)


def test_balanced_class_weights_come_from_the_training_labels_and_stay_with_the_checkpoint(train_in_process, tmp_path):
    import numpy as np
    import torch.nn.functional as F

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], [300, 60, 40])  # imbalanced 15:3:2
    x = (rng.normal(size=(400, 4)) + y[:, None]).astype(np.float32)
    np.savez(tmp_path / "imbalanced.npz", x=x, y=y)
    data = [
        "data=arrays",
        f"data.path={tmp_path / 'imbalanced.npz'}",
        "data.input_shape=[4]",
        "data.num_classes=3",
        "data.val_split=0.1",
        "data.test_split=0.1",
    ]
    _, run_dir = train_in_process(*data, "+model.class_weights=balanced", "debug=limit", "logger=none")
    ckpt = read_metrics(run_dir)["best_checkpoint"]
    held = torch.load(ckpt, weights_only=True)["hyper_parameters"]["class_weights"]
    task = load_task(ckpt)
    from hydra.utils import instantiate

    dm = instantiate(compose_cfg([*FAST, *data], tmp_path / "dm").data)
    dm.setup("fit")
    counts = torch.bincount(dm.splits["train"].tensors[1], minlength=3).double()
    expected = (counts.sum() / (3 * counts)).tolist()
    assert held == pytest.approx(expected) and expected[2] > expected[1] > expected[0]
    # The loaded task weighs its loss the same, without the data.
    logits, target = torch.randn(8, 3), torch.tensor([0, 1, 2, 2, 1, 0, 0, 2])
    weighted = F.cross_entropy(logits, target, weight=torch.tensor(expected))
    torch.testing.assert_close(task.loss(logits, target), weighted)


def test_balanced_class_weights_need_listed_labels():
    """A custom dataset that does not list its labels (a stream is refused before the run: test_validate)."""
    from types import SimpleNamespace

    from litlab.tasks.classification import balanced_weights

    dm = SimpleNamespace(splits={"train": torch.utils.data.Dataset()})
    with pytest.raises(ValueError, match="class_weights=balanced needs the training labels"):
        balanced_weights(dm, 3)


def test_class_weights_keep_float32_under_autocast_and_follow_the_output_otherwise():
    from litlab.tasks import Classifier

    task = Classifier(
        [4], 2, {"arch": "mlp", "hidden_sizes": [8]}, {"name": "adamw", "lr": 1e-3}, class_weights=[1, 5e5]
    )
    logits, target = torch.randn(6, 2), torch.tensor([0, 1, 0, 1, 0, 1])
    with torch.autocast("cpu", dtype=torch.float16):  # 5e5 is inf in float16
        assert torch.isfinite(task.loss(logits.half(), target))
    assert task.loss(logits.double(), target).dtype == torch.float64  # 64-true
    assert task.loss(logits.bfloat16(), target).dtype == torch.bfloat16  # bf16-true


def test_each_validation_of_an_epoch_keeps_its_own_checkpoint(train_in_process):
    """With val_check_interval the second validation of an epoch overwrote the first's file (the best could be lost)."""
    _, run_dir = train_in_process(
        "debug=limit",
        "trainer.max_epochs=1",
        "trainer.val_check_interval=2",
        "callbacks.model_checkpoint.save_top_k=-1",
        "logger=none",
        "test=false",
    )
    kept = sorted(p.name for p in (run_dir / "checkpoints").glob("epoch_*.ckpt"))
    assert kept == ["epoch_000-step_000002.ckpt", "epoch_000-step_000004.ckpt"]


def test_a_last_training_batch_of_one_sample_is_named_before_training(train_in_process):
    """The default MLP batch-normalizes: 1258 digits in batches of 3 failed at the end of epoch 0 in BatchNorm."""
    from litlab.rules import ConfigError

    with pytest.raises(ConfigError, match=r"^data.batch_size=3: the 1258 training samples end in a batch of 1"):
        train_in_process("data.batch_size=3", "logger=none")
    short = ["trainer.max_steps=2", "logger=none", "test=false"]
    train_in_process("data.batch_size=3", "data.drop_last=true", *short)
    train_in_process("data.batch_size=3", "model.net.batch_norm=false", *short)
    train_in_process("data.batch_size=3", "debug=limit", "trainer.max_epochs=1", "logger=none")  # 5 batches of 3
    with pytest.raises(ConfigError, match=r"^data.batch_size=1: BatchNorm cannot normalize a batch of one sample"):
        train_in_process("data.batch_size=1", "logger=none")
    # drop_last with a batch larger than the training set: 0 steps, untrained weights tested, exit 0.
    with pytest.raises(ConfigError, match=r"^data.batch_size=2000 with data.drop_last=true: the 1258 training sam"):
        train_in_process("data.batch_size=2000", "data.drop_last=true", "logger=none")


def test_debug_overfit_trains_data_read_through_a_dataloader(train_in_process):
    """Lightning swaps in a SequentialSampler to overfit, which the resumable loader must take too."""
    metrics, run_dir = train_in_process("debug=overfit", "data=sequences", "model=rnn", "trainer.max_epochs=2")
    assert read_metrics(run_dir)["steps"] > 0 and "train/loss" in metrics
