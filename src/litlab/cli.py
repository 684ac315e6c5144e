"""The console scripts (``[project.scripts]``), and how Ctrl-C ends a command that is starting: exit 130.

Standard library only: a script makes Ctrl-C end the process before it imports its command
(Hydra, then torch and Lightning in the checks); there it was a ``KeyboardInterrupt`` traceback.
"""

import contextlib
import functools
import importlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any


def quiet_ctrl_c(main: Callable[[], Any]) -> Callable[[], Any]:
    """Ctrl-C exits 130 (the shell's code for it) without a traceback, in the start-up checks too."""

    @functools.wraps(main)
    def wrapper() -> Any:
        try:
            return main()
        except KeyboardInterrupt:
            raise SystemExit(130) from None

    return wrapper


@contextlib.contextmanager
def ctrl_c_exits_at_once() -> Iterator[None]:
    """Ctrl-C while a command imports and checks its command line (writing nothing) ends the process with 130 at once.

    Not as a ``KeyboardInterrupt``: one raised in the middle of the imports the checks make (torch,
    numpy) can be swallowed by a library's import, and the process went on with numpy half loaded,
    to fail later with an unrelated traceback (AttributeError on ``numpy._core``, exit 1).
    """

    def exit_130(signum: int, frame: Any) -> None:
        os._exit(130)

    ignored = signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, None)  # a background job's: left so
    if ignored or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, exit_130)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _run(command: str) -> Any:
    """``main()`` of ``litlab.<command>``, imported with Ctrl-C ending the process at once."""
    with ctrl_c_exits_at_once():
        main = importlib.import_module(f"litlab.{command}").main
    return main()


def train() -> Any:
    return _run("train")


def evaluate() -> Any:
    return _run("eval")


def predict() -> Any:
    return _run("predict")


def export() -> Any:
    return _run("export")
