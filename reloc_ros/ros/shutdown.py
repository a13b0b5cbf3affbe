"""Clean stops for the project's command-line programs (the node, the replay, the evaluator).

* :func:`stop_on_signals`: SIGINT and SIGTERM set an event instead of raising, so a program
  finishes its current step, writes what it must and tears down in order.
* :func:`run_bounded`: run the DDS teardown with a time limit. Fast DDS may hang while
  deleting a participant that used its TCP transport (eProsima/Fast-DDS#2010; the
  ``LARGE_DATA`` builtin transports use TCP), and a program that has done its work must not
  hang on it; :func:`leave_if_hung` then exits without it.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

__all__ = ["TEARDOWN_TIMEOUT_S", "stop_on_signals", "run_bounded", "leave_if_hung"]

#: Command-line programs give up on a hung DDS teardown after this long.
TEARDOWN_TIMEOUT_S = 10.0


@contextmanager
def stop_on_signals(event: threading.Event | None = None,
                    signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[threading.Event]:
    """Within the block, the ``signals`` set ``event`` (a new one by default) instead of
    interrupting; the previous handlers come back at the end."""
    stop = event or threading.Event()
    old = {s: signal.signal(s, lambda signum, frame: stop.set()) for s in signals}
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def run_bounded(fn: Callable[[], None], timeout_s: float | None, what: str = "teardown",
                log: Callable[[str], None] | None = None) -> bool:
    """Run ``fn()``; with a ``timeout_s``, in a daemon thread, and give up after that long.

    Returns True when ``fn`` finished (its exception, if any, is re-raised here). A caller
    that gets False should flush its output and call :func:`leave_if_hung`.

    A hang inside a C extension that keeps holding the GIL stops this thread too (seen with
    ``rclpy`` ``destroy_node``): for that case a watchdog that needs no GIL
    (:func:`faulthandler.dump_traceback_later`) dumps the stacks and exits the process with
    status 1, ``timeout_s + 5`` seconds after the start.
    """
    if timeout_s is None:
        fn()
        return True
    faulthandler.dump_traceback_later(timeout_s + 5.0, exit=True)
    try:
        return _join_bounded(fn, timeout_s, what, log)
    finally:
        faulthandler.cancel_dump_traceback_later()


def _join_bounded(fn, timeout_s: float, what: str, log) -> bool:
    err: list[BaseException] = []

    def target() -> None:
        try:
            fn()
        except BaseException as e:  # noqa: BLE001  (re-raised in the caller's thread)
            err.append(e)

    th = threading.Thread(target=target, name=what, daemon=True)
    th.start()
    th.join(timeout_s)
    if th.is_alive():
        if log is not None:
            log(f"warning: {what} did not finish in {timeout_s:g} s (a known Fast DDS hang); leaving without it")
        return False
    if err:
        raise err[0]
    return True


def leave_if_hung(teardown_ok: bool, code: int = 0) -> None:
    """After a teardown that did not finish, flush and exit at once: a hung DDS thread must
    not keep a process alive whose work is done. Returns when ``teardown_ok``."""
    if not teardown_ok:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
