"""The procedural writer: offline, deterministic by seed, built on the bundled catalog.

Every function is pure and synchronous. Randomness comes from `random.Random` seeded with a SHA-256
of the inputs (never `hash()`, which is salted per process), so the same inputs give byte-identical
protos in any process. A scene depends only on its arguments: episode-level choices (who drives
which plot, the props, the running gag, the order of locations and humour patterns, the line plan
that keeps every dialogue line of the episode unique) are re-derived from (show, setting, cast,
seed, outline) by every call, so scenes can be written concurrently, in any order, and cached one
by one.

Lines come from the grammar in shared/catalog/lines.json, filled with the characters' voices (tics
and catchphrases, sparingly), the setting's lexicon, vocabulary and props, and the scene's beat.
Each scene is written to its beat's runtime target. Jokes follow the humour pattern library: each
pattern has setup/payoff pairs, and every joke is scored by `score_joke`. `punch_up` rewrites a
weak joke line (the comedy pass), `revise_scene` writes another take of a scene following notes.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import NamedTuple, TypeAlias

from doppelganger.v1 import episode_pb2
from services.script.validation import (
    CLUSTER_SECONDS,
    COMEDY_INTERVAL_SECONDS,
    DEFAULT_SCENE_SECONDS,
    RUNNER_WEIGHT,
    action_seconds,
    allocate_targets,
    dialogue_seconds,
    word_pattern,
)
from shared import catalog
from shared.catalog import HumorPattern, SettingProfile

WRITER_NAME = "procedural"
PROMPT_VERSION = "2"

# Joke scoring: named dimensions in [0, 1] and their weights (they sum to 1).
#   surprise      - share of the line's content words not heard in the preceding lines, plus a
#                   bonus when the last content word is new (the turn lands at the end)
#   brevity       - 5 to 16 words is ideal; shorter or longer decays linearly
#   punch         - the line ends on a strong content word rather than a filler word
#   character_fit - the speaker's archetype is one the pattern suits (payoff archetypes)
#   setting_fit   - mentions of the setting's vocabulary, props and lexicon
#   callback      - refers back to something planted earlier (running gag, earlier props)
JOKE_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {
        "surprise": 0.25,
        "brevity": 0.15,
        "punch": 0.15,
        "character_fit": 0.20,
        "setting_fit": 0.15,
        "callback": 0.10,
    }
)

JOKE_CONTEXT_LINES = 6  # dialogue lines before a joke that `surprise` compares it with
BRIEF_WORDS = 16  # `brevity` is full up to this many words

Show: TypeAlias = episode_pb2.Show
Setting: TypeAlias = episode_pb2.Setting
Character: TypeAlias = episode_pb2.Character
Relationship: TypeAlias = episode_pb2.Relationship
Outline: TypeAlias = episode_pb2.Outline
Scene: TypeAlias = episode_pb2.Scene
Joke: TypeAlias = episode_pb2.Joke
SETUP = episode_pb2.JOKE_ROLE_SETUP
PUNCHLINE = episode_pb2.JOKE_ROLE_PUNCHLINE

MAX_SCENES = 20
MAX_ACTS = 5
ACT_NAMES = ("Act One", "Act Two", "Act Three", "Act Four", "Act Five")
COLD_OPEN = "Cold Open"
TAG = "Tag"
TIMES_OF_DAY = ("MORNING", "DAY", "DAY", "AFTERNOON", "EVENING", "NIGHT")
TIC_CHANCE = 0.18
PARENTHETICAL_CHANCE = 0.22
CATCHPHRASE_CHANCE = 0.4
CALLBACK_CHANCE = 0.45
OFF_LIBRARY_CHANCE = 0.3
MAX_TICS_PER_SPEAKER = 2
_EXTERIOR_WORDS = re.compile(
    r"\b(STREET|SURFACE|YARD|GARDEN|CLEARING|ROOF|ROOFTOP|PERIMETER|FOREST|RIDGE|DOCK|ALLEY|"
    r"COURTYARD|FIELD|FIELDS|BEACH|SHORE|OUTSIDE|TRAIL|CORRAL|BATTLEMENTS|MARKET|BRIDGE PATH|"
    r"QUARTERDECK|MAIN DECK|HULL|PATH|STEPS|LOT)\b"
)


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


_A_BEFORE_VOWEL = re.compile(r"(?<![\w'])a (?=[aeioAEIO])")
_SENTENCE_START = re.compile(r"(?<!\.)([.!?]\s+)([a-z])")
_SMALL_WORDS = _wordset("a an and at by for in of on or the to with")
_LOWER_STARTERS = _wordset(
    "a all an and are but can could did do don't everybody everyone he her his how if is it "
    "it's just let's look maybe my no nobody now okay our she so that that's the then there "
    "there's they this we well what what's when where who why will would yes you you're your"
)

# ---------------------------------------------------------------------------------------------
# The grammar: templates live in shared/catalog/lines.json (catalog.writer_grammar()).

_GRAMMAR = catalog.writer_grammar()


def _pools(section: Mapping[str, Sequence[str]]) -> Mapping[str, tuple[str, ...]]:
    return MappingProxyType({key: tuple(values) for key, values in section.items()})


_STORY, _LINES, _ACTIONS = _GRAMMAR["story"], _GRAMMAR["lines"], _GRAMMAR["actions"]
WANTS: tuple[str, ...] = tuple(_STORY["wants"])
B_ISSUES: tuple[str, ...] = tuple(_STORY["b_issues"])
RUNNERS: tuple[str, ...] = tuple(_STORY["runners"])
TITLES: tuple[str, ...] = tuple(_STORY["titles"])
LOGLINE: str = _STORY["logline"]
BEAT_TEMPLATES = _pools(_STORY["beats"])
A_STAGES = ("inciting", "scheme", "complication", "escalation")
B_STAGES = ("spark", "friction", "b-escalation")
OPENERS = _pools(_LINES["openers"])
DEVELOP = _pools(_LINES["develop"])
PUSHES = _pools(_LINES["pushes"])
TURNS = _pools(_LINES["turns"])
REACTIONS = _pools(_LINES["reactions"])
OBJECTIONS: tuple[str, ...] = tuple(_LINES["objections"])
BANTER: tuple[str, ...] = tuple(_LINES["banter"])
ARRIVALS: tuple[str, ...] = tuple(_LINES["arrivals"])
PARENTHETICALS: tuple[str, ...] = tuple(_LINES["parentheticals"])
PUNCH_PARENTHETICALS: tuple[str, ...] = tuple(_LINES["punch_parentheticals"])
# Setup/payoff pairs by pattern id; for "callback" the setup is a plain lead-in.
JOKES: Mapping[str, tuple[tuple[str, str], ...]] = MappingProxyType(
    {pattern: tuple((setup, payoff) for setup, payoff in pairs)
     for pattern, pairs in _GRAMMAR["jokes"].items()}
)  # fmt: skip
ACTION_OPENINGS: tuple[str, ...] = tuple(_ACTIONS["openings"])
ACTION_BUSINESS: tuple[str, ...] = tuple(_ACTIONS["business"])
ACTION_ENTRANCES: tuple[str, ...] = tuple(_ACTIONS["entrances"])
ACTION_REACTIONS: tuple[str, ...] = tuple(_ACTIONS["reactions"])
ACTION_CLOSINGS: tuple[str, ...] = tuple(_ACTIONS["closings"])
ACTION_SLAPSTICK: tuple[str, ...] = tuple(_ACTIONS["slapstick"])
TRANSITIONS: tuple[str, ...] = tuple(_GRAMMAR["transitions"])
LAST_TRANSITION: str = _GRAMMAR["last_transition"]
# Catchphrase words swapped for the setting's lexicon (catalog.LEXICON_KEYS).
CATCHPHRASE_SWAPS: Mapping[str, str] = MappingProxyType(dict(_GRAMMAR["catchphrase_swaps"]))
GENERIC_PROPS: tuple[str, ...] = tuple(_GRAMMAR["generic_props"])
GENERIC_VOCABULARY: tuple[str, ...] = tuple(_GRAMMAR["generic_vocabulary"])


# ---------------------------------------------------------------------------------------------
# Determinism helpers


def _digest(*parts: object) -> int:
    text = "\x1f".join(str(part) for part in parts)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def _rng(*parts: object) -> random.Random:
    return random.Random(_digest(*parts))


def _sentence(text: str) -> str:
    """Capitalises the first letter and every sentence start (not after an ellipsis), and turns
    'a' into 'an' before a vowel."""
    text = _A_BEFORE_VOWEL.sub("an ", text)
    text = text[:1].upper() + text[1:]
    return _SENTENCE_START.sub(lambda m: m.group(1) + m.group(2).upper(), text)


def _title_case(text: str) -> str:
    words = text.split()
    return " ".join(
        w if i and w.lower() in _SMALL_WORDS else w[:1].upper() + w[1:] for i, w in enumerate(words)
    )


def _mid_sentence(name: str) -> str:
    """'A Mars colony in 2157' -> 'a Mars colony in 2157' (only a leading article is lowered)."""
    first, _, rest = name.partition(" ")
    return f"{first.lower()} {rest}" if first.lower() in ("a", "an", "the") and rest else name


# ---------------------------------------------------------------------------------------------
# Cast


def _name_score(original: str, candidate: str) -> float:
    a, b = original.lower(), candidate.lower()
    score = difflib.SequenceMatcher(None, a, b).ratio()
    return score + 0.15 * (a[-1:] == b[-1:]) + 0.1 * (a[:2] == b[:2])


def _echo_name(
    original: str, pool: Sequence[str], suffixes: Sequence[str], used: set[str], rng: random.Random
) -> str:
    """An in-world name that keeps an echo of the original (same initial, similar sound)."""
    initial = original[:1].lower()
    candidates = [n for n in pool if n[:1].lower() == initial and n.lower() not in used]
    if candidates:
        jitter = {name: rng.random() * 0.05 for name in candidates}
        return max(candidates, key=lambda n: (_name_score(original, n) + jitter[n], n))
    stem = original[:3] if len(original) > 3 else original
    for extra in range(1, 10):
        for suffix in suffixes:
            name = _sentence(stem.lower() + suffix * extra)
            if name.lower() not in used:
                return name
    return f"{original}-{rng.randrange(100, 1000)}"


def _assign_roles(show: Show, profile: SettingProfile) -> list[str]:
    taken: set[str] = set()
    roles = []
    for character in show.characters:
        family = catalog.archetype_family(character.archetype)
        options = [*profile.roles.get(family, ()), *profile.spare_roles]
        role = next((r for r in options if r not in taken), None)
        if role is None:
            role = f"assistant {options[0]}" if options else "regular"
        taken.add(role)
        roles.append(role)
    return roles


def _rename(text: str, renames: Mapping[str, str]) -> str:
    for original, new in renames.items():
        text = re.sub(rf"\b{re.escape(original)}(?:ie|y)?\b", new, text)
    return text


def _swap_words(text: str, lexicon: Mapping[str, str]) -> str:
    """'To the moon, Alice!' on Mars -> 'To Earth, Alice!' (before renaming)."""
    for word, key in CATCHPHRASE_SWAPS.items():
        value = lexicon.get(key)
        if not value:
            continue
        owns_article = value.split()[0].lower() in ("the", "a", "an") or value[:1].isupper()
        pattern = rf"\b(?:(the|this|a|an)\s+)?{re.escape(word)}\b"

        def replace(match: re.Match[str], value: str = value, owns: bool = owns_article) -> str:
            article = match.group(1)
            return value if owns or not article else f"{article} {value}"

        text = re.sub(pattern, replace, text, flags=re.IGNORECASE)
    return text


def transform_cast(
    show: Show, setting: Setting, seed: int
) -> tuple[list[Character], list[Relationship]]:
    """The show's characters renamed and re-roled for the setting, with their relationships.

    The cast depends on the show and the setting only, not on the seed: Lucy is the same person in
    every Mars episode.
    """
    profile = catalog.setting_profile(setting)
    pool, suffixes = catalog.name_pool(profile.name_style)
    rng = _rng("cast", show.id, setting.id, setting.description)
    used = {character.name.lower() for character in show.characters}
    renames: dict[str, str] = {}
    for character in show.characters:
        renames[character.name] = _echo_name(character.name, pool, suffixes, used, rng)
        used.add(renames[character.name].lower())
    cast = [
        Character(
            name=renames[c.name],
            original_name=c.name,
            archetype=c.archetype,
            role=role,
            traits=list(c.traits),
            verbal_tics=[_rename(tic, renames) for tic in c.verbal_tics],
            catchphrases=[
                _rename(_swap_words(p, profile.lexicon), renames) for p in c.catchphrases
            ],
        )
        for c, role in zip(show.characters, _assign_roles(show, profile), strict=True)
    ]
    relationships = [
        Relationship(
            from_character=renames.get(r.from_character, r.from_character),
            to_character=renames.get(r.to_character, r.to_character),
            kind=r.kind,
        )
        for r in show.relationships
    ]
    return cast, relationships


# ---------------------------------------------------------------------------------------------
# The episode kernel: choices shared by the outline and every scene.


class _Roles(NamedTuple):
    """Who drives which line of the story."""

    lead: str
    partner: str
    b1: str
    b2: str
    runner: str


@dataclass(frozen=True)
class _Kernel:
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
    def roles(self) -> _Roles:
        return _Roles(self.lead, self.partner, self.b1, self.b2, self.runner)


def _pick_runner(cast: Sequence[Character]) -> str:
    for family in ("eccentric", "innocent", "sidekick"):
        for character in cast[2:]:
            if catalog.archetype_family(character.archetype) == family:
                return character.name
    return cast[-1].name


def _props(setting: Setting, rng: random.Random) -> list[str]:
    props = list(dict.fromkeys(setting.props)) or list(GENERIC_PROPS)
    rng.shuffle(props)
    for extra in GENERIC_PROPS:
        if len(props) >= 3:
            break
        if extra not in props:
            props.append(extra)
    return props[:3]


def _favoured_patterns(show: Show, rng: random.Random) -> tuple[str, ...]:
    library = [p.id for p in catalog.load_patterns() if p.id in JOKES]
    favoured = [p for p in show.humor_patterns if p in JOKES] or library
    rng.shuffle(favoured)
    return tuple(favoured)


def _locations(show: Show, setting: Setting, rng: random.Random) -> tuple[str, ...]:
    locations = list(dict.fromkeys(setting.locations)) or list(show.locations) or ["MAIN ROOM"]
    rng.shuffle(locations)
    return tuple(locations)


@lru_cache(maxsize=512)
def _kernel_cached(
    show_bytes: bytes, setting_bytes: bytes, cast_bytes: bytes, seed: int
) -> _Kernel:
    show, setting = Show.FromString(show_bytes), Setting.FromString(setting_bytes)
    cast = list(episode_pb2.Episode.FromString(cast_bytes).cast)
    return _build_kernel(show, setting, cast, seed)


def _kernel(show: Show, setting: Setting, cast: Sequence[Character], seed: int) -> _Kernel:
    if not cast:
        raise ValueError("the cast is empty")
    cast_bytes = episode_pb2.Episode(cast=cast).SerializeToString(deterministic=True)
    return _kernel_cached(
        show.SerializeToString(deterministic=True),
        setting.SerializeToString(deterministic=True),
        cast_bytes,
        seed,
    )


def _build_kernel(show: Show, setting: Setting, cast: Sequence[Character], seed: int) -> _Kernel:
    names = [c.name for c in cast]
    rng = _rng("kernel", show.id, setting.id, setting.description, seed, *names)
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
    slots.update(B_issue=_sentence(b_issue), Prop=_title_case(prop))
    return _Kernel(
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


# ---------------------------------------------------------------------------------------------
# Outline


def _allocate(structure: episode_pb2.EpisodeStructure, scene_count: int) -> list[tuple[str, int]]:
    """Scenes per act: the acts get at least three, then the tag, then the cold open."""
    act_scenes = min(scene_count, 3)
    rest = scene_count - act_scenes
    tag = 1 if structure.tag and rest > 0 else 0
    rest -= tag
    cold = 1 if structure.cold_open and rest > 0 else 0
    act_scenes += rest - cold
    acts = min(max(1, structure.acts or 2), MAX_ACTS, act_scenes)
    counts = [act_scenes // acts + (1 if i < act_scenes % acts else 0) for i in range(acts)]
    segments = [(COLD_OPEN, 1)] if cold else []
    segments += [(ACT_NAMES[i], count) for i, count in enumerate(counts)]
    return segments + ([(TAG, 1)] if tag else [])


def _plots(segments: Sequence[tuple[str, int]]) -> list[int]:
    """Plot line per scene: runners in cold open and tag; A and B alternate; A has the climax."""
    act_total = sum(count for name, count in segments if name not in (COLD_OPEN, TAG))
    a_line, b_line = episode_pb2.PLOT_LINE_A, episode_pb2.PLOT_LINE_B
    act_plots = [a_line if j % 2 == 0 else b_line for j in range(act_total)]
    if act_total >= 3:
        act_plots[-1] = a_line
    plots: list[int] = []
    for name, count in segments:
        if name in (COLD_OPEN, TAG):
            plots.append(episode_pb2.PLOT_LINE_RUNNER)
        else:
            plots.extend(act_plots[:count])
            act_plots = act_plots[count:]
    return plots


def _stages(plots: Sequence[int]) -> list[str]:
    """Dramatic stage of each scene, from the sequence of plot lines alone."""
    story = [i for i, plot in enumerate(plots) if plot != episode_pb2.PLOT_LINE_RUNNER]
    climax = story[-1] if len(story) >= 2 else -1
    a_beats = [i for i in story if plots[i] == episode_pb2.PLOT_LINE_A and i != climax]
    b_beats = [i for i in story if plots[i] == episode_pb2.PLOT_LINE_B and i != climax]
    stages = []
    for index, plot in enumerate(plots):
        if index == climax:
            stages.append("climax")
        elif plot == episode_pb2.PLOT_LINE_RUNNER:
            stages.append("cold" if not story or index < story[0] else "tag")
        elif plot == episode_pb2.PLOT_LINE_B:
            position = b_beats.index(index)
            stages.append(B_STAGES[position * len(B_STAGES) // len(b_beats)])
        else:
            position = a_beats.index(index)
            stages.append(A_STAGES[position * len(A_STAGES) // len(a_beats)])
    return stages


def write_outline(
    show: Show,
    setting: Setting,
    cast: Sequence[Character],
    relationships: Sequence[Relationship],
    scene_count: int,
    seed: int,
    target_runtime_seconds: float = 0.0,
) -> Outline:
    """Title, logline, A and B plots and one beat per scene, acts as the show's structure says,
    and the runtime target shared among the beats (default: DEFAULT_SCENE_SECONDS a scene)."""
    if not 1 <= scene_count <= MAX_SCENES:
        raise ValueError(f"scene_count must be between 1 and {MAX_SCENES} (got {scene_count})")
    kernel = _kernel(show, setting, cast, seed)
    rng = _rng("outline", show.id, setting.id, setting.description, seed)
    segments = _allocate(show.structure, scene_count)
    plots = _plots(segments)
    stages = _stages(plots)
    slots = dict(kernel.slots)
    seen: dict[str, int] = {}
    descriptions = []
    for stage in stages:
        options = BEAT_TEMPLATES[stage]
        offset = _digest("beat", seed, stage) % len(options)
        descriptions.append(options[(offset + seen.get(stage, 0)) % len(options)].format_map(slots))
        seen[stage] = seen.get(stage, 0) + 1
    outline = Outline(
        title=rng.choice(TITLES).format_map(slots),
        logline=_logline(show, setting, cast, kernel),
        a_plot=f"{kernel.lead} sets out to {kernel.want}; {kernel.partner} is against it "
        "from the start.",
        b_plot=_sentence(kernel.b_issue) + ".",
        scene_count=scene_count,
    )
    index = 0
    for name, count in segments:
        act = outline.acts.add(name=name)
        for _ in range(count):
            act.beats.add(scene_index=index, plot=plots[index], description=descriptions[index])
            index += 1
    _note_relationship(outline, relationships, kernel)
    allocate_targets(outline, target_runtime_seconds or scene_count * DEFAULT_SCENE_SECONDS)
    return outline


def _logline(show: Show, setting: Setting, cast: Sequence[Character], kernel: _Kernel) -> str:
    role = cast[0].role or cast[0].archetype or "a dreamer"
    article = "an" if role[:1].lower() in "aeiou" else "a"
    return LOGLINE.format(
        show=show.title,
        setting_lower=_mid_sentence(setting.name or "somewhere new"),
        lead=kernel.lead,
        role=f"{article} {role}",
        want=kernel.want,
        b_issue=kernel.b_issue,
    )


def _note_relationship(
    outline: Outline, relationships: Sequence[Relationship], kernel: _Kernel
) -> None:
    """Names the B-plot pair's relationship in the B plot when the catalog knows it."""
    pair = {kernel.b1, kernel.b2}
    for relationship in relationships:
        if {relationship.from_character, relationship.to_character} == pair:
            outline.b_plot += (
                f" ({relationship.from_character} is {relationship.to_character}'s "
                f"{relationship.kind}.)"
            )
            return


