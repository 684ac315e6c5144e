"""A NaN loss injected at a chosen step: the run stops naming the step, or skips the batch."""

import math
from typing import Any

import lightning as L
import pytest
import torch
from conftest import FAST, cli, cuda, read_metrics
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torchmetrics.aggregation import CatMetric

from litlab.callbacks import NonFiniteLossError
from litlab.tasks import Classifier
from litlab.tasks.metrics import MeanMetric


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


class _Probe(L.LightningModule):
    """A linear net with torch's AdamW, fused or not; the loss is NaN at batch ``nan_at`` of each epoch."""

    def __init__(self, fused: bool = False, nan_at: int = -1) -> None:
        super().__init__()
        self.net, self.fused, self.nan_at = torch.nn.Linear(8, 2), fused, nan_at

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        return loss * float("nan") if batch_idx == self.nan_at else loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.net.parameters(), lr=1e-2, fused=self.fused)


def _fit(action: str, nan_at: int = -1, fused: bool = False, **trainer: Any) -> tuple[L.Trainer, L.LightningModule]:
    """4 batches an epoch, 4 optimizer steps."""
    from litlab.callbacks import NanGuard

    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(64, 8), torch.randint(0, 2, (64,)))
    module = _Probe(fused, nan_at).to(trainer.pop("device", "cpu"))
    fit = L.Trainer(
        max_steps=4,
        log_every_n_steps=1,
        callbacks=[NanGuard(action=action)],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **{"accelerator": "cpu", **trainer},
    )
    fit.fit(module, torch.utils.data.DataLoader(data, batch_size=16))
    return fit, module


def _fit_fp16(fused: bool, action: str, nan_at: int = -1) -> tuple[L.Trainer, L.LightningModule]:
    from lightning.pytorch.plugins import MixedPrecision

    # Lightning turns precision="16-mixed" into bf16 on a CPU; the plugin itself runs there.
    fp16 = MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))
    return _fit(action, nan_at, fused, plugins=[fp16])


def test_fp16_grad_norm_is_unscaled_with_a_fused_optimizer_too():
    """A fused optimizer unscales inside its step, so its gradients are still x65536 in the hook."""
    norms = [float(_fit_fp16(fused, "stop")[0].callback_metrics["grad/norm"]) for fused in (False, True)]
    assert 0.1 < norms[0] < 10 and norms[1] == pytest.approx(norms[0], rel=1e-4)


def test_fp16_skip_with_a_fused_optimizer_skips_the_step():
    """Without gradients the scaler's inf check fails ("No inf checks were recorded")."""
    (plain_trainer, plain), (fused_trainer, fused) = (_fit_fp16(f, "skip", nan_at=1) for f in (False, True))
    assert fused_trainer.global_step == plain_trainer.global_step == 4
    assert torch.isfinite(fused.net.weight).all()
    for a, b in zip(plain.parameters(), fused.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_skip_drops_the_whole_accumulated_step():
    """A NaN in the first of two accumulated batches is in the summed gradients: the whole step goes."""
    trainer, module = _fit("skip", nan_at=2, accumulate_grad_batches=2)  # batches 2 and 3 make a step
    assert trainer.global_step == 4 and trainer.callbacks[0].skipped == 2  # once in each of 2 epochs
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_stop_raises_before_the_step_of_an_accumulated_nan():
    with pytest.raises(NonFiniteLossError, match=r"training loss is nan at step 1 \(epoch 0, batch 2\)"):
        _fit("stop", nan_at=2, accumulate_grad_batches=2)


class _TwoNets(L.LightningModule):
    """Manual optimization, as a GAN's: both backward passes, then both steps; ``d``'s loss NaN at batch 1.

    ``d``'s loss is counted in a metric after the steps, as manual loops do.
    """

    def __init__(self, nan_at: int = 1) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.g, self.d = torch.nn.Linear(4, 1), torch.nn.Linear(4, 1)
        self.nan_at, self.d_loss = nan_at, MeanMetric()

    def training_step(self, batch, batch_idx):
        (x,), (g_opt, d_opt) = batch, self.optimizers()
        g_loss, d_loss = self.g(x).pow(2).mean(), self.d(x).pow(2).mean()
        d_loss = d_loss * float("nan") if batch_idx == self.nan_at else d_loss
        g_opt.zero_grad()
        d_opt.zero_grad()
        self.manual_backward(g_loss)
        self.manual_backward(d_loss)
        g_opt.step()
        d_opt.step()
        self.d_loss.update(d_loss.detach(), 1)

    def configure_optimizers(self):
        return torch.optim.SGD(self.g.parameters(), lr=0.1), torch.optim.SGD(self.d.parameters(), lr=0.1)


class _ManualAccumulation(_TwoNets):
    """Manual optimization stepping every second batch; the loss of batch 0, which does not step, is NaN."""

    def training_step(self, batch, batch_idx):
        (x,), (_, opt) = batch, self.optimizers()
        loss = self.d(x).pow(2).mean()
        self.manual_backward(loss * float("nan") if batch_idx == 0 else loss)
        if batch_idx % 2:
            opt.step()
            opt.zero_grad()


@pytest.mark.parametrize("module", [_TwoNets, _ManualAccumulation])
@pytest.mark.parametrize("action", ["stop", "skip"])
def test_manual_optimization_every_optimizer_keeps_finite_weights(module, action):
    """Backward passes need not be followed by their step: each loss is checked at its backward pass."""
    from litlab.callbacks import NanGuard

    torch.manual_seed(0)
    net, guard = module(), NanGuard(action=action)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(16, 4)), batch_size=4)
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, callbacks=[guard], logger=False, enable_checkpointing=False)
    if action == "stop":
        with pytest.raises(NonFiniteLossError, match="training loss is nan at step"):
            trainer.fit(net, data)
    else:
        trainer.fit(net, data)
        assert guard.skipped == 1
    assert all(torch.isfinite(p).all() for p in net.parameters())


