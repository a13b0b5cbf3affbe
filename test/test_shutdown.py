"""reloc_ros.ros.shutdown: a teardown that hangs never keeps a finished program alive."""

import subprocess
import sys
import time

from reloc_ros.ros.shutdown import run_bounded


def test_a_hang_that_releases_the_gil_is_left_behind():
    t0 = time.monotonic()
    logs = []
    assert run_bounded(lambda: time.sleep(30), 0.5, "teardown", logs.append) is False
    assert time.monotonic() - t0 < 5 and "did not finish" in logs[0]
    assert run_bounded(lambda: None, 0.5) is True


def test_a_hang_that_holds_the_gil_is_ended_by_the_watchdog():
    """libc sleep() through ctypes.PyDLL keeps the GIL, as a stuck C extension would: the
    joining thread cannot run, and the GIL-free faulthandler watchdog ends the process."""
    code = ("import ctypes; from reloc_ros.ros.shutdown import run_bounded; "
            "run_bounded(lambda: ctypes.PyDLL(None).sleep(60), 1.0); print('not reached')")
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=40)
    assert r.returncode == 1 and time.monotonic() - t0 < 30, (r.returncode, r.stdout, r.stderr)
    assert "Timeout (" in r.stderr and "run_bounded" in r.stderr and "not reached" not in r.stdout
