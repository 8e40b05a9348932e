"""Free loopback ports, for child processes that cannot report the port they bound.

In-process servers bind port 0 and report theirs; only a child process (or a config file) needs a
number up front. The port is free when returned and may be taken by the time it is used: callers
that start a child should be ready to retry on "address in use".
"""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