# ---------------------------------------------------------------------------------------------
# Scenes
#
# A scene is written to its beat's runtime target (Beat.target_seconds): an opening exchange and a
# joke, build-up steps spread between the remaining jokes (one comedic beat about every
# COMEDY_INTERVAL_SECONDS), a closing action, then exchanges added (or optional lines dropped)
# until the runtime estimate is within FIT_TOLERANCE of the target.
#
# No dialogue line is heard twice in an episode, yet every scene is written on its own. The
# episode's line plan (a pure function of the episode's inputs) deals every template of every pool
# to one of the scenes that draw from that pool. A scene speaks its own templates first; when it
# needs more it borrows one and prefixes its own discourse marker ("For the record, ..."): one
# marker per scene, different in every scene, so a borrowed line never equals another scene's.
# Joke pairs and catchphrases are planned the same way.

FIT_TOLERANCE = 0.05
EXCHANGE_SECONDS = 8.0  # with less than this missing, single lines fill the gap
MAX_FILLS = 40
MIN_JOKES, MAX_JOKES = 2, 6
MIN_TARGET_SECONDS, MAX_TARGET_SECONDS = 40.0, 175.0
AUTO_MIN_SCENES, AUTO_MAX_SCENES = 8, 12
LONGEST_AUTO_SCENE_SECONDS = 170.0
MARKS: tuple[str, ...] = tuple(_GRAMMAR["marks"])
TOPPERS: tuple[str, ...] = tuple(_GRAMMAR["toppers"])
_POOLS: Mapping[str, Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "open": OPENERS,
        "develop": DEVELOP,
        "push": PUSHES,
        "turn": TURNS,
        "react": REACTIONS,
        "object": MappingProxyType({"": OBJECTIONS}),
        "banter": MappingProxyType({"": BANTER}),
        "arrive": MappingProxyType({"": ARRIVALS}),
    }
)


