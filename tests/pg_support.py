"""A real PostgreSQL server for the tests: Debian's `initdb` + `pg_ctl` in a temporary directory, on a free
loopback port, started once per session; each test that asks gets a fresh database.

As root (CI runs as root) the server runs as the `postgres` user (`runuser`, else `setpriv`), which PostgreSQL
requires, with its directory handed to that user. Missing binaries fail the tests with the fix: the suite
covers the PostgreSQL catalog, so it never skips it silently (`.ci/run` installs Debian's `postgresql`).
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

_counter = itertools.count()


def pg_bin(name: str) -> str | None:
    """A PostgreSQL server program: Debian's /usr/lib/postgresql/<newest>/bin first, then PATH."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return found[-1] if found else shutil.which(name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    """One throw-away cluster: `start()`, `new_database()`, `url(db)`, `stop()` (the directory goes with it)."""

    def __init__(self):
        self.initdb, self.pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
        if not (self.initdb and self.pg_ctl):
            pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin or on "
                        "PATH: install Debian's `postgresql` package (apt-get install postgresql); the tests of the "
                        "PostgreSQL catalog need a real server", pytrace=False)
        self.dir = Path(tempfile.mkdtemp(prefix="faceindex-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = list(args)
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            cmd = (["runuser", "-u", "postgres", "--", *cmd] if shutil.which("runuser") else
                   ["setpriv", f"--reuid={pwd.getpwnam('postgres').pw_uid}",
                    f"--regid={pwd.getpwnam('postgres').pw_gid}", "--init-groups", *cmd])
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.dir)
        if proc.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}", pytrace=False)
        return proc

    def start(self, *, durable: bool = False) -> PostgresServer:
        """initdb and start. Tests run without fsync (a throw-away server); `durable=True` keeps PostgreSQL's
        defaults (benchmarks)."""
        if os.geteuid() == 0:
            try:
                entry = pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail("running as root, the PostgreSQL tests start the server as the `postgres` user, which "
                            "does not exist: install Debian's `postgresql` package (it creates the user) or run "
                            "the tests as an ordinary user", pytrace=False)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        self._run(self.initdb, "-D", str(self.data), "-U", self.user, "--auth=trust", "--encoding=UTF8",
                  "--locale=C", "--no-sync")
        # A socket in our own directory and (tests) fsync off: a test server, never shared, thrown away at the end.
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.dir} "
                   "-c max_connections=200")
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run(self.pg_ctl, "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"), "-w", "start")
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql)

    def admin_in(self, url: str, sql: str) -> None:
        """Run `sql` in the database of `url` (set-up a test needs, e.g. a foreign table)."""
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql)

    def new_database(self, template: str | None = None) -> str:
        """A new empty database (or a copy of `template`); returns its URL."""
        name = f"fi_{os.getpid()}_{next(_counter)}"
        self.admin(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        return self.url(name)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres():
    """The session's PostgreSQL server (started on first use, stopped at the end of the session)."""
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def pg_url(postgres) -> str:
    """A fresh, empty database on the session's server, as a postgresql:// URL."""
    return postgres.new_database()


# -- the privacy tests' shared store on PostgreSQL + Milvus Lite -----------------------------------------------------
BACKENDS = ["embedded", "cluster"]
"""Values of the `store` fixture's indirect parameter: the default backends, or PostgreSQL + Milvus Lite."""
VECTORS_DIR = "v.db"
"""The Milvus Lite database of a cluster store, inside the store directory (copied with it)."""
_cluster: dict[str, object] = {}


def on_cluster() -> bool:
    """Whether the running test's store is the PostgreSQL + Milvus Lite copy (cluster_copy set the variable)."""
    return os.environ.get("FACEINDEX_CATALOG_URL", "").startswith("postgresql://")


def cluster_pristine(postgres: PostgresServer, faces_dir: Path, tmp_path_factory) -> tuple[str, Path]:
    """(template database name, store directory) of privacy_support's shared store ingested through PostgreSQL
    and Milvus Lite (the real ingest path, not a copy of the SQLite catalog); built once per session."""
    if "pristine" not in _cluster:
        from privacy_support import ingest_pristine, pipeline, pristine

        from faceindex.config import Settings
        from faceindex.engine import Engine

        root = pristine(faces_dir, tmp_path_factory)  # the photos and selfies both stores share
        url = postgres.new_database()
        store = tmp_path_factory.mktemp("cluster-pristine") / "store"
        settings = Settings(workers=1, catalog_url=url, vectors_url=str(store / VECTORS_DIR))
        with Engine.open(store, settings, pipeline=pipeline(), mode="write") as engine:
            ingest_pristine(engine, root)
        _cluster["pristine"] = (url.rsplit("/", 1)[1], store)
    return _cluster["pristine"]  # type: ignore[return-value]


def cluster_copy(request, faces_dir: Path, tmp_path_factory, tmp_path: Path) -> Path:
    """A private copy of the cluster store for one test (a database made from the pristine one as template, the
    store directory with its Milvus Lite data copied), named by the environment for the test's duration."""
    postgres = request.getfixturevalue("postgres")
    monkeypatch = request.getfixturevalue("monkeypatch")
    name, pristine_store = cluster_pristine(postgres, faces_dir, tmp_path_factory)
    url = postgres.new_database(template=name)
    store = tmp_path / "store"
    shutil.copytree(pristine_store, store)
    monkeypatch.setenv("FACEINDEX_CATALOG_URL", url)
    monkeypatch.setenv("FACEINDEX_VECTORS_URL", str(store / VECTORS_DIR))
    return store
