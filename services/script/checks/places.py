"""Where and when: the heading against the action, and the clock from scene to scene.

- `heading_action` (warning, production): an EXT heading whose action lines happen indoors, or an
  INT heading whose action happens under the open sky. Indoor cues: looking through, out of or
  against a window (or a porthole, viewport, skylight), "inside the walls/room/house/...",
  "steps/goes/heads inside", "indoors", ceilings, corridors, hallways, radiators, wallpaper,
  carpets, fireplaces, a window sill, "the next room/bunk". Open-sky cues: "under the open sky",
  the sun beating down, rain or snow falling on someone, the wind whipping at someone, stars or
  the moon overhead, unless the sentence looks out through glass (a window, a dome, a viewport).
  INT./EXT. headings take either.
- `time_of_day` (warning, production): consecutive scenes in one place whose clock runs backwards
  with no break (NIGHT, then MORNING, in the same location and the same act, the later heading
  not saying NEXT / FOLLOWING / LATER), or CONTINUOUS after a scene somewhere else (a different
  location that is not another part of the same set: "APARTMENT - KITCHEN" may continue from
  "APARTMENT - LIVING ROOM").

`interior_cue` and `exterior_cue` are what the procedural writer uses to keep its action lines
true to the heading.
"""

from __future__ import annotations

import itertools
import re

from doppelganger.v1 import episode_pb2
from services.script.checks.base import (
    PRODUCTION,
    CheckSpec,
    EpisodeView,
    Finding,
    Severity,
    label,
)
from services.script.script_text import SceneText, sentences

HEADING_ACTION = CheckSpec("heading_action", PRODUCTION, Severity.SEVERITY_WARNING, 0.1)
TIME_OF_DAY = CheckSpec("time_of_day", PRODUCTION, Severity.SEVERITY_WARNING, 0.05)

_INDOORS = re.compile(
    r"\b(?:through|out|out of|against) the (?:\w+ )?(?:windows?|portholes?|viewports?|"
    r"skylights?)\b|\bportholes?\b|\bviewports?\b|"
    r"\binside the (?:walls?|room|house|building|hut|cabin|office|flat|apartment|dome|station|"
    r"ship|bar|hall|module|bunkhouse|castle|tavern)\b|"
    r"\b(?:steps|walks|goes|heads|comes|hurries|rushes|runs|ducks|slips|stays|back) inside\b|"
    r"\bindoors\b|\bceilings?\b|\bcorridors?\b|\bhallways?\b|"
    r"\b(?:sweeps|across|down|along|into) the hall\b|\bradiators?\b|\bwallpaper\b|\bcarpets?\b|"
    r"\bfireplace\b|\b(?:window ?)?sill\b|\bthe next (?:room|bunk|cabin|office)\b",
    re.IGNORECASE,
)
_OPEN_SKY = re.compile(
    r"\bunder the (?:open|night|blazing|grey|gray|starry|cloudless) sky\b|\bopen sky\b|"
    r"\bthe sun (?:beats|blazes|bakes|burns|beating|blazing) down\b|"
    r"\b(?:rain|snow|sleet|hail) (?:falls|pours|lashes|beats|pelts|drums|soaks)(?: down)? on\b|"
    r"\bsoaked (?:by|in) the rain\b|"
    r"\bthe wind (?:whips|tears|tugs|howls) (?:at|through) (?:them|him|her|their|his|its)\b|"
    r"\b(?:the )?(?:stars|moon) (?:wheel|wheels|blaze|blazes|glitter|glitters|hang|hangs|shine|"
    r"shines) overhead\b|\boverhead, the (?:sun|moon|stars)\b",
    re.IGNORECASE,
)
_LOOKING_OUT = re.compile(
    r"\b(?:windows?|glass|portholes?|viewports?|skylights?|outside|beyond|dome)\b", re.I
)

