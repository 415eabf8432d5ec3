"""A throwaway one-node SLURM cluster on this machine, for trying the SLURM profile and DDP job script.

    python workflow/slurm/local_cluster.py start DIR   # prints the `export PATH=DIR/bin:... ` to use it
    python workflow/slurm/local_cluster.py stop DIR    # stops the daemons started by `start DIR`

Needs root and Debian's `slurm-wlm` and `munge` (workflow/slurm/install.sh). Everything lives in DIR: its
own munge key and socket, slurm.conf with free ports, state, spool, logs and pid files, so a system
cluster or a stale test cluster is never touched. There is no accounting database: the controller
keeps finished jobs for an hour (MinJobAge), so `squeue` (the executor plugin's status command here) and
`scontrol show job` (the tests) see them, and appends each to DIR/jobcomp.txt (`sacct -c` reads it).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "salloc", "squeue", "scontrol", "scancel", "sinfo", "sacct")
PARTITION = "local"


def missing() -> str | None:
    """Why the cluster cannot start here (one line), or None."""
    if os.geteuid() != 0:
        return "a local SLURM cluster needs root (slurmd runs jobs as their user)"
    absent = [b for b in (*DAEMONS, "sbatch", "squeue", "scontrol") if shutil.which(b) is None
              and not Path("/usr/sbin", b).is_file()]
    if absent:
        return f"SLURM/munge not installed ({', '.join(absent)} missing): run workflow/slurm/install.sh"
    return None


def _binary(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024 // 2  # half: the node shares the machine
    return 1024


class Cluster:
    def __init__(self, root: Path, cpus: int | None = None):
        self.root = Path(root).resolve()
        self.cpus = cpus or os.cpu_count() or 1
        self.host = socket.gethostname().split(".")[0]  # slurmctld and slurmd compare against this name
        self.conf = self.root / "slurm.conf"
        self.jobcomp = self.root / "jobcomp.txt"
        self.pids_file = self.root / "pids.json"

    def env(self) -> dict[str, str]:
        """What a shell needs to talk to this cluster: its client commands first on PATH."""
        return {"SLURM_CONF": str(self.conf), "PATH": f"{self.root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}

    # ------------------------------------------------------------------ start
    def start(self, timeout: float = 60) -> None:
        if self.pids_file.exists():
            raise RuntimeError(f"{self.root}: a cluster was started here; stop it first")
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)  # munged refuses a socket folder others can write to
        for sub in ("munge", "state", "spool", "log"):
            (self.root / sub).mkdir(exist_ok=True)
        os.chmod(self.root / "munge", 0o755)  # the key in it is 0600
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o600)
        sock = self.root / "munge" / "munge.socket"
        pids: dict[str, int] = {}
        try:
            self._spawn(pids, [
                _binary("munged"), "--foreground", "--force", f"--socket={sock}", f"--key-file={key}",
                f"--log-file={self.root / 'log/munged.log'}", f"--pid-file={self.root / 'munge/munged.pid'}",
                f"--seed-file={self.root / 'munge/munged.seed'}"], "munged")
            self._wait(lambda: sock.exists(), timeout, "munged did not open its socket")
            self._write_conf(sock)
            self._write_clients()
            self._spawn(pids, [_binary("slurmctld"), "-D", "-i", "-f", str(self.conf)], "slurmctld")
            self._wait(self._controller_up, timeout, "slurmctld did not answer")
            self._spawn(pids, [_binary("slurmd"), "-D", "-N", self.host, "-f", str(self.conf)], "slurmd")
            self._wait(self._node_idle, timeout, "the node did not become idle")
        except BaseException:
            self._stop_pids(pids)
            self.pids_file.unlink(missing_ok=True)
            raise

    def _spawn(self, pids: dict[str, int], cmd: list[str], name: str) -> None:
        """Start one daemon in the foreground and record its pid at once, so `stop` finds it even if
        this start is killed halfway."""
        log = open(self.root / "log" / f"{name}.out", "ab")
        env = {**os.environ, **self.env()}
        # a new session: the daemons outlive the `start` command and get no terminal signals
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env)
        log.close()
        pids[name] = proc.pid
        tmp = self.pids_file.with_name(".pids.json.tmp")
        tmp.write_text(json.dumps(pids))
        os.replace(tmp, self.pids_file)

    def _write_conf(self, munge_socket: Path) -> None:
        ctld_port, slurmd_port = _free_ports(2)
        r = self.root
        lines = [
            "ClusterName=ltmlocal",
            f"SlurmctldHost={self.host}(127.0.0.1)",
            f"SlurmctldPort={ctld_port}", f"SlurmdPort={slurmd_port}",
            "SlurmUser=root", "SlurmdUser=root",
            "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={munge_socket}",
            f"StateSaveLocation={r / 'state'}", f"SlurmdSpoolDir={r / 'spool'}",
            f"SlurmctldPidFile={r / 'state/slurmctld.pid'}", f"SlurmdPidFile={r / 'spool/slurmd.pid'}",
            f"SlurmctldLogFile={r / 'log/slurmctld.log'}", f"SlurmdLogFile={r / 'log/slurmd.log'}",
            "SlurmctldDebug=info", "SlurmdDebug=info",
            # no cgroups in a container: track processes by parent id, bind nothing
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "JobAcctGatherType=jobacct_gather/none",
            "MpiDefault=none", "SwitchType=switch/none",
            # no slurmdbd: finished jobs stay in the controller an hour (squeue, scontrol) and go to a file
            "AccountingStorageType=accounting_storage/none", "JobCompType=jobcomp/filetxt",
            f"JobCompLoc={self.jobcomp}", "MinJobAge=3600",
            "SchedulerType=sched/backfill", "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU",
            # a cancelled or timed-out job gets SIGTERM, then SIGKILL this many seconds later
            "KillWait=10", "ReturnToService=2", "SlurmdTimeout=60", "InactiveLimit=0",
            "GresTypes=gpu",
            f"NodeName={self.host} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={_memory_mb()} Gres=gpu:2 State=UNKNOWN",
            f"PartitionName={PARTITION} Nodes={self.host} Default=YES MaxTime=INFINITE State=UP",
        ]
        # two stand-in GPUs: the scheduler counts and hands them out (gres requests are honoured), nothing
        # uses them; SLURM wants a device file per GPU, any existing file does
        for i in range(2):
            (self.root / f"fake-gpu{i}").touch()
        (self.root / "gres.conf").write_text(f"NodeName={self.host} Name=gpu File={self.root}/fake-gpu[0-1]\n")
        tmp = self.conf.with_name(".slurm.conf.tmp")
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, self.conf)

    def _write_clients(self) -> None:
        """DIR/bin/srun etc. name this cluster's slurm.conf. SLURM_CONF alone is not enough: the executor
        plugin's job step drops every SLURM_* variable before its `srun`, and a real cluster's clients find
        /etc/slurm/slurm.conf, which this one leaves alone."""
        bin_dir = self.root / "bin"
        bin_dir.mkdir(exist_ok=True)
        search = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and Path(p) != bin_dir]
        for name in CLIENTS:
            real = shutil.which(name, path=os.pathsep.join([*search, "/usr/bin"]))
            if real is None:
                continue
            path = bin_dir / name
            path.write_text(f'#!/bin/sh\nSLURM_CONF="{self.conf}" exec {real} "$@"\n')
            os.chmod(path, 0o755)

    def _query(self, *cmd: str) -> str:
        run = subprocess.run(cmd, env={**os.environ, **self.env()}, capture_output=True, text=True, timeout=30)
        return run.stdout if run.returncode == 0 else ""

    def _controller_up(self) -> bool:
        return "UP" in self._query("scontrol", "ping")

    def _node_idle(self) -> bool:
        return self._query("sinfo", "-h", "-N", "-o", "%T").strip() == "idle"

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} within {timeout:.0f} s; see {self.root / 'log'}")
            time.sleep(0.2)

    # ------------------------------------------------------------------ stop
    def stop(self) -> None:
        if not self.pids_file.exists():
            return
        self._end_jobs()
        self._stop_pids(json.loads(self.pids_file.read_text()))
        self.pids_file.unlink()

    def _end_jobs(self, timeout: float = 30) -> None:
        """Cancel this cluster's jobs and wait until their processes are gone: slurmd leaves running jobs
        alone when it stops."""
        if not self._controller_up():
            return
        queued = self._query("squeue", "-h", "-o", "%i").split()
        if queued:
            self._query("scancel", *queued)
            deadline = time.monotonic() + timeout
            while self._query("squeue", "-h", "-o", "%i").split() and time.monotonic() < deadline:
                time.sleep(0.5)

    @staticmethod
    def _stop_pids(pids: dict[str, int]) -> None:
        """SIGTERM the daemons started here (slurmd first), then SIGKILL what is left."""
        for name in reversed(DAEMONS):
            pid = pids.get(name)
            if pid is None or not _alive(pid, name):
                continue
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while _alive(pid, name) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(pid, name):
                os.kill(pid, signal.SIGKILL)
            try:
                os.waitpid(pid, 0)  # our own child (the fixture): reap it
            except ChildProcessError:
                pass


def _alive(pid: int, name: str) -> bool:
    """The process is running and is still the daemon we started (pids are reused)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    comm, state = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2]
    return comm == name and state != "Z"


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print("usage: local_cluster.py start|stop DIR", file=sys.stderr)
        return 2
    cluster = Cluster(Path(argv[1]))
    if argv[0] == "stop":
        cluster.stop()
        return 0
    reason = missing()
    if reason:
        print(f"local_cluster: {reason}", file=sys.stderr)
        return 1
    try:
        cluster.start()
    except RuntimeError as e:
        print(f"local_cluster: {e}", file=sys.stderr)
        return 1
    print(f"export PATH={cluster.root / 'bin'}:$PATH SLURM_CONF={cluster.conf}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
