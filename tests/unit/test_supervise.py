"""scripts/supervise.py: Ctrl-C stops a parent whose component waits to be "signalled again" (LocalExecutor)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# A stand-in for `airflow standalone`: the parent terminates its child on SIGINT and waits for it; the child, like
# the LocalExecutor shutting down, ignores the first SIGTERM ("waiting for running tasks") and exits on the second.
PARENT = textwrap.dedent(
    """
    import signal, subprocess, sys
    child = subprocess.Popen([sys.executable, "-c", sys.argv[1]])
    try:
        child.wait()
    except KeyboardInterrupt:
        child.terminate()
        child.wait()
        print("parent complete", flush=True)
    """
)
CHILD = textwrap.dedent(
    """
    import signal, sys, time
    seen = []
    def on_term(signum, frame):
        seen.append(signum)
        if len(seen) > 1:
            sys.exit(0)
    signal.signal(signal.SIGTERM, on_term)
    while True:
        time.sleep(0.1)
    """
)


def run_supervised(env_grace: str) -> tuple[subprocess.Popen, float]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "supervise.py"), sys.executable, "-c", PARENT, CHILD],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"STOP_GRACE": env_grace, "PATH": "/usr/bin:/bin"},
    )
    time.sleep(1.5)  # both started
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    return proc, time.monotonic() - started


def test_a_component_waiting_to_be_signalled_again_gets_its_second_signal():
    proc, took = run_supervised("1")
    out, err = proc.communicate()
    assert proc.returncode == 0, err  # the parent completed normally once its child stopped
    assert "parent complete" in out
    assert "1 component(s) still running" in err and "SIGTERM" in err
    assert 1 <= took < 10


def test_without_the_second_signal_the_stand_in_would_hang():
    """The attack: the stand-in really waits. With a grace longer than the test, Ctrl-C alone does not stop it."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "supervise.py"), sys.executable, "-c", PARENT, CHILD],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"STOP_GRACE": "600", "PATH": "/usr/bin:/bin"},
    )
    try:
        time.sleep(1.5)
        proc.send_signal(signal.SIGINT)
        time.sleep(3)
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGINT)  # second Ctrl-C: SIGTERM to the whole group
        proc.wait(timeout=30)
