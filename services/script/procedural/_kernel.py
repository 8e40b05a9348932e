"""The episode kernel: the choices the outline and every scene share, and who speaks in a scene.

Who drives which plot, the props, the want, the B issue, the running gag, the order of locations
and humour patterns: all drawn from one rng seeded by (show, setting, seed, cast), so every scene
of the episode re-derives the same kernel from the same inputs.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple

from doppelganger.v1 import episode_pb2
from services.script import catalog
from services.script.procedural._grammar import (
    B_ISSUES,
    B_STAGES,
    GENERIC_PROPS,
    JOKES,
    RUNNERS,
    WANTS,
)
from services.script.procedural._text import seeded_rng, sentence, title_case
from services.script.validation import word_pattern


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


def build_kernel(
    show: episode_pb2.Show,
    setting: episode_pb2.Setting,
    cast: Sequence[episode_pb2.Character],
    seed: int,
) -> EpisodeKernel:
    """The kernel of an episode; a pure function of its arguments."""
    if not cast:
        raise ValueError("the cast is empty")
    names = [c.name for c in cast]
    rng = seeded_rng("kernel", show.id, setting.id, setting.description, seed, *names)
    lead = names[0]
    partner = names[1] if len(names) > 1 else lead
    b1 = names[2] if len(names) > 2 else partner
    b2 = names[3] if len(names) > 3 else (partner if b1 != partner else lead)
    prop, b_prop, runner_prop = _props(setting, rng)
    lexicon = dict(catalog.setting_profile(setting).lexicon)
    runner = _pick_runner(cast)
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
    want = rng.choice(WANTS).format_map(base)
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
        patterns=_favoured_patterns(show, rng),
        locations=_locations(show, setting, rng),
        slots=MappingProxyType(slots),
    )


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
