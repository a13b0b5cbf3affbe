"""Helpers for tests that run real ROS 2 processes (imported by test modules, not a test)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def ros_env(tmp_path: Path) -> dict:
    """Environment for ROS 2 child processes: a private domain, loopback only, logs in tmp.

    The domain id is drawn per run (1..100, the range whose ports never clash with the
    ephemeral range), so concurrent test runs on one machine do not see each other.
    ``FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA`` makes large images reliable on loopback.
    """
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(random.SystemRandom().randint(1, 100))
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["FASTDDS_BUILTIN_TRANSPORTS"] = "LARGE_DATA"
    env["ROS_LOG_DIR"] = str(tmp_path / "ros_log")
    env.setdefault("HOME", str(tmp_path))
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONFAULTHANDLER"] = "1"  # stacks of a hung child on SIGABRT (see finish)
    return env


def run_python(args: list[str], env: dict, **kw) -> subprocess.Popen:
    """Start ``python args...`` with this interpreter as a separate process."""
    return subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def finish(procs, timeout: float = 90.0) -> list[str]:
    """Outputs of the processes, in order. One still running after ``timeout`` gets SIGABRT
    (``PYTHONFAULTHANDLER`` is set: it prints every thread's stack) and the test fails with
    all the outputs."""
    outs, late = [], []
    deadline = time.time() + timeout
    for p in procs:
        try:
            out, _ = p.communicate(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            late.append(p.args)
            p.send_signal(signal.SIGABRT)
            try:
                out, _ = p.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                out, _ = p.communicate()
        outs.append(out)
    if late:
        pytest.fail("still running after {:g} s: {}\n".format(timeout, late)
                    + "\n----\n".join(o or "" for o in outs))
    return outs


def exited_cleanly(proc: subprocess.Popen, out: str) -> bool:
    """Exit status 0, or the known Fast DDS teardown hang after the work was done: the
    GIL-free watchdog of ``reloc_ros.ros.shutdown.run_bounded`` dumped the stacks ("Timeout
    (...)!") from inside ``run_bounded`` and exited with status 1."""
    return proc.returncode == 0 or (proc.returncode == 1 and "Timeout (" in (out or "")
                                    and "run_bounded" in (out or ""))
