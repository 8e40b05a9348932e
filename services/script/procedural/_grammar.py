"""The procedural writer's grammar: the templates of services/script/catalog/lines.json, loaded
once at import as immutable pools (story, dialogue, jokes, actions, scene cards, transitions,
marks)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

from services.script import catalog

_GRAMMAR = catalog.writer_grammar()


def _pools(section: Mapping[str, Sequence[str]]) -> Mapping[str, tuple[str, ...]]:
    return MappingProxyType({key: tuple(values) for key, values in section.items()})


_STORY, _LINES, _ACTIONS = _GRAMMAR["story"], _GRAMMAR["lines"], _GRAMMAR["actions"]
# The A plot's wants, one per story kernel. The classic eight come first (an episode outside a
# series draws from them, so its story stays what it always was); a season's are the rest, so a
# season of up to 30 episodes never repeats an A plot.
CLASSIC_WANTS: tuple[str, ...] = tuple(_STORY["wants"])
WANTS: tuple[str, ...] = CLASSIC_WANTS + tuple(_STORY["season_wants"])
B_ISSUES: tuple[str, ...] = tuple(_STORY["b_issues"])
RUNNERS: tuple[str, ...] = tuple(_STORY["runners"])
TITLES: tuple[str, ...] = tuple(_STORY["titles"])
LOGLINE: str = _STORY["logline"]
PREMISE_A_PLOT: str = _STORY["premise_a_plot"]
PREMISE_BEAT: str = _STORY["premise_beat"]
SETUPS: Mapping[str, str] = MappingProxyType(dict(_STORY["setups"]))  # by plot line
RUNNING_GAG_STATES: Mapping[str, str] = MappingProxyType(dict(_STORY["running_gag"]))
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
_CARDS = _GRAMMAR["cards"]
CARD_PLANTS: tuple[str, ...] = tuple(_CARDS["plants"])
CARD_PAYOFFS: tuple[str, ...] = tuple(_CARDS["payoffs"])
CARD_RUNNING_GAG: tuple[str, ...] = tuple(_CARDS["running_gag"])
CARD_PREMISE: tuple[str, ...] = tuple(_CARDS["premise"])
CARD_EXITS: tuple[str, ...] = tuple(_CARDS["exits"])
CARD_PRESENCE: tuple[str, ...] = tuple(_CARDS["presence"])
EXTERIOR_OPENINGS: tuple[str, ...] = tuple(_CARDS["exterior_openings"])
# A season's callbacks to the series bible: lines ({Memory}: the fact), and an action line when
# everyone present is named in the fact (nobody could say it without naming themself).
CARD_CALLBACKS: tuple[str, ...] = tuple(_CARDS["bible_callbacks"])
CARD_CALLBACK_ACTION: str = _CARDS["bible_callback_action"]
TRANSITIONS: tuple[str, ...] = tuple(_GRAMMAR["transitions"])
LAST_TRANSITION: str = _GRAMMAR["last_transition"]
# Catchphrase words swapped for the setting's lexicon (catalog.LEXICON_KEYS).
CATCHPHRASE_SWAPS: Mapping[str, str] = MappingProxyType(dict(_GRAMMAR["catchphrase_swaps"]))
GENERIC_PROPS: tuple[str, ...] = tuple(_GRAMMAR["generic_props"])
GENERIC_VOCABULARY: tuple[str, ...] = tuple(_GRAMMAR["generic_vocabulary"])
MARKS: tuple[str, ...] = tuple(_GRAMMAR["marks"])  # discourse markers of borrowed lines
TOPPERS: tuple[str, ...] = tuple(_GRAMMAR["toppers"])  # punch-up buttons
# Dialogue pools by kind; a pool's name is "kind:key" ("open:scheme", "react:cynic", "banter").
POOLS: Mapping[str, Mapping[str, tuple[str, ...]]] = MappingProxyType(
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


def pool(name: str) -> tuple[str, ...]:
    """The templates of a dialogue pool, by its "kind:key" name."""
    kind, _, key = name.partition(":")
    return POOLS[kind][key]
