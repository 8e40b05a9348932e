"""Progress of the scenes being written, between "scene N written" events.

An LLM scene takes tens of seconds; its reply streams in (llm/progress.py), so the client hears
how far the scenes in flight have got instead of silence. `SceneProgress` turns the output tokens
received per scene into `fraction_done` over the scenes' share of the episode (each scene in flight
counts as the share of its expected reply received, at most 95 %) and a message; fractions never
go backwards. The pipeline asks for a progress event at most every PROGRESS_INTERVAL_SECONDS, and
only when something new arrived.
"""

from __future__ import annotations

PROGRESS_INTERVAL_SECONDS = 1.0
# A scene's reply (JSON: action, dialogue, jokes) runs about 7 output tokens per second of screen
# time (the loopback provider's replies and a 22-minute episode's scenes agree within a factor 2).
TOKENS_PER_SCREEN_SECOND = 7
MIN_EXPECTED_TOKENS = 300
IN_FLIGHT_CAP = 0.95


class SceneProgress:
    """What the client is told while `count` scenes are written, over [start, end]."""

    def __init__(self, count: int, start: float, end: float) -> None:
        self._count = max(1, count)
        self._start, self._end = start, end
        self._done: set[int] = set()
        self._tokens: dict[int, int] = {}
        self._expected: dict[int, int] = {}
        self._fraction = start
        self._changed = False

    def expect(self, index: int, target_seconds: float) -> None:
        """Scene `index` is being written; its reply should be about this long."""
        tokens = int(target_seconds * TOKENS_PER_SCREEN_SECOND)
        self._expected[index] = max(MIN_EXPECTED_TOKENS, tokens)

    def output(self, index: int, tokens: int) -> None:
        """Scene `index`'s reply has reached `tokens` output tokens (called as it streams)."""
        if index not in self._done and tokens > self._tokens.get(index, 0):
            self._tokens[index] = tokens
            self._changed = True

    def finished(self, index: int) -> float:
        """Scene `index` is written; the fraction to report with it."""
        self._done.add(index)
        self._tokens.pop(index, None)
        return self._advance()

    def update(self) -> tuple[float, str] | None:
        """(fraction, message) when streamed output arrived since the last call, else None."""
        if not self._changed or not self._tokens:
            return None
        self._changed = False
        writing = sorted(self._tokens)
        names = ", ".join(str(index + 1) for index in writing)
        total = sum(self._tokens.values())
        plural = "s" if len(writing) > 1 else ""
        message = f"writing scene{plural} {names}: {total} tokens so far"
        return self._advance(), message

    def _advance(self) -> float:
        partial = sum(
            min(IN_FLIGHT_CAP, tokens / self._expected.get(index, MIN_EXPECTED_TOKENS))
            for index, tokens in self._tokens.items()
        )
        share = (len(self._done) + partial) / self._count
        self._fraction = max(self._fraction, self._start + (self._end - self._start) * share)
        return round(self._fraction, 4)
