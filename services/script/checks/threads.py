"""Setups and payoffs, from the scene cards (Beat.setups, Beat.payoffs) and the text.

- `orphan_payoff` (warning, plot): a scene pays off a setup that never happened: its card names a
  setup id no earlier card plants, or the earlier scene that should plant it does not (its text
  does not carry the setup).
- `missing_payoff` (warning, plot): a scene's card says it pays off a setup, and its text does not.

Whether a scene "carries" a setup is read from its words: at least half of the setup
description's content words (four letters or more, not the commonest words; compared by stem:
"sticks" and "sticky" agree) occur in the scene's lines and actions. Cards are all these checks
have to go on: an outline without cards (older episodes, imported scripts) gets no thread checks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from services.script.checks.base import PLOT, CheckSpec, EpisodeView, Finding, Severity, label
from services.script.script_text import SceneText

ORPHAN_PAYOFF = CheckSpec("orphan_payoff", PLOT, Severity.SEVERITY_WARNING, 0.05)
MISSING_PAYOFF = CheckSpec("missing_payoff", PLOT, Severity.SEVERITY_WARNING, 0.05)

CARRIED_SHARE = 0.5
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]+")
_COMMON_WORDS = (
    "about after again against also been before being between both could does doing down during "
    "each even ever every from have having here into just like made make many more most much must "
    "never only other over same should some such than that their them then there these they this "
    "those through under very want were what when where which while will with would your yours "
    "keeps kept gets gives goes going thing things somebody someone everyone nobody"
)
_COMMON = frozenset(_COMMON_WORDS.split())
_SUFFIXES = ("ings", "ing", "ies", "ied", "es", "ed", "ly", "y", "s", "e")


def _stem(word: str) -> str:
    word = word.lower().removesuffix("'s").strip("'-")
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    return word


@lru_cache(maxsize=4096)
def content_stems(text: str) -> frozenset[str]:
    """The stems of a text's content words."""
    words = (w for w in _WORD.findall(text) if len(w) >= 4 and w.lower() not in _COMMON)
    return frozenset(_stem(word) for word in words)


def carries(scene: SceneText, description: str) -> bool:
    """Whether the scene's text carries what `description` says (see the module docstring)."""
    wanted = content_stems(description)
    if not wanted:
        return True
    found = wanted & content_stems(scene.text)
    return len(found) >= CARRIED_SHARE * len(wanted)


def planted_setups(scenes: Iterable[SceneText]) -> dict[str, tuple[SceneText, str]]:
    """Setup id -> (the scene whose card plants it, its description); the first plant wins."""
    planted: dict[str, tuple[SceneText, str]] = {}
    for scene in scenes:
        if scene.card is None:
            continue
        for setup in scene.card.setups:
            if setup.id:
                planted.setdefault(setup.id, (scene, setup.description or setup.id))
    return planted


def check_threads(view: EpisodeView) -> list[Finding]:
    findings = []
    planted = planted_setups(view.scenes)
    for scene in view.scenes:
        if scene.card is None:
            continue
        for setup_id in scene.card.payoffs:
            source = planted.get(setup_id)
            if source is None or source[0].index >= scene.index:
                findings.append(
                    ORPHAN_PAYOFF.finding(
                        scene.index,
                        -1,
                        f"{label(scene)} pays off setup {setup_id!r}, which no earlier scene "
                        "plants",
                    )
                )
                continue
            origin, description = source
            if not carries(origin, description):
                findings.append(
                    ORPHAN_PAYOFF.finding(
                        scene.index,
                        -1,
                        f"{label(scene)} pays off setup {setup_id!r} ({description!r}), but "
                        f"{label(origin)} never plants it",
                    )
                )
            if not carries(scene, description):
                findings.append(
                    MISSING_PAYOFF.finding(
                        scene.index,
                        -1,
                        f"{label(scene)}: the payoff of setup {setup_id!r} ({description!r}) "
                        "is missing",
                    )
                )
    return findings
