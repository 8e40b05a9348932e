"""Production revision conventions: the colour of each pass and locked scene numbers. Pure.

Shared by the script service (which makes revision passes) and the scene service (which prints
them); depends on nothing but the generated stubs.

Colours: a production's first draft is White; each revision pass takes the next colour in the
industry order (Blue, Pink, Yellow, Green, Goldenrod, Buff, Salmon, Cherry), then the cycle
restarts as double colours (Double White, Double Blue, ...), then triple. Each colour comes with
the pale paper tint it is printed on, used as the mark colour in HTML and as the page colour.

Locked numbers: once numbers are locked a scene keeps its printed label for good. A scene
inserted after 3 is 3A, the next one after 3A is 3B; between 3A and 3B comes 3AA. Labels sort
as every scheduling and breakdown program sorts them (3 < 3A < 3AA < 3B < 4), so there is no
label between 3 and 3A in that alphabet: for that rare case we follow the shooting-script
convention of a lower-case "before" letter, 3aA (and 3aaA between 3 and 3aA). In the order,
a lower-case letter sorts before the end of a label, which sorts before any capital:
3 < 3aaA < 3aA < 3A < 3AA < 3B. A label always ends in a capital (or is the bare number), and
between any two different labels of the same number there is always room for another.
"""

from __future__ import annotations

import datetime
import re

from doppelganger.v1 import episode_pb2

# The industry order of revision colours, with the pale paper tint each is printed on.
COLOUR_ORDER: tuple[tuple[str, str], ...] = (
    ("White", "#FFFFFF"),
    ("Blue", "#BFD7FF"),
    ("Pink", "#FFCCE0"),
    ("Yellow", "#FFF6A8"),
    ("Green", "#C6EFC6"),
    ("Goldenrod", "#F4D27A"),
    ("Buff", "#F0DDB8"),
    ("Salmon", "#FFC4AE"),
    ("Cherry", "#F5A3B5"),
)
CYCLE_PREFIXES = ("", "Double ", "Triple ", "Quadruple ", "Quintuple ")
HEX_COLOUR_RE = re.compile(r"#[0-9A-Fa-f]{6}")
DEFAULT_MARK_HEX = "#BFD7FF"  # Blue: for a mark whose set is unknown.
# "Name (date)" heads revised pages: these keep it within the header line (the PDF's
# HEADER_MAX_CHARS); the scene service refuses longer, the script service never makes them.
MAX_SET_NAME_CHARS = 32
MAX_SET_COLOUR_CHARS = 32
MAX_SET_DATE_CHARS = 20

# A locked scene label: the scene number, then capitals and the "before" letter a, ending in a
# capital (see the module docstring).
LABEL_RE = re.compile(r"(\d{1,6})((?:[aA-Z]*[A-Z])?)")
# The longest label the printed page holds: right scene numbers start 0.75" from the edge.
MAX_LABEL_CHARS = 6
# Order of the characters of a label's letters; the end of the label sorts between a and A.
_LOWER, _END, _UPPER = 0, 1, 2
ALPHABET = "a" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"  # The letters label_after chooses from, in order.


# --- Colours and sets ----------------------------------------------------------------------------


def revision_colour(position: int) -> tuple[str, str]:
    """Name and paper hex of the `position`-th colour of the industry order (0: White, 1: Blue,
    9: Double White, ...). Past the named cycles the name carries its cycle number."""
    if position < 0:
        raise ValueError(f"colour position {position} is negative")
    cycle, step = divmod(position, len(COLOUR_ORDER))
    name, hex_colour = COLOUR_ORDER[step]
    if cycle < len(CYCLE_PREFIXES):
        return CYCLE_PREFIXES[cycle] + name, hex_colour
    return f"{name} ({cycle + 1})", hex_colour


def colour_position(colour: str) -> int | None:
    """Where a colour name sits in the order ("Double Blue" -> 10); None when not a named one."""
    wanted = " ".join(colour.split()).casefold()
    limit = len(COLOUR_ORDER) * len(CYCLE_PREFIXES)
    for position in range(limit):
        if revision_colour(position)[0].casefold() == wanted:
            return position
    return None


