"""The episode plan: everything a scene needs from the rest of the episode, as one value.

No dialogue line is heard twice in an episode, yet every scene is written on its own. The line
plan (a pure function of the episode's inputs) deals every template of every pool to one of the
scenes that draw from that pool. A scene speaks its own templates first; when it needs more it
borrows one and prefixes its own discourse marker ("For the record, ..."): one marker per scene,
different in every scene, so a borrowed line never equals another scene's. Joke pairs and
catchphrases are planned the same way.

A plan is built once from (show, setting, cast, seed) and the outline's *structure* (its
outline-level fields, and each beat's plot line and runtime target: `cards.structure`), never from
a beat's text or card, and handed to the scene functions with the outline (or the scene's view of
it) the scene reads its own beat from. Scenes written from equal plans are equal whatever else was
written before, and editing one beat changes no other scene's plan.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

from google.protobuf.message import Message

from doppelganger.v1 import episode_pb2
from services.script import catalog
from services.script.cards import structure
from services.script.premise import PremiseElement, premise_elements
from services.script.procedural._grammar import JOKES, MARKS, pool
from services.script.procedural._kernel import EpisodeKernel, Roles, build_kernel, participants
from services.script.procedural._outline import plot_key, push_key, scene_stages
from services.script.procedural._runtime import MAX_JOKES, joke_count, scene_targets
from services.script.procedural._text import digest

PUNCHLINE = episode_pb2.JOKE_ROLE_PUNCHLINE
CALLBACK_CHANCE = 0.45
OFF_LIBRARY_CHANCE = 0.3


@dataclass(frozen=True)
class JokeSlot:
    """One planned joke of a scene: the pattern, which of its setup/payoff pairs, the role."""

    pattern: str
    pair: int  # index into JOKES[pattern]
    role: int
    repeat: bool = False  # the pair was planned for an earlier slot too


# ---------------------------------------------------------------------------------------------
# The line plan


def _pool_users(
    name: str, stages: tuple[str, ...], families: tuple[frozenset[str], ...]
) -> tuple[int, ...]:
    """The scenes that may draw from a pool (the ones its templates are dealt to): by stage, by
    plot line, or by the archetypes of the scene's first-draft speakers."""
    kind, _, key = name.partition(":")
    if kind in ("open", "develop"):
        users = [i for i, stage in enumerate(stages) if stage == key]
    elif kind == "react":
        users = [i for i, present in enumerate(families) if key in present]
    elif kind == "push":
        users = [i for i, stage in enumerate(stages) if push_key(stage) == key]
    elif kind == "turn":
        users = [i for i, stage in enumerate(stages) if plot_key(stage) == key]
    else:
        users = []
    return tuple(users) or tuple(range(len(stages)))


class LinePlan:
    """Who owns each template of each pool, and each scene's discourse markers.

    Owners are dealt lazily, the first time a scene asks about a pool, and kept in `_owners`: at
    most one entry per pool (and one for the catchphrases), for as long as the plan lives.
    """

    def __init__(
        self, stages: tuple[str, ...], families: tuple[frozenset[str], ...], seed: int, key: str
    ) -> None:
        self._stages, self._families = stages, families
        self._seed, self._key = seed, key
        self._owners: dict[str, tuple[int, ...]] = {}
        order = sorted(range(len(MARKS)), key=lambda mark: digest("mark", key, seed, mark))
        self._marks = tuple(
            tuple(MARKS[mark] for position, mark in enumerate(order) if position % len(stages) == i)
            for i in range(len(stages))
        )

    def owners(self, name: str, size: int, users: tuple[int, ...]) -> tuple[int, ...]:
        """The scene that owns each of `size` templates: dealt round robin, in a seeded order."""
        known = self._owners.get(name)
        if known is None:
            order = sorted(
                range(size), key=lambda t: digest("deal", self._key, self._seed, name, t)
            )
            owners = [-1] * size
            for position, template in enumerate(order):
                owners[template] = users[position % len(users)]
            known = self._owners[name] = tuple(owners)
        return known

    def candidates(self, name: str, index: int, take: int) -> tuple[tuple[str, bool], ...]:
        """Scene `index`'s templates of a pool, (template, borrowed), its own first, in a seeded
        order (another `take` of the scene, another order)."""
        templates = pool(name)
        users = _pool_users(name, self._stages, self._families)
        owners = self.owners(name, len(templates), users)
        shift = digest("order", self._key, self._seed, name, index, take)
        order = sorted(
            range(len(templates)), key=lambda t: (owners[t] != index, (t + shift) % len(templates))
        )
        return tuple((templates[t], owners[t] != index) for t in order)

    def catchphrases(self, phrases: Sequence[tuple[str, str]], index: int) -> list[tuple[str, str]]:
        """The (speaker, catchphrase) pairs scene `index` owns: each in one scene at most."""
        if not phrases:
            return []
        everyone = tuple(range(len(self._stages)))
        owners = self.owners("catchphrase", len(phrases), everyone)
        return [entry for entry, owner in zip(phrases, owners, strict=True) if owner == index]

    def marks(self, index: int) -> tuple[str, ...]:
        """Scene `index`'s discourse markers for borrowed lines, dealt like templates: no two
        scenes of an episode share one (MARKS has at least two for each of MAX_SCENES scenes)."""
        return self._marks[index]


