"""The episode kernel: the choices the outline and every scene share, and who speaks in a scene.

Who drives which plot, the props, the want (the A plot's story kernel, one of KERNEL_IDS), the B
issue, the running gag, the order of locations and humour patterns: all drawn from one rng seeded
by (show, setting, seed, cast, premise, kernel), so every scene of the episode re-derives the same
kernel from the same inputs. A premise puts its named elements in the kernel: the cast members it
names drive the A plot, its first thing is the A plot's prop, its first event the event, its first
other person the visitor (premise.py finds them).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple

from doppelganger.v1 import episode_pb2
from services.script import catalog
from services.script.premise import (
    CHARACTER,
    EVENT,
    PERSON,
    THING,
    PremiseElement,
    premise_elements,
)
from services.script.procedural._grammar import (
    B_ISSUES,
    B_STAGES,
    CLASSIC_WANTS,
    GENERIC_PROPS,
    JOKES,
    RUNNERS,
    WANTS,
)
from services.script.procedural._text import digest, seeded_rng, sentence, title_case
from services.script.validation import word_pattern


def _kernel_id(template: str) -> str:
    """'sneak into {event} disguised as ...' -> 'sneak-into-event'."""
    words = re.findall(r"[a-z]+", template.lower())[:3]
    return "-".join(words)


# The A plot's story kernels: one per want template, by a readable id; the classic ones first.
KERNEL_IDS: tuple[str, ...] = tuple(_kernel_id(want) for want in WANTS)
CLASSIC_KERNEL_IDS: tuple[str, ...] = KERNEL_IDS[: len(CLASSIC_WANTS)]
SEASON_KERNEL_IDS: tuple[str, ...] = KERNEL_IDS[len(CLASSIC_WANTS) :]


class Roles(NamedTuple):
    """Who drives which line of the story."""

    lead: str
    partner: str
    b1: str
    b2: str
    runner: str


@dataclass(frozen=True)
class EpisodeKernel:
    """The episode's story choices; `slots` fills the grammar's templates."""

    lead: str
    partner: str
    b1: str
    b2: str
    runner: str
    prop: str
    b_prop: str
    runner_prop: str
    want: str
    b_issue: str
    runner_gag: str
    kernel_id: str  # one of KERNEL_IDS
    premise: str  # the premise it was built around (in the new world), or ""
    patterns: tuple[str, ...]
    locations: tuple[str, ...]
    slots: Mapping[str, str]

    @property
    def roles(self) -> Roles:
        return Roles(self.lead, self.partner, self.b1, self.b2, self.runner)

    @property
    def props(self) -> tuple[str, str, str]:
        return (self.prop, self.b_prop, self.runner_prop)

    def focus(self, stage: str) -> str:
        """The prop a scene's action revolves around."""
        if stage in ("cold", "tag"):
            return self.runner_prop
        return self.b_prop if stage in B_STAGES else self.prop


def _pick_runner(cast: Sequence[episode_pb2.Character]) -> str:
    for family in ("eccentric", "innocent", "sidekick"):
        for character in cast[2:]:
            if catalog.archetype_family(character.archetype) == family:
                return character.name
    return cast[-1].name


def _props(setting: episode_pb2.Setting, rng: random.Random) -> list[str]:
    props = list(dict.fromkeys(setting.props)) or list(GENERIC_PROPS)
    rng.shuffle(props)
    for extra in GENERIC_PROPS:
        if len(props) >= 3:
            break
        if extra not in props:
            props.append(extra)
    return props[:3]


def _favoured_patterns(show: episode_pb2.Show, rng: random.Random) -> tuple[str, ...]:
    library = [p.id for p in catalog.load_patterns() if p.id in JOKES]
    favoured = [p for p in show.humor_patterns if p in JOKES] or library
    rng.shuffle(favoured)
    return tuple(favoured)


def _locations(
    show: episode_pb2.Show, setting: episode_pb2.Setting, rng: random.Random
) -> tuple[str, ...]:
    locations = list(dict.fromkeys(setting.locations)) or list(show.locations) or ["MAIN ROOM"]
    rng.shuffle(locations)
    return tuple(locations)


def kernel_order(show_id: str, seed: int, premise: str = "") -> tuple[str, ...]:
    """Every kernel id in the order an episode tries them: the first is the episode's own, the
    next ones are the alternatives ProposeOutlines offers. The classic kernels come first, each
    group shuffled by the seed: an episode that avoids nothing keeps the story it always had, and
    a season that avoids what it used walks on into the season kernels."""

    def shuffled(ids: tuple[str, ...]) -> list[str]:
        return sorted(ids, key=lambda k: digest("kernel-order", show_id, seed, premise, k))

    return (*shuffled(CLASSIC_KERNEL_IDS), *shuffled(SEASON_KERNEL_IDS))


def choose_kernel(show_id: str, seed: int, premise: str = "", avoid: Sequence[str] = ()) -> str:
    """The first kernel of `kernel_order` not in `avoid` (all avoided: the first anyway)."""
    order = kernel_order(show_id, seed, premise)
    return next((k for k in order if k not in avoid), order[0])


