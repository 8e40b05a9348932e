"""Seeded randomness and sentence mechanics shared by every part of the procedural writer.

Randomness comes from `random.Random` seeded with a SHA-256 of the inputs (never `hash()`, which
is salted per process), so the same inputs give byte-identical protos in any process.
"""

from __future__ import annotations

import hashlib
import random
import re


def digest(*parts: object) -> int:
    """A stable 64-bit number for the parts (the same in every process)."""
    text = "\x1f".join(map(str, parts))
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def seeded_rng(*parts: object) -> random.Random:
    return random.Random(digest(*parts))


def wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


_A_BEFORE_VOWEL = re.compile(r"(?<![\w'])a (?=[aeioAEIO])")
_SENTENCE_START = re.compile(r"(?<!\.)([.!?]\s+)([a-z])")
_SMALL_WORDS = wordset("a an and at by for in of on or the to with")
_LOWER_STARTERS = wordset(
    "a all an and are but can could did do don't everybody everyone he her his how if is it "
    "it's just let's look maybe my no nobody now okay our she so that that's the then there "
    "there's they this we well what what's when where who why will would yes you you're your"
)


def sentence(text: str) -> str:
    """Capitalises the first letter and every sentence start (not after an ellipsis), and turns
    'a' into 'an' before a vowel."""
    text = _A_BEFORE_VOWEL.sub("an ", text)
    text = text[:1].upper() + text[1:]
    return _SENTENCE_START.sub(lambda m: m.group(1) + m.group(2).upper(), text)


def title_case(text: str) -> str:
    words = text.split()
    return " ".join(
        w if i and w.lower() in _SMALL_WORDS else w[:1].upper() + w[1:] for i, w in enumerate(words)
    )


def mid_sentence(name: str) -> str:
    """'A Mars colony in 2157' -> 'a Mars colony in 2157' (only a leading article is lowered)."""
    first, _, rest = name.partition(" ")
    return f"{first.lower()} {rest}" if first.lower() in ("a", "an", "the") and rest else name


def lead_in(lead: str, text: str) -> str:
    """'Well, gee,' + 'It works.' -> 'Well, gee, it works.'; 'Look.' + 'It works.' stays two
    sentences; a lead ending in a comma before a name or 'I' becomes its own sentence."""
    first = text.split(" ", 1)[0].lower().strip(",.!?")
    if lead.endswith(",") and first in _LOWER_STARTERS:
        return f"{lead} {text[:1].lower()}{text[1:]}"
    if lead.endswith(","):
        return f"{lead[:-1]}. {text}"
    return f"{lead} {text}"
