"""Forms of address that break a relationship (`form_of_address`, warning, character).

Kept deliberately simple, two rules a showrunner would flag on sight:
- spouses and partners do not call each other by title: a line of one that says "Mr./Mrs./Ms./
  Miss/Dr. <name or alias word of the other>" (a wife calling her husband "Mr. Kramden");
- nobody calls their boss by a pet name: a line of the junior one of a boss-like relationship
  (boss, manager, supervisor, producer, dispatcher, commander, captain, chief, ...) that uses a
  pet name as a vocative ("Thanks, honey.", "Sweetie, ...") right before or after a line of the
  boss.
A relationship reads "from is <kind> of to" (Lucy -> Ricky: wife), as the catalog writes them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from doppelganger.v1 import episode_pb2
from services.script.checks.base import CHARACTER, CheckSpec, EpisodeView, Finding, Severity, label
from services.script.script_text import Line, SceneText

FORM_OF_ADDRESS = CheckSpec("form_of_address", CHARACTER, Severity.SEVERITY_WARNING, 0.03)

_PARTNER_KINDS = re.compile(
    r"\b(?:wife|husband|married|spouse|fianc[eé]e?|partner|girlfriend|boyfriend)\b", re.I
)
_BOSS_KINDS = re.compile(
    r"\b(?:boss|manager|supervisor|producer|dispatcher|commander|captain|employer|"
    r"chief|superior|commanding officer|head)\b",
    re.IGNORECASE,
)
_TITLE = re.compile(r"\b(?:Mr|Mrs|Ms|Miss|Mister|Dr)\.?\s+([A-Z][\w'-]+)")
_PET_NAMES = r"honey|sweetie|sweetheart|darling|babe|baby|sugar|pumpkin|cupcake|snookums|dear"
_PET_VOCATIVE = re.compile(rf"(?:^|[,.!?;:]\s*)({_PET_NAMES})\b(?=\s*(?:[,.!?;]|$))", re.IGNORECASE)
_NOT_VOCATIVE = re.compile(r"\boh,?\s+dear\b|\bdear me\b", re.IGNORECASE)


def _name_words(character: episode_pb2.Character) -> set[str]:
    words = {character.name}
    for alias in character.aliases:
        words.update(re.findall(r"[A-Z][\w'-]+", alias))
    return words


def _pairs(
    relationships: Iterable[episode_pb2.Relationship], pattern: re.Pattern[str]
) -> list[tuple[str, str]]:
    """(from, to) of the relationships whose kind matches."""
    return [(r.from_character, r.to_character) for r in relationships if pattern.search(r.kind)]


def pet_name(text: str) -> str | None:
    """A pet name used to address someone in `text`, or None ("Oh dear" is not one)."""
    cleaned = _NOT_VOCATIVE.sub(" ", text)
    match = _PET_VOCATIVE.search(cleaned)
    return match.group(1) if match else None


def _neighbours(dialogue: list[Line], position: int) -> set[str]:
    around = dialogue[max(0, position - 1) : position] + dialogue[position + 1 : position + 2]
    return {line.speaker for line in around}


def _partner_findings(scene: SceneText, view: EpisodeView) -> list[Finding]:
    findings = []
    partners = _pairs(view.episode.relationships, _PARTNER_KINDS)
    for line in scene.dialogue:
        for first, second in partners:
            other = second if line.speaker == first else first if line.speaker == second else ""
            character = view.characters.get(other)
            if character is None:
                continue
            titled = [m.group(0) for m in _TITLE.finditer(line.text)]
            words = _name_words(character)
            wrong = next((t for t in titled if t.split()[-1] in words), None)
            if wrong:
                findings.append(
                    FORM_OF_ADDRESS.finding(
                        scene.index,
                        line.index,
                        f"{label(scene)}: {line.speaker} calls their partner {other} "
                        f"{wrong!r}, a stranger's form of address",
                    )
                )
    return findings


def _boss_findings(scene: SceneText, view: EpisodeView) -> list[Finding]:
    findings = []
    bosses = _pairs(view.episode.relationships, _BOSS_KINDS)
    dialogue = scene.dialogue
    for position, line in enumerate(dialogue):
        for boss, junior in bosses:
            if line.speaker != junior or boss not in _neighbours(dialogue, position):
                continue
            name = pet_name(line.text)
            if name:
                findings.append(
                    FORM_OF_ADDRESS.finding(
                        scene.index,
                        line.index,
                        f"{label(scene)}: {junior} calls {boss}, who is their boss, "
                        f"{name.lower()!r}",
                    )
                )
    return findings


def check_forms_of_address(view: EpisodeView) -> list[Finding]:
    if not view.episode.relationships:
        return []
    findings = []
    for scene in view.scenes:
        findings.extend(_partner_findings(scene, view))
        findings.extend(_boss_findings(scene, view))
    return findings
