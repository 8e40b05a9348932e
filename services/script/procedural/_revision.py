"""Revisions: what the procedural writer understands in notes, as directives for another take."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from doppelganger.v1 import episode_pb2
from services.script.checks.names import without_quotes
from services.script.procedural._kernel import named_in
from services.script.procedural._text import digest
from services.script.validation import word_pattern

_SHORTER = re.compile(r"\b(shorter|tighter|trim|cut|too long|brisker|faster)\b", re.IGNORECASE)
_LONGER = re.compile(r"\b(longer|expand|more room|too short|slower|breathe)\b", re.IGNORECASE)
_FUNNIER = re.compile(
    r"\b(funnier|more jokes?|more comedy|more laughs|no comedic beat|dead zone|flat|punch)\b",
    re.IGNORECASE,
)
SHORTER_FACTOR, LONGER_FACTOR = 0.8, 1.25


def _out_of_room(name: str) -> re.Pattern[str]:
    """A note saying `name` speaks where they are not."""
    return re.compile(rf"\b{re.escape(name)} speaks (?:but|before entering)\b")


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


def read_notes(
    notes: Sequence[str],
    cast: Sequence[episode_pb2.Character],
    setting: episode_pb2.Setting,
    kernel_props: Sequence[str],
) -> SceneDirectives:
    """What the procedural writer understands in notes (a user's or the validator's):

    - characters named (new or classic name) speak in the scene, in the order named, except
      those a note says are out of the room ("Luna speaks but left ...", "speaks before
      entering": the continuity pass and the validator's presence checks); names inside
      quotation marks (a line the note quotes) do not count;
    - 'shorter' / 'tighter' / 'trim' and 'longer' / 'expand' scale the runtime target;
    - 'funnier' / 'more jokes' (and the validator's 'no comedic beat', 'dead zone') add a joke;
    - a prop or a word of the setting's vocabulary becomes what the scene revolves around.
    Anything else still gives a fresh take: `take` is a digest of the notes.
    """
    text = " ".join(notes)
    by_original = {c.original_name: c.name for c in cast if c.original_name}
    names = [c.name for c in cast] + list(by_original)
    absent = {name for name in names if _out_of_room(name).search(text)}
    named = named_in(without_quotes(text), names)
    speakers = [by_original.get(n, n) for n in named if n not in absent]
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
        take=1 + digest("take", text) % 1_000_000,
    )
