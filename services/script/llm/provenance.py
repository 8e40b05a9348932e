"""Which writer produced each part of an episode, what it cost, and why others were passed over.

A part (the outline, a scene, a rewritten line, a revised scene) is recorded once, by the
outermost writer that handles it: the fallback chain when there is one, else the LLM writer
itself. Records go to the collector of the current context, so concurrent scenes never mix:

    with collect_provenance() as provenance:   # once per episode, before scene tasks start
        ...                                    # writer calls, in this task or tasks it starts
    episode.attempts.extend(provenance.attempts())   # repeated WriterAttempt
    episode.usage.CopyFrom(provenance.usage())        # LlmUsage

A part's record is stored beside the part (`record_bytes`, `record_from_bytes`), so an episode
resumed after an interrupted run still counts what the parts it finds in the cache cost.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from doppelganger.v1 import episode_pb2

OUTLINE, SCENE, REWRITE, REVISE = "outline", "scene", "rewrite", "revise"


@dataclass(frozen=True)
class Fallback:
    """A writer that was tried for a part and failed."""

    writer: str
    model: str
    error_type: str
    reason: str


@dataclass
class PartRecord:
    """Who wrote one part, what it cost, and the fallbacks on the way."""

    stage: str  # OUTLINE, SCENE, REWRITE or REVISE
    scene_index: int = -1  # -1 for the outline
    joke_id: str = ""  # For REWRITE
    writer: str = ""
    model: str = ""
    fallbacks: list[Fallback] = field(default_factory=list)
    llm_calls: int = 0  # HTTP requests: retries and the repair included
    input_tokens: int = 0  # Not counting the cache tokens below
    output_tokens: int = 0
    cache_creation_tokens: int = 0
    cache_read_tokens: int = 0
    cost_usd: float = 0.0
    repaired: bool = False

    @property
    def label(self) -> str:
        """ "outline", "scene 3" (1-based), "rewrite s2-j1", "revise scene 3"."""
        if self.stage == OUTLINE:
            return OUTLINE
        if self.stage == REWRITE:
            return f"{REWRITE} {self.joke_id}"
        scene = f"scene {self.scene_index + 1}"
        return scene if self.stage == SCENE else f"{self.stage} {scene}"


@dataclass
class Provenance:
    """The records of one episode (or of whatever the caller scoped)."""

    records: list[PartRecord] = field(default_factory=list)

    def for_stage(self, stage: str, scene_index: int = -1) -> PartRecord | None:
        """The latest record of a stage (of one scene, when `scene_index` is given)."""
        return next(
            (
                r
                for r in reversed(self.records)
                if r.stage == stage and (scene_index < 0 or r.scene_index == scene_index)
            ),
            None,
        )

    def attempts(self) -> list[episode_pb2.WriterAttempt]:
        """Every writer tried, part by part: the fallbacks, then the one that wrote it."""
        attempts = []
        for record in self.records:
            where = {"stage": record.stage, "scene_index": record.scene_index}
            attempts += [
                episode_pb2.WriterAttempt(
                    **where, writer=f.writer, model=f.model, outcome="fallback", reason=f.reason
                )
                for f in record.fallbacks
            ]
            attempts.append(
                episode_pb2.WriterAttempt(
                    **where, writer=record.writer, model=record.model, outcome="ok"
                )
            )
        return attempts

    def usage(self) -> episode_pb2.LlmUsage:
        """Totals; `input_tokens` includes the cache tokens (as gen_ai.usage.input_tokens)."""
        records = self.records
        cache_creation = sum(r.cache_creation_tokens for r in records)
        cache_read = sum(r.cache_read_tokens for r in records)
        return episode_pb2.LlmUsage(
            input_tokens=sum(r.input_tokens for r in records) + cache_creation + cache_read,
            output_tokens=sum(r.output_tokens for r in records),
            cache_creation_input_tokens=cache_creation,
            cache_read_input_tokens=cache_read,
            calls=sum(r.llm_calls for r in records),
            cost_usd=round(sum(r.cost_usd for r in records), 6),
        )


_collector: ContextVar[Provenance | None] = ContextVar("doppel_provenance", default=None)
_current_part: ContextVar[PartRecord | None] = ContextVar("doppel_part", default=None)


@contextmanager
def collect_provenance() -> Iterator[Provenance]:
    """Collects the records of every writer call made in this context (and tasks started in it)."""
    provenance = Provenance()
    token = _collector.set(provenance)
    try:
        yield provenance
    finally:
        _collector.reset(token)


@contextmanager
def part_scope(stage: str, scene_index: int = -1, joke_id: str = "") -> Iterator[PartRecord]:
    """The record of the part being written. A nested scope (a chain's member) shares the outer
    record; the outermost scope files it when the part succeeds."""
    outer = _current_part.get()
    if outer is not None:
        yield outer
        return
    record = PartRecord(stage=stage, scene_index=scene_index, joke_id=joke_id)
    token = _current_part.set(record)
    try:
        yield record
    finally:
        _current_part.reset(token)
    collector = _collector.get()
    if collector is not None:
        collector.records.append(record)


def current_part() -> PartRecord | None:
    """The record of the part being written in this context, if any."""
    return _current_part.get()


def record_bytes(record: PartRecord) -> bytes:
    """The record as JSON, to store beside its part."""
    return json.dumps(dataclasses.asdict(record), separators=(",", ":")).encode()


def record_from_bytes(data: bytes | None) -> PartRecord | None:
    """A stored record, or None when absent or unreadable (an old or corrupt entry)."""
    if data is None:
        return None
    try:
        fields = json.loads(data)
        fallbacks = [Fallback(**fallback) for fallback in fields.pop("fallbacks", [])]
        return PartRecord(**fields, fallbacks=fallbacks)
    except (ValueError, TypeError):
        return None
