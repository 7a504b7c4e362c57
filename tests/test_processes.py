"""`pid_alive`: the one answer to "does this process still run", which a stale server
record, a killed job's token and a killed job's records are all judged by."""

from __future__ import annotations

import subprocess
import sys
import time

from fdp_tasks.processes import pid_alive


def test_a_running_process_is_alive_and_an_ended_one_is_not() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert pid_alive(child.pid)
    finally:
        child.kill()
        child.wait()
    assert not pid_alive(child.pid)


def test_a_zombie_has_ended() -> None:
    """Ended but not yet reaped by its parent (this test): its work is over."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while pid_alive(child.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not pid_alive(child.pid)
    assert child.poll() == 0  # reaped only now: it was a zombie while asked about


def test_ids_that_name_process_groups_or_that_no_process_can_have_are_no_process() -> None:
    assert not pid_alive(0)
    assert not pid_alive(-1)
    assert not pid_alive(2**80)  # from a damaged state file, say
