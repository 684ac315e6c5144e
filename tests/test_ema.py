"""callbacks=[default,ema]: the averaged weights are validated, checkpointed, tested; runs resume exactly."""

import torch
from conftest import FAST, compose_cfg, cuda, read_metrics
from trained import config

from litlab.eval import evaluate

EMA = [
    "callbacks=[default,ema]",
    "callbacks.ema.decay=0.9",
    "+trainer.limit_train_batches=5",
    "+trainer.limit_val_batches=2",
    "logger=none",
    "trainer.deterministic=true",
    "model.scheduler=null",  # a schedule over max_epochs would differ between the two runs of the resume test
]


def test_the_average_is_checkpointed_and_tested(train_in_process, tmp_path):
    metrics, run_dir = train_in_process(*EMA, "trainer.max_epochs=2")
    best = read_metrics(run_dir)["best_checkpoint"]
    ckpt = torch.load(best, map_location="cpu", weights_only=True)
    averaged, raw = ckpt["state_dict"], ckpt["current_model_state"]
    assert averaged.keys() == raw.keys()
    assert not torch.equal(averaged["net.head.weight"], raw["net.head.weight"])
    # litlab-eval reads the checkpoint's state_dict: the run's own test saw the same weights.
    evaluate(config("eval", tmp_path / "eval", f"ckpt_path={best}", *FAST))
    assert read_metrics(tmp_path / "eval")["metrics"]["test/loss"] == metrics["test/loss"]


def test_a_resumed_run_goes_on_with_its_average(train_in_process):
    from litlab.train import train

    _, straight = train_in_process(*EMA, "trainer.max_epochs=2")
    _, resumed = train_in_process(*EMA, "trainer.max_epochs=1")
    train(compose_cfg([*FAST, f"paths.root_dir={resumed.parent}", *EMA, "trainer.max_epochs=2"], resumed))
    assert read_metrics(resumed)["metrics"] == read_metrics(straight)["metrics"]
    a, b = (torch.load(r / "checkpoints" / "last.ckpt", weights_only=True) for r in (straight, resumed))
    for key in ("state_dict", "current_model_state", "averaging_state"):
        assert a[key].keys() == b[key].keys()
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key


def test_a_run_stopped_during_validation_saves_the_raw_weights_as_raw():
    """Preemption saves during validation, while the average is swapped in: EMA swaps it back first."""
    import lightning as L

    from litlab.callbacks import EMA

    class Net(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(3, 2)

    net, ema = Net(), EMA(decay=0.5)
    ema.setup(None, net, "fit")
    ema._average_model.update_parameters(net)  # the first update: the average is the weights as they are
    with torch.no_grad():
        net.layer.weight.add_(1.0)
    raw = net.layer.weight.detach().clone()
    ema.on_validation_epoch_start(None, net)
    assert not torch.equal(net.layer.weight, raw), "validation runs on the average"
    ema.on_exception(None, net, RuntimeError("SIGTERM during validation"))
    assert torch.equal(net.layer.weight, raw)
    ema.on_validation_epoch_end(None, net)  # not reached in a stopped run; and it swaps nothing back now
    assert torch.equal(net.layer.weight, raw)


def test_the_average_of_a_frozen_tensor_is_that_tensor_exactly():
    """model.freeze with EMA: Lightning's decay * a + (1 - decay) * a moved frozen weights and BatchNorm stats."""
    import lightning as L

    from litlab.callbacks import EMA

    class Net(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.frozen, self.trained = torch.nn.BatchNorm1d(64), torch.nn.Linear(64, 64)

    net, ema = Net(), EMA(decay=0.999)
    with torch.no_grad():
        net.frozen.weight.normal_(), net.frozen.running_var.uniform_(0.5, 2)
    ema.setup(None, net, "fit")
    for _ in range(20):
        with torch.no_grad():
            net.trained.weight.add_(0.01)
        ema._average_model.update_parameters(net)
    average = ema._average_model.module
    for name in ("weight", "bias", "running_mean", "running_var"):
        assert torch.equal(getattr(average.frozen, name), getattr(net.frozen, name)), name
    assert not torch.equal(average.trained.weight, net.trained.weight), "the trained layer is averaged"


def test_validation_gives_a_float32_average_of_bf16_weights_back_unrounded():
    """bf16-true: the average is copied before Lightning casts the module, and stays float32."""
    import lightning as L

    from litlab.callbacks import EMA

    class Net(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(3, 2)

    net, ema = Net(), EMA(decay=0.999)
    ema.setup(None, net, "fit")
    net.to(torch.bfloat16)  # HalfPrecision.convert_module, after the callbacks' setup
    for _ in range(3):
        with torch.no_grad():
            net.layer.weight.add_(0.5)
        ema._average_model.update_parameters(net)
    average, raw = ema._average_model.module.layer.weight, net.layer.weight.detach().clone()
    before = average.detach().clone()
    assert before.dtype == torch.float32 and not torch.equal(before, before.bfloat16().float())
    ema.on_validation_epoch_start(None, net)
    assert torch.equal(net.layer.weight, before.bfloat16()), "validation runs on the average"
    ema.on_validation_epoch_end(None, net)
    assert torch.equal(net.layer.weight, raw)
    assert torch.equal(ema._average_model.module.layer.weight, before), "the average came back rounded"


def test_balanced_class_weights_with_ema_and_batch_norm(train_in_process):
    """The class weights are no buffer: EMA's copy of the module has the same buffers as the module."""
    metrics, _ = train_in_process(*EMA, "+model.class_weights=balanced", "model.net.batch_norm=true")
    assert metrics["test/acc"] > 0.3


@cuda
def test_the_average_lives_on_the_gpu_beside_the_weights():
    """Lightning built it on the CPU (in setup, before the module moved): each update copied the weights over."""
    import lightning as L

    from litlab.callbacks import EMA

    seen = []

    class Where(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args):
            seen.append(next(ema._average_model.parameters()).device.type)

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(4, 2)

        def training_step(self, batch, batch_idx):
            return self.net(batch[0]).square().mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    ema = EMA(decay=0.9)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 4)), batch_size=4)
    trainer = L.Trainer(accelerator="gpu", devices=1, max_steps=2, callbacks=[ema, Where()], logger=False)
    trainer.fit(Tiny(), data)
    assert seen == ["cuda", "cuda"]


def test_before_its_first_update_the_average_is_the_weights(train_in_process):
    """update_starting_at_step: validation, the best checkpoint and the test used the untrained copy."""
    plain = [o if o != "callbacks=[default,ema]" else "callbacks=default" for o in EMA if "callbacks.ema" not in o]
    expected, _ = train_in_process(*plain, "trainer.max_epochs=2")
    metrics, run_dir = train_in_process(*EMA, "callbacks.ema.update_starting_at_step=1000", "trainer.max_epochs=2")
    assert metrics["test/loss"] == expected["test/loss"]
    ckpt = torch.load(read_metrics(run_dir)["best_checkpoint"], map_location="cpu", weights_only=True)
    assert all(torch.equal(v, ckpt["current_model_state"][k]) for k, v in ckpt["state_dict"].items())
