"""A NaN loss injected at a chosen step: the run stops naming the step, or skips the batch."""

import math

import pytest
import torch
from conftest import read_metrics
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from litlab.callbacks import NonFiniteLossError
from litlab.tasks import Classifier


@pytest.fixture
def nan_at(monkeypatch):
    """Make the training loss NaN at the given global steps."""

    def inject(*steps: int) -> None:
        loss = Classifier.loss

        def poisoned(self, output, target):
            value = loss(self, output, target)
            return value * float("nan") if self.training and self.global_step in steps else value

        monkeypatch.setattr(Classifier, "loss", poisoned)

    return inject


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(train_in_process, nan_at, tmp_path):
    nan_at(8)  # debug=limit: 5 steps an epoch, so epoch 1, batch 3
    every_step = ["debug=limit", "trainer.max_epochs=3", "callbacks.model_checkpoint.every_n_train_steps=1"]
    with pytest.raises(NonFiniteLossError, match=r"training loss is nan at step 8 \(epoch 1, batch 3\)"):
        train_in_process(*every_step)
    (run_dir,) = tmp_path.glob("run*")
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 8, "the checkpoint of the step before the NaN"
    assert all(torch.isfinite(t).all() for t in last["state_dict"].values())
    events = EventAccumulator(str(run_dir))
    events.Reload()
    norms = events.Scalars("grad/norm")  # log_every_n_steps=1 under debug=limit
    assert [e.step for e in norms] == list(range(8)) and all(math.isfinite(e.value) for e in norms)


def test_skip_action_drops_the_bad_batches_and_finishes(train_in_process, nan_at):
    nan_at(3, 7)
    metrics, run_dir = train_in_process("debug=limit", "callbacks.nan_guard.action=skip", "logger=none")
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    assert read_metrics(run_dir)["steps"] == 10
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert all(torch.isfinite(t).all() for t in last["state_dict"].values())


def test_unknown_action_is_refused():
    from litlab.callbacks import NanGuard

    with pytest.raises(ValueError, match=r"callbacks\.nan_guard\.action='ignore': choose one of stop, skip"):
        NanGuard(action="ignore")
