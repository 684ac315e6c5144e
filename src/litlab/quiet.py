"""Keep Lightning's console to what a researcher needs to read."""

import logging
import warnings


def _not_an_advert(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("💡 Tip")


def quiet_lightning() -> None:
    """Silence three kinds of noise that a default run would otherwise print.

    - ``import lightning`` adds a console handler to its package logger whose records also
      reach the root logger that Hydra sets up: every message would be printed twice.
    - Lightning logs "Tip" adverts for its cloud products on every run.
    - Lightning 2.6 calls ``isinstance(treespec, LeafSpec)``, which torch>=2.10 deprecates;
      the warning is about Lightning's own code, nothing a litlab user can change.
    - Lightning warns that any ``IterableDataset`` with ``__len__`` may miscount under workers;
      litlab's ``StreamDataset`` shards by worker itself, so its length is exact.
    """
    logging.getLogger("lightning").handlers.clear()
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if _not_an_advert not in rank_zero.filters:
        rank_zero.addFilter(_not_an_advert)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")
    warnings.filterwarnings("ignore", message=r"Your `IterableDataset` has `__len__` defined")
