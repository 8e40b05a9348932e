"""The writer's premise: its named people, things and events, found simply.

`premise_elements` reads a premise (already in the new world: original names renamed) for
- quoted things: "the 'Golden Oxygen Mask' trophy" -> Golden Oxygen Mask;
- capitalised names: cast members (by name or alias) and anyone or anything else named
  ("a tenor named Enzo Caruso", "the Founders' Ball"), minus the setting's own names;
- key noun phrases: the words after an article or possessive ("the colony's anniversary gala",
  "a talent show"), at most MAX_PHRASES of them.
The procedural writer builds its outline around them and the validator checks that the outline
and the scenes mention them (`mentioned`). Pure and deterministic: both sides find the same.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from doppelganger.v1 import episode_pb2


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


MAX_PREMISE_CHARS = 2000
MAX_ELEMENTS = 6
MAX_PHRASES = 3
MAX_PHRASE_WORDS = 3

CHARACTER, PERSON, THING, EVENT = "character", "person", "thing", "event"

_QUOTED = re.compile(r"[\"“]([^\"”]{2,80})[\"”]|(?<![\w'])'([^']{2,80})'(?![\w'])")
_WORD = re.compile(r"[A-Za-z][A-Za-z'\u2019\-]*\.?|\d+|[,;:!?()]")
_DETERMINERS = _wordset("the a an his her their its our my your this that these those")
_POSSESSIVES = _wordset("his her their its our my your")
_CONNECTORS = _wordset("of de del van von la le du")
# Words that start a sentence or a clause, never a name on their own.
_FUNCTION = _wordset(
    """a an the and but or so yet for nor if when while after before once until unless since
    because although though as at by in on into onto of off out over under with without to from
    during meanwhile then now just even only also still again this that these those it its he
    she they we you i me him her them us his their our my your who whom whose what which why how
    where there here all every each some any no none nobody everyone everybody someone somebody
    anyone one two three yes not oh well is are was were be been being has have had do does did
    will would can could should must may might shall named called about like than more most
    very too up down"""
)
_TITLES = _wordset(
    """mr. mrs. ms. miss dr. doctor captain major sergeant colonel father reverend sister
    brother uncle aunt sir lady lord professor nurse judge officer madame mister"""
)
_EVENT_WORDS = _wordset(
    """party show gala contest competition wedding dinner festival election anniversary birthday
    audition concert game race ball fair parade ceremony pageant reunion funeral inspection exam
    interview visit premiere recital banquet tournament match bake-off raffle auction sale meeting
    date holiday launch opening trial dance play recital broadcast celebration feast picnic
    tour convention conference hearing"""
)


@dataclass(frozen=True)
class PremiseElement:
    """A named element of the premise. `text` is what the script must mention; `phrase` is how
    a sentence names it ("the colony's anniversary gala"); `kind` is one of character, person,
    thing, event."""

    text: str
    kind: str
    phrase: str


def _is_event(text: str) -> bool:
    return any(word in _EVENT_WORDS for word in re.findall(r"[a-z\-]+", text.lower()))


def _strip_punctuation(word: str) -> str:
    return word.rstrip(".,;:!?") if word.lower() not in _TITLES else word


def _capitalised_runs(text: str) -> list[tuple[str, str]]:
    """(run of capitalised words, the word before it) in order of appearance."""
    runs: list[tuple[str, str]] = []
    words = [m.group(0) for m in _WORD.finditer(text)]
    current: list[str] = []
    before = ""
    previous = ""
    for word in [*words, ""]:
        bare = _strip_punctuation(word)
        capital = bare[:1].isupper() and bare.lower() not in _FUNCTION
        titled = word.lower() in _TITLES
        if bare and (capital or titled or (current and bare.lower() in _CONNECTORS)):
            if not current:
                before = previous
            current.append(bare)
            ends = word != bare and not titled  # punctuation closes the name
        else:
            ends = True
        if current and (ends or word == ""):
            while current and current[-1].lower() in _CONNECTORS:
                current.pop()
            if current and not all(w.lower() in _TITLES for w in current):
                runs.append((" ".join(current), before))
            current = []
        previous = bare.lower()
    return runs


def _noun_phrases(text: str) -> list[tuple[str, str]]:
    """(phrase without its determiner, the determiner) after each article or possessive: two or
    three words, or one word that names an event ("the gala")."""
    found: list[tuple[str, str]] = []
    words = re.findall(r"[A-Za-z][A-Za-z'\u2019\-]*|[.,;:!?]", text)
    for position, word in enumerate(words):
        if word.lower() not in _DETERMINERS:
            continue
        phrase: list[str] = []
        for following in words[position + 1 : position + 1 + MAX_PHRASE_WORDS + 1]:
            lower = following.lower()
            if not following[:1].isalpha() or lower in _FUNCTION or following[:1].isupper():
                break
            phrase.append(following)
            if len(phrase) == MAX_PHRASE_WORDS:
                break
        if len(phrase) > 1 or (phrase and _is_event(phrase[0])):
            found.append((" ".join(phrase), word.lower()))
    return found


def _world_words(text: str) -> set[str]:
    return {w.lower() for w in re.findall(r"[A-Za-z][A-Za-z'\u2019\-]*", text) if w[:1].isupper()}


def premise_elements(
    premise: str,
    cast: Sequence[episode_pb2.Character] = (),
    world: str = "",
) -> list[PremiseElement]:
    """The premise's named elements, in order of importance: quoted things, names (cast members
    first as they come), then noun phrases; at most MAX_ELEMENTS. `world` is the setting's own
    text (its names are the setting's, not the premise's)."""
    text = " ".join(premise.split())
    if not text:
        return []
    forms = _cast_forms(cast)
    world_words = _world_words(world)
    elements: list[PremiseElement] = []

    def add(element: PremiseElement) -> None:
        key = element.text.lower()
        if all(key != e.text.lower() for e in elements):
            elements.append(element)

    rest = text
    for match in _QUOTED.finditer(text):
        quoted = " ".join((match.group(1) or match.group(2)).split()).strip(" .,;:!?")
        if quoted:
            kind = EVENT if _is_event(quoted) else THING
            add(PremiseElement(quoted, kind, quoted if kind == THING else f"the {quoted}"))
        rest = rest.replace(match.group(0), " , ")
    for run, before in _capitalised_runs(rest):
        name = forms.get(run.lower())
        if name is not None:
            add(PremiseElement(name, CHARACTER, name))
            continue
        if all(word.lower() in world_words for word in run.split()):
            continue
        if before in ("the", "a", "an"):
            kind = EVENT if _is_event(run) else THING
            add(PremiseElement(run, kind, run if kind == THING else f"the {run}"))
        else:
            add(PremiseElement(run, PERSON, run))
    phrases = 0
    for phrase, determiner in _noun_phrases(rest):
        if phrases >= MAX_PHRASES or any(phrase.lower() in e.text.lower() for e in elements):
            continue
        kind = EVENT if _is_event(phrase) else THING
        article = (
            "the" if determiner in _POSSESSIVES or determiner in ("this", "that") else determiner
        )
        article = "the" if determiner in ("these", "those") else article
        add(PremiseElement(phrase, kind, f"{article} {phrase}" if kind == EVENT else phrase))
        phrases += 1
    return elements[:MAX_ELEMENTS]


def _cast_forms(cast: Sequence[episode_pb2.Character]) -> Mapping[str, str]:
    """Every form of every cast member's name (lower case) -> the name."""
    forms: dict[str, str] = {}
    for character in cast:
        for form in (character.name, *character.aliases):
            if form:
                forms.setdefault(form.lower(), character.name)
    return forms


