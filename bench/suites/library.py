"""The library: draft writes per second, and `list_episodes` page latency (p50, p99) over 10,000
drafts, on SQLite (a file here) and on PostgreSQL (a private durable server from testkit).

Drafts are about the size of a 6-scene episode; three in five start an episode, two revise one.
Writes run 8 at a time (what a busy replica does); each is one transaction with its episode row,
committed durably (SQLite synchronous=FULL, PostgreSQL with fsync on). Pages are read one at a
time, a mix of what a library screen asks for: the newest page, deeper pages by token, a show's
episodes and a title search. The goal is a page in under 50 ms at p99.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from bench.measure import Figure
from bench.suites.common import Scale, rate
from doppelganger.v1 import episode_pb2

if TYPE_CHECKING:  # Imported when the suite runs: `doppel` itself need not load SQLAlchemy.
    from sqlalchemy.engine import URL

    from services.script.library import EpisodeSummary, Library, Page

WRITE_CONCURRENCY = 8
PAGE_SIZE = 20
SHOWS = ("i-love-lucy", "the-honeymooners", "seinfeld", "frasier", "cheers")
TITLES = ("Airlock", "Talent Show", "Hydroponics", "Dust Storm", "Rover", "Dome", "Launch")


def drafts_for(scale: Scale) -> int:
    """10,000 drafts at full scale; a quarter of that for --quick (bench-check)."""
    return 10_000 if scale.repetitions >= 5 else 2_500


def template_episode() -> episode_pb2.Episode:
    episode = episode_pb2.Episode(
        setting=episode_pb2.Setting(id="mars", name="a Mars colony in 2157"),
        outline=episode_pb2.Outline(logline="Everyone wants the last seat on the rover."),
        writer="procedural",
        seed=7,
    )
    for index in range(6):
        scene = episode.scenes.add(index=index, number=index + 1, summary="A scene. " * 20)
        for line in range(40):
            scene.elements.add().dialogue.CopyFrom(
                episode_pb2.DialogueLine(character="LUNA", text=f"Line {line} of the scene. " * 3)
            )
        joke = scene.jokes.add(id=f"s{index}-j1", scene_index=index, score=0.6)
        joke.dimensions.update({"surprise": 0.7, "timing": 0.5})
    return episode


async def fill(library: Library, count: int, seed: int) -> float:
    """Writes `count` drafts; returns drafts per second."""
    template = template_episode()
    rng = random.Random(seed)
    roots: list[str] = []

    async def write(index: int) -> object:
        episode = episode_pb2.Episode()
        episode.CopyFrom(template)
        episode.id = f"ep-{seed:04x}{index:016x}"
        show = SHOWS[index % len(SHOWS)]
        episode.show.id, episode.show.title = show, show.replace("-", " ").title()
        episode.outline.title = f"{rng.choice(TITLES)} {index}"
        if index % 5 >= 3 and roots:
            parent = rng.choice(roots)
            return await library.save_draft(episode, kind="regenerated", parent_id=parent)
        info = await library.save_draft(episode, kind="generated")
        roots.append(info.id)
        return info

    return await rate(write, count, WRITE_CONCURRENCY)


async def page_latencies(library: Library, reads: int, seed: int) -> list[float]:
    """Milliseconds per list_episodes call, over a mix of pages."""
    rng = random.Random(seed)
    tokens: list[str] = []
    first = await library.list_episodes(PAGE_SIZE)
    token = first.next_page_token
    while token and len(tokens) < 200:  # Tokens deep into the listing.
        tokens.append(token)
        token = (await library.list_episodes(PAGE_SIZE, token)).next_page_token
    queries: list[Callable[[], Awaitable[Page[EpisodeSummary]]]] = [
        lambda: library.list_episodes(PAGE_SIZE),
        lambda: library.list_episodes(PAGE_SIZE, rng.choice(tokens)),
        lambda: library.list_episodes(PAGE_SIZE, show=rng.choice(SHOWS)),
        lambda: library.list_episodes(PAGE_SIZE, text=rng.choice(TITLES)),
    ]
    latencies = []
    for query in itertools.islice(itertools.cycle(queries), reads):
        started = time.perf_counter()
        page = await query()
        latencies.append((time.perf_counter() - started) * 1000)
        assert page.items
    return latencies


def percentile(values: list[float], fraction: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(fraction * 100) - 1]


async def measure(url: URL, backend: str, scale: Scale) -> list[Figure]:
    from services.script.library import Library

    name = f"library.{backend}"
    writes = Figure(
        f"{name}.draft_writes_per_s", "drafts/s", note=f"{WRITE_CONCURRENCY} writers, durable"
    )
    page_note = f"list_episodes, {PAGE_SIZE} a page, {drafts_for(scale):,} drafts"
    p50 = Figure(f"{name}.page_p50_ms", "ms", higher_is_better=False, note=page_note)
    p99 = Figure(f"{name}.page_p99_ms", "ms", higher_is_better=False, target=50.0)
    library = await Library.open(url, migrate="auto")
    try:
        per_round = drafts_for(scale) // scale.repetitions
        for round_ in range(scale.repetitions):
            writes.values.append(await fill(library, per_round, seed=round_))
        for round_ in range(scale.repetitions):
            latencies = await page_latencies(library, 400, seed=round_)
            p50.values.append(percentile(latencies, 0.50))
            p99.values.append(percentile(latencies, 0.99))
    finally:
        await library.close()
    return [writes, p50, p99]


async def run(scale: Scale) -> list[Figure]:
    from sqlalchemy.engine import URL

    from services.script.library.engine import parse_url
    from testkit.postgres import PostgresServer

    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="doppel-bench-library-") as directory:
        sqlite = URL.create("sqlite+aiosqlite", database=f"{directory}/library.db")
        figures += await measure(sqlite, "sqlite", scale)
    with PostgresServer(durable=True) as server:
        url = parse_url(await server.create_database("bench"))
        figures += await measure(url, "postgresql", scale)
    return figures


if __name__ == "__main__":  # A quick look without the rest of `doppel bench`.
    for figure in asyncio.run(run(Scale.named(quick=True))):
        print(f"{figure.name}: {figure.median:.2f} {figure.unit}")