def next_revision_set(
    state: episode_pb2.RevisionState, date: datetime.date | str
) -> episode_pb2.RevisionSet:
    """The next pass after `state`: the colour after the newest named one (the unrevised draft is
    White, so the first pass is Blue), id one above the highest, dated `date`."""
    position = 0
    for revision_set in state.sets:
        known = colour_position(revision_set.color)
        position = known if known is not None else position + 1
    colour, hex_colour = revision_colour(position + 1)
    next_id = max((revision_set.id for revision_set in state.sets), default=0) + 1
    iso = date.isoformat() if isinstance(date, datetime.date) else date
    return episode_pb2.RevisionSet(
        id=next_id, name=f"{colour} Revision", color=colour, color_hex=hex_colour, date=iso
    )


def default_revision_set(revision_id: int) -> episode_pb2.RevisionSet:
    """The set a mark names when the draft carries no such set: pass N in the industry order."""
    colour, hex_colour = revision_colour(max(revision_id, 1))
    return episode_pb2.RevisionSet(
        id=revision_id, name=f"{colour} Revision", color=colour, color_hex=hex_colour
    )


def mark_hex(revision_set: episode_pb2.RevisionSet) -> str:
    """The set's colour as `#RRGGBB`: its own when well formed, else its named colour's."""
    if HEX_COLOUR_RE.fullmatch(revision_set.color_hex):
        return revision_set.color_hex.upper()
    position = colour_position(revision_set.color)
    return revision_colour(position)[1] if position is not None else DEFAULT_MARK_HEX


# --- Locked scene numbers ------------------------------------------------------------------------


def printed_number(scene: episode_pb2.Scene, position: int) -> str:
    """The number a scene prints: its locked label, else its number, else its 1-based position."""
    return scene.number_label or str(scene.number or position)


def is_label(label: str) -> bool:
    """A label `label_after` understands (3, 3A, 3aA); renderers print any short alphanumeric
    label (an imported "A1" too), up to MAX_LABEL_CHARS."""
    return len(label) <= MAX_LABEL_CHARS and LABEL_RE.fullmatch(label) is not None


def label_key(label: str) -> tuple[int, tuple[int, ...]]:
    """Sort key of a label: its number, then its letters in the order of the module docstring."""
    match = LABEL_RE.fullmatch(label)
    if match is None:
        raise ValueError(f"{label!r} is not a scene label (a number, then letters ending in A-Z)")
    return int(match.group(1)), _letters_key(match.group(2))


def _letters_key(letters: str) -> tuple[int, ...]:
    if not letters:
        return ()  # The bare number sorts before any label with letters.
    ranks = [_LOWER if char == "a" else _UPPER + ord(char) for char in letters]
    return (1, *ranks, _END)


def label_after(prev_label: str, next_label: str | None = None) -> str:
    """The label of a scene inserted after `prev_label` ("0": before the first scene) and before
    `next_label` (None: nothing follows it): 3 -> 3A, 3A -> 3B, 3A..3B -> 3AA, 3..3A -> 3aA.

    The shortest label that fits, the lowest of those; letters go on `prev_label`'s number.
    """
    number, prev_letters = _split(prev_label)
    upper: str | None = None
    if next_label is not None:
        if label_key(next_label) <= label_key(prev_label):
            raise ValueError(f"{next_label!r} does not come after {prev_label!r}")
        next_number, next_letters = _split(next_label)
        upper = next_letters if next_number == number else None
    for length in range(1, len(prev_letters) + len(upper or "") + 3):
        found = _between(prev_letters, upper, "", length)
        if found is not None:
            return f"{number}{found}"
    raise AssertionError(f"no label between {prev_label!r} and {next_label!r}")  # Unreachable.


def _split(label: str) -> tuple[str, str]:
    label_key(label)  # Validates.
    digits = label.rstrip(ALPHABET)
    return str(int(digits)), label[len(digits) :]


def _between(low: str, high: str | None, prefix: str, length: int) -> str | None:
    """The lowest letters of exactly `length` characters, ending in a capital, strictly between
    `low` and `high` (None: unbounded), extending `prefix`; None when there are none."""
    if len(prefix) == length:
        fits = prefix[-1].isupper() and _after(prefix, low) and _before(prefix, high)
        return prefix if fits else None
    for char in ALPHABET:
        candidate = prefix + char
        rest = length - len(candidate)
        lowest = candidate + ("a" * (rest - 1) + "A" if rest else "")
        highest = candidate + "Z" * rest
        if not _after(highest, low) or not _before(lowest, high):
            continue  # No string of this length extending `candidate` fits.
        found = _between(low, high, candidate, length)
        if found is not None:
            return found
    return None


def _after(letters: str, low: str) -> bool:
    return _letters_key(letters) > _letters_key(low)


def _before(letters: str, high: str | None) -> bool:
    return high is None or _letters_key(letters) < _letters_key(high)
