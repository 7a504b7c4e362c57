"""Whether a process still runs, asked by its id: the one answer behind a stale server
record, a killed job's token and a killed job's provisional records.

A zombie (ended, not yet reaped by its parent) has finished its work and counts as gone. A
process that ends while it is being asked is gone too: on Linux its /proc entry can vanish
between being opened and being read.
"""

from __future__ import annotations

import os
import subprocess


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs (someone else's process does)."""
    if pid <= 0:
        return False  # 0 and negative ids name process groups to os.kill, never one process
    if os.name == "nt":
        out = subprocess.run(
            ["tasklist", "/FI", f"PID eq {pid}", "/NH"], capture_output=True, text=True
        ).stdout
        return str(pid) in out.split()
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # gone, or an id no process can have
        return False
    except OSError:
        return True  # someone else's (no right to signal it), or a system that cannot tell
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as fh:
            return "\nState:\tZ" not in fh.read()
    except (FileNotFoundError, ProcessLookupError):
        # it ended while we looked; or there is no /proc (macOS, BSD), and os.kill said so
        return not os.path.isdir("/proc/self")
    except OSError:
        return True  # /proc that this user may not read: os.kill said it runs
