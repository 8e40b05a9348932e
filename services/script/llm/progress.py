"""Progress of the reply being streamed, for whoever is waiting on it.

The pipeline sets a sink around the writing of one scene (`reporting_output`); the LLM caller
hands `output_sink()` to the provider, which calls it with the output tokens received so far as
the stream arrives. Outside such a block nothing is reported. A context variable, so parallel
scenes (each its own task) report to their own sinks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar

OutputSink = Callable[[int], None]
_SINK: ContextVar[OutputSink | None] = ContextVar("doppel_llm_output_sink", default=None)


@contextlib.contextmanager
def reporting_output(sink: OutputSink) -> Iterator[None]:
    """Calls `sink(output_tokens)` while replies inside the block stream in."""
    token = _SINK.set(sink)
    try:
        yield
    finally:
        _SINK.reset(token)


def output_sink() -> OutputSink | None:
    return _SINK.get()