def _pattern(text: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w]){re.escape(text.lower())}(?![\w])")


def mentioned(element: PremiseElement, texts: Iterable[str]) -> bool:
    """Whether any of `texts` mentions the element (whole words, any case)."""
    pattern = _pattern(element.text)
    return any(pattern.search(text.lower()) for text in texts)


def scene_texts(scene: episode_pb2.Scene) -> list[str]:
    """What a scene says and shows: dialogue, action, and the names of its speakers."""
    texts: list[str] = []
    for element in scene.elements:
        kind = element.WhichOneof("element")
        if kind == "dialogue":
            texts.extend((element.dialogue.text, element.dialogue.character))
        elif kind == "action":
            texts.append(element.action.text)
    return texts


def outline_texts(outline: episode_pb2.Outline) -> list[str]:
    """What an outline says: title, logline, plots and beats."""
    texts = [outline.title, outline.logline, outline.a_plot, outline.b_plot]
    texts += [beat.description for act in outline.acts for beat in act.beats]
    return texts


def join_elements(elements: Sequence[PremiseElement]) -> str:
    """'Enzo Caruso, the talent show and the Golden Oxygen Mask'."""
    phrases = [e.phrase if e.kind != THING else f"the {e.phrase}" for e in elements]
    phrases = [p.replace("the the ", "the ") for p in phrases]
    if len(phrases) <= 1:
        return "".join(phrases)
    return f"{', '.join(phrases[:-1])} and {phrases[-1]}"
