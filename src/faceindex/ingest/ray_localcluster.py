"""A throwaway multi-node Ray cluster on this machine (`ray start`: a head, N worker nodes) for tests and benchmarks.

Each node is a real Ray node started by the `ray` command next to the running Python, in its own temporary
directory, on free ports given explicitly (two nodes on one machine would otherwise collide on Ray's fixed default
ports), with 1 CPU and a small object store each. `stop()` and `kill_node()` end exactly the processes of this
cluster (found by its session directory and GCS port in /proc, with their children): never `ray stop`, which would
end every Ray process of the machine, other users' clusters included.

Loopback: every address given here is 127.0.0.1, but Ray 2.x's `ray start` on Linux replaces 127.0.0.1 by the
machine's own address for every node (only a single-node Ray can stay on 127.0.0.1, as `--ray local` does), so
its servers listen on that address too. What keeps others out is Ray's token authentication, on here with a random
token of this cluster's own (`env` gives it to a driver). Linux only (/proc).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

NODE_OBJECT_STORE_BYTES = 100 * 2**20
"""Object store per node (bytes): the machine is shared; ingest keeps a few blocks of encoded photos in flight."""
HEALTH = {"RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "2000",
          "RAY_health_check_failure_threshold": "5"}
"""A killed node is declared dead after ~5 s instead of Ray's ~30 s, so its actors restart elsewhere sooner."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LocalRayCluster:
    """`with LocalRayCluster(workers=2) as cluster:` → `cluster.address` is HOST:PORT for `--ray`."""

    workers: int = 2
    cpus_per_node: int = 1
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="faceindex-ray-")))
    port: int = field(default_factory=free_port)
    node_ports: list[int] = field(default_factory=list)
    token: str = field(default_factory=lambda: secrets.token_hex(32))

    @property
    def env(self) -> dict[str, str]:
        """What a driver's environment needs to join (Ray's token authentication, with this cluster's own token)."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> LocalRayCluster:
        try:
            self._start("--head", "--port", str(self.port), "--num-cpus", "0", "--include-dashboard", "false",
                        "--temp-dir", str(self.root), "--ray-client-server-port", str(free_port()))
            for _ in range(self.workers):
                self.add_worker()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def add_worker(self) -> int:
        """Start one more worker node; returns its node-manager port (its handle for kill_node)."""
        port = free_port()
        self._start("--address", self.address, "--num-cpus", str(self.cpus_per_node), node_port=port)
        self.node_ports.append(port)
        return port

    def _start(self, *args: str, node_port: int | None = None) -> None:
        ray = Path(sys.executable).with_name("ray")
        ports = ["--node-manager-port", str(node_port or free_port()), "--object-manager-port", str(free_port()),
                 "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
                 "--runtime-env-agent-port", str(free_port()), "--metrics-export-port", str(free_port()),
                 "--min-worker-port", "0", "--max-worker-port", "0"]
        env = {**os.environ, **HEALTH, **self.env, "RAY_USAGE_STATS_ENABLED": "0"}
        done = subprocess.run([str(ray), "start", *args, *ports, "--object-store-memory", str(NODE_OBJECT_STORE_BYTES),
                               "--disable-usage-stats"], env=env, capture_output=True, text=True, timeout=180)
        if done.returncode != 0:
            raise RuntimeError(f"`ray start {' '.join(args)}` failed ({done.returncode}): {done.stderr[-3000:]}")

    def kill_node(self, node_port: int) -> list[int]:
        """SIGKILL a worker node as a crash would: its raylet and every process under it (agents, workers,
        actors). Returns the pids killed."""
        table = _processes()
        return _kill(_with_descendants(_raylets(node_port, table), table))

    def actors_on(self, node_port: int, name: str = "MapWorker") -> list[int]:
        """Pids of the actor processes named `name` (Ray sets an actor's process title to `ray::Class...`) that
        the worker node `node_port` runs now: a Ray Data actor pool's actors are `ray::MapWorker(...)`."""
        table = _processes()
        raylets = _raylets(node_port, table)
        return sorted(pid for pid, (parent, cmd) in table.items()
                      if parent in raylets and cmd.startswith(f"ray::{name}".encode()))

    def stop(self) -> None:
        """End every process of this cluster (and only those), then wait until they are gone."""
        tags = [str(self.root).encode(), f":{self.port}\0".encode()]  # the GCS address ends an argument
        table = _processes()
        mine = [pid for pid, (_, cmd) in table.items() if pid != os.getpid() and any(t in cmd for t in tags)]
        killed = _kill(_with_descendants(mine, table))
        deadline = time.monotonic() + 10
        while killed and time.monotonic() < deadline and any(_alive(pid) for pid in killed):
            time.sleep(0.1)


def _processes() -> dict[int, tuple[int, bytes]]:
    """pid -> (parent pid, NUL-separated command line) of every process we can see."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                cmd = fh.read()
            with open(f"/proc/{name}/stat", "rb") as fh:
                parent = int(fh.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        table[int(name)] = (parent, cmd)
    return table


def _raylets(node_port: int, table: dict[int, tuple[int, bytes]]) -> list[int]:
    return [pid for pid, (_, cmd) in table.items()
            if f"--node_manager_port={node_port}".encode() in cmd and cmd.split(b"\0")[0].endswith(b"raylet")]


def _with_descendants(pids: list[int], table: dict[int, tuple[int, bytes]]) -> list[int]:
    found, todo = set(pids), list(pids)
    while todo:
        parent = todo.pop()
        for pid, (ppid, _) in table.items():
            if ppid == parent and pid not in found:
                found.add(pid)
                todo.append(pid)
    found.discard(os.getpid())
    return sorted(found)


def _kill(pids: list[int]) -> list[int]:
    for pid in pids:
        with contextlib.suppress(OSError):  # already gone
            os.kill(pid, signal.SIGKILL)
    return pids


def _alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped by its parent, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False
