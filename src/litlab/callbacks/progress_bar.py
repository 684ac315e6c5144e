"""Lightning's tqdm progress bar, redrawn by the clock instead of every N batches."""

import time
from typing import Any

from lightning.pytorch.callbacks import TQDMProgressBar


class ProgressBar(TQDMProgressBar):
    """Redraws at most every ``min_interval`` seconds, and at the end of each loop.

    A redraw gathers and formats the progress-bar metrics, about 0.3 ms: every 20 batches
    that is 1-2% of a small MLP's step, while a model at one step a second would move its bar
    only every 20 seconds. A clock serves both. ``refresh_rate=0`` turns the bar off, as in
    Lightning; any other value only switches it on (the clock decides when to redraw).
    """

    def __init__(self, min_interval: float = 0.5, refresh_rate: int = 1, **kwargs: Any) -> None:
        super().__init__(refresh_rate=refresh_rate, **kwargs)
        self.min_interval = min_interval
        self._last_draw = -float("inf")

    def _should_update(self, current: int, total: int) -> bool:  # Lightning's check before each redraw
        if not self.is_enabled:
            return False
        now = time.monotonic()
        if current == total or now - self._last_draw >= self.min_interval:
            self._last_draw = now
            return True
        return False