# ---------------------------------------------------------------------------------------------
# The joke plan


def _is_callback_button(seed: int, key: str, index: int, stage: str, last: bool) -> bool:
    if index == 0 or stage == "cold":
        return False
    chance = digest("callback", seed, key, index) % 100 < CALLBACK_CHANCE * 100
    return stage == "tag" or last or chance


def _next_pattern(
    favoured: Sequence[str],
    position: tuple[int, int],
    usage: Mapping[str, int],
    taken: Iterable[str],
    seed: int,
    key: str,
) -> str:
    """The show's favourites in rotation, now and then a library pattern for variety; a pattern
    whose every pair has been used already gives way to the least-used one."""
    turn, slot = position
    library = [pattern for pattern in JOKES if pattern != "callback"]
    pattern = favoured[turn % len(favoured)]
    if digest("off-library", seed, key, turn, slot) % 100 < OFF_LIBRARY_CHANCE * 100:
        pattern = library[digest("library", seed, key, turn, slot) % len(library)]
    blocked = set(taken)
    if pattern not in blocked and usage.get(pattern, 0) < len(JOKES[pattern]):
        return pattern
    candidates = [p for p in library if p not in blocked]
    return min(
        candidates,
        key=lambda p: (usage.get(p, 0), p not in favoured, digest("tie", seed, key, p)),
    )


def _joke_plan(
    favoured: tuple[str, ...],
    stages: tuple[str, ...],
    counts: tuple[int, ...],
    seed: int,
    key: str,
) -> tuple[tuple[JokeSlot, ...], ...]:
    """The joke slots of every scene of the episode (counts[i] in scene i), so that no
    setup/payoff pair repeats until the library runs out."""
    usage: dict[str, int] = {}
    plan = []
    turn = 0
    for index, (stage, count) in enumerate(zip(stages, counts, strict=True)):
        first = index == 0 or stage == "cold"
        last = index == len(stages) - 1
        row: list[JokeSlot] = []
        for slot in range(count):
            taken = [s.pattern for s in row] + (["running-gag"] if first else [])
            if slot == 1 and first:
                pattern = "running-gag"
            elif slot == count - 1 and _is_callback_button(seed, key, index, stage, last):
                pattern = "callback"
            else:
                pattern = _next_pattern(favoured, (turn, slot), usage, taken, seed, key)
                turn += 1
            used = usage.get(pattern, 0)
            usage[pattern] = used + 1
            role = episode_pb2.JOKE_ROLE_CALLBACK if pattern == "callback" else PUNCHLINE
            pairs = len(JOKES[pattern])
            row.append(JokeSlot(pattern, used % pairs, role, repeat=used >= pairs))
        plan.append(tuple(row))
    return tuple(plan)


def _speaker_families(
    outline: episode_pb2.Outline,
    cast: Sequence[episode_pb2.Character],
    roles: Roles,
    stages: tuple[str, ...],
) -> tuple[frozenset[str], ...]:
    """Archetype families of every scene's default speakers, by plot line (for the line plan;
    never the beat's text or card: those are the scene's own)."""
    beats = {
        b.scene_index: episode_pb2.Beat(plot=b.plot) for act in outline.acts for b in act.beats
    }
    names = [c.name for c in cast]
    families = {c.name: catalog.archetype_family(c.archetype) for c in cast}
    speakers = (
        participants(beats.get(index), names, roles, stage) for index, stage in enumerate(stages)
    )
    return tuple(frozenset(families[name] for name in group) for group in speakers)