def _want(kernel_id: str) -> str:
    """The want template of a kernel id; an id the procedural writer does not know (an LLM
    outline's own) maps onto one by digest."""
    if kernel_id in KERNEL_IDS:
        return WANTS[KERNEL_IDS.index(kernel_id)]
    return CLASSIC_WANTS[digest("kernel", kernel_id) % len(CLASSIC_WANTS)]


def _cast_order(names: list[str], premise_people: Sequence[str]) -> list[str]:
    """The cast with the members the premise names first (they drive the A plot)."""
    named = [name for name in premise_people if name in names]
    return [*dict.fromkeys(named), *(n for n in names if n not in named)]


def build_kernel(
    show: episode_pb2.Show,
    setting: episode_pb2.Setting,
    cast: Sequence[episode_pb2.Character],
    seed: int,
    *,
    premise: str = "",
    kernel_id: str = "",
) -> EpisodeKernel:
    """The kernel of an episode; a pure function of its arguments. `premise` is in the new
    world already; an empty `kernel_id` is the seed's own (`choose_kernel`)."""
    if not cast:
        raise ValueError("the cast is empty")
    premise = " ".join(premise.split())
    kernel_id = kernel_id or choose_kernel(show.id, seed, premise)
    elements = premise_elements(premise, cast, f"{setting.name} {setting.description}")
    people = [e.text for e in elements if e.kind == CHARACTER]
    names = _cast_order([c.name for c in cast], people)
    rng = seeded_rng(
        "kernel", show.id, setting.id, setting.description, seed, *names, premise, kernel_id
    )
    lead = names[0]
    partner = names[1] if len(names) > 1 else lead
    b1 = names[2] if len(names) > 2 else partner
    b2 = names[3] if len(names) > 3 else (partner if b1 != partner else lead)
    prop, b_prop, runner_prop = _props(setting, rng)
    lexicon = dict(catalog.setting_profile(setting).lexicon)
    ordered = sorted(cast, key=lambda c: names.index(c.name))
    runner = _pick_runner(ordered)
    prop = _first(elements, THING, prop)
    lexicon["event"] = _first(elements, EVENT, lexicon.get("event", "the big night"), phrase=True)
    lexicon["visitor"] = _first(elements, PERSON, lexicon.get("visitor", "a visitor"))
    base = {
        **lexicon,
        "lead": lead,
        "partner": partner,
        "b1": b1,
        "b2": b2,
        "runner": runner,
        "prop": prop,
        "b_prop": b_prop,
        "runner_prop": runner_prop,
    }
    rng.choice(CLASSIC_WANTS)  # the draw a kernel-less version made: the rest stays as it was
    want = _want(kernel_id).format_map(base)
    b_issue = rng.choice(B_ISSUES).format_map(base)
    runner_gag = rng.choice(RUNNERS).format_map(base)
    slots = {**base, "want": want, "b_issue": b_issue, "runner_gag": runner_gag}
    slots.update(B_issue=sentence(b_issue), Prop=title_case(prop))
    return EpisodeKernel(
        lead=lead,
        partner=partner,
        b1=b1,
        b2=b2,
        runner=runner,
        prop=prop,
        b_prop=b_prop,
        runner_prop=runner_prop,
        want=want,
        b_issue=b_issue,
        runner_gag=runner_gag,
        kernel_id=kernel_id,
        premise=premise,
        patterns=_favoured_patterns(show, rng),
        locations=_locations(show, setting, rng),
        slots=MappingProxyType(slots),
    )


def _first(
    elements: Sequence[PremiseElement], kind: str, default: str, phrase: bool = False
) -> str:
    """The first premise element of a kind (its phrase, or its text), else `default`."""
    found = next((e for e in elements if e.kind == kind), None)
    if found is None:
        return default
    return found.phrase if phrase else found.text


def named_in(text: str, names: Iterable[str]) -> list[str]:
    """The names that occur in `text`, in order of first occurrence."""
    found = sorted(
        (match.start(), name)
        for name in names
        if (match := word_pattern(name).search(text)) is not None
    )
    return list(dict.fromkeys(name for _, name in found))


def participants(
    beat: episode_pb2.Beat | None,
    names: Sequence[str],
    roles: Roles,
    stage: str,
    wanted: Sequence[str] = (),
) -> list[str]:
    """Speakers: those a revision asks for, then the characters the beat names, topped up from
    the plot's defaults."""
    speakers = [name for name in wanted if name in names]
    speakers += [n for n in named_in(beat.description if beat else "", names) if n not in speakers]
    plot = beat.plot if beat else episode_pb2.PLOT_LINE_A
    defaults = {
        episode_pb2.PLOT_LINE_B: [roles.b1, roles.b2, roles.lead],
        episode_pb2.PLOT_LINE_RUNNER: [roles.runner, roles.lead, roles.partner],
    }.get(plot, [roles.lead, roles.partner, roles.b1])
    for name in [*defaults, *names]:
        if len(speakers) >= 3:
            break
        if name not in speakers:
            speakers.append(name)
    limit = max(4 if stage == "climax" else 3, min(4, len(wanted)))
    return speakers[:limit]
