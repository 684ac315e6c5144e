"""The LightningModule that every task shares: a net from config, its optimizer and schedule."""

from collections.abc import Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn

from litlab.finetune import as_list, covers, top_level, unknown_prefixes
from litlab.models import build_net
from litlab.optim import build_optimizer, build_scheduler
from litlab.tasks.metrics import MeanMetric, Meters

STAGES = ("train", "val", "test")


class Task(L.LightningModule):
    """Wraps any net of ``litlab.models``; subclasses choose the loss and the metrics.

    Every ``__init__`` argument is a plain number, string, list or dict, so checkpoints load
    with ``torch.load(weights_only=True)`` and ``load_from_checkpoint`` rebuilds the net.
    A batch is ``(x, y)`` or ``(x, y, mask)``, the mask marking real tokens of padded sequences.
    """

    name: str
    #: The data config key that sizes the net's output: ``num_classes``, ``num_labels``, ``num_targets``.
    size_key: str
    #: Data config keys this task takes as arguments (the data decides the model's I/O).
    data_keys: tuple[str, ...] = ("input_shape", "vocab_size")
    #: The net's output for an exported file's users: its name and what it means.
    output: tuple[str, str] = ("outputs", "predicted values")
    #: Outputs named by ``data.classes``: "one" class per sample, "any" number of labels, or None.
    classes: str | None = None

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        net: dict[str, Any],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None = None,
        vocab_size: int | None = None,
        compile: bool = False,
        freeze: Sequence[str] = (),
    ) -> None:
        super().__init__()
        extra = {"vocab_size": vocab_size} if vocab_size is not None else {}
        self.net = build_net(**net, input_shape=list(input_shape), num_outputs=num_outputs, **extra)
        self.num_outputs = num_outputs
        self.frozen = self._freeze(as_list(freeze))
        # Keyed "<stage>_loss"/"<stage>_metrics": a bare "train" key would shadow Module.train().
        # Meters: the states stay float32 under 16-true and bf16-true.
        self.meters = Meters()
        for stage in STAGES:
            self.meters[f"{stage}_loss"] = MeanMetric()
            self.meters[f"{stage}_metrics"] = self.make_metrics(num_outputs)
        # Kept out of the module tree (plain __dict__ entry) so state_dict keys stay "net.*".
        self.__dict__["_forward"] = torch.compile(self.net) if compile else self.net

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets _current_fx_name around every hook call, some 50 times a step;
        # nn.Module.__setattr__ first looks through parameters, modules and buffers (2 us each).
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def _freeze(self, prefixes: list[str]) -> list[nn.Module]:
        """Stop the gradients of the net's parameters under ``prefixes``; the modules they name."""
        names = [n for n, _ in self.net.named_parameters()]
        unknown = unknown_prefixes(prefixes, names)
        if unknown:
            parts = ", ".join(top_level(names))
            raise ValueError(f"model.freeze: {unknown[0]} names no parameter of the net; its parts: {parts}")
        for name, p in self.net.named_parameters():
            if any(covers(prefix, name) for prefix in prefixes):
                p.requires_grad_(False)
        if prefixes and not any(p.requires_grad for p in self.net.parameters()):
            raise ValueError(f"model.freeze=[{','.join(prefixes)}] freezes every parameter: nothing would train")
        modules = dict(self.net.named_modules())
        return [modules[p] for p in prefixes if p in modules]

    def on_train_start(self) -> None:
        # Frozen modules stay in eval mode: BatchNorm keeps the statistics the weights were trained
        # with and dropout is off. Set here, after Lightning's check that everything trains.
        for module in self.frozen:
            module.eval()

    @staticmethod
    def make_metrics(num_outputs: int) -> nn.Module:
        raise NotImplementedError

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return self._forward(x) if mask is None else self._forward(x, mask)

    def _shared_step(self, batch: Sequence[Tensor], stage: str) -> Tensor:
        x, y, *mask = batch
        output = self(x, *mask)
        loss = self.loss(output, y)
        self.meters[f"{stage}_loss"].update(loss, y.shape[0])
        self.meters[f"{stage}_metrics"].update(output, y)
        return loss

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        loss = self._shared_step(batch, "train")
        # A per-step scalar only when the logger will write it: self.log costs on every call. Not
        # prog_bar: Lightning would read it back to the host after every later step of the epoch
        # (a GPU sync each step); litlab's ProgressBar shows it, read at a redraw.
        if (self.global_step + 1) % self.trainer.log_every_n_steps == 0:  # the steps Lightning writes out
            self.log("train/loss_step", loss, on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def readout(self, output: Tensor) -> Tensor:
        """What a user reads from the net's output (probabilities for classifiers)."""
        return output

    @staticmethod
    def checked_targets(y: Tensor, where: str, size: int | None) -> Tensor:
        """``y`` typed for the loss; ``ValueError`` naming ``where`` if it cannot be this task's targets.

        ``size`` is the data config's ``size_key`` value, None when not given.
        """
        raise NotImplementedError

    @staticmethod
    def teacher_targets(scores: Tensor, noise: Tensor) -> Tensor:
        """The targets of a synthetic teacher's ``scores`` (``litlab.data.synthetic``); ``noise``: scaled gaussian."""
        raise NotImplementedError

    @staticmethod
    def prediction_columns(outputs: np.ndarray, classes: list[str] | None) -> tuple[dict, dict]:
        """The ``predictions.npy`` fields and ``predictions.csv`` columns of ``readout`` values, by name.

        Each is an array or list with one entry per sample; ``classes`` names the outputs of a classifier.
        """
        raise NotImplementedError

    def predict_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        x, _, *mask = batch
        return self.readout(self(x, *mask))

    def _log_epoch(self, stage: str) -> None:
        values = {"loss": self.meters[f"{stage}_loss"].compute(), **self.meters[f"{stage}_metrics"].compute()}
        self.log_dict({f"{stage}/{k}": v for k, v in values.items()}, prog_bar=stage != "test")
        self._reset(stage)

    def _reset(self, stage: str) -> None:
        self.meters[f"{stage}_loss"].reset()
        self.meters[f"{stage}_metrics"].reset()

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        # Lightning's sanity check runs validation before training: count it nowhere.
        if self.trainer.sanity_checking:
            self._reset("val")
            return
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def configure_optimizers(self) -> Any:
        optimizer = build_optimizer(self.net, **self.hparams.optimizer)
        if not self.hparams.scheduler:
            return optimizer
        scheduler = build_scheduler(optimizer, self.trainer.estimated_stepping_batches, **self.hparams.scheduler)
        if "monitor" in scheduler:  # it reads a validation metric: it can step only after the epochs that validate
            scheduler["frequency"] = self.trainer.check_val_every_n_epoch or 1
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        import platform

        import litlab

        checkpoint["task"] = self.name
        # Lightning records its own version; these say what else a reload months later needs.
        checkpoint["versions"] = {
            "torch": str(torch.__version__),  # a str subclass that weights-only loading refuses
            "litlab": litlab.__version__,
            "python": platform.python_version(),
        }
