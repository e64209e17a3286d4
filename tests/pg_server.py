"""A throwaway PostgreSQL server for the tests and benchmarks: ``initdb`` and ``pg_ctl`` of Debian's
``postgresql`` package (``make test`` installs it), in a temporary folder, on 127.0.0.1 and a free port,
trust authentication, stopped and deleted at the end.

The server refuses to run as root, and CI runs as root: then every server command runs as the ``postgres``
system user (the Debian package creates it) through ``runuser``, or as an unprivileged user made here when
there is none.

    with PgServer() as server:                   # or server = PgServer(); server.start(); ...; server.stop()
        url = server.create_database("t1")       # postgresql://postgres@127.0.0.1:PORT/t1
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["PgServer", "find_bindir", "missing_reason"]

_SERVICE_USER = "inv-pgtest"


def find_bindir() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``: ``$INV_PG_BINDIR``, Debian's newest
    /usr/lib/postgresql/<version>/bin, or the PATH."""
    env = os.environ.get("INV_PG_BINDIR")
    if env and (Path(env) / "initdb").exists():
        return Path(env)

    def version(path: str) -> tuple:
        part = Path(path).parents[1].name
        return tuple(int(x) for x in part.split(".") if x.isdigit())

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def missing_reason() -> str | None:
    """Why no throwaway server can run here (None when it can)."""
    if find_bindir() is None:
        return (
            "PostgreSQL's server programs (initdb, pg_ctl) are not installed: apt-get install postgresql "
            "(make test does it), or set INV_PG_BINDIR"
        )
    try:
        import psycopg  # noqa: F401
        import sqlalchemy  # noqa: F401
    except ImportError as exc:
        return f"{exc}: pip install -e '.[dev]' (the postgres extra: SQLAlchemy and psycopg 3)"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _service_user() -> str:
    """An unprivileged user to run the server as (when this process is root)."""
    for name in ("postgres", _SERVICE_USER):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            pass
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", _SERVICE_USER],
        check=True,
        capture_output=True,
    )
    return _SERVICE_USER


class PgServer:
    """One throwaway server (see the module docstring). ``fsync=False`` (tests) trades durability across
    a power loss, which no test checks, for speed; benchmarks keep the default (on)."""

    def __init__(self, *, fsync: bool = True, max_connections: int = 200):
        self.bindir = find_bindir()
        self.fsync = fsync
        self.max_connections = max_connections
        self.root: Path | None = None
        self.port: int | None = None
        self._prefix: list[str] = []
        self._started = False

    # -- life ------------------------------------------------------------------------------------------

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = self._prefix + [str(self.bindir / args[0]), *args[1:]]
        done = subprocess.run(cmd, cwd=self.root, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}\n{self.log_tail()}"
            )
        return done

    def start(self) -> PgServer:
        reason = missing_reason()
        if reason:
            raise RuntimeError(reason)
        self.root = Path(tempfile.mkdtemp(prefix="inv-pg-"))
        if os.geteuid() == 0:
            user = _service_user()
            entry = pwd.getpwnam(user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            self._prefix = ["runuser", "-u", user, "--"]
        try:
            self._run(
                "initdb",
                "-D",
                str(self.root / "data"),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            )
            for attempt in range(3):
                self.port = _free_port()
                options = (
                    f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.root}"
                    f" -c max_connections={self.max_connections} -c fsync={'on' if self.fsync else 'off'}"
                    f" -c full_page_writes={'on' if self.fsync else 'off'}"
                )
                try:
                    self._run(
                        "pg_ctl",
                        "-D",
                        str(self.root / "data"),
                        "-l",
                        str(self.root / "server.log"),
                        "-w",
                        "-t",
                        "90",
                        "-o",
                        options,
                        "start",
                    )
                    break
                except RuntimeError:
                    if attempt == 2:
                        raise
                    time.sleep(0.5)  # the port was taken in between: another one
            self._started = True
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server (fast shutdown: open connections are closed) and delete its folder."""
        if self.root is None:
            return
        if self._started:
            try:
                self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w", "-t", "60", "stop")
            except Exception:
                pid_file = self.root / "data" / "postmaster.pid"
                if pid_file.exists():  # last resort: the postmaster's own pid
                    try:
                        os.kill(int(pid_file.read_text().split()[0]), 9)
                    except (OSError, ValueError):
                        pass
            self._started = False
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def __enter__(self) -> PgServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join((self.root / "server.log").read_text(errors="replace").splitlines()[-n:])
        except (OSError, TypeError):
            return ""

    # -- databases -------------------------------------------------------------------------------------

    def url(self, database: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str, database: str = "postgres") -> list[tuple]:
        """Run one statement as the superuser, in autocommit."""
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname=database, autocommit=True
        ) as conn:
            cur = conn.execute(sql)
            return cur.fetchall() if cur.description else []

    def create_database(self, name: str) -> str:
        """A new, empty database; its URL."""
        self.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
