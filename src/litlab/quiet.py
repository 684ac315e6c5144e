"""Keep Lightning's console to what a researcher needs to read."""

import logging
import warnings


def _not_an_advert(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("💡 Tip")


def quiet_lightning() -> None:
    """Silence the noise that a run would otherwise print, each for the reason given.

    - ``import lightning`` adds console handlers to its package loggers. Imported before
      Hydra set up logging (litlab's config check does that), ``lightning.pytorch`` also stops
      propagating, so its messages would miss the run's log file; imported after, each
      message would be printed twice. Both go: Lightning logs through the root logger.
    - Lightning logs "Tip" adverts for its cloud products on every run.
    - Lightning 2.6 calls ``isinstance(treespec, LeafSpec)``, which torch>=2.10 deprecates;
      the warning is about Lightning's own code, nothing a litlab user can change.
    - Lightning warns that any ``IterableDataset`` with ``__len__`` may miscount under workers;
      litlab's ``StreamDataset`` shards by worker itself, so its length is exact.
    - Under DDP Lightning asks for ``sync_dist=True`` on epoch metrics; litlab's are torchmetrics
      meters, already reduced across ranks when computed (tasks/metrics.py).
    - Lightning warns when an epoch has fewer batches than ``log_every_n_steps``, but it counts
      those steps across epochs: the per-step scalars are still written every N steps.
    - Under ``trainer.overfit_batches`` Lightning warns of shuffling unless a loader's sampler is
      torch's ``SequentialSampler``; litlab's loaders do not shuffle then (``DataModule._loader``).
    - Under ``16-mixed``/``bf16-mixed`` the model summary says its size estimate assumes 32 bits;
      mixed precision keeps the weights in float32, so the estimate is right.
    - ``model.compile=true``: ``torch.compile`` imports torch's own ``torch.utils.mkldnn``, whose
      classes still use ``torch.jit.script_method`` (deprecated since torch 2.5); a
      ``DeprecationWarning`` about torch's code, shown only where those are turned on.
    - ``ModelCheckpoint`` warns that it cannot find its monitored key, with a hint to log it, only
      while no validation has run (once one has, the same message is an error): training stopped
      before the first validation (a short ``trainer.max_steps``), which litlab's run says itself.
    - Lightning warns of a loader with no batches "across ranks": a data split of size 0
      (``data.val_split=0``), which litlab's run names itself (no best checkpoint, no test metrics).
    """
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if _not_an_advert not in rank_zero.filters:
        rank_zero.addFilter(_not_an_advert)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")
    warnings.filterwarnings("ignore", message=r"Your `IterableDataset` has `__len__` defined")
    warnings.filterwarnings("ignore", message=r"It is recommended to use `self.log\(.*sync_dist=True")
    warnings.filterwarnings("ignore", message=r"The number of training batches \(\d+\) is smaller than the logging")
    warnings.filterwarnings("ignore", message=r"You requested to overfit but enabled \w+ dataloader shuffling")
    warnings.filterwarnings("ignore", message=r"Precision (bf)?16-mixed is not supported by the model summary")
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script_method` is deprecated", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=r"`ModelCheckpoint\(monitor=.*` could not find the monitored key")
    warnings.filterwarnings("ignore", message=r"Total length of `\w+` across ranks is zero")
