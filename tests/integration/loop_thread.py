"""An asyncio loop in a daemon thread, for servers that must outlive one test's event loop (the
fuzz tests' module-wide stack, the shared limiter's replicas)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any


class LoopThread:
    """An asyncio loop in a daemon thread, for servers that must outlive one test's loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Any, timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
