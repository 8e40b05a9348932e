"""A private PostgreSQL server for tests and benchmarks.

`initdb` into a fresh temporary directory, `pg_ctl start` on a free loopback port (and a Unix
socket in the same directory), readiness by `pg_isready`, `pg_ctl stop` and the directory
removed on `stop()`. Debian's binaries are found at /usr/lib/postgresql/<version>/bin, newest
first (scripts/system_deps.sh installs the `postgresql` package when there are none).

PostgreSQL refuses to run as root, and CI runs as root: then every PostgreSQL command runs as the
`postgres` user (else `nobody`) through runuser, in directories that user owns. The superuser
has a random password and TCP connections must give it (scram-sha-256), so URLs carry a real
password, as in a deployment.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from testkit._ports import free_port

BIN_GLOB = "/usr/lib/postgresql/*/bin/initdb"
SUPERUSER = "doppel"
DATABASE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresError(RuntimeError):
    """PostgreSQL could not be found, started or used."""


def find_bin_dir() -> Path:
    """The bin directory of the newest PostgreSQL under /usr/lib/postgresql."""
    found = sorted(
        (Path(path).parent for path in glob.glob(BIN_GLOB)),
        key=lambda directory: _version_key(directory.parent.name),
        reverse=True,
    )
    if not found:
        raise PostgresError(
            f"no PostgreSQL server binaries ({BIN_GLOB}): install Debian's postgresql package, "
            "e.g. scripts/system_deps.sh"
        )
    return found[0]


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name)) or (0,)


class PostgresServer:
    """A started PostgreSQL server; `url()` and `create_database()` give asyncpg URLs.

    `durable=False` (tests) turns fsync off: the tests kill clients, never this server, and
    want speed. Benchmarks pass `durable=True` so commits cost what they cost in production.
    """

    def __init__(self, *, durable: bool = False, startup_timeout: float = 60.0) -> None:
        self.bin_dir = find_bin_dir()
        self.durable = durable
        self.startup_timeout = startup_timeout
        self.password = secrets.token_hex(16)
        self.port = 0
        self.directory = Path(tempfile.mkdtemp(prefix="doppel-pg-"))
        self.data_dir = self.directory / "data"
        self.socket_dir = self.directory / "run"
        self.log_file = self.directory / "postgres.log"
        self._owner = _unprivileged_owner() if os.geteuid() == 0 else None
        self._started = False

    def url(self, database: str = "postgres", driver: str = "postgresql+asyncpg") -> str:
        """A URL for `database` with the superuser's name and password."""
        return f"{driver}://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def start(self) -> PostgresServer:
        try:
            self._initdb()
            self._pg_ctl_start()
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        atexit.register(self.stop)
        return self

    def _initdb(self) -> None:
        for directory in (self.data_dir, self.socket_dir):
            directory.mkdir(mode=0o700)
        password_file = self.directory / "pwfile"
        password_file.touch(mode=0o600)
        password_file.write_text(self.password + "\n")
        self._give_to_owner(self.directory, self.data_dir, self.socket_dir, password_file)
        try:
            self._run(
                "initdb", "-D", str(self.data_dir), "-U", SUPERUSER,
                f"--pwfile={password_file}", "--auth-local=trust", "--auth-host=scram-sha-256",
                "--encoding=UTF8", "--no-locale", "--no-sync",
            )  # fmt: skip
        finally:
            password_file.unlink(missing_ok=True)

    def _pg_ctl_start(self) -> None:
        self.port = free_port()
        options = [
            f"-k {self.socket_dir}",
            f"-p {self.port}",
            "-c listen_addresses=127.0.0.1",
            "-c max_connections=200",
        ]
        if not self.durable:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self.log_file.touch()
        self._give_to_owner(self.log_file)
        self._run(
            "pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file), "-o", " ".join(options),
            "-w", "-t", str(int(self.startup_timeout)), "start",
        )  # fmt: skip
        self._started = True

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        command = [str(self.bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)]
        while time.monotonic() < deadline:
            ready = subprocess.run(command, capture_output=True, timeout=10, check=False)
            if ready.returncode == 0:
                return
            time.sleep(0.05)
        raise PostgresError(
            f"PostgreSQL not ready within {self.startup_timeout:.0f}s: {self._log()}"
        )

    async def create_database(self, name: str) -> str:
        """CREATE DATABASE `name` (lowercase letters, digits, _); returns its URL."""
        if not DATABASE_NAME.match(name):
            raise ValueError(f"not a plain database name: {name!r}")
        await self._execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    async def drop_database(self, name: str) -> None:
        """DROP DATABASE `name`, disconnecting whoever is still connected."""
        if not DATABASE_NAME.match(name):
            raise ValueError(f"not a plain database name: {name!r}")
        await self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    async def _execute(self, statement: str) -> None:
        import asyncpg  # Late: only callers that make databases need the driver.

        connection = await asyncpg.connect(self.url(driver="postgresql"), timeout=30)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    def stop(self) -> None:
        """Stops the server (fast shutdown) and removes its directory; safe to call twice."""
        if self._started:
            self._started = False
            try:
                self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
            except PostgresError:
                self._kill_postmaster()
        atexit.unregister(self.stop)
        shutil.rmtree(self.directory, ignore_errors=True)

    def _kill_postmaster(self) -> None:
        pid_file = self.data_dir / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)

    def _run(self, program: str, *arguments: str) -> None:
        command = [str(self.bin_dir / program), *arguments]
        if self._owner is not None:
            command = ["runuser", "-u", self._owner.pw_name, "--", *command]
        done = subprocess.run(
            command,
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=self.startup_timeout + 30,
            check=False,
        )
        if done.returncode != 0:
            raise PostgresError(
                f"{program} exited with {done.returncode}: {done.stderr.strip()[-2000:]}"
                f"{self._log()}"
            )

    def _give_to_owner(self, *paths: Path) -> None:
        if self._owner is not None:
            for path in paths:
                os.chown(path, self._owner.pw_uid, self._owner.pw_gid)

    def _log(self) -> str:
        try:
            return "\n" + self.log_file.read_text()[-2000:]
        except OSError:
            return ""

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def _unprivileged_owner() -> pwd.struct_passwd:
    """Who runs PostgreSQL when we are root: `postgres` (Debian's package makes it), else
    `nobody`."""
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PostgresError("running as root, and neither a postgres nor a nobody user exists")
