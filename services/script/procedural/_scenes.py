"""The scene grammar: a scene in progress and the moves that add lines, actions and jokes to it.

`SceneWriter` fills templates with the characters' voices (tics and catchphrases, sparingly), the
setting's lexicon, vocabulary and props, and the scene's beat. Every random choice comes from the
scene's own rng or a digest of its inputs; which templates a scene may speak comes from the plan.

The validator's craft checks keep the grammar honest: a filled template in which the speaker
names themself in the third person, or that carries a name of the classic show's cast, is passed
over for the next one (`fits`), and an action line that contradicts the heading (indoor business
under an EXT heading) gives way to one that does not (`suits_heading`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

from doppelganger.v1 import episode_pb2
from services.script import catalog
from services.script.checks.names import (
    find_original_names,
    names_self,
    original_names,
    own_names,
)
from services.script.checks.places import clashes
from services.script.procedural._grammar import (
    ACTION_SLAPSTICK,
    GENERIC_VOCABULARY,
    JOKES,
    PARENTHETICALS,
    PUNCH_PARENTHETICALS,
)
from services.script.procedural._kernel import EpisodeKernel
from services.script.procedural._outline import plot_key
from services.script.procedural._plan import EpisodePlan, JokeSlot
from services.script.procedural._runtime import action_line_seconds, line_seconds
from services.script.procedural._text import digest, lead_in, sentence

TIC_CHANCE = 0.18
PARENTHETICAL_CHANCE = 0.22
MAX_TICS_PER_SPEAKER = 2


@dataclass(frozen=True)
class JokeSpec:
    pattern: str
    role: int


@dataclass
class Line:
    speaker: str
    text: str
    parenthetical: str = ""
    extension: str = ""
    joke: JokeSpec | None = None
    optional: bool = False  # may be dropped when the scene runs long


@dataclass
class Action:
    text: str
    optional: bool = False


Item: TypeAlias = Line | Action


def item_seconds(item: Item) -> float:
    return line_seconds(item.text) if isinstance(item, Line) else action_line_seconds(item.text)


@dataclass(frozen=True)
class Frame:
    """Who is in the scene (present from the start, then entering), what it plays, its joke
    slots and its runtime target."""

    speakers: tuple[str, ...]
    stage: str
    jokes: tuple[JokeSlot, ...]
    target: float
    starting: tuple[str, ...] = ()  # present when the scene starts; empty: the first two

    @property
    def primary(self) -> str:
        return self.speakers[0]

    @property
    def secondary(self) -> str:
        return self.speakers[1] if len(self.speakers) > 1 else self.speakers[0]

    @property
    def present_at_start(self) -> tuple[str, ...]:
        return self.starting or self.speakers[:2]

    @property
    def newcomers(self) -> tuple[str, ...]:
        """Speakers who enter during the scene."""
        return tuple(name for name in self.speakers if name not in self.present_at_start)

    @property
    def plot(self) -> str:
        return plot_key(self.stage)

    @property
    def short(self) -> bool:
        return self.stage in ("cold", "tag")

    @property
    def bystander(self) -> str:
        return self.speakers[2] if len(self.speakers) > 2 else self.secondary


@dataclass
class SceneWriter:
    """Builds one scene of a plan; every random choice comes from `rng` or a digest of the
    scene's inputs. `_candidates` keeps this scene's template order per pool while it is built."""

    plan: EpisodePlan
    index: int
    rng: random.Random
    take: int = 0
    focus: str = ""
    placement: int = episode_pb2.PLACEMENT_UNSPECIFIED  # of the scene's heading
    items: list[Item] = field(default_factory=list)
    used: set[str] = field(default_factory=set)
    templates: set[tuple[str, str]] = field(default_factory=set)  # (pool, template) spoken
    uses: dict[str, int] = field(default_factory=dict)
    tics: dict[str, int] = field(default_factory=dict)
    borrowed: int = 0
    _candidates: dict[str, tuple[tuple[str, bool], ...]] = field(default_factory=dict)
    # The plan's parts a scene reads on every line, as plain attributes.
    setting: episode_pb2.Setting = field(init=False)
    cast: Mapping[str, episode_pb2.Character] = field(init=False)  # by name, in cast order
    kernel: EpisodeKernel = field(init=False)
    seed: int = field(init=False)
    original: Mapping[str, str] = field(init=False)  # the classic cast's names (never spoken)

    def __post_init__(self) -> None:
        self.setting, self.kernel, self.seed = self.plan.setting, self.plan.kernel, self.plan.seed
        self.cast = dict(self.plan.by_name)
        self.original = original_names(self.plan.show, self.plan.cast, self.setting)

    def fits(self, speaker: str, text: str) -> bool:
        """Whether `speaker` may say `text`: not naming themself in the third person, and no
        name of the classic show's cast in it."""
        if find_original_names(text, self.original):
            return False
        character = self.cast.get(speaker)
        return character is None or names_self(text, own_names(character)) is None

    def suits_heading(self, text: str) -> bool:
        """Whether an action line agrees with the heading (no indoor business under EXT)."""
        return clashes(self.placement, text) is None

    def mark(self, text: str) -> str:
        """A borrowed line, prefixed with the scene's next discourse marker."""
        marks = self.plan.scene_marks(self.index)
        self.borrowed += 1
        return lead_in(marks[(self.borrowed - 1) % len(marks)], text)

    # -- slots and templates ------------------------------------------------------------------

    def slots(self, me: str, you: str, other: str) -> dict[str, str]:
        vocabulary = list(self.setting.vocabulary) or list(GENERIC_VOCABULARY)
        slots = dict(self.kernel.slots)
        slots.update(
            me=me,
            you=you,
            other=other,
            vocab=self.rng.choice(vocabulary),
            vocab2=self.rng.choice(vocabulary),
            my_role=self._role(me),
            your_role=self._role(you),
            focus=self.focus or slots["prop"],
            other_prop=slots["b_prop"] if self.focus == slots["prop"] else slots["prop"],
        )
        slots.update(
            PROP=slots["prop"].upper(),
            B_PROP=slots["b_prop"].upper(),
            DRINK=slots["drink"].upper(),
            OTHER=other.upper(),
        )
        return slots

    def _role(self, name: str) -> str:
        character = self.cast.get(name)
        return (character.role or character.archetype) if character else "bystander"

    def pick(self, pool_name: str, pool: Sequence[str]) -> Iterable[str]:
        """Action templates in an order that rotates from scene to scene (actions may recur)."""
        count = self.uses.get(pool_name, 0)
        self.uses[pool_name] = count + 1
        stride = next(s for s in range(3, len(pool) + 3) if math.gcd(s, len(pool)) == 1)
        start = (
            digest("pool", pool_name, self.seed, self.plan.show.id) + self.index * stride + count
        )
        return (pool[(start + k) % len(pool)] for k in range(len(pool)))

    def candidates(self, pool_name: str) -> tuple[tuple[str, bool], ...]:
        """(template, borrowed) in the order this scene tries them: its own first."""
        known = self._candidates.get(pool_name)
        if known is None:
            known = self.plan.lines.candidates(pool_name, self.index, self.take)
            self._candidates[pool_name] = known
        return known

    def fill(self, pool_name: str, me: str, you: str, other: str) -> str:
        """A line from the pool, unused in this scene and fit for `me` to say; borrowed
        templates carry the scene mark."""
        if other in (me, you):
            other = self._other((), me, you)
        slots = self.slots(me, you, other)
        candidates = self.candidates(pool_name)
        for template, borrowed in candidates:
            text = sentence(template.format_map(slots))
            if (pool_name, template) in self.templates or text in self.used:
                continue
            if not self.fits(me, text):
                continue
            self.templates.add((pool_name, template))
            return self.mark(text) if borrowed else text
        # Every fit template of the pool was spoken in this scene already: one once more.
        texts = [(sentence(t.format_map(slots)), borrowed) for t, borrowed in candidates]
        text, borrowed = next(((t, b) for t, b in texts if self.fits(me, t)), texts[0])
        return self.unique(self.mark(text) if borrowed else text)

    def unique(self, text: str) -> str:
        for tail in ("I mean it.", "Honestly.", "Think about it.", "Again.", "Trust me."):
            if text not in self.used:
                break
            text = f"{text} {tail}"
        return text

    # -- voice -----------------------------------------------------------------------------------

    def voiced(self, speaker: str, text: str) -> str:
        """Adds one of the speaker's verbal tics now and then (at most twice a scene)."""
        character = self.cast.get(speaker)
        if not character or not character.verbal_tics or self.rng.random() >= TIC_CHANCE:
            return text
        if self.tics.get(speaker, 0) >= MAX_TICS_PER_SPEAKER:
            return text
        tics = [tic for tic in character.verbal_tics if self.fits(speaker, tic)]
        if not tics:
            return text
        self.tics[speaker] = self.tics.get(speaker, 0) + 1
        return lead_in(self.rng.choice(tics), text)

    def parenthetical(self, me: str, you: str, punch: bool = False) -> str:
        if self.rng.random() >= PARENTHETICAL_CHANCE:
            return ""
        pool = PUNCH_PARENTHETICALS if punch else PARENTHETICALS
        return self.rng.choice(pool).format_map(self.slots(me, you, you))

    def compose(
        self,
        speaker: str,
        text: str,
        you: str,
        joke: JokeSpec | None = None,
        extension: str = "",
        plain: bool = False,
        optional: bool = False,
    ) -> Line:
        """A line (not yet placed); `plain` lines (catchphrases) get no tic, no parenthetical."""
        if joke is None and not plain:
            text = self.voiced(speaker, text)
        text = self.unique(text)
        self.used.add(text)
        punch = joke is not None and joke.role != episode_pb2.JOKE_ROLE_SETUP
        parenthetical = "" if plain else self.parenthetical(speaker, you, punch)
        return Line(speaker, text, parenthetical, extension, joke, optional)

    def say(self, speaker: str, text: str, you: str, **options: object) -> Line:
        line = self.compose(speaker, text, you, **options)  # type: ignore[arg-type]
        self.items.append(line)
        return line

    def last_speaker(self) -> str | None:
        """Who spoke the previous element, if it was dialogue."""
        last = self.items[-1] if self.items else None
        return last.speaker if isinstance(last, Line) else None

    def line(self, pool_name: str, me: str, you: str, other: str, optional: bool = False) -> Line:
        if me == self.last_speaker() and you != me:
            me, you = you, me
        return self.say(me, self.fill(pool_name, me, you, other), you, optional=optional)

    def react(self, me: str, you: str, other: str) -> Line:
        if me == self.last_speaker() and you != me:
            me, you = you, me
        return self.line(self.reaction_pool(me), me, you, other)

    def reaction_pool(self, name: str) -> str:
        return f"react:{catalog.archetype_family(self._archetype(name))}"

    def action(
        self, pool_name: str, pool: Sequence[str], x: str, y: str, prefix: str = "", **kw: bool
    ) -> None:
        slots = self.slots(x, y, y)
        slots.update(X=x, Y=y, A=x.upper(), B=y.upper())
        texts = [sentence(template.format_map(slots)) for template in self.pick(pool_name, pool)]
        text = next((t for t in texts if self.suits_heading(t)), texts[0])
        self.items.append(Action(f"{prefix} {text}" if prefix else text, **kw))

    # -- jokes -----------------------------------------------------------------------------------

    def joke(self, slot: JokeSlot, present: Sequence[str]) -> None:
        pattern_id, role = slot.pattern, slot.role
        pairs = self._joke_speakers(pattern_id, present)
        for setup_speaker, punch_speaker in pairs:  # the first pair each of whom may say it
            other = self._other(present, setup_speaker, punch_speaker)
            setup, payoff = self._joke_pair(slot, setup_speaker, punch_speaker, other)
            if self.fits(setup_speaker, setup) and self.fits(punch_speaker, payoff):
                break
        else:
            setup_speaker, punch_speaker = pairs[0]
            other = self._other(present, setup_speaker, punch_speaker)
            setup, payoff = self._joke_pair(slot, setup_speaker, punch_speaker, other)
        if role == episode_pb2.JOKE_ROLE_CALLBACK:
            self.say(setup_speaker, setup, punch_speaker)
        else:
            spec = JokeSpec(pattern_id, episode_pb2.JOKE_ROLE_SETUP)
            self.say(setup_speaker, setup, punch_speaker, joke=spec)
        if pattern_id == "slapstick":
            self.action("slapstick", ACTION_SLAPSTICK, punch_speaker, setup_speaker)
        self.say(punch_speaker, payoff, setup_speaker, joke=JokeSpec(pattern_id, role))

    def _joke_pair(
        self, slot: JokeSlot, setup_by: str, punch_by: str, other: str
    ) -> tuple[str, str]:
        """The planned pair; a pair the plan has already given to another scene gets the mark."""
        setup, payoff = JOKES[slot.pattern][slot.pair]
        setup_slots = self.slots(setup_by, punch_by, other)
        punch_slots = {**setup_slots, **self.slots(punch_by, setup_by, other)}
        punch_slots.update(vocab=setup_slots["vocab"])
        first = sentence(setup.format_map(setup_slots))
        second = sentence(payoff.format_map(punch_slots))
        if slot.repeat:
            return self.mark(first), self.mark(second)
        return first, second

    def _joke_speakers(self, pattern_id: str, present: Sequence[str]) -> list[tuple[str, str]]:
        """(setup, payoff) speakers, best first: the payoff goes to an archetype the pattern
        suits, and nobody speaks twice in a row (pairs where someone would come last)."""
        pattern = catalog.get_pattern(pattern_id)
        suited = pattern.archetypes if pattern else ()
        order = list(present)
        self.rng.shuffle(order)
        fits = [n for n in order if catalog.archetype_family(self._archetype(n)) in suited]
        last = self.last_speaker()
        punches = [*fits, *(n for n in order if n not in fits)]
        pairs = [(setup, punch) for punch in punches for setup in order if setup != punch]
        pairs.sort(key=lambda pair: pair[0] == last)  # stable: the best order otherwise
        return pairs or [(order[0], order[-1])]

    def _archetype(self, name: str) -> str:
        character = self.cast.get(name)
        return character.archetype if character else ""

    def _other(self, present: Sequence[str], *exclude: str) -> str:
        absent = [n for n in self.cast if n not in exclude]
        preferred = [n for n in absent if n not in present] or absent or list(exclude)
        return preferred[digest("other", self.seed, self.index, *exclude) % len(preferred)]