@dataclass(frozen=True)
class SceneDirectives:
    """What a revision asks of a scene (see `read_notes`). `take` 0 is the first draft; any other
    value is another take of the same beat: other templates first, other choices."""

    speakers: tuple[str, ...] = ()
    length_factor: float = 1.0
    extra_jokes: int = 0
    focus: str = ""
    take: int = 0


FIRST_DRAFT = SceneDirectives()


def auto_scene_count(
    show: Show, seed: int, episode_seconds: float, scene_seconds: float = DEFAULT_SCENE_SECONDS
) -> int:
    """Scenes for an episode whose request leaves the count open: as many scenes of about
    `scene_seconds` as fill `episode_seconds`, give or take one (by seed), within 8-12, and never
    so few that an act scene would run longer than LONGEST_AUTO_SCENE_SECONDS."""
    jitter = _digest("scene-count", show.id, seed) % 3 - 1
    count = round(episode_seconds / max(1.0, scene_seconds)) + jitter
    count = min(AUTO_MAX_SCENES, max(AUTO_MIN_SCENES, count))
    while count < AUTO_MAX_SCENES and _longest_scene(show, count, episode_seconds) > (
        LONGEST_AUTO_SCENE_SECONDS
    ):
        count += 1
    return count


def _longest_scene(show: Show, scene_count: int, episode_seconds: float) -> float:
    segments = _allocate(show.structure, scene_count)
    units = sum(RUNNER_WEIGHT if name in (COLD_OPEN, TAG) else count for name, count in segments)
    return episode_seconds / units


def _pool(name: str) -> tuple[str, ...]:
    kind, _, key = name.partition(":")
    return _POOLS[kind][key]


def _push_key(stage: str) -> str:
    return "B" if _plot_key(stage) == "B" else "A"


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
        users = [i for i, stage in enumerate(stages) if _push_key(stage) == key]
    elif kind == "turn":
        users = [i for i, stage in enumerate(stages) if _plot_key(stage) == key]
    else:
        users = []
    return tuple(users) or tuple(range(len(stages)))


@lru_cache(maxsize=8192)
def _owners(name: str, size: int, users: tuple[int, ...], seed: int, key: str) -> tuple[int, ...]:
    """The scene that owns each template of a pool: dealt round robin, in a seeded order."""
    order = sorted(range(size), key=lambda template: _digest("deal", key, seed, name, template))
    owners = [-1] * size
    for position, template in enumerate(order):
        owners[template] = users[position % len(users)]
    return tuple(owners)


@lru_cache(maxsize=16384)
def _candidates(
    name: str, users: tuple[int, ...], index: int, take: int, seed: int, key: str
) -> tuple[tuple[str, bool], ...]:
    """A scene's templates of a pool, (template, borrowed), its own first, in a seeded order."""
    pool = _pool(name)
    owners = _owners(name, len(pool), users, seed, key)
    shift = _digest("order", key, seed, name, index, take)
    order = sorted(range(len(pool)), key=lambda t: (owners[t] != index, (t + shift) % len(pool)))
    return tuple((pool[t], owners[t] != index) for t in order)


