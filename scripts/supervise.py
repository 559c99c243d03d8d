"""Run a command (``airflow standalone``) in its own session and turn Ctrl-C into an orderly shutdown.

Why: a terminal's Ctrl-C reaches every process in the foreground group. ``airflow standalone`` then sends its
components a SIGTERM of its own, so the scheduler receives SIGINT *and* SIGTERM back to back; its signal handler
logs, and a second handler interrupting the first deadlocks on the logger's lock (seen with Airflow 3.3.2), which
leaves the scheduler and its LocalExecutor workers hanging. Here only this wrapper receives Ctrl-C:
the first forwards one SIGINT to the standalone parent (which stops each component once), a second sends SIGTERM
to the whole group, a third SIGKILL. Stragglers in the group get SIGTERM when the parent has exited.

A component that has not stopped ``STOP_GRACE`` seconds (default 30) after the first Ctrl-C gets one SIGTERM of
its own: the LocalExecutor waits for running tasks "until signalled again", and in CI a scheduler has been seen
still waiting two minutes after its SIGTERM. The standalone parent then sees its components exit and completes
normally. Anything still alive ``STOP_GRACE`` seconds after that is killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType


def group_members(pgid: int) -> list[int]:
    """Live processes of process group ``pgid`` other than its leader (Linux /proc; empty elsewhere)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        pid = int(stat.parent.name)
        # fields after the command name: state, ppid, pgrp, ...; zombies have already stopped
        if pid != pgid and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(pid)
    return members


def signal_pids(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def say(message: str) -> None:
    print(f"[supervise] {message}", file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: supervise.py COMMAND [ARGS...]", file=sys.stderr)
        return 2
    grace = float(os.environ.get("STOP_GRACE", "30"))
    proc: subprocess.Popen[bytes] | None = None
    steps = [(False, signal.SIGINT), (True, signal.SIGTERM), (True, signal.SIGKILL)]
    received = 0
    stop_asked_at: float | None = None

    def forward(_signum: int, _frame: FrameType | None) -> None:
        nonlocal received, stop_asked_at
        if proc is None:
            raise KeyboardInterrupt
        whole_group, sig = steps[min(received, len(steps) - 1)]
        received += 1
        stop_asked_at = stop_asked_at or time.monotonic()
        try:
            if whole_group:
                os.killpg(proc.pid, sig)
            else:
                os.kill(proc.pid, sig)
        except ProcessLookupError:
            pass

    # Handlers are installed before the child starts: exec resets them to the default action in the child, whereas
    # an inherited SIG_IGN (a background shell ignores SIGINT) would survive exec and make Ctrl-C a no-op.
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    proc = subprocess.Popen(argv, start_new_session=True)
    escalated: list[signal.Signals] = []
    while True:
        try:
            rc = proc.wait(timeout=1)
            break
        except subprocess.TimeoutExpired:
            pass
        if stop_asked_at is None:
            continue
        waited = time.monotonic() - stop_asked_at
        for step, sig in enumerate((signal.SIGTERM, signal.SIGKILL), start=1):
            if waited >= step * grace and len(escalated) < step:
                stragglers = group_members(proc.pid)
                say(f"{len(stragglers)} component(s) still running {waited:.0f}s after Ctrl-C: sending {sig.name}")
                signal_pids(stragglers, sig)
                escalated.append(sig)
        if waited >= 3 * grace:  # the parent itself does not exit: end it too
            say(f"{argv[0]} still running {waited:.0f}s after Ctrl-C: killing its group")
            os.killpg(proc.pid, signal.SIGKILL)
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    # Popen gives -N for a child killed by signal N; sys.exit(-15) would exit 241. Report it the shell's way (143).
    return 128 - rc if rc < 0 else rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
