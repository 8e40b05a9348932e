"""Free loopback ports, for child processes that cannot report the port they bound.

In-process servers bind port 0 and report theirs; only a child process (or a config file) needs a
number up front. The port is free when returned and may be taken by the time it is used.

The ports come from below the kernel's ephemeral range (`ip_local_port_range`), not from binding
port 0: a port 0 bind hands out an ephemeral port, and any outbound connection made between the
probe and the child's bind (a gRPC or Redis client of the test itself) may be given that same
port as its local end, so the child found its port "in use" (a CI run failed so). Ports handed
out are not handed out again by this process.
"""

from __future__ import annotations

import functools
import random
import socket
import threading
from pathlib import Path

_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 20_000  # Above the usual fixed service ports (PostgreSQL, Redis, Prometheus, ...).
_given: set[int] = set()
_lock = threading.Lock()
_chooser = random.Random()


@functools.cache
def _ephemeral_low() -> int:
    try:
        return int(_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default.


def free_port() -> int:
    """A TCP port on 127.0.0.1, outside the ephemeral range, that was free a moment ago and
    that this process has not handed out before."""
    high = _ephemeral_low()
    with _lock:
        for _ in range(200):
            port = _chooser.randrange(_LOWEST, max(high, _LOWEST + 1000))
            if port in _given:
                continue
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _given.add(port)
            return port
    with socket.socket() as probe:  # A crowded machine: any free port will have to do.
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
