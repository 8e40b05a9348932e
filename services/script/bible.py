"""The series bible: what a season remembers, and how an episode reads it and adds to it.

Pure functions over `doppelganger.v1.Bible` (no I/O), so the season runner (season.py), the
library and the tests share one definition of:
- the facts an episode establishes (`episode_facts`): its A plot and its B plot, each with the
  episode's number and the cast members it names;
- what an episode changes besides (`add_episode`): the running gag's state, the state of the
  relationship its B plot strains, the A-plot kernel it used, its synopsis;
- which earlier fact an episode calls back to (`choose_callback`) and the beat that plays it
  (`attach_callback`);
- the next A-plot kernel of the procedural writer that the bible has not used (`next_kernel`),
  and how an LLM's free-text kernel is compared (`kernel_key`);
- the bible as an LLM's outline request reads it (`bible_lines`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence

from doppelganger.v1 import episode_pb2, series_pb2
from services.script.procedural import KERNEL_IDS, choose_kernel

MAX_SEASON_EPISODES = 26  # WriteSeasonRequest.episodes: 1..26
MAX_FACT_CHARS = 300
MAX_PROMPT_FACTS = 40  # The newest facts an outline request carries (older ones: their synopses).
FACTS_PER_EPISODE = 2

_A_PLOT = re.compile(r"^(?P<who>.+?) sets out to (?P<what>[^;]+)")


def fact_id(episode_number: int, position: int) -> str:
    """'e3-f2': the second fact episode 3 established."""
    return f"e{episode_number}-f{position}"


def kernel_key(kernel: str) -> str:
    """A kernel as compared within a series: lower-case words joined by '-' ('Pass off the' and
    'pass-off-the' are one kernel)."""
    return "-".join(re.findall(r"[a-z0-9]+", kernel.lower()))


def _first_sentence(text: str) -> str:
    text = " ".join(text.split())
    head = re.split(r"(?<=[.!?])\s|;\s", text, maxsplit=1)[0]
    return head.rstrip(".!?;, ")


def _clip(text: str) -> str:
    return text if len(text) <= MAX_FACT_CHARS else text[: MAX_FACT_CHARS - 1].rstrip() + "…"


def named(text: str, names: Iterable[str]) -> list[str]:
    """The names that occur in `text` as whole words, in the order given."""
    return [n for n in names if n and re.search(rf"(?<!\w){re.escape(n)}(?!\w)", text)]


def episode_facts(episode: episode_pb2.Episode, number: int) -> list[series_pb2.BibleFact]:
    """What episode `number` establishes: its A plot as a thing that happened ('Lux tried to
    ...') and its B plot. (Its setups are paid off within the episode, and read as callbacks
    like the episode's own; the running gag the bible keeps apart.)"""
    outline = episode.outline
    names = [character.name for character in episode.cast]
    texts: list[str] = []
    a_plot = _first_sentence(outline.a_plot)
    match = _A_PLOT.match(a_plot)
    if match:
        texts.append(f"{match['who']} tried to {match['what'].strip()}")
    elif a_plot:
        texts.append(a_plot)
    b_plot = _first_sentence(outline.b_plot)
    if b_plot:
        texts.append(b_plot)
    facts: list[series_pb2.BibleFact] = []
    for text in dict.fromkeys(t for t in texts if t):
        text = _clip(text[:1].upper() + text[1:])
        facts.append(
            series_pb2.BibleFact(
                id=fact_id(number, len(facts) + 1),
                episode_number=number,
                text=text,
                characters=named(text, names),
            )
        )
        if len(facts) == FACTS_PER_EPISODE:
            break
    return facts


def _gag_id(description: str) -> str:
    return "gag-" + hashlib.sha256(kernel_key(description).encode()).hexdigest()[:10]


def _gag_state(outline: episode_pb2.Outline) -> str:
    """The running gag's state after the last scene that touched it."""
    states = [b.running_gag for act in outline.acts for b in act.beats if b.running_gag]
    return states[-1] if states else outline.running_gag


def _relationship_change(
    episode: episode_pb2.Episode, number: int
) -> series_pb2.RelationshipState | None:
    """The state of the relationship the B plot strains: its first two cast members named."""
    b_plot = _first_sentence(episode.outline.b_plot)
    pair = named(b_plot, [c.name for c in episode.cast])[:2]
    if len(pair) < 2:
        return None
    kind = next(
        (r.kind for r in episode.relationships
         if {r.from_character, r.to_character} == set(pair)),
        "",
    )  # fmt: skip
    return series_pb2.RelationshipState(
        from_character=pair[0],
        to_character=pair[1],
        kind=kind,
        state=_clip(b_plot),
        episode_number=number,
    )


def add_episode(
    bible: series_pb2.Bible, episode: episode_pb2.Episode, number: int
) -> series_pb2.Bible:
    """A new bible: `bible` with what episode `number` established and changed (adding the same
    episode again replaces what it added before)."""
    updated = series_pb2.Bible()
    updated.CopyFrom(bible)
    kept = [f for f in updated.facts if f.episode_number != number]
    del updated.facts[:]
    updated.facts.extend([*kept, *episode_facts(episode, number)])
    outline = episode.outline
    if outline.running_gag:
        gag_id = _gag_id(outline.running_gag)
        gag = next((g for g in updated.running_gags if g.id == gag_id), None)
        if gag is None:
            gag = updated.running_gags.add(
                id=gag_id, description=_clip(outline.running_gag), introduced_in=number
            )
        gag.state = _clip(_gag_state(outline))
        gag.last_seen_in = max(gag.last_seen_in, number)
        gag.introduced_in = min(gag.introduced_in, number)
    change = _relationship_change(episode, number)
    if change is not None:
        pair = {change.from_character, change.to_character}
        others = [r for r in updated.relationships if {r.from_character, r.to_character} != pair]
        del updated.relationships[:]
        updated.relationships.extend([*others, change])
    kernel = kernel_key(outline.kernel or outline.a_plot)
    if kernel and kernel not in updated.kernels_used:
        updated.kernels_used.append(kernel)
    synopses = [s for s in updated.episodes if s.episode_number != number]
    synopses.append(
        series_pb2.EpisodeSynopsis(
            episode_number=number,
            episode_id=episode.id,
            title=outline.title,
            summary=_clip(_first_sentence(outline.a_plot) or outline.logline),
            kernel=kernel,
        )
    )
    del updated.episodes[:]
    updated.episodes.extend(sorted(synopses, key=lambda s: s.episode_number))
    return updated


def episode_count(bible: series_pb2.Bible) -> int:
    """How many episodes the bible holds: the next one is number episode_count + 1."""
    return max((s.episode_number for s in bible.episodes), default=0)


def next_kernel(show_id: str, seed: int, premise: str, used: Iterable[str]) -> str | None:
    """The procedural writer's first kernel for this seed that `used` does not hold; None when
    every kernel is used."""
    avoid = {kernel_key(k) for k in used}
    if all(k in avoid for k in KERNEL_IDS):
        return None
    return choose_kernel(show_id, seed, premise, tuple(avoid))


def kernels_left(used: Iterable[str]) -> int:
    """How many of the procedural writer's kernels a series has not used yet."""
    avoid = {kernel_key(k) for k in used}
    return sum(1 for k in KERNEL_IDS if k not in avoid)


def _digest(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "big")


def choose_callback(
    bible: series_pb2.Bible, number: int, seed: int = 0
) -> series_pb2.BibleFact | None:
    """The fact of an earlier episode that episode `number` calls back to: one of the previous
    episode's facts when it left any (a season reads as a chain), else any earlier one; chosen
    by (seed, number), so the same season calls back the same way."""
    earlier = [f for f in bible.facts if 0 < f.episode_number < number]
    if not earlier:
        return None
    latest = max(f.episode_number for f in earlier)
    recent = [f for f in earlier if f.episode_number == latest]
    pool = recent if _digest("callback-pool", seed, number) % 3 else earlier
    return pool[_digest("callback", seed, number) % len(pool)]


def attach_callback(outline: episode_pb2.Outline, fact: series_pb2.BibleFact) -> int:
    """Puts the callback on the beat that plays it: the first story beat (not the cold open or
    the tag) with someone there from the start whom the fact does not name (they bring it up),
    else one with such a someone entering, else the first story beat. Returns its scene index
    (-1 when the outline has no beats)."""
    beats = [b for act in outline.acts for b in act.beats]
    if not beats:
        return -1
    story = [b for b in beats if b.plot != episode_pb2.PLOT_LINE_RUNNER] or beats

    def starts_free(beat: episode_pb2.Beat) -> bool:
        return any(n not in fact.characters for n in beat.characters)

    def free(beat: episode_pb2.Beat) -> bool:
        return any(n not in fact.characters for n in [*beat.characters, *beat.entrances])

    beat = next((b for b in story if starts_free(b)), next((b for b in story if free(b)), story[0]))
    if not any(c.fact_id == fact.id for c in beat.callbacks):
        beat.callbacks.add(fact_id=fact.id, episode_number=fact.episode_number, text=fact.text)
    return beat.scene_index


def callbacks_of(outline: episode_pb2.Outline) -> list[str]:
    """The bible fact ids the outline's beats call back to, in beat order."""
    found = [c.fact_id for act in outline.acts for b in act.beats for c in b.callbacks]
    return list(dict.fromkeys(found))


def bible_lines(bible: series_pb2.Bible, limit: int = MAX_PROMPT_FACTS) -> list[str]:
    """The bible as an outline request carries it: a synopsis per episode, the newest `limit`
    facts with their ids, the running gags and the relationships' state."""
    lines = [f"episode {s.episode_number} ({s.title}): {s.summary}" for s in bible.episodes]
    lines += [
        f"fact {f.id} (episode {f.episode_number}): {f.text}" for f in list(bible.facts)[-limit:]
    ]
    lines += [
        f"running gag (since episode {g.introduced_in}): {g.description}; now: {g.state}"
        for g in bible.running_gags
    ]
    lines += [
        f"{r.from_character} and {r.to_character} ({r.kind or 'relationship'}), since episode "
        f"{r.episode_number}: {r.state}"
        for r in bible.relationships
    ]
    return lines


def season_seed(series_id: str, series_seed: int, number: int) -> int:
    """The seed of episode `number` of a series: distinct per episode and per series (two
    series of one show, setting and seed write different episodes, each its own drafts), and
    stable, so a season asked for again finds the drafts it already stored."""
    return _digest("season-seed", series_id, series_seed, number) % (2**31)


def facts_by_id(bible: series_pb2.Bible, ids: Sequence[str]) -> list[series_pb2.BibleFact]:
    wanted = set(ids)
    return [f for f in bible.facts if f.id in wanted]