@lru_cache(maxsize=4096)
def _scene_marks(index: int, scenes: int, seed: int, key: str) -> tuple[str, ...]:
    """The scene's discourse markers for borrowed lines, dealt like templates: no two scenes of
    an episode share one (MARKS has at least two for each of MAX_SCENES scenes)."""
    order = sorted(range(len(MARKS)), key=lambda mark: _digest("mark", key, seed, mark))
    return tuple(MARKS[mark] for position, mark in enumerate(order) if position % scenes == index)


def _prefix(lead: str, text: str) -> str:
    """'Well, gee,' + 'It works.' -> 'Well, gee, it works.'; 'Look.' + 'It works.' stays two
    sentences; a lead ending in a comma before a name or 'I' becomes its own sentence."""
    first = text.split(" ", 1)[0].lower().strip(",.!?")
    if lead.endswith(",") and first in _LOWER_STARTERS:
        return f"{lead} {text[:1].lower()}{text[1:]}"
    if lead.endswith(","):
        return f"{lead[:-1]}. {text}"
    return f"{lead} {text}"


@dataclass(frozen=True)
class _JokeSpec:
    pattern: str
    role: int


@dataclass
class _Line:
    speaker: str
    text: str
    parenthetical: str = ""
    extension: str = ""
    joke: _JokeSpec | None = None
    optional: bool = False  # may be dropped when the scene runs long


@dataclass
class _Action:
    text: str
    optional: bool = False


_Item: TypeAlias = _Line | _Action


@dataclass
class _SceneWriter:
    """Builds one scene; every random choice comes from `rng` or a digest of the scene's inputs."""

    show: Show
    setting: Setting
    cast: Mapping[str, Character]
    kernel: _Kernel
    index: int
    seed: int
    rng: random.Random
    stages: tuple[str, ...]
    families: tuple[frozenset[str], ...]  # archetype families of each scene's speakers
    plan_key: str
    take: int = 0
    items: list[_Item] = field(default_factory=list)
    used: set[str] = field(default_factory=set)
    templates: set[tuple[str, str]] = field(default_factory=set)  # (pool, template) spoken
    uses: dict[str, int] = field(default_factory=dict)
    tics: dict[str, int] = field(default_factory=dict)
    focus: str = ""
    borrowed: int = 0

    def mark(self, text: str) -> str:
        """A borrowed line, prefixed with the scene's next discourse marker."""
        marks = _scene_marks(self.index, len(self.stages), self.seed, self.plan_key)
        self.borrowed += 1
        return _prefix(marks[(self.borrowed - 1) % len(marks)], text)

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
        start = _digest("pool", pool_name, self.seed, self.show.id) + self.index * stride + count
        return (pool[(start + k) % len(pool)] for k in range(len(pool)))

    def candidates(self, pool_name: str) -> tuple[tuple[str, bool], ...]:
        """(template, borrowed) in the order this scene tries them: its own first."""
        users = _pool_users(pool_name, self.stages, self.families)
        return _candidates(pool_name, users, self.index, self.take, self.seed, self.plan_key)

    def fill(self, pool_name: str, me: str, you: str, other: str) -> str:
        """A line from the pool, unused in this scene; borrowed templates carry the scene mark."""
        slots = self.slots(me, you, other)
        candidates = self.candidates(pool_name)
        for template, borrowed in candidates:
            text = _sentence(template.format_map(slots))
            if (pool_name, template) in self.templates or text in self.used:
                continue
            self.templates.add((pool_name, template))
            return self.mark(text) if borrowed else text
        # Every template of the pool was spoken in this scene already: the first once more.
        template, borrowed = candidates[0]
        text = _sentence(template.format_map(slots))
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
        self.tics[speaker] = self.tics.get(speaker, 0) + 1
        return _prefix(self.rng.choice(list(character.verbal_tics)), text)

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
        joke: _JokeSpec | None = None,
        extension: str = "",
        plain: bool = False,
        optional: bool = False,
    ) -> _Line:
        """A line (not yet placed); `plain` lines (catchphrases) get no tic, no parenthetical."""
        if joke is None and not plain:
            text = self.voiced(speaker, text)
        text = self.unique(text)
        self.used.add(text)
        punch = joke is not None and joke.role != episode_pb2.JOKE_ROLE_SETUP
        parenthetical = "" if plain else self.parenthetical(speaker, you, punch)
        return _Line(speaker, text, parenthetical, extension, joke, optional)

    def say(self, speaker: str, text: str, you: str, **options: object) -> _Line:
        line = self.compose(speaker, text, you, **options)  # type: ignore[arg-type]
        self.items.append(line)
        return line

    def last_speaker(self) -> str | None:
        """Who spoke the previous element, if it was dialogue."""
        last = self.items[-1] if self.items else None
        return last.speaker if isinstance(last, _Line) else None

    def line(self, pool_name: str, me: str, you: str, other: str, optional: bool = False) -> _Line:
        if me == self.last_speaker() and you != me:
            me, you = you, me
        return self.say(me, self.fill(pool_name, me, you, other), you, optional=optional)

    def react(self, me: str, you: str, other: str) -> _Line:
        if me == self.last_speaker() and you != me:
            me, you = you, me
        return self.line(self.reaction_pool(me), me, you, other)

    def reaction_pool(self, name: str) -> str:
        return f"react:{catalog.archetype_family(self._archetype(name))}"

    def action(
        self, pool_name: str, pool: Sequence[str], x: str, y: str, prefix: str = "", **kw: bool
    ) -> None:
        slots = self.slots(x, y, y)
        template = next(iter(self.pick(pool_name, pool)))
        slots.update(X=x, Y=y, A=x.upper(), B=y.upper())
        text = _sentence(template.format_map(slots))
        self.items.append(_Action(f"{prefix} {text}" if prefix else text, **kw))

    # -- jokes -----------------------------------------------------------------------------------

    def joke(self, slot: _JokeSlot, present: Sequence[str]) -> None:
        pattern_id, role = slot.pattern, slot.role
        setup_speaker, punch_speaker = self._joke_speakers(pattern_id, present)
        other = self._other(present, setup_speaker, punch_speaker)
        setup, payoff = self._joke_pair(slot, setup_speaker, punch_speaker, other)
        if role == episode_pb2.JOKE_ROLE_CALLBACK:
            self.say(setup_speaker, setup, punch_speaker)
        else:
            spec = _JokeSpec(pattern_id, episode_pb2.JOKE_ROLE_SETUP)
            self.say(setup_speaker, setup, punch_speaker, joke=spec)
        if pattern_id == "slapstick":
            self.action("slapstick", ACTION_SLAPSTICK, punch_speaker, setup_speaker)
        self.say(punch_speaker, payoff, setup_speaker, joke=_JokeSpec(pattern_id, role))

    def _joke_pair(
        self, slot: _JokeSlot, setup_by: str, punch_by: str, other: str
    ) -> tuple[str, str]:
        """The planned pair; a pair the plan has already given to another scene gets the mark."""
        setup, payoff = JOKES[slot.pattern][slot.pair]
        setup_slots = self.slots(setup_by, punch_by, other)
        punch_slots = {**setup_slots, **self.slots(punch_by, setup_by, other)}
        punch_slots.update(vocab=setup_slots["vocab"])
        first = _sentence(setup.format_map(setup_slots))
        second = _sentence(payoff.format_map(punch_slots))
        if slot.repeat:
            return self.mark(first), self.mark(second)
        return first, second

    def _joke_speakers(self, pattern_id: str, present: Sequence[str]) -> tuple[str, str]:
        """(setup, payoff) speakers: the payoff goes to an archetype the pattern suits, and
        nobody speaks twice in a row."""
        pattern = catalog.get_pattern(pattern_id)
        suited = pattern.archetypes if pattern else ()
        order = list(present)
        self.rng.shuffle(order)
        fits = [n for n in order if catalog.archetype_family(self._archetype(n)) in suited]
        last = self.last_speaker()
        for punch in [*fits, *(n for n in order if n not in fits)]:
            setups = [n for n in order if n not in (punch, last)]
            if setups:
                return setups[0], punch
        return order[0], order[-1]

    def _archetype(self, name: str) -> str:
        character = self.cast.get(name)
        return character.archetype if character else ""

    def _other(self, present: Sequence[str], *exclude: str) -> str:
        absent = [n for n in self.cast if n not in exclude]
        preferred = [n for n in absent if n not in present] or absent or list(exclude)
        return preferred[_digest("other", self.seed, self.index, *exclude) % len(preferred)]


