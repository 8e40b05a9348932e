"""A season's episodes into the library: each draft stored in its series with its number and the
callbacks its script plays, then the bible grown one version per episode, in episode order.

Shared by the interactive season (season.py) and a season written through a provider batch
(batch_jobs.py), whose bible pass runs on whichever replica assembles the job, perhaps after a
restart: adding an episode the bible already holds under the same id is skipped, so a pass
interrupted half way is finished, not doubled.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence

from doppelganger.v1 import episode_pb2, series_pb2
from services.script import bible as bibles
from services.script.library import Conflict, Library


async def store_episode(
    library: Library, series_id: str, number: int, episode: episode_pb2.Episode
) -> episode_pb2.Episode:
    """The draft with its place in the series and the callbacks its script plays, stored in
    one transaction (an identical draft stored before is the answer)."""
    stored = episode_pb2.Episode()
    stored.CopyFrom(episode)
    stored.series_id = series_id
    stored.episode_number = number
    del stored.bible_callbacks[:]
    stored.bible_callbacks.extend(played_callbacks(stored))
    try:
        await library.save_draft(
            stored, kind="generated", series_id=series_id, episode_number=number
        )
    except Conflict:
        return (await library.get_draft(stored.id)).episode
    return stored


async def grow_bible(
    library: Library,
    series: series_pb2.Series,
    episodes: Sequence[tuple[int, episode_pb2.Episode]],
) -> AsyncIterator[tuple[int, series_pb2.Series, int]]:
    """Each (number, episode) into the bible, in order, one version (one transaction) each;
    yields the number, the series after it and how many facts it added. An episode the bible
    holds already under the same id is skipped. Conflict when the number is taken by another
    episode or the bible moved on meanwhile (another season of the series)."""
    version = series.version
    for number, episode in sorted(episodes, key=lambda pair: pair[0]):
        bible = series.bible
        holder = next((s.episode_id for s in bible.episodes if s.episode_number == number), None)
        if holder == episode.id:
            continue  # An earlier, interrupted pass added it.
        if holder is not None or bibles.episode_count(bible) != number - 1:
            raise Conflict(
                f"series {series.id}: episode {number} cannot join the bible, which holds "
                f"episodes 1-{bibles.episode_count(bible)} (another season of the series "
                "was written meanwhile); its draft is stored"
            )
        grown = bibles.add_episode(bible, episode, number)
        series = await library.update_bible(
            series.id, grown, expected_version=version, episode_number=number
        )
        version = series.version
        added = sum(1 for fact in grown.facts if fact.episode_number == number)
        yield number, series, added


def played_callbacks(episode: episode_pb2.Episode) -> list[str]:
    """The bible facts the outline's beats call back to that the scenes actually play (the
    fact's words in a line or an action of any scene)."""
    said = " ".join(
        element.dialogue.text or element.action.text
        for scene in episode.scenes
        for element in scene.elements
    )
    said = plain_words(said)
    found = [
        c.fact_id
        for act in episode.outline.acts
        for beat in act.beats
        for c in beat.callbacks
        if (fact := plain_words(c.text)) and fact in said
    ]
    return list(dict.fromkeys(found))


def plain_words(text: str) -> str:
    """Lower-case words joined by single spaces: how a callback's fact is found in a script."""
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))
