"""Names: a character naming themself in the third person, and the classic show's names in the
new world.

- `self_naming` (warning, character): a speaker says their own name (or one of their aliases)
  about themself: "... and Echo and Fenn are still at war" in Echo's mouth. Introductions are
  fine: "I'm Echo", "my name is Echo", "call me Echo", "this is Echo", "Echo here", "Echo
  speaking", and anything inside quotation marks (a name read out, a quoted line).
- `original_name` (error, character): a first name, surname, nickname or alias of the classic
  show's cast as a speaker, or in a line, a parenthetical, an action or a heading of the new
  world ("Fenn Mertz").
  The names are the show's characters' names and `aliases`, their diminutives ("Ralphie"), and
  the surnames the show's own text gives them: "Lucy Ricardo" in the premise, "Fred Mertz" in a
  catchphrase, "Dr. Crane" in a verbal tic. A form the new world uses itself (a word of the
  setting, a name of the new cast) is not counted; a cast member named with a classic name is
  counted unless the writer kept that character's own name on purpose (`original_name` equal
  to `name`, in a cast the writer edited). Names match as proper names: as written or in
  capitals, never the common word ("Rose", "a rose").

`original_names` and `names_self` are also what the procedural writer uses to keep these faults
out of its own lines.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import lru_cache

from doppelganger.v1 import episode_pb2
from services.script.checks.base import CHARACTER, CheckSpec, EpisodeView, Finding, Severity, label
from services.script.script_text import name_pattern

SELF_NAMING = CheckSpec("self_naming", CHARACTER, Severity.SEVERITY_WARNING, 0.05)
ORIGINAL_NAME = CheckSpec("original_name", CHARACTER, Severity.SEVERITY_ERROR, 0.1)

MIN_NAME_LENGTH = 3
_TITLES = r"(?:Mr|Mrs|Ms|Miss|Dr|Mister|Doctor|Major|Colonel|Captain|Father|Aunt|Uncle)\.?"
_TITLED = re.compile(rf"\b{_TITLES}\s+([A-Z][a-z][\w'-]*)")
_TITLE_WORD = re.compile(rf"{_TITLES}|Sir|Madam|Lady|Lord|Big|Little|Old|Young|The|And|Of", re.I)
_CAPITALISED_WORD = re.compile(r"[A-Z][a-z][\w'-]*")
# What may come right before a speaker's own name: an introduction, not a third person.
_INTRODUCED_BY = re.compile(
    r"(?:\bI'm|\bI am|\bname's|\bname is|\bcall me|\bit's me,?|\bit is me,?|\bthis is|"
    r"\bthat's me,?|\bme,|\bsigned,?|\bas in|\byours,|\bknown as|\bsays here)\s*$",
    re.IGNORECASE,
)
_INTRODUCED_AFTER = re.compile(r"^\s*(?:here\b|speaking\b|reporting\b|,\s*that's me\b)", re.I)
_QUOTED = re.compile(
    "\"[^\"]*\"|\u201c[^\u201d]*\u201d|\u2018[^\u2019]*\u2019|(?<![\\w])'(?=\\S)[^']*?(?<=\\S)'(?![\\w])"
)
_SETTING_WORD = re.compile(r"[A-Za-z][\w'-]*")


def _surnames(show: episode_pb2.Show) -> Iterator[tuple[str, str]]:
    """(surname or title form, whose) from the show's own text."""
    firsts = {c.name for c in show.characters if c.name}
    texts = [show.premise]
    for character in show.characters:
        texts.extend([*character.catchphrases, *character.verbal_tics])
    for text in texts:
        for first in firsts:
            for match in re.finditer(rf"\b{re.escape(first)}\s+([A-Z][a-z][\w'-]*)", text):
                yield match.group(1), first
        for match in _TITLED.finditer(text):
            yield match.group(1), ""


def _world_words(setting: episode_pb2.Setting, cast: Iterable[episode_pb2.Character]) -> set[str]:
    """Words the new world uses itself: they are never counted as original names."""
    words: set[str] = set()
    for character in cast:
        for form in (character.name, *character.aliases):
            words.update(word.lower() for word in _SETTING_WORD.findall(form))
    texts = [setting.name, setting.description, *setting.vocabulary, *setting.props]
    texts.extend(setting.locations)
    for text in texts:
        words.update(word.lower() for word in _SETTING_WORD.findall(text))
    return words


def original_names(
    show: episode_pb2.Show,
    cast: Sequence[episode_pb2.Character],
    setting: episode_pb2.Setting | None = None,
) -> dict[str, str]:
    """Every form of the classic cast's names -> the original first name it belongs to ("" when
    the show's text does not say whose it is)."""
    return dict(
        _original_names(
            show.SerializeToString(deterministic=True),
            tuple(c.SerializeToString(deterministic=True) for c in cast),
            (setting or episode_pb2.Setting()).SerializeToString(deterministic=True),
        )
    )