def test_manual_optimization_skips_only_the_optimizer_whose_gradients_are_not_finite():
    """``g``'s loss stayed finite: its steps all go through; ``d``'s NaN batch leaves the metric too."""
    from litlab.callbacks import NanGuard

    nets = {}
    for nan_at in (1, -1):
        torch.manual_seed(0)
        nets[nan_at] = net = _TwoNets(nan_at)
        data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(16, 4)), batch_size=4)
        guard = NanGuard(action="skip")
        L.Trainer(accelerator="cpu", max_epochs=1, callbacks=[guard], logger=False, enable_checkpointing=False).fit(
            net, data
        )
        assert guard.skipped == (1 if nan_at == 1 else 0)
    for a, b in zip(nets[1].g.parameters(), nets[-1].g.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    assert not torch.equal(nets[1].d.weight, nets[-1].d.weight)
    assert nets[1].d_loss.count == 3 and torch.isfinite(nets[1].d_loss.total)


class _Gathered(L.LightningModule):
    """Automatic optimization with a list-state metric (``CatMetric``): the loss NaN at batch 1."""

    def __init__(self) -> None:
        super().__init__()
        self.net, self.losses = torch.nn.Linear(4, 1), CatMetric(nan_strategy="disable")  # keeps the NaN

    def training_step(self, batch, batch_idx):
        loss = self.net(batch[0]).pow(2).mean() * (float("nan") if batch_idx == 1 else 1.0)
        self.losses.update(loss.detach())
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_skip_takes_a_batch_back_out_of_list_state_metrics():
    from litlab.callbacks import NanGuard

    net, guard = _Gathered(), NanGuard(action="skip")
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(16, 4)), batch_size=4)
    L.Trainer(accelerator="cpu", max_epochs=1, callbacks=[guard], logger=False, enable_checkpointing=False).fit(
        net, data
    )
    assert guard.skipped == 1 and len(net.losses.value) == 3


@cuda
@pytest.mark.parametrize("action", ["stop", "skip"])
def test_guard_on_a_gpu_reads_the_flag_copied_after_the_forward(action):
    """The CUDA path: the flag goes to pinned host memory behind the forward pass, no sync per step."""
    if action == "stop":
        with pytest.raises(NonFiniteLossError, match=r"training loss is nan at step 1 \(epoch 0, batch 1\)"):
            _fit(action, nan_at=1, accelerator="gpu", devices=1)
        return
    trainer, module = _fit(action, nan_at=1, accelerator="gpu", devices=1)
    assert trainer.callbacks[0].skipped == 1 and all(torch.isfinite(p).all() for p in module.parameters())


POISON = """
import lightning as L


class Poison(L.Callback):
    \"\"\"NaN inputs on rank 1 at batch 2 of each epoch: the loss there, and only there, is NaN.\"\"\"

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_rank == 1 and batch_idx == 2:
            batch[0].fill_(float("nan"))
"""


def test_ddp_ranks_skip_a_step_together_when_one_rank_has_a_nan(tmp_path, monkeypatch):
    """DDP averages one rank's NaN gradients into every rank's: each rank must skip that step."""
    (tmp_path / "poison.py").write_text(POISON)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    args = ["trainer=ddp_cpu", "trainer.max_epochs=2", "callbacks.nan_guard.action=skip", "logger=none"]
    cli("litlab-train", *FAST, *args, "+callbacks.poison._target_=poison.Poison", cwd=tmp_path)
    (run_dir,) = (tmp_path / "logs" / "train" / "runs").iterdir()
    metrics = read_metrics(run_dir)["metrics"]
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert all(torch.isfinite(t).all() for t in last["state_dict"].values())
