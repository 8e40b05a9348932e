"""Who is in the room: entrances and exits read from the card and the action lines.

- `speaks_before_entering` (warning, character): a character speaks, in person, who is not in the
  room: not present at the start per the card, and no entrance before the line (an action line
  naming them entering, or the card's entrances when the text writes no entrance for them), or
  whose written entrance comes after the line.
- `speaks_after_leaving` (warning, character): a character speaks, in person, after an action line
  saw them leave, with no entrance since.
- `silent_presence` (warning, character): the card puts a character in the scene (present or
  entering) who never speaks and is never mentioned.

Lines heard, not seen (O.S., V.O., on the phone) need nobody in the room. Without a card (older
episodes, imported scripts) presence is inferred from the text: everyone who speaks is taken to
be there from the start unless an action line brings them in first, so only a line spoken before
the speaker's own entrance, or after their exit, is flagged; `silent_presence` needs a card. A
card that names nobody (only a place, or only threads) says nothing about presence.
`read_presence` is also the continuity pass's ledger of who is where.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from services.script.checks.base import CHARACTER, CheckSpec, EpisodeView, Finding, Severity, label
from services.script.script_text import Line, SceneText, clock, mentions

SPEAKS_BEFORE_ENTERING = CheckSpec(
    "speaks_before_entering", CHARACTER, Severity.SEVERITY_WARNING, 0.05
)
SPEAKS_AFTER_LEAVING = CheckSpec("speaks_after_leaving", CHARACTER, Severity.SEVERITY_WARNING, 0.05)
SILENT_PRESENCE = CheckSpec("silent_presence", CHARACTER, Severity.SEVERITY_WARNING, 0.03)

_ENTER = (
    r"(?:enters|enter|(?:comes|come|walks|walk|bursts|burst|slides|slide|steps|step|strolls|"
    r"stroll|hurries|hurry|rushes|rush|marches|march|storms|storm|sweeps|sweep|wanders|wander|"
    r"pops|pop|sneaks|sneak|creeps|creep|barges|barge|backs|back|ducks|duck|runs|run|limps|"
    r"limp|tiptoes|tiptoe|shuffles|shuffle|staggers|stagger|races|race|dashes|dash|troops|troop|"
    r"breezes|breeze|charges|charge|files|file|squeezes|squeeze|crawls|crawl|climbs|climb)"
    r"(?: back)? in(?:to| through)?\b|arrives|arrive|appears in|appears at|returns|return|"
    r"is back|are back|joins them|join them|comes through|come through|emerges|emerge)"
)
_EXIT = (
    r"(?:exits|exit|(?:walks|walk|storms|storm|heads|head|hurries|hurry|rushes|rush|slips|slip|"
    r"sneaks|sneak|backs|back|runs|run|marches|march|sweeps|sweep|ducks|duck|stalks|stalk|"
    r"flounces|flounce|races|race|dashes|dash|bolts|bolt|limps|limp|tiptoes|tiptoe|shuffles|"
    r"shuffle|goes|go|stomps|stomp|files|file|troops|troop)(?: back)? (?:out|off|away)\b|"
    r"is gone|are gone|departs|depart|"
    r"leaves?(?=\s*(?:[.,;!—-]|$|\s+(?:the room|without|in a huff|through|for good|again|with)))"
    r")"
)
_MANNER = r"(?:(?:\w+ly|then|finally|also|both|all|at last|at once),?\s+)?"
_EVERYONE = re.compile(rf"\b(?:Everyone|Everybody|They all|All of them)\s+{_MANNER}{_EXIT}", re.I)


@lru_cache(maxsize=512)
def _movement_patterns(names: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    forms = sorted({form for name in names for form in (name, name.upper())}, key=len, reverse=True)
    name = "(?:" + "|".join(re.escape(form) for form in forms) + ")"
    subject = rf"((?<![\w'-]){name}(?:\s*(?:,|and|&)\s*{name})*)"
    enters = re.compile(rf"{subject}\s+{_MANNER}{_ENTER}")
    exits = re.compile(rf"{subject}\s+{_MANNER}{_EXIT}")
    ushered = re.compile(
        rf"(?:\bThe door (?:opens|bursts open|swings open)|\bIn (?:walks|comes|storms|bursts|"
        rf"steps|strolls|rushes)|\bEnter|\bEnters)\b[:,]?\s*(?:—\s*)?((?:{name})"
        rf"(?:\s*(?:,|and|&)\s*{name})*)"
    )
    return enters, exits, ushered


def _subjects(group: str, names: Sequence[str]) -> list[str]:
    upper = {name.upper(): name for name in names}
    words = re.split(r"\s*(?:,|\band\b|&)\s*", group)
    return [upper.get(word.strip().upper(), "") for word in words if word.strip()]


def movements(text: str, names: Sequence[str]) -> tuple[list[str], list[str]]:
    """(who enters, who leaves) in an action line; "Everyone leaves" is ["*"] leaving."""
    if not names:
        return [], []
    enters_re, exits_re, ushered_re = _movement_patterns(tuple(sorted(set(names))))
    entering: list[str] = []
    leaving: list[str] = []
    for match in enters_re.finditer(text):
        entering.extend(_subjects(match.group(1), names))
    for match in ushered_re.finditer(text):
        entering.extend(_subjects(match.group(1), names))
    for match in exits_re.finditer(text):
        leaving.extend(_subjects(match.group(1), names))
    if _EVERYONE.search(text):
        leaving.append("*")
    return [n for n in entering if n], [n for n in leaving if n]


@dataclass(frozen=True)
class PresenceFault:
    check: str  # "speaks_before_entering" or "speaks_after_leaving"
    character: str
    line: Line
    detail: str  # why, in the scene's time base


@dataclass
class Presence:
    """Who is in the room through one scene."""

    start: set[str]
    end: set[str] = field(default_factory=set)
    entered: dict[str, float] = field(default_factory=dict)  # name -> offset of the entrance
    left: dict[str, float] = field(default_factory=dict)  # name -> offset of the last exit
    faults: list[PresenceFault] = field(default_factory=list)


def _first_moves(scene: SceneText, names: Sequence[str]) -> dict[str, str]:
    """Each character's first movement in the text: "in" or "out"."""
    first: dict[str, str] = {}
    for line in scene.actions:
        entering, leaving = movements(line.text, names)
        for name in entering:
            first.setdefault(name, "in")
        for name in leaving:
            first.setdefault(name, "out")
    return first


