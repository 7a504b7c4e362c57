"""A throwaway one-node Slurm cluster for the executor tests: munged with a key and socket
of its own, slurmctld and slurmd from the distribution's `slurm-wlm`, all as root, with a
slurm.conf written to a temporary folder (ProctrackType=proctrack/linuxproc,
TaskPlugin=task/none, SlurmdUser=root: no cgroups or privilege changes needed). It starts in
a few seconds; `SLURM_CONF` points sbatch, squeue and scancel at it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "sinfo", "scancel")
START_TIMEOUT = 60.0


def slurm_problem() -> str | None:
    """Why no cluster can be started here, or None."""
    missing = [name for name in DAEMONS if _which(name) is None]
    if missing:
        return (
            f"Slurm is not installed (no {', '.join(missing)}; "
            "`apt-get install slurm-wlm munge`)"
        )
    if os.geteuid() != 0:
        return "a one-node Slurm for the tests runs its daemons as root"
    return None


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _memory_mb() -> int:
    with open("/proc/meminfo", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024 // 2
    return 2048


@dataclass
class SlurmCluster:
    base: Path

    @property
    def conf(self) -> Path:
        return self.base / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    @classmethod
    def start(cls, base: Path) -> SlurmCluster:
        base.mkdir(parents=True, exist_ok=True)
        base.chmod(0o755)  # munged wants its socket's folder searchable by all
        for sub in ("state", "spool"):
            (base / sub).mkdir(exist_ok=True)
        cluster = cls(base)
        key = base / "munge.key"
        _run(_which("mungekey"), "--create", f"--keyfile={key}", "--force")
        key.chmod(0o600)
        _run(
            _which("munged"),
            "--force",
            f"--socket={base / 'munge.socket'}",
            f"--key-file={key}",
            f"--log-file={base / 'munged.log'}",
            f"--pid-file={base / 'munged.pid'}",
            f"--seed-file={base / 'munged.seed'}",
        )
        cluster.conf.write_text(cluster._conf_text(), encoding="utf-8")
        env = {**os.environ, **cluster.env}
        _run(_which("slurmctld"), "-c", env=env)
        _run(_which("slurmd"), env=env)
        cluster._wait_idle(env)
        return cluster

    def _conf_text(self) -> str:
        host = socket.gethostname().split(".")[0]
        cpus, memory = os.cpu_count() or 1, _memory_mb()
        b = self.base
        return f"""\
ClusterName=fdptest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={b / "munge.socket"}
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
StateSaveLocation={b / "state"}
SlurmdSpoolDir={b / "spool"}
SlurmctldPidFile={b / "slurmctld.pid"}
SlurmdPidFile={b / "slurmd.pid"}
SlurmctldLogFile={b / "slurmctld.log"}
SlurmdLogFile={b / "slurmd.log"}
ReturnToService=2
MpiDefault=none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MailProg=/bin/true
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""

    def _wait_idle(self, env: dict[str, str]) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        state = ""
        while time.monotonic() < deadline:
            found = subprocess.run(
                [str(_which("sinfo")), "-h", "-o", "%T"],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            state = (found.stdout or found.stderr).strip()
            if state.startswith("idle"):
                return
            time.sleep(0.3)
        raise RuntimeError(f"Slurm did not come up in {START_TIMEOUT:g} s (sinfo: {state!r})")

    def stop(self) -> None:
        env = {**os.environ, **self.env}
        subprocess.run(
            [str(_which("scancel")), "--full", "--user=root"],
            env=env,
            capture_output=True,
            check=False,
        )
        for name in ("slurmd", "slurmctld", "munged"):
            pid_file = self.base / f"{name}.pid"
            try:
                os.kill(int(pid_file.read_text(encoding="ascii").strip()), signal.SIGTERM)
            except (OSError, ValueError):
                continue


def _run(program: str | None, *args: str, env: dict[str, str] | None = None) -> None:
    if program is None:  # pragma: no cover - slurm_problem rules it out
        raise RuntimeError("program not found")
    subprocess.run([program, *args], env=env, check=True, capture_output=True, timeout=60)