@lru_cache(maxsize=256)
def _original_names(
    show_bytes: bytes, cast_bytes: tuple[bytes, ...], setting_bytes: bytes
) -> tuple[tuple[str, str], ...]:
    show = episode_pb2.Show.FromString(show_bytes)
    cast = [episode_pb2.Character.FromString(data) for data in cast_bytes]
    setting = episode_pb2.Setting.FromString(setting_bytes)
    forms: dict[str, str] = {}
    for character in show.characters:
        for form in (character.name, *character.aliases):
            forms.setdefault(form, character.name)
    exact = set(forms)  # a new cast member may not be named any of these
    for character in show.characters:
        name = character.name
        for form in (f"{name}ie", f"{name}y"):
            forms.setdefault(form, name)
        for alias in character.aliases:
            for word in _CAPITALISED_WORD.findall(alias):
                if not _TITLE_WORD.fullmatch(word):
                    forms.setdefault(word, name)
    for surname, whose in _surnames(show):
        forms.setdefault(surname, whose)
    # A cast member whose name is a classic one is a leak, unless the writer kept that very
    # character's name on purpose (a user's cast: `original_name` equals `name`).
    own = [c for c in cast if c.name not in exact or c.original_name == c.name]
    kept = {c.name for c in own} | {a for c in own for a in c.aliases}
    world = _world_words(setting, own)
    found = {
        form: whose
        for form, whose in forms.items()
        if len(form) >= MIN_NAME_LENGTH and form not in kept and form.lower() not in world
    }
    return tuple(sorted(found.items()))


def find_original_names(text: str, names: Mapping[str, str]) -> list[str]:
    """The original names in `text`, longest first and not counted twice ("Fred Mertz" once)."""
    found: list[str] = []
    taken: list[tuple[int, int]] = []
    for form in sorted(names, key=len, reverse=True):
        for match in name_pattern(form).finditer(text):
            span = match.span()
            if any(start < span[1] and span[0] < end for start, end in taken):
                continue
            taken.append(span)
            if form not in found:
                found.append(form)
    return found


def own_names(character: episode_pb2.Character) -> list[str]:
    """A character's own name and aliases, longest first."""
    forms = {character.name, *character.aliases} - {""}
    return sorted(forms, key=len, reverse=True)


def _quoted_spans(text: str) -> list[tuple[int, int]]:
    return [match.span() for match in _QUOTED.finditer(text)]


def without_quotes(text: str) -> str:
    """The text with every quoted passage blanked out (a quoted line is not an instruction)."""
    return _QUOTED.sub(" ", text)


def names_self(text: str, forms: Sequence[str]) -> str | None:
    """The form of the speaker's own name the line uses in the third person, or None."""
    quoted = _quoted_spans(text)
    for form in forms:
        for match in name_pattern(form).finditer(text):
            start, end = match.span()
            if any(q_start <= start and end <= q_end for q_start, q_end in quoted):
                continue
            if _INTRODUCED_BY.search(text[:start]) or _INTRODUCED_AFTER.match(text[end:]):
                continue
            return form
    return None


def check_self_naming(view: EpisodeView) -> list[Finding]:
    findings = []
    for scene in view.scenes:
        for line in scene.dialogue:
            character = view.characters.get(line.speaker)
            if character is None:
                continue
            form = names_self(line.text, own_names(character))
            if form is not None:
                findings.append(
                    SELF_NAMING.finding(
                        scene.index,
                        line.index,
                        f"{label(scene)}: {line.speaker} names themself in the third person "
                        f"({form!r}): {line.text[:80]!r}",
                    )
                )
    return findings


def check_original_names(view: EpisodeView) -> list[Finding]:
    episode = view.episode
    names = original_names(episode.show, episode.cast, episode.setting)
    if not names:
        return []
    findings = []
    for scene in view.scenes:
        spoken: set[str] = set()
        for line in scene.dialogue:
            if line.speaker in names and line.speaker not in spoken:
                spoken.add(line.speaker)
                where = f"{label(scene)}, a speaker"
                findings.append(_original(scene.index, line.index, [line.speaker], where))
        heading = scene.scene.slugline.location
        if found := find_original_names(heading, names):
            findings.append(_original(scene.index, -1, found, f"{label(scene)}'s heading"))
        for line in scene.lines:
            text = line.text
            if line.kind == "dialogue":
                element = scene.scene.elements[line.index].dialogue
                text = f"{element.parenthetical}\n{text}"
            if found := find_original_names(text, names):
                where = f"{label(scene)}, {line.speaker or line.kind}"
                findings.append(_original(scene.index, line.index, found, where))
    return findings


def _original(scene_index: int, element_index: int, found: list[str], where: str) -> Finding:
    shown = ", ".join(repr(name) for name in found)
    return ORIGINAL_NAME.finding(
        scene_index,
        element_index,
        f"{where}: the classic show's name {shown} in the new world",
    )