def read_presence(
    scene: SceneText, names: Sequence[str], start: Iterable[str] | None = None
) -> Presence:
    """Walks the scene: who is there at the start (`start`, else the card's characters, else
    inferred), who comes and goes, and every line spoken by someone not in the room."""
    first = _first_moves(scene, names)
    card = scene.card if scene.card and (scene.card.characters or scene.card.entrances) else None
    planned = set(card.entrances) if card else set()
    if start is not None:
        present = set(start)
    elif card is not None:
        present = set(card.characters)
    else:
        present = {name for name in names if first.get(name) != "in"}
    presence = Presence(start=set(present))
    flagged: set[tuple[str, str]] = set()
    for line in scene.lines:
        if line.kind == "action":
            entering, leaving = movements(line.text, names)
            for name in entering:
                present.add(name)
                presence.entered[name] = line.offset
                presence.left.pop(name, None)
            for name in leaving:
                for who in sorted(present) if name == "*" else [name]:
                    present.discard(who)
                    presence.left[who] = line.offset
            continue
        if line.kind != "dialogue" or not line.seen or line.speaker in present:
            continue
        speaker = line.speaker
        if speaker not in names:
            continue  # A stranger: the validator's `stranger` check says so.
        if speaker in presence.left:
            fault = PresenceFault(
                SPEAKS_AFTER_LEAVING.check,
                speaker,
                line,
                f"at {clock(line.offset)}, {speaker} speaks but left at "
                f"{clock(presence.left[speaker])} and has not re-entered",
            )
        elif speaker in planned and first.get(speaker) != "in":
            present.add(speaker)  # A planned entrance the text does not stage: taken as read.
            continue
        elif first.get(speaker) == "in":
            fault = PresenceFault(
                SPEAKS_BEFORE_ENTERING.check,
                speaker,
                line,
                f"at {clock(line.offset)}, {speaker} speaks before entering",
            )
        else:
            fault = PresenceFault(
                SPEAKS_BEFORE_ENTERING.check,
                speaker,
                line,
                f"at {clock(line.offset)}, {speaker} speaks but is not in the scene: not there "
                "at the start and never enters",
            )
        if (fault.check, speaker) not in flagged:
            flagged.add((fault.check, speaker))
            presence.faults.append(fault)
    presence.end = present
    return presence


def silent(scene: SceneText) -> list[str]:
    """Characters the card puts in the scene who never speak and are never mentioned."""
    if scene.card is None:
        return []
    spoken = {line.speaker for line in scene.dialogue}
    everyone = list(dict.fromkeys([*scene.card.characters, *scene.card.entrances]))
    return [
        name
        for name in everyone
        if name not in spoken and not any(mentions(line.text, name) for line in scene.lines)
    ]


def check_presence(view: EpisodeView) -> list[Finding]:
    findings = []
    specs = {spec.check: spec for spec in (SPEAKS_BEFORE_ENTERING, SPEAKS_AFTER_LEAVING)}
    for scene in view.scenes:
        presence = read_presence(scene, view.cast)
        for fault in presence.faults:
            findings.append(
                specs[fault.check].finding(
                    scene.index, fault.line.index, f"{label(scene)}: {fault.detail}"
                )
            )
        for name in silent(scene):
            findings.append(
                SILENT_PRESENCE.finding(
                    scene.index,
                    -1,
                    f"{label(scene)}: the card puts {name} in the scene, but {name} never "
                    "speaks and is never mentioned",
                )
            )
    return findings
