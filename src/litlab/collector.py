"""CPython's cyclic garbage collector, set for commands that import a million long-lived objects.

Importing torch and Lightning makes ~1M objects that live as long as the process. CPython's
full collections walk all of them again while they load (~0.6 s of a ~2.7 s import on 2
cores), and once more at exit (~1 s) just before the process frees everything anyway. Young
collections, which find almost all real garbage, stay on throughout.
"""

import functools
import gc
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

#: The third threshold while a command starts: a full collection only after 2**30 young ones.
NO_FULL = 1 << 30
_full_threshold = gc.get_threshold()[2]


def entry_point(main: F) -> F:
    """Wrap a console script's ``main``: no full collections until ``imports_done()``, none at exit.

    The exit's collection is skipped by freezing what is left: files are closed explicitly
    (atomic writes, the loggers' ``finalize``), never left to a collector at exit.
    """

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, NO_FULL)
        try:
            return main(*args, **kwargs)
        finally:
            gc.freeze()

    return wrapper  # type: ignore[return-value]


def imports_done() -> None:
    """Freeze every object that exists now, then allow full collections again; once per process.

    Frozen objects are never scanned again, so the run's own full collections stay cheap. Only
    the first call acts: a later one (the next job of an in-process sweep) would freeze the
    previous job's garbage for good.
    """
    if gc.get_threshold()[2] != NO_FULL:
        return
    gc.collect(1)  # the young garbage of start-up, cheaply, before the rest is frozen
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, _full_threshold)