def _find_beat(outline: Outline, scene_index: int) -> tuple[episode_pb2.Beat | None, str]:
    for act in outline.acts:
        for beat in act.beats:
            if beat.scene_index == scene_index:
                return beat, act.name
    return None, ACT_NAMES[0]


def _named_in(text: str, names: Iterable[str]) -> list[str]:
    """The names that occur in `text`, in order of first occurrence."""
    found = sorted(
        (match.start(), name)
        for name in names
        if (match := word_pattern(name).search(text)) is not None
    )
    return list(dict.fromkeys(name for _, name in found))


def _participants(
    beat: episode_pb2.Beat | None,
    names: Sequence[str],
    roles: _Roles,
    stage: str,
    wanted: Sequence[str] = (),
) -> list[str]:
    """Speakers: those a revision asks for, then the characters the beat names, topped up from
    the plot's defaults."""
    speakers = [name for name in wanted if name in names]
    speakers += [n for n in _named_in(beat.description if beat else "", names) if n not in speakers]
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


def _slugline(
    setting: Setting, kernel: _Kernel, scene_index: int, total: int
) -> episode_pb2.Slugline:
    location = kernel.locations[scene_index % len(kernel.locations)]
    profile = catalog.setting_profile(setting)
    exterior = location in profile.exteriors or _EXTERIOR_WORDS.search(location) is not None
    bucket = min(len(TIMES_OF_DAY) - 1, scene_index * len(TIMES_OF_DAY) // max(1, total))
    return episode_pb2.Slugline(
        placement=episode_pb2.PLACEMENT_EXT if exterior else episode_pb2.PLACEMENT_INT,
        location=location,
        time_of_day=TIMES_OF_DAY[bucket],
    )


@dataclass(frozen=True)
class _JokeSlot:
    pattern: str
    pair: int  # index into JOKES[pattern]
    role: int
    repeat: bool = False  # the pair was planned for an earlier slot too


def _all_stages(outline: Outline, total: int) -> tuple[str, ...]:
    plots = {b.scene_index: b.plot for act in outline.acts for b in act.beats}
    known = sorted(i for i in plots if 0 <= i < total)
    stages = dict(zip(known, _stages([plots[i] for i in known]), strict=True))
    return tuple(stages.get(index, "scheme") for index in range(total))


def _all_targets(outline: Outline, total: int) -> tuple[float, ...]:
    """Runtime target of every scene, from the beats (DEFAULT_SCENE_SECONDS when unset)."""
    targets = {b.scene_index: b.target_seconds for act in outline.acts for b in act.beats}
    return tuple(targets.get(index) or DEFAULT_SCENE_SECONDS for index in range(total))


def _joke_count(target: float) -> int:
    """One comedic beat about every COMEDY_INTERVAL_SECONDS."""
    return min(MAX_JOKES, max(MIN_JOKES, math.ceil(target / COMEDY_INTERVAL_SECONDS)))


def _is_callback_button(seed: int, key: str, index: int, stage: str, last: bool) -> bool:
    if index == 0 or stage == "cold":
        return False
    chance = _digest("callback", seed, key, index) % 100 < CALLBACK_CHANCE * 100
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
    if _digest("off-library", seed, key, turn, slot) % 100 < OFF_LIBRARY_CHANCE * 100:
        pattern = library[_digest("library", seed, key, turn, slot) % len(library)]
    blocked = set(taken)
    if pattern not in blocked and usage.get(pattern, 0) < len(JOKES[pattern]):
        return pattern
    candidates = [p for p in library if p not in blocked]
    return min(
        candidates,
        key=lambda p: (usage.get(p, 0), p not in favoured, _digest("tie", seed, key, p)),
    )


@lru_cache(maxsize=256)
def _joke_plan(
    favoured: tuple[str, ...],
    stages: tuple[str, ...],
    counts: tuple[int, ...],
    seed: int,
    key: str,
) -> tuple[tuple[_JokeSlot, ...], ...]:
    """The joke slots of every scene of the episode (counts[i] in scene i), so that no
    setup/payoff pair repeats until the library runs out. A pure function of the episode's
    inputs: every scene computes the same plan and takes its own row."""
    usage: dict[str, int] = {}
    plan = []
    turn = 0
    for index, (stage, count) in enumerate(zip(stages, counts, strict=True)):
        first = index == 0 or stage == "cold"
        last = index == len(stages) - 1
        row: list[_JokeSlot] = []
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
            row.append(_JokeSlot(pattern, used % pairs, role, repeat=used >= pairs))
        plan.append(tuple(row))
    return tuple(plan)


def _focus(kernel: _Kernel, stage: str) -> str:
    """The prop the scene's action revolves around."""
    if stage in ("cold", "tag"):
        return kernel.runner_prop
    return kernel.b_prop if stage in B_STAGES else kernel.prop


def _plot_key(stage: str) -> str:
    if stage in ("cold", "tag"):
        return "runner"
    if stage == "climax":
        return "climax"
    return "B" if stage in B_STAGES else "A"


@dataclass(frozen=True)
class _Frame:
    """Who is in the scene, what it plays, its joke slots and its runtime target."""

    speakers: tuple[str, ...]
    stage: str
    jokes: tuple[_JokeSlot, ...]
    target: float

    @property
    def primary(self) -> str:
        return self.speakers[0]

    @property
    def secondary(self) -> str:
        return self.speakers[1] if len(self.speakers) > 1 else self.speakers[0]

    @property
    def newcomers(self) -> tuple[str, ...]:
        """Speakers who enter during the scene."""
        return self.speakers[2:]

    @property
    def plot(self) -> str:
        return _plot_key(self.stage)

    @property
    def short(self) -> bool:
        return self.stage in ("cold", "tag")

    @property
    def bystander(self) -> str:
        return self.speakers[2] if len(self.speakers) > 2 else self.secondary


def _write_body(writer: _SceneWriter, frame: _Frame) -> None:
    """Opening and first joke; build-up steps spread between the other jokes; closing; fit."""
    _write_opening(writer, frame)
    present = [frame.primary, frame.secondary]
    steps = _steps(frame)
    later = frame.jokes[1:]
    for group, slot in zip(_spread(steps, len(later)), later, strict=True):
        for step in group:
            present = step(writer, frame, present)
        writer.joke(slot, present)
    writer.action("closing", ACTION_CLOSINGS, frame.primary, frame.secondary)
    _space_beats(writer)
    _fit_length(writer, frame, present)
    _space_beats(writer)


def _spread(steps: Sequence[_Step], groups: int) -> list[list[_Step]]:
    """Steps split in order into `groups` runs as even as possible (earlier runs longer)."""
    size, extra = divmod(len(steps), groups)
    runs, start = [], 0
    for group in range(groups):
        end = start + size + (1 if group < extra else 0)
        runs.append(list(steps[start:end]))
        start = end
    return runs


def _write_opening(writer: _SceneWriter, frame: _Frame) -> None:
    """Establishing action, the beat's opening exchange and the first joke."""
    primary, secondary = frame.primary, frame.secondary
    ambience = next(iter(writer.pick("ambience", catalog.setting_profile(writer.setting).ambience)))
    writer.action("opening", ACTION_OPENINGS, primary, secondary, prefix=ambience)
    writer.line(f"open:{frame.stage}", primary, secondary, frame.bystander)
    writer.react(secondary, primary, frame.bystander)
    writer.joke(frame.jokes[0], [primary, secondary])
    writer.action("business", ACTION_BUSINESS, primary, secondary, optional=True)


def _stakes(writer: _SceneWriter, frame: _Frame, present: list[str]) -> list[str]:
    """What the plan needs, and the objection to it."""
    primary, secondary = frame.primary, frame.secondary
    writer.line(f"push:{_push_key(frame.stage)}", primary, secondary, frame.bystander)
    writer.line("object", secondary, primary, frame.bystander, optional=True)
    return present


def _entrance(writer: _SceneWriter, frame: _Frame, present: list[str]) -> list[str]:
    """The third speaker comes in (sometimes heard before seen); maybe a catchphrase."""
    if len(frame.speakers) > 2:
        present = _enter(writer, frame.speakers[2], frame.primary, present)
    _catchphrase(writer, present)
    return present


def _late_entrance(writer: _SceneWriter, frame: _Frame, present: list[str]) -> list[str]:
    """Anyone else the scene needs (the climax brings both plots together)."""
    for newcomer in frame.newcomers[1:]:
        present = _enter(writer, newcomer, frame.primary, present)
    return present


def _banter(writer: _SceneWriter, frame: _Frame, present: list[str]) -> list[str]:
    for _ in range(writer.rng.randint(0, 1)):
        me = writer.rng.choice(present)
        writer.line("banter", me, _someone_else(present, me), frame.secondary, optional=True)
    return present


def _turn(writer: _SceneWriter, frame: _Frame, present: list[str]) -> list[str]:
    """The scene's turn, and the room's silence after it."""
    writer.line(f"turn:{frame.plot}", frame.primary, frame.secondary, frame.bystander)
    writer.action("reaction", ACTION_REACTIONS, frame.secondary, frame.primary, optional=True)
    return present


_Step: TypeAlias = Callable[[_SceneWriter, _Frame, list[str]], list[str]]
_LONG_STEPS: tuple[_Step, ...] = (_stakes, _entrance, _banter, _late_entrance, _turn)
_BRIEF_STEPS: tuple[_Step, ...] = (_entrance, _late_entrance, _turn)
_SHORT_STEPS: tuple[_Step, ...] = (_entrance,)
BRIEF_SCENE_SECONDS = 80.0  # act scenes shorter than this skip the stakes and the banter


def _steps(frame: _Frame) -> tuple[_Step, ...]:
    if frame.short:
        return _SHORT_STEPS
    return _BRIEF_STEPS if frame.target < BRIEF_SCENE_SECONDS else _LONG_STEPS


def _someone_else(present: Sequence[str], me: str) -> str:
    return next((name for name in present if name != me), me)


def _enter(writer: _SceneWriter, newcomer: str, primary: str, present: list[str]) -> list[str]:
    """Brings a speaker in, sometimes heard off-screen before being seen."""
    if newcomer in present:
        return present
    if writer.rng.random() < 0.35 and writer.last_speaker() != newcomer:
        text = writer.fill("arrive", newcomer, primary, primary)
        writer.say(newcomer, text, primary, extension="O.S.")
        writer.action("entrance", ACTION_ENTRANCES, newcomer, primary)
    else:
        writer.action("entrance", ACTION_ENTRANCES, newcomer, primary)
        writer.say(newcomer, writer.fill("arrive", newcomer, primary, primary), primary)
    return [*present, newcomer]


def _catchphrase(writer: _SceneWriter, present: Sequence[str]) -> None:
    """At most one catchphrase a scene, in fewer than half the scenes, and each catchphrase in
    one scene of the episode at most (the plan deals them out)."""
    if writer.rng.random() >= CATCHPHRASE_CHANCE:
        return
    last = writer.last_speaker()
    owned = [
        (speaker, phrase)
        for speaker, phrase in _owned_catchphrases(writer)
        if speaker in present and speaker != last and phrase not in writer.used
    ]
    if owned:
        speaker, phrase = owned[writer.rng.randrange(len(owned))]
        writer.say(speaker, phrase, _someone_else(present, speaker), plain=True)


def _owned_catchphrases(writer: _SceneWriter) -> list[tuple[str, str]]:
    phrases = [(name, phrase) for name, c in writer.cast.items() for phrase in c.catchphrases]
    if not phrases:
        return []
    everyone = tuple(range(len(writer.stages)))
    owners = _owners("catchphrase", len(phrases), everyone, writer.seed, writer.plan_key)
    return [entry for entry, owner in zip(phrases, owners, strict=True) if owner == writer.index]


def _item_seconds(item: _Item) -> float:
    return _line_seconds(item.text) if isinstance(item, _Line) else _action_seconds(item.text)


_line_seconds = lru_cache(maxsize=65536)(dialogue_seconds)
_action_seconds = lru_cache(maxsize=16384)(action_seconds)


def _is_beat(item: _Item) -> bool:
    return (
        isinstance(item, _Line)
        and item.joke is not None
        and item.joke.role != episode_pb2.JOKE_ROLE_SETUP
    )


def _space_beats(writer: _SceneWriter) -> None:
    """Pads with a line where two comedic beats would land closer than CLUSTER_SECONDS."""
    for _ in range(6):
        clock, last_beat, crowded = 0.0, None, None
        for position, item in enumerate(writer.items):
            clock += _item_seconds(item)
            if not _is_beat(item):
                continue
            if last_beat is not None and clock - last_beat < CLUSTER_SECONDS + 1.0:
                crowded = position
                break
            last_beat = clock
        if crowded is None:
            return
        _insert_line(writer, _setup_start(writer.items, crowded))


def _setup_start(items: Sequence[_Item], beat: int) -> int:
    """Where the joke that pays off at `beat` starts (its setup or lead-in line)."""
    for candidate in range(beat - 1, max(-1, beat - 4), -1):
        item = items[candidate]
        if isinstance(item, _Line) and (item.joke is None or item.joke.role == SETUP):
            return candidate
    return beat


def _neighbours(items: Sequence[_Item], position: int) -> set[str]:
    around = [items[position - 1] if position else None]
    around.append(items[position] if position < len(items) else None)
    return {item.speaker for item in around if isinstance(item, _Line)}


def _present_at(items: Sequence[_Item], position: int) -> list[str]:
    """Who has spoken before `position` (and so is in the room there)."""
    return list(dict.fromkeys(i.speaker for i in items[:position] if isinstance(i, _Line)))


def _insert_line(writer: _SceneWriter, position: int) -> float:
    """A plain line (or a beat of business) at `position`; returns the seconds it adds."""
    spoken = _present_at(writer.items, position)
    choices = [name for name in spoken if name not in _neighbours(writer.items, position)]
    if not choices:
        return _insert_action(writer, position, spoken)
    me = choices[writer.rng.randrange(len(choices))]
    you = _someone_else(spoken, me)
    pool = "banter" if writer.rng.random() < 0.5 else "object"
    line = writer.compose(me, writer.fill(pool, me, you, you), you, optional=True)
    writer.items.insert(position, line)
    return _item_seconds(line)


def _insert_action(writer: _SceneWriter, position: int, spoken: Sequence[str]) -> float:
    """A beat of business where no one can speak without speaking twice in a row."""
    actions = ACTION_REACTIONS if writer.rng.random() < 0.5 else ACTION_BUSINESS
    x, y = [*dict.fromkeys(spoken), *writer.cast][:2]
    slots = writer.slots(x, y, y)
    slots.update(X=x, Y=y)
    template = actions[writer.rng.randrange(len(actions))]
    action = _Action(_sentence(template.format_map(slots)), optional=True)
    writer.items.insert(position, action)
    return _item_seconds(action)


def _speaker_at(items: Sequence[_Item], position: int) -> str | None:
    item = items[position] if 0 <= position < len(items) else None
    return item.speaker if isinstance(item, _Line) else None


def _insert_exchange(writer: _SceneWriter, frame: _Frame, present: Sequence[str], at: int) -> float:
    """The beat developed a little further: a line from the stage's pool and an answer."""
    before, after = _speaker_at(writer.items, at - 1), _speaker_at(writer.items, at)
    here = [n for n in _present_at(writer.items, at) if n in present] or list(present[:2])
    drivers = [name for name in (frame.primary, frame.secondary) if name != before]
    if not drivers:
        return _insert_line(writer, at)
    me = drivers[0]
    answers = [name for name in here if name not in (me, after)]
    if not answers:
        return _insert_line(writer, at)
    you = answers[writer.rng.randrange(len(answers))]
    other = _someone_else([n for n in here if n not in (me, you)] or [frame.bystander], you)
    pool = writer.reaction_pool(you) if writer.rng.random() < 0.5 else "object"
    develop_text = writer.fill(f"develop:{frame.stage}", me, you, other)
    develop = writer.compose(me, develop_text, you, optional=True)
    answer = writer.compose(you, writer.fill(pool, you, me, other), me, optional=True)
    writer.items[at:at] = [develop, answer]
    return _item_seconds(develop) + _item_seconds(answer)


def _gaps(items: Sequence[_Item]) -> list[tuple[float, int]]:
    """(seconds, insertion point) of every stretch between comedic beats: before the first
    joke's setup, between jokes, and before the closing action."""
    stretches, clock, start = [], 0.0, 0.0
    for position, item in enumerate(items):
        if _is_beat(item):
            stretches.append((clock - start, _setup_start(items, position)))
            start = clock
        clock += _item_seconds(item)
    stretches.append((clock - start, max(0, len(items) - 1)))
    return stretches


def _fit_length(writer: _SceneWriter, frame: _Frame, present: Sequence[str]) -> None:
    """Grows the scene into its shortest stretches, or drops optional lines, until its runtime
    estimate is within FIT_TOLERANCE of the target."""
    low, high = frame.target * (1 - FIT_TOLERANCE), frame.target * (1 + FIT_TOLERANCE)
    seconds = sum(_item_seconds(item) for item in writer.items)
    for _ in range(MAX_FILLS):
        if seconds >= low:
            break
        _, at = min(_gaps(writer.items))
        if low - seconds > EXCHANGE_SECONDS:
            seconds += _insert_exchange(writer, frame, present, at)
        else:
            seconds += _insert_line(writer, at)
    while seconds > high:
        dropped = _drop_optional(writer)
        if not dropped:
            break
        seconds -= dropped


def _drop_optional(writer: _SceneWriter) -> float:
    """Removes the last optional item whose removal puts no one twice in a row."""
    items = writer.items
    for position in range(len(items) - 1, -1, -1):
        item = items[position]
        if not item.optional:
            continue
        before, after = _speaker_at(items, position - 1), _speaker_at(items, position + 1)
        if before is not None and before == after:
            continue
        del items[position]
        return _item_seconds(item)
    return 0.0


def _to_elements(
    writer: _SceneWriter, transition: str
) -> tuple[list[episode_pb2.ScriptElement], list[episode_pb2.Joke], float]:
    elements: list[episode_pb2.ScriptElement] = []
    jokes: list[episode_pb2.Joke] = []
    clock = 0.0
    context: list[str] = []
    callback_terms = (writer.kernel.runner_prop,) if writer.index > 0 else ()
    for item in writer.items:
        clock += _item_seconds(item)
        if isinstance(item, _Action):
            elements.append(
                episode_pb2.ScriptElement(action=episode_pb2.ActionLine(text=item.text))
            )
            continue
        dialogue = episode_pb2.DialogueLine(
            character=item.speaker,
            parenthetical=item.parenthetical,
            text=item.text,
            extension=item.extension,
        )
        if item.joke is not None:
            joke_id = f"s{writer.index}-j{len(jokes) + 1}"
            dialogue.joke_id = joke_id
            score, dimensions = score_joke(
                item.text,
                item.joke.pattern,
                speaker=writer.cast.get(item.speaker),
                setting=writer.setting,
                context=context[-JOKE_CONTEXT_LINES:],
                callback_terms=callback_terms,
            )
            jokes.append(
                episode_pb2.Joke(
                    id=joke_id,
                    scene_index=writer.index,
                    element_index=len(elements),
                    pattern=item.joke.pattern,
                    role=item.joke.role,
                    score=score,
                    dimensions=dimensions,
                    offset_seconds=round(clock, 1),
                )
            )
        context.append(item.text)
        elements.append(episode_pb2.ScriptElement(dialogue=dialogue))
    elements.append(episode_pb2.ScriptElement(transition=episode_pb2.Transition(text=transition)))
    return elements, jokes, clock


def write_scene(
    show: Show,
    setting: Setting,
    cast: Sequence[Character],
    outline: Outline,
    scene_index: int,
    seed: int,
    previous_summaries: list[str] | None = None,
    directives: SceneDirectives = FIRST_DRAFT,
) -> Scene:
    """One scene of the outline, built from its beat and written to the beat's runtime target.

    `previous_summaries` is accepted for parity with the LLM writers; the procedural writer takes
    its continuity (running gag, props, who drives which plot, the line plan) from the inputs it
    shares with every other scene, so the result never depends on which scenes were written first.
    `directives` ask for another take (see `revise_scene`).
    """
    if scene_index < 0:
        raise ValueError(f"scene_index must be >= 0 (got {scene_index})")
    kernel = _kernel(show, setting, cast, seed)
    beat, act_name = _find_beat(outline, scene_index)
    total = max(outline.scene_count, scene_index + 1)
    stages = _all_stages(outline, total)
    targets = _all_targets(outline, total)
    stage = stages[scene_index]
    description = (
        beat.description if beat else kernel.slots["b_issue" if stage in B_STAGES else "want"]
    )
    key = f"{show.id}|{setting.id}|{setting.description}"
    writer = _SceneWriter(
        show=show,
        setting=setting,
        cast={c.name: c for c in cast},
        kernel=kernel,
        index=scene_index,
        seed=seed,
        rng=_rng(
            "scene", show.id, setting.id, setting.description, seed, scene_index, description,
            directives.take,
        ),
        stages=stages,
        families=_speaker_families(outline, cast, kernel.roles, stages),
        plan_key=key,
        take=directives.take,
        focus=directives.focus or _focus(kernel, stage),
    )  # fmt: skip
    counts = tuple(_joke_count(target) for target in targets)
    plan = _joke_plan(kernel.patterns, stages, counts, seed, key)
    jokes = plan[scene_index]
    if directives.extra_jokes:
        jokes = _with_extra_jokes(jokes, directives.extra_jokes, kernel.patterns, seed, key)
    target = targets[scene_index] * directives.length_factor
    frame = _Frame(
        speakers=tuple(
            _participants(beat, [c.name for c in cast], kernel.roles, stage, directives.speakers)
        ),
        stage=stage,
        jokes=jokes,
        target=min(MAX_TARGET_SECONDS, max(MIN_TARGET_SECONDS, target)),
    )
    _write_body(writer, frame)
    last = scene_index == total - 1
    transition = LAST_TRANSITION if last else writer.rng.choice(TRANSITIONS)
    elements, joke_messages, seconds = _to_elements(writer, transition)
    spoken = [item.speaker for item in writer.items if isinstance(item, _Line)]
    return Scene(
        index=scene_index,
        number=scene_index + 1,
        act=act_name,
        slugline=_slugline(setting, kernel, scene_index, total),
        summary=_sentence(description),
        elements=elements,
        jokes=joke_messages,
        characters=list(dict.fromkeys(spoken)),
        duration_seconds=round(seconds, 1),
    )


def _speaker_families(
    outline: Outline, cast: Sequence[Character], roles: _Roles, stages: tuple[str, ...]
) -> tuple[frozenset[str], ...]:
    """Archetype families of every scene's first-draft speakers (for the line plan)."""
    beats = {b.scene_index: b for act in outline.acts for b in act.beats}
    plays = tuple(
        (beats[i].description, beats[i].plot) if i in beats else None for i in range(len(stages))
    )
    people = tuple((c.name, catalog.archetype_family(c.archetype)) for c in cast)
    return _families(plays, people, roles, stages)


@lru_cache(maxsize=1024)
def _families(
    plays: tuple[tuple[str, int] | None, ...],
    people: tuple[tuple[str, str], ...],
    roles: _Roles,
    stages: tuple[str, ...],
) -> tuple[frozenset[str], ...]:
    names, families = [name for name, _ in people], dict(people)
    speakers = (
        _participants(
            None if play is None else episode_pb2.Beat(description=play[0], plot=play[1]),
            names, roles, stage,
        )
        for play, stage in zip(plays, stages, strict=True)
    )  # fmt: skip
    return tuple(frozenset(families[name] for name in group) for group in speakers)


def _with_extra_jokes(
    jokes: tuple[_JokeSlot, ...], extra: int, favoured: Sequence[str], seed: int, key: str
) -> tuple[_JokeSlot, ...]:
    """More joke slots for a revision that asks for more comedy; their pairs may be planned for
    other scenes too, so they are marked as repeats (the scene mark keeps them unique)."""
    taken = [slot.pattern for slot in jokes]
    added = list(jokes)
    for number in range(min(extra, MAX_JOKES - len(jokes))):
        pattern = _next_pattern(favoured, (len(jokes) + number, 0), {}, taken, seed, key)
        taken.append(pattern)
        pair = _digest("extra", seed, key, pattern) % len(JOKES[pattern])
        added.insert(-1, _JokeSlot(pattern, pair, PUNCHLINE, repeat=True))
    return tuple(added)


# ---------------------------------------------------------------------------------------------
# Revisions: notes in, another take of the scene out

_SHORTER = re.compile(r"\b(shorter|tighter|trim|cut|too long|brisker|faster)\b", re.IGNORECASE)
_LONGER = re.compile(r"\b(longer|expand|more room|too short|slower|breathe)\b", re.IGNORECASE)
_FUNNIER = re.compile(
    r"\b(funnier|more jokes?|more comedy|more laughs|no comedic beat|dead zone|flat|punch)\b",
    re.IGNORECASE,
)
SHORTER_FACTOR, LONGER_FACTOR = 0.8, 1.25


def read_notes(
    notes: Sequence[str], cast: Sequence[Character], setting: Setting, kernel_props: Sequence[str]
) -> SceneDirectives:
    """What the procedural writer understands in notes (a user's or the validator's):

    - characters named (new or classic name) speak in the scene, in the order named;
    - 'shorter' / 'tighter' / 'trim' and 'longer' / 'expand' scale the runtime target;
    - 'funnier' / 'more jokes' (and the validator's 'no comedic beat', 'dead zone') add a joke;
    - a prop or a word of the setting's vocabulary becomes what the scene revolves around.
    Anything else still gives a fresh take: `take` is a digest of the notes.
    """
    text = " ".join(notes)
    by_original = {c.original_name: c.name for c in cast if c.original_name}
    names = [c.name for c in cast] + list(by_original)
    speakers = [by_original.get(name, name) for name in _named_in(text, names)]
    factor = 1.0
    if _SHORTER.search(text):
        factor = SHORTER_FACTOR
    elif _LONGER.search(text):
        factor = LONGER_FACTOR
    terms = [*kernel_props, *setting.props, *setting.vocabulary]
    lowered = text.lower()
    focus = next((t for t in terms if word_pattern(t.lower()).search(lowered)), "")
    return SceneDirectives(
        speakers=tuple(dict.fromkeys(speakers)),
        length_factor=factor,
        extra_jokes=1 if _FUNNIER.search(text) else 0,
        focus=focus,
        take=1 + _digest("take", text) % 1_000_000,
    )


def revise_scene(
    show: Show,
    setting: Setting,
    cast: Sequence[Character],
    outline: Outline,
    scene: Scene,
    seed: int,
    notes: Sequence[str],
) -> Scene:
    """Another take of `scene` that follows `notes` (see `read_notes`): rewritten from its beat,
    so whatever was wrong with it (a stranger speaking, an empty scene) is gone, with the same
    index, so the episode's line plan still keeps every line unique."""
    kernel = _kernel(show, setting, cast, seed)
    props = (kernel.prop, kernel.b_prop, kernel.runner_prop)
    directives = read_notes(notes, cast, setting, props)
    return write_scene(show, setting, cast, outline, scene.index, seed, directives=directives)


# ---------------------------------------------------------------------------------------------
# Joke scoring

_STOPWORDS = _wordset(
    "a about all am an and any are as at be been but by can could did do does don't for from "
    "get got had has have he her here him his how i i'm if in into is it it's its just let me "
    "more my no not now of oh on one or our out really she so some than that that's the their "
    "them then there they this to too up us very was we well were what when where which who "
    "why will with would you you're your"
)
_WORDS = re.compile(r"[a-z][a-z'\-]*")


@lru_cache(maxsize=65536)
def _content_words(text: str) -> tuple[str, ...]:
    return tuple(w for w in _WORDS.findall(text.lower()) if len(w) > 2 and w not in _STOPWORDS)


def _surprise(text: str, context: Sequence[str]) -> float:
    words = _content_words(text)
    if not words:
        return 0.0
    heard = {w for line in context for w in _content_words(line)}
    novelty = sum(1 for w in words if w not in heard) / len(words)
    return 0.6 * novelty + 0.4 * (words[-1] not in heard)


def _brevity(text: str) -> float:
    count = len(text.split())
    if count < 5:
        return count / 5
    if count <= BRIEF_WORDS:
        return 1.0
    return max(0.0, 1.0 - (count - BRIEF_WORDS) / 20)


def _punch(text: str) -> float:
    words = _WORDS.findall(text.lower())
    if not words:
        return 0.0
    last = words[-1]
    if last in _STOPWORDS or len(last) <= 2:
        return 0.2
    return 1.0 if len(last) >= 4 else 0.6


def _character_fit(text: str, pattern: HumorPattern | None, speaker: Character | None) -> float:
    if speaker is None or pattern is None:
        return 0.5
    fit = 1.0 if catalog.archetype_family(speaker.archetype) in pattern.archetypes else 0.4
    lowered = text.lower()
    voiced = any(p.lower() in lowered for p in [*speaker.catchphrases, *speaker.verbal_tics])
    return min(1.0, fit + (0.2 if voiced else 0.0))


@lru_cache(maxsize=128)
def _setting_terms(setting_bytes: bytes) -> tuple[str, ...]:
    setting = Setting.FromString(setting_bytes)
    lexicon = catalog.setting_profile(setting).lexicon.values()
    terms = [*setting.vocabulary, *setting.props, *lexicon]
    cleaned = {re.sub(r"^(the|a|an)\s+", "", term.lower()).strip() for term in terms}
    return tuple(sorted(term for term in cleaned if len(term) > 2))


@lru_cache(maxsize=8192)
def _term_pattern(term: str) -> re.Pattern[str]:
    return re.compile(rf"\b{re.escape(term)}\b")


def _mentions(text: str, terms: Iterable[str]) -> int:
    lowered = text.lower()
    return sum(1 for term in terms if term in lowered and _term_pattern(term).search(lowered))


def _setting_fit(text: str, setting: Setting | None) -> float:
    if setting is None:
        return 0.5
    hits = _mentions(text, _setting_terms(setting.SerializeToString()))
    return 1.0 if hits >= 2 else 0.7 if hits == 1 else 0.2


def _callback(text: str, callback_terms: Sequence[str]) -> float:
    terms = [term.lower() for term in callback_terms if term]
    return 1.0 if terms and _mentions(text, terms) else 0.0


def score_joke(
    text: str,
    pattern: HumorPattern | str,
    *,
    speaker: Character | None = None,
    setting: Setting | None = None,
    context: Sequence[str] = (),
    callback_terms: Sequence[str] = (),
) -> tuple[float, dict[str, float]]:
    """Weighted score in [0, 1] and its named dimensions (see JOKE_WEIGHTS); pure.

    `context` is the dialogue heard just before the line; `callback_terms` are things planted
    earlier in the episode that a callback may refer to.
    """
    resolved = pattern if isinstance(pattern, HumorPattern) else catalog.get_pattern(pattern)
    dimensions = {
        "surprise": _surprise(text, context),
        "brevity": _brevity(text),
        "punch": _punch(text),
        "character_fit": _character_fit(text, resolved, speaker),
        "setting_fit": _setting_fit(text, setting),
        "callback": _callback(text, callback_terms),
    }
    score = sum(JOKE_WEIGHTS[name] * value for name, value in dimensions.items())
    return round(score, 4), {name: round(value, 4) for name, value in dimensions.items()}


def joke_context(scene: Scene, element_index: int) -> list[str]:
    """The dialogue heard just before an element of the scene (what `surprise` compares with)."""
    before = [
        element.dialogue.text
        for element in scene.elements[: max(0, element_index)]
        if element.WhichOneof("element") == "dialogue"
    ]
    return before[-JOKE_CONTEXT_LINES:]


# ---------------------------------------------------------------------------------------------
# Punch-up: the procedural writer's rewrite of a weak joke line
#
# Three moves, each a craft rule the scorer measures: cut to the turn (the last sentence or two:
# brevity), button it with a topper that lands on a concrete in-world noun (punch, setting fit) or
# on the running gag (callback), or say it in the speaker's own voice (a verbal tic: character
# fit). Every candidate is scored like the comedy pass scores it; the best that differs wins.

TOPPERS_PER_REWRITE = 6
MIN_CORE_WORDS = 5
_SENTENCES = re.compile(r"(?<=[.!?])\s+")


def _cores(text: str) -> list[str]:
    """The line itself; a long one (over BRIEF_WORDS) also cut to its last sentence or two
    (each at least MIN_CORE_WORDS), since the turn is at the end."""
    line = text.strip()
    if len(line.split()) <= BRIEF_WORDS:
        return [line]
    sentences = [part for part in _SENTENCES.split(line) if part]
    cuts = [" ".join(sentences[-2:]), sentences[-1] if sentences else ""]
    return [c for c in dict.fromkeys([line, *cuts]) if len(c.split()) >= MIN_CORE_WORDS]


def punch_up(
    show: Show, setting: Setting, cast: Sequence[Character], scene: Scene, joke: Joke, seed: int
) -> str:
    """A better version of the line that carries `joke` (or the line itself when nothing
    scores higher); deterministic."""
    line = scene.elements[joke.element_index].dialogue
    kernel = _kernel(show, setting, cast, seed)
    speaker = next((c for c in cast if c.name == line.character), None)
    rng = _rng("punch-up", show.id, setting.id, seed, scene.index, joke.id, line.text)
    slots = dict(kernel.slots)
    common = [term for term in setting.vocabulary if term.islower()]  # "Ask the Phobos." no
    slots["vocab"] = rng.choice(common or list(GENERIC_VOCABULARY))
    toppers = rng.sample(TOPPERS, min(TOPPERS_PER_REWRITE, len(TOPPERS)))
    cores = _cores(line.text)
    candidates = [*cores, *(f"{c} {t.format_map(slots)}" for c in cores for t in toppers)]
    if speaker is not None:
        candidates += [_prefix(tic, core) for tic in speaker.verbal_tics for core in cores[-1:]]
    context = joke_context(scene, joke.element_index)
    terms = (kernel.runner_prop,) if scene.index > 0 else ()

    def score(text: str) -> float:
        value, _ = score_joke(
            text, joke.pattern, speaker=speaker, setting=setting, context=context,
            callback_terms=terms,
        )  # fmt: skip
        return value

    fresh = [text for text in dict.fromkeys(candidates) if text != line.text]
    return max(fresh, key=lambda text: (score(text), -len(text), text), default=line.text)
