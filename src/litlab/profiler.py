"""A pass-through profiler that costs nothing per hook call."""

import contextlib

from lightning.pytorch.profilers import PassThroughProfiler


class NoProfiler(PassThroughProfiler):
    """Lightning's default profiler without its per-call generator.

    Lightning wraps each hook call, of the module and of every callback, in
    ``profiler.profile(name)``: some 60 calls per training step with litlab's default
    callbacks. The base class makes each one a ``@contextmanager`` generator; one shared
    ``nullcontext`` does the same nothing for less (docs/performance.md has the numbers).
    """

    _null = contextlib.nullcontext()

    def profile(self, action_name: str) -> contextlib.nullcontext:
        return self._null