_CLOCK = {
    "DAWN": 0,
    "SUNRISE": 0,
    "MORNING": 1,
    "DAY": 2,
    "NOON": 2,
    "MIDDAY": 2,
    "AFTERNOON": 3,
    "DUSK": 4,
    "SUNSET": 4,
    "EVENING": 4,
    "NIGHT": 5,
    "LATE NIGHT": 6,
    "MIDNIGHT": 6,
}
_BREAK = re.compile(r"\b(?:NEXT|FOLLOWING|LATER|DAYS?|WEEKS?|MONTHS?|YEARS?|AGO|FLASHBACK)\b")
_CONTINUOUS = re.compile(r"\bCONTINUOUS\b|\bCONT'?D\b")
_INT, _EXT = episode_pb2.PLACEMENT_INT, episode_pb2.PLACEMENT_EXT


def interior_cue(text: str) -> str | None:
    """The words of an action line that put it indoors, or None."""
    match = _INDOORS.search(text)
    return match.group(0) if match else None


def exterior_cue(text: str) -> str | None:
    """The words of an action line that put it under the open sky, or None (looking out through
    a window at the sky is indoor action)."""
    for part in sentences(text):
        match = _OPEN_SKY.search(part)
        if match and not _LOOKING_OUT.search(part):
            return match.group(0)
    return None


def clashes(placement: int, text: str) -> str | None:
    """The cue of `text` that contradicts a heading's placement, or None."""
    if placement == _EXT:
        return interior_cue(text)
    if placement == _INT:
        return exterior_cue(text)
    return None


def _heading(slugline: episode_pb2.Slugline) -> str:
    placement = {_INT: "INT.", _EXT: "EXT."}.get(slugline.placement, "INT./EXT.")
    return f"{placement} {slugline.location}"


def check_heading_action(view: EpisodeView) -> list[Finding]:
    findings = []
    for scene in view.scenes:
        slugline = scene.scene.slugline
        for line in scene.actions:
            cue = clashes(slugline.placement, line.text)
            if cue is None:
                continue
            where = "indoors" if slugline.placement == _EXT else "under the open sky"
            findings.append(
                HEADING_ACTION.finding(
                    scene.index,
                    line.index,
                    f"{label(scene)} is {_heading(slugline)} but its action happens {where} "
                    f"({cue!r}): {line.text[:80]!r}",
                )
            )
            break  # One issue a scene: the heading or the action is wrong, not each line.
    return findings


def _place(location: str) -> str:
    return " ".join(location.upper().split())


def set_of(location: str) -> str:
    """The set a location belongs to: 'RICARDO APARTMENT - KITCHEN' -> 'RICARDO APARTMENT'."""
    return _place(location).split(" - ")[0].strip()


def _hour(time_of_day: str) -> int | None:
    text = " ".join(time_of_day.upper().split())
    if text in _CLOCK:
        return _CLOCK[text]
    return None


def _time_fault(before: SceneText, after: SceneText) -> str | None:
    first, second = before.scene.slugline, after.scene.slugline
    time_of_day = second.time_of_day.upper()
    if _CONTINUOUS.search(time_of_day):
        if first.location and set_of(first.location) != set_of(second.location):
            return f"is CONTINUOUS but the scene before it is somewhere else ({first.location})"
        return None
    if _place(first.location) != _place(second.location) or not first.location:
        return None
    if before.scene.act != after.scene.act or _BREAK.search(time_of_day):
        return None
    earlier, later = _hour(first.time_of_day), _hour(second.time_of_day)
    if earlier is not None and later is not None and later < earlier:
        return (
            f"goes from {first.time_of_day} back to {second.time_of_day} in "
            f"{second.location} with no break in between"
        )
    return None


def check_time_of_day(view: EpisodeView) -> list[Finding]:
    findings = []
    for before, after in itertools.pairwise(view.scenes):
        fault = _time_fault(before, after)
        if fault is not None:
            findings.append(TIME_OF_DAY.finding(after.index, -1, f"{label(after)} {fault}"))
    return findings
