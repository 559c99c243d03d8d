"""Run a command (``airflow standalone``) in its own session and turn Ctrl-C into an orderly shutdown.

Why: a terminal's Ctrl-C reaches every process in the foreground group. ``airflow standalone`` then sends its
components a SIGTERM of its own, so the scheduler receives SIGINT *and* SIGTERM back to back; its signal handler
logs, and a second handler interrupting the first deadlocks on the logger's lock (seen with Airflow 3.3.2), which
leaves the scheduler and its LocalExecutor workers hanging. Here only this wrapper receives Ctrl-C:
the first forwards one SIGINT to the standalone parent (which stops each component once), a second sends SIGTERM
to the whole group, a third SIGKILL. Stragglers in the group get SIGTERM when the parent has exited.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from types import FrameType


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: supervise.py COMMAND [ARGS...]", file=sys.stderr)
        return 2
    proc: subprocess.Popen[bytes] | None = None
    steps = [(False, signal.SIGINT), (True, signal.SIGTERM), (True, signal.SIGKILL)]
    received = 0

    def forward(_signum: int, _frame: FrameType | None) -> None:
        nonlocal received
        if proc is None:
            raise KeyboardInterrupt
        whole_group, sig = steps[min(received, len(steps) - 1)]
        received += 1
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
    rc = proc.wait()
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    # Popen gives -N for a child killed by signal N; sys.exit(-15) would exit 241. Report it the shell's way (143).
    return 128 - rc if rc < 0 else rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
