"""How the loopback provider's writer follows what a scene request asks of it, as a good model
would: a revision's continuity notes (a missing payoff or an unplanted setup gets a line that
carries it), a card's calls back to earlier episodes of the series (a line brings the fact up);
and, for the "drop_payoff" fault, a scene that lost the payoffs its card says are due."""

from __future__ import annotations

import re
from typing import Any

from services.script.checks.threads import content_stems
from services.script.season_store import plain_words

# A continuity note (services/script/ledger.py) about a thread, with the setup's description.
_THREAD_NOTE = re.compile(
    r"(?:the payoff of setup|setup) (\S+) \((?P<q>['\"])(?P<description>.+?)(?P=q)"
)


def _carried(payload: dict[str, Any], description: str) -> bool:
    wanted = content_stems(description)
    text = " ".join(element.get("text", "") for element in payload["elements"])
    return len(wanted & content_stems(text)) >= 0.5 * len(wanted)


def follow_thread_notes(payload: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """A line for every thread a note says is missing (before the closing transition)."""
    speakers = [e["character"] for e in payload["elements"] if e.get("type") == "dialogue"]
    for note in notes:
        match = _THREAD_NOTE.search(note)
        if match is None or not speakers or _carried(payload, match["description"]):
            continue
        line = {
            "type": "dialogue",
            "character": speakers[-1],
            "text": f"Don't forget: {match['description'].rstrip('.')}. That's the whole point.",
        }
        elements = payload["elements"]
        at = len(elements) - 1 if elements and elements[-1]["type"] == "transition" else None
        elements.insert(len(elements) if at is None else at, line)
    return payload


def _due_payoffs(request: dict[str, Any]) -> list[str]:
    """The descriptions of the setups the request's card says this scene pays off, when the
    request carries the cards (an outline without cards has none)."""
    beats = [beat for act in request["outline"].get("acts", []) for beat in act.get("beats", [])]
    setups = {
        setup.get("id", ""): setup.get("description", "")
        for beat in beats
        for setup in beat.get("setups", []) or []
        if isinstance(setup, dict)
    }
    mine: dict[str, Any] = next(
        (b for b in beats if b.get("scene_index") == request["scene_index"]), {}
    )
    return [setups[i] for i in mine.get("payoffs", []) or [] if setups.get(i)]


def drop_payoffs(payload: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """The scene without the lines that pay off its due setups."""
    for description in _due_payoffs(request):
        wanted = content_stems(description)
        payload["elements"] = [
            element
            for element in payload["elements"]
            if element.get("type") == "transition"
            or not wanted & content_stems(element.get("text", ""))
        ]
    return payload


def play_callbacks(payload: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """A line for every fact the card calls back to (series_callbacks) that the scene does not
    already say in so many words, by a speaker of the scene (before the closing transition)."""
    card = request.get("card") or {}
    speakers = [e["character"] for e in payload["elements"] if e.get("type") == "dialogue"]
    for callback in card.get("series_callbacks", []) or []:
        fact = str(callback.get("fact", "")).strip().rstrip(".")
        said = " ".join(element.get("text", "") for element in payload["elements"])
        if not fact or not speakers or plain_words(fact) in plain_words(said):
            continue
        line = {"type": "dialogue", "character": speakers[0], "text": f"Remember? {fact}."}
        _insert_before_transition(payload["elements"], line)
    return payload


def _insert_before_transition(elements: list[dict[str, Any]], line: dict[str, Any]) -> None:
    at = len(elements) - 1 if elements and elements[-1]["type"] == "transition" else len(elements)
    elements.insert(at, line)
