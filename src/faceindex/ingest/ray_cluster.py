"""Connecting to a Ray cluster for ingest (`--ray local|auto|HOST:PORT`): clear errors, small footprint, same code.

Ray is imported here only when a cluster is asked for, so the default install never needs it.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from faceindex.errors import InvalidInputError, WorkerPoolError

INSTALL_HINT = "pip install 'faceindex[cluster]'"
LOCAL_OBJECT_STORE_BYTES = 200 * 2**20
"""Object store of a `--ray local` instance (bytes). Ray's default is 30 % of the machine's memory; ingest keeps
at most a few blocks of encoded photos and their results in it (see ray_ingest.FILES_PER_BLOCK), and what does
not fit spills to disk instead of failing."""
REACH_TIMEOUT_S = 5.0
"""How long a HOST:PORT may take to accept a TCP connection before the address is reported unreachable. Ray's
own connect retries before it gives up; this check fails in seconds, with the address named, before Ray is even
imported."""
UNREACHABLE = "cluster_unreachable"


@dataclass
class RaySession:
    """A connection this process holds: `ray` (the module), what the user asked for, and the cluster's CPUs."""

    ray: ModuleType
    address: str
    cpus: int


def import_ray() -> ModuleType:
    """The ray module with Ray Data, or an InvalidInputError that says how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401 - the pipeline needs it; a plain `ray` without [data] is not enough
    except ImportError as exc:
        raise InvalidInputError(f"--ray needs Ray with Ray Data, which is not installed ({exc.msg}): "
                                f"{INSTALL_HINT}") from None
    return ray


def check_reachable(address: str) -> None:
    """Fail in seconds, naming the address, when HOST:PORT (or ray://HOST:PORT) accepts no TCP connection."""
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInputError(f"--ray {address!r}: give local, auto, HOST:PORT of a Ray cluster's head "
                                "(as `ray start --head` prints it) or ray://HOST:PORT of a Ray Client server")
    try:
        with socket.create_connection((host, int(port)), timeout=REACH_TIMEOUT_S):
            pass
    except OSError as exc:
        what = exc.strerror or type(exc).__name__.replace("Error", " error").strip()
        if isinstance(exc, TimeoutError | socket.timeout):
            what = f"no answer within {REACH_TIMEOUT_S:.0f} s"
        raise WorkerPoolError(f"cannot reach the Ray cluster at {address}: {what}. Start one with `ray start "
                              "--head` (it prints the address to give), or use --ray local for a private one "
                              "on this machine", code=UNREACHABLE) from None


def code_runtime_env() -> dict:
    """A runtime_env that ships this very faceindex package to every worker (Ray uploads it once, ~1 MB, and
    caches it per node), so the workers run the driver's code whatever faceindex their nodes have installed.
    Its dependencies (dlib, onnxruntime, the model package, Ray) must be installed on every node."""
    package = Path(__file__).resolve().parents[1]
    return {"py_modules": [str(package)], "excludes": ["__pycache__", "*.pyc"]}


@contextmanager
def ray_session(address: str, *, cpus: int | None = None):
    """Connect to (or start) Ray for the block; yields a RaySession; disconnects at the end unless this process
    was already connected before (a Python caller's own `ray.init`, which is then used as it is).

    Inside the block sys.stdout is sys.stderr: a Ray driver prints the cluster's notices (such as a node marked
    dead) on stdout from a thread of its own, and stdout is for results (`faceindex add --json`).

    address: 'local' starts a private single-node Ray in this process with `cpus` CPUs, a 200 MB object store,
    no dashboard, listening on 127.0.0.1 only; 'auto' joins the cluster running on this machine (`ray start`);
    HOST:PORT joins that cluster's head; ray://HOST:PORT goes through a Ray Client server.
    """
    if address != "local" and address != "auto":
        check_reachable(address)  # before importing Ray (slow) and before anything is written
    # Ray's C++ core prints notes to stderr (e.g. about Ray Data's own actors' arguments); its failures still reach
    # us as Python exceptions, which the caller reports. RAY_BACKEND_LOG_LEVEL set by the user wins.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    if address == "local":
        # Ray otherwise gives a single node the machine's network address and listens on every interface.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray = import_ray()
    for name in ("ray", "ray.data"):  # Ray's notes ("Starting execution ...") would mix with the command's output;
        logging.getLogger(name).setLevel(logging.ERROR)  # its failures reach us as exceptions, reported in full
    owned = not ray.is_initialized()
    with redirect_stdout(sys.stderr):
        if owned:
            _init(ray, address, cpus)
        try:
            context = ray.data.DataContext.get_current()
            context.enable_progress_bars = False  # the CLI shows its own progress, per committed file
            context.print_on_execution_start = False
            total = int(ray.cluster_resources().get("CPU", 0))
            if total < 1:
                raise WorkerPoolError(f"the Ray cluster at {address} has no CPU to run the analysis on: add a worker "
                                      "node (`ray start --address=HEAD:PORT --num-cpus=N`)")
            yield RaySession(ray, address, total)
        finally:
            if owned:
                ray.shutdown()


@contextmanager
def _native_stderr_silenced():
    """Point file descriptor 2 at /dev/null for the block: Ray's C++ core announces its log level there when a
    driver starts (RAY_BACKEND_LOG_LEVEL above keeps it quiet afterwards). Python exceptions are unaffected."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _init(ray: ModuleType, address: str, cpus: int | None) -> None:
    common = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    try:
        with _native_stderr_silenced():
            if address == "local":
                ray.init(num_cpus=cpus or os.cpu_count() or 1, object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                         _node_ip_address="127.0.0.1", **common)
            else:
                del common["include_dashboard"]  # a setting of the cluster's head, not of a driver joining it
                ray.init(address=address, runtime_env=code_runtime_env(), **common)
    except ConnectionError as exc:
        if address == "auto":
            raise WorkerPoolError("--ray auto: no running Ray cluster found on this machine; start one with `ray start "
                                  "--head`, or give its HOST:PORT, or use --ray local", code=UNREACHABLE) from None
        raise WorkerPoolError(f"cannot join the Ray cluster at {address}: {exc}", code=UNREACHABLE) from None
    except (RuntimeError, ValueError, TimeoutError) as exc:
        raise WorkerPoolError(f"cannot start or join Ray at {address}: {exc}", code=UNREACHABLE) from None
