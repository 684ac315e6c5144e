"""An exponential moving average of the weights, which validation, checkpoints and the test use."""

from functools import partial
from itertools import chain
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor


class EMA(EMAWeightAveraging):
    """Lightning's ``EMAWeightAveraging``, tested with the average that validation chose.

    Validation swaps the average in, and a checkpoint's ``state_dict`` holds the average (the raw
    weights go under ``current_model_state``, for resuming). What differs from Lightning's:

    - Lightning's callback loads the raw weights back whenever a checkpoint is read, so
      ``trainer.test(ckpt_path="best")`` after training would test them; outside fitting the
      checkpoint's average is left in place.
    - A run stopped during validation (preemption saves a checkpoint then) has the average
      swapped in: it is swapped back first, so the checkpoint does not trade the two.
    - The average lives on the module's device (Lightning's stays where the module was at setup:
      the CPU).
    - Under ``bf16-true`` and ``16-true`` the average stays float32 (it is copied before Lightning
      casts the module): validation's swap no longer rounds it to the weights' dtype.
    - The update is torch's ``lerp``: ``decay * a + (1 - decay) * a`` is not ``a`` in floating
      point, so Lightning's formula moved frozen weights and BatchNorm statistics
      (``model.freeze``) by rounding; ``lerp`` leaves them exact.
    - Until the first update (``update_starting_at_step`` / ``_epoch``) there is no average:
      validation, checkpoints and the end of training use the weights. Lightning's used the copy
      taken at setup, the untrained weights, and the run tested those.
    """

    swapped = False
    #: While swapped: the average's own tensors of a wider dtype than the weights, by position.
    set_aside: dict[int, Tensor]

    def __init__(self, decay: float = 0.999, **kwargs: Any) -> None:
        super().__init__(decay=decay, **kwargs)
        # The AveragedModel's arguments (Lightning's own attribute).
        self._kwargs["avg_fn"] = partial(_lerp, weight=1 - decay)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning builds the average in setup, before the strategy moves the module to its device:
        # left on the CPU, each update would copy the weights off the GPU (a sync every step).
        if self._average_model is not None and self._device is None:
            self._average_model.to(pl_module.device)

    def averaged(self) -> bool:
        """Whether there is an average yet: one update at least."""
        return self._average_model is not None and int(self._average_model.n_averaged) > 0

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.averaged():
            self._swap_models(pl_module)
            self.swapped = True

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.swapped:
            super().on_validation_epoch_end(trainer, pl_module)
            self.swapped = False

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        # Runs before litlab's Preemption callback saves: the callbacks group comes first.
        if self.swapped:
            self._swap_models(pl_module)
            self.swapped = False

    def _swap_models(self, pl_module: L.LightningModule) -> None:
        # Lightning's swap copies the raw weights into the average's tensors and back: a float32
        # average of bfloat16 weights came back rounded to bfloat16, once per validation (an
        # average moving less than that between validations stood still). Such a tensor is set
        # aside instead, and a copy of the weights takes its place.
        average = self._average_model.module
        pairs = zip(
            chain(average.parameters(), average.buffers()),
            chain(pl_module.parameters(), pl_module.buffers()),
            strict=True,
        )
        if not self.swapped:
            self.set_aside = {}
        for i, (avg, current) in enumerate(pairs):
            if self.swapped and i in self.set_aside:  # back: the raw weights, and the average as it was
                current.data.copy_(avg.data)
                avg.data = self.set_aside.pop(i)
            elif not self.swapped and avg.dtype != current.dtype:
                self.set_aside[i], avg.data = avg.data, current.data.clone()
                current.data.copy_(self.set_aside[i])
            else:  # Lightning's swap, exact between tensors of one dtype
                held = avg.data.clone()
                avg.data.copy_(current.data)
                current.data.copy_(held)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.averaged():
            super().on_train_end(trainer, pl_module)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
        if self._average_model is not None and not self.averaged():  # the average is the weights until it starts
            checkpoint["state_dict"] = checkpoint["current_model_state"]

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)


@torch.no_grad()
def _lerp(average: Tensor, current: Tensor, num_averaged: Tensor, weight: float) -> Tensor:
    """``average`` moved ``weight`` of the way to ``current``: exactly ``average`` where the two are equal."""
    if not average.is_floating_point():  # BatchNorm's batch count
        return average * (1 - weight) + current * weight
    return average.lerp(current.to(average.dtype), weight)
