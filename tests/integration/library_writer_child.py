"""`python -m tests.integration.library_writer_child URL`: writes drafts into the library at URL
until killed, four writers at once, new episodes and revisions of them, 10 kB to 300 kB each;
prints each draft's id once its transaction has committed. The durability test SIGKILLs it."""

from __future__ import annotations

import asyncio
import random
import sys

from services.script.library import Library
from services.script.library.engine import parse_url
from tests.integration.library_samples import draft_id, sample_episode


async def writer(library: Library, name: int, seed: int) -> None:
    rng = random.Random(seed * 31 + name)
    roots: list[str] = []
    for n in range(1_000_000):
        filler = "x" * rng.randrange(10_000, 300_000)
        episode_id = draft_id(seed, name, n)
        if roots and rng.random() < 0.6:
            parent = rng.choice(roots)
            episode = sample_episode(episode_id, parent_id=parent, text=filler)
            await library.save_draft(episode, kind="regenerated", parent_id=parent, notes=f"n{n}")
        else:
            await library.save_draft(sample_episode(episode_id, text=filler), kind="generated")
            roots.append(episode_id)
        print(episode_id, flush=True)


async def main(url: str, seed: int) -> None:
    library = await Library.open(parse_url(url), migrate="auto")
    print("ready", flush=True)
    await asyncio.gather(*(writer(library, name, seed) for name in range(4)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