# ---------------------------------------------------------------------------------------------
# The plan


@dataclass(frozen=True)
class EpisodePlan:
    """The episode-level choices every scene is written from; see `plan_episode`.

    It keeps its own copies of the messages it was built from. `lines` fills a small memo as
    scenes ask about pools; nothing else changes after construction.
    """

    show: episode_pb2.Show
    setting: episode_pb2.Setting
    cast: tuple[episode_pb2.Character, ...]
    seed: int
    outline: episode_pb2.Outline  # the structure only (cards.structure)
    kernel: EpisodeKernel
    key: str  # "show|setting|description": part of every digest of the line and joke plans
    stages: tuple[str, ...]  # of every scene
    targets: tuple[float, ...]  # runtime target of every scene
    families: tuple[frozenset[str], ...]  # archetype families of each scene's speakers
    jokes: tuple[tuple[JokeSlot, ...], ...]  # joke slots of every scene
    premise: tuple[PremiseElement, ...]  # the premise's named elements
    lines: LinePlan = field(repr=False, compare=False)
    by_name: Mapping[str, episode_pb2.Character] = field(repr=False, compare=False)

    @property
    def scene_total(self) -> int:
        return len(self.stages)

    def scene_marks(self, index: int) -> tuple[str, ...]:
        """The discourse markers scene `index` prefixes to the lines it borrows."""
        return self.lines.marks(index)


_M = TypeVar("_M", bound=Message)


def _own(message: _M) -> _M:
    """A copy the plan owns, so later changes to the caller's message do not reach it."""
    copy = type(message)()
    copy.CopyFrom(message)
    return copy


def plan_episode(
    show: episode_pb2.Show,
    setting: episode_pb2.Setting,
    cast: Sequence[episode_pb2.Character],
    seed: int,
    outline: episode_pb2.Outline,
    scene_total: int | None = None,
    *,
    kernel: EpisodeKernel | None = None,
) -> EpisodePlan:
    """The plan of an episode of `scene_total` scenes (default: the outline's scene count), from
    the outline's structure alone. `kernel` is the episode's when the caller keeps it (else it is
    built from the inputs and the outline's premise and kernel id)."""
    total = max(1, outline.scene_count) if scene_total is None else scene_total
    if total < 1:
        raise ValueError(f"scene_total must be >= 1 (got {total})")
    outline = structure(outline)
    if kernel is None:
        kernel = build_kernel(
            show, setting, cast, seed, premise=outline.premise, kernel_id=outline.kernel
        )
    people = tuple(_own(character) for character in cast)
    key = f"{show.id}|{setting.id}|{setting.description}"
    stages = scene_stages(outline, total)
    targets = scene_targets(outline, total)
    families = _speaker_families(outline, people, kernel.roles, stages)
    counts = tuple(joke_count(target) for target in targets)
    return EpisodePlan(
        show=_own(show),
        setting=_own(setting),
        cast=people,
        seed=seed,
        outline=outline,
        kernel=kernel,
        key=key,
        stages=stages,
        targets=targets,
        families=families,
        jokes=_joke_plan(kernel.patterns, stages, counts, seed, key),
        premise=tuple(
            premise_elements(kernel.premise, people, f"{setting.name} {setting.description}")
        ),
        lines=LinePlan(stages, families, seed, key),
        by_name=MappingProxyType({c.name: c for c in people}),
    )


def with_extra_jokes(
    jokes: tuple[JokeSlot, ...], extra: int, favoured: Sequence[str], seed: int, key: str
) -> tuple[JokeSlot, ...]:
    """More joke slots for a revision that asks for more comedy; their pairs may be planned for
    other scenes too, so they are marked as repeats (the scene mark keeps them unique)."""
    taken = [slot.pattern for slot in jokes]
    added = list(jokes)
    for number in range(min(extra, MAX_JOKES - len(jokes))):
        pattern = _next_pattern(favoured, (len(jokes) + number, 0), {}, taken, seed, key)
        taken.append(pattern)
        pair = digest("extra", seed, key, pattern) % len(JOKES[pattern])
        added.insert(-1, JokeSlot(pattern, pair, PUNCHLINE, repeat=True))
    return tuple(added)
