"""A show's DNA read from its scripts (AnalyzeShow, offline): pure, deterministic, no network.

What a writer's room would note after reading a stack of scripts:
- the speaking cast, most lines first (speakers with at least MIN_LINES lines; group cues such
  as ALL are nobody's), each name spelled as the action lines spell it ("McGee", not "MCGEE");
- catchphrases: lines (or sentences of at least three words) a character says in two or more
  scenes, episodes included, that others do not say; verbal tics: how a character keeps opening
  lines ("Well, gee,", "Listen,"), in at least MIN_TIC_LINES lines, mostly theirs;
- relationships: who shares scenes, and forms of address ("Mr. Marsh", "honey") with whom they
  are used for (the person addressed: named, else the next or previous speaker of the scene);
- locations from the sluglines, most used first; the structure (cold open, acts, tag) from the
  act sections, as most scripts have it;
- humour patterns: the joke notes doppel writes (`[[joke ID: pattern ...]]`) when the scripts
  carry them, else cue words of each pattern of the library, with the line that shows it.

The result is a `Show` for the writer to review (then CreateShow) and the `ShowAnalysis` with the
figures behind it; what could not be inferred is said in `warnings`.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from doppelganger.v1 import episode_pb2, script_pb2
from services.script import catalog
from services.script.script_reader import ReadScript
from services.script.show_input import MAX_CHARACTERS, show_slug

__all__ = ["MIN_LINES", "analyze_scripts"]

MIN_LINES = 2  # a speaker with fewer lines is not cast
MIN_TIC_LINES = 3
MIN_SHARE = 0.6  # of a phrase's uses that are one character's, for it to be theirs
MAX_CATCHPHRASES, MAX_TICS, MAX_FORMS = 12, 4, 5
SHORT_PHRASE_WORDS = 10
MAX_PHRASE_CHARS = 120
MAX_PATTERNS = 5
ADDRESS_REACH = 8  # lines looked at either side for the person a vocative is for
MAX_LOCATIONS = 20
GROUP_CUES = frozenset({"ALL", "BOTH", "EVERYONE", "EVERYBODY", "CROWD", "OTHERS", "TOGETHER"})
TITLES = ("Mr.", "Mrs.", "Ms.", "Miss", "Dr.", "Doctor", "Captain", "Sir", "Madame", "Professor")
ENDEARMENTS = {
    "honey": "romantic partner",
    "sweetheart": "romantic partner",
    "darling": "romantic partner",
    "dear": "romantic partner",
    "sweetie": "romantic partner",
    "baby": "romantic partner",
    "sir": "answers to",
    "ma'am": "answers to",
    "boss": "answers to",
    "chief": "answers to",
    "pal": "friend",
    "buddy": "friend",
    "kid": "looks out for",
}
# Cue words of each archetype in a character's lines (a guess the writer reviews).
ARCHETYPE_CUES: dict[str, tuple[str, ...]] = {
    "schemer": ("plan", "idea", "scheme", "trust me", "just listen", "all we have to do"),
    "sidekick": ("count me", "i'm in", "okay", "what do we do", "oh, sure"),
    "blowhard": ("one of these days", "believe me", "i'm the", "greatest", "king of"),
    "neurotic": ("worried", "nervous", "oh no", "what if", "panic", "can't breathe"),
    "innocent": ("what's a", "i don't understand", "gosh", "golly", "really?"),
    "cynic": ("paying", "cost", "hogwash", "yeah, right", "whatever", "extra"),
    "romantic": ("love", "beautiful", "heart", "date", "kiss", "gorgeous"),
    "eccentric": ("fascinating", "my cousin", "strange", "actually", "aliens", "theory"),
    "authority": ("my office", "rules", "orders", "in charge", "get back to work", "report"),
    "snob": ("indeed", "frankly", "refined", "sherry", "opera", "vulgar", "one simply"),
}
# Cue words of humour patterns, for scripts without joke notes.
PATTERN_CUES: dict[str, tuple[str, ...]] = {
    "slapstick": ("falls", "trips", "slips", "crash", "tumbles", "splat", "the floor"),
    "misunderstanding": ("you mean", "i thought you said", "wait, you think", "you know?"),
    "scheme-backfire": ("the plan", "plan b", "foolproof", "what could go wrong"),
    "lie-that-grows": ("if anyone asks", "my sick aunt", "i was at", "don't tell"),
    "insult-comeback": ("you old", "idiot", "moron", "nitwit"),
    "hyperbole": ("the worst", "a thousand", "a million", "every single"),
    "rule-of-three": ("three things",),
    "slow-burn": ("i'm fine", "i'm calm", "i am perfectly calm"),
    "self-deprecation": ("in fairness, i", "my dignity", "i'm an idiot"),
    "deadpan": ("(flat)", "(deadpan)", "(dry)"),
    "observational": ("ever notice", "what's the deal with", "why is it"),
    "blurt": ("i wasn't supposed to say", "oops", "my lips are sealed"),
}
_WORD = re.compile(r"[a-z0-9']+")
_SENTENCE = re.compile(r"(?<=[.!?…])\s+")
_BOUNDARY = re.compile(r"[,.!?…;:\-—]$")
_VOCATIVE_END = re.compile(r",\s*((?:[A-Z][\w'.]*\s?){1,3}|[a-z']+)[.!?]*$")
_VOCATIVE_START = re.compile(r"^((?:[A-Z][\w'.]*\s?){1,3}|[a-z']+),\s")
_VOCATIVE_TITLED = re.compile(
    r"(?:^|,\s*)((?:" + "|".join(re.escape(t) for t in TITLES) + r")\s+[A-Z][\w'\-]*)\s*[,.!?]"
)


@dataclass
class _Line:
    speaker: str  # the cue, upper case
    text: str
    parenthetical: str
    scene: int  # global scene number across the scripts


@dataclass
class _Reading:
    """Everything read from the scripts, by speaker."""

    lines: list[_Line] = field(default_factory=list)
    scenes: list[episode_pb2.Scene] = field(default_factory=list)
    scene_speakers: list[list[str]] = field(default_factory=list)
    prose: list[str] = field(default_factory=list)  # action lines and speech, as written


def _key(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def _read(scripts: Sequence[ReadScript]) -> _Reading:
    reading = _Reading()
    for script in scripts:
        for scene in script.scenes:
            number = len(reading.scenes)
            reading.scenes.append(scene)
            speakers: list[str] = []
            for element in scene.elements:
                if element.HasField("action"):
                    reading.prose.append(element.action.text)
                if not element.HasField("dialogue"):
                    continue
                line = element.dialogue
                cue = " ".join(line.character.upper().split())
                reading.prose.append(line.text)
                reading.lines.append(_Line(cue, line.text.strip(), line.parenthetical, number))
                speakers.append(cue)
            reading.scene_speakers.append(speakers)
    return reading


def _spelling(cue: str, prose: Sequence[str]) -> str:
    """The name as the prose spells it: the most common mixed-case form, else title case."""
    pattern = re.compile(rf"(?<![\w']){re.escape(cue)}(?![\w'])", re.IGNORECASE)
    forms = Counter(
        match.group(0)
        for text in prose
        for match in pattern.finditer(text)
        if match.group(0) != match.group(0).upper()
    )
    if forms:
        return forms.most_common(1)[0][0]
    return " ".join(word.capitalize() for word in cue.split())


def _cast(reading: _Reading, warnings: list[str]) -> list[str]:
    """Cues of the speaking cast, most lines first (first spoken first on a tie)."""
    counts = Counter(line.speaker for line in reading.lines if line.speaker not in GROUP_CUES)
    first: dict[str, int] = {}
    for position, line in enumerate(reading.lines):
        first.setdefault(line.speaker, position)
    ranked = sorted(counts, key=lambda cue: (-counts[cue], first[cue]))
    cast = [cue for cue in ranked if counts[cue] >= MIN_LINES][:MAX_CHARACTERS]
    minor = [f"{cue} ({counts[cue]})" for cue in ranked if cue not in cast]
    if minor:
        warnings.append(
            f"speakers left out of the cast (fewer than {MIN_LINES} lines, or past "
            f"{MAX_CHARACTERS} characters): {', '.join(minor[:20])}"
        )
    return cast


def _without_tic(text: str, tics: Sequence[str]) -> str:
    """The line after the speaker's tic ("Now look, Otto, I have a plan!" -> "Otto, I have a
    plan!"), or the line."""
    for tic in tics:
        if text.startswith(tic) and len(text) > len(tic):
            rest = text[len(tic) :].lstrip(" ,.")
            return rest[:1].upper() + rest[1:]
    return text


def _phrase_uses(
    reading: _Reading, tics: dict[str, list[str]]
) -> dict[str, list[tuple[str, int, str, bool]]]:
    """key -> (speaker, scene, text as written, whole line) for every line (its tic aside) and
    every sentence of three words or more."""
    uses: dict[str, list[tuple[str, int, str, bool]]] = defaultdict(list)
    for line in reading.lines:
        if len(line.text) > MAX_PHRASE_CHARS:
            continue
        text = _without_tic(line.text, tics.get(line.speaker, ()))
        uses[_key(text)].append((line.speaker, line.scene, text, True))
        sentences = _SENTENCE.split(text)
        for sentence in sentences if len(sentences) > 1 else ():
            if len(_WORD.findall(sentence.lower())) >= 3:
                uses[_key(sentence)].append((line.speaker, line.scene, sentence.strip(), False))
    return uses


def _catchphrases(
    reading: _Reading, cast: Sequence[str], tics: dict[str, list[str]]
) -> dict[str, list[str]]:
    """cue -> catchphrases, most repeated first."""
    found: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    for key, uses in _phrase_uses(reading, tics).items():
        if not key or len(key.split()) < 2:
            continue
        speakers = Counter(speaker for speaker, *_ in uses)
        speaker, count = speakers.most_common(1)[0]
        scenes = {scene for who, scene, _, _ in uses if who == speaker}
        if speaker not in cast or len(scenes) < 2 or count / len(uses) < MIN_SHARE:
            continue
        if any(key == _key(tic) for tic in tics.get(speaker, ())):
            continue
        forms = Counter(text for who, _, text, _ in uses if who == speaker)
        # Whole lines said again first, then short ones (a catchphrase is short), then the most
        # repeated.
        whole = len({scene for who, scene, _, is_line in uses if who == speaker and is_line}) >= 2
        short = len(key.split()) <= SHORT_PHRASE_WORDS
        rank = whole * 1000 + short * 100 + len(scenes)
        found[speaker].append((rank, -len(key), forms.most_common(1)[0][0]))
    result: dict[str, list[str]] = {}
    for speaker, entries in found.items():
        entries.sort(key=lambda entry: (-entry[0], -entry[1], entry[2]))
        chosen: list[str] = []
        for _, _, text in entries:
            # A sentence of a chosen line (or the line of a chosen sentence) is the same phrase.
            if not any(_key(text) in _key(other) or _key(other) in _key(text) for other in chosen):
                chosen.append(text)
            if len(chosen) == MAX_CATCHPHRASES:
                break
        result[speaker] = chosen
    return result


def _openers(text: str) -> Iterable[tuple[str, str]]:
    """(key, as written) of each opening of a line of 1-4 words ending at punctuation, when
    more of the line follows."""
    words = text.split()
    for size in range(1, min(4, len(words) - 1) + 1):
        if _BOUNDARY.search(words[size - 1]):
            raw = " ".join(words[:size])
            if key := _key(raw):
                yield key, raw


def _tics(reading: _Reading, cast: Sequence[str]) -> dict[str, list[str]]:
    """cue -> verbal tics: openings a character uses in MIN_TIC_LINES lines or more, mostly
    theirs; a longer opening wins over the shorter one it starts with."""
    uses: dict[str, Counter[str]] = defaultdict(Counter)
    spelled: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    seen: set[tuple[str, str]] = set()  # (speaker, line): a line said again is one use
    for line in reading.lines:
        if (line.speaker, _key(line.text)) in seen:
            continue
        seen.add((line.speaker, _key(line.text)))
        for key, raw in _openers(line.text):
            uses[key][line.speaker] += 1
            spelled[(key, line.speaker)][raw] += 1
    result: dict[str, list[str]] = {}
    named = {_key(cue) for cue in cast}  # "Rico," opening a line is a vocative, not a tic
    for speaker in cast:
        candidates = [
            (key, counts[speaker])
            for key, counts in uses.items()
            if counts[speaker] >= MIN_TIC_LINES
            and counts[speaker] / counts.total() >= MIN_SHARE
            and key not in named
        ]
        candidates.sort(key=lambda item: (-len(item[0].split()), -item[1], item[0]))
        chosen: list[tuple[str, int]] = []
        for key, count in candidates:
            longer = [c for k, c in chosen if k.startswith(key + " ")]
            if any(c >= 0.7 * count for c in longer):
                continue
            chosen.append((key, count))
        chosen.sort(key=lambda item: (-item[1], item[0]))
        result[speaker] = [
            spelled[(key, speaker)].most_common(1)[0][0] for key, _ in chosen[:MAX_TICS]
        ]
    return result


def _addressee(reading: _Reading, position: int, names: dict[str, str], form: str) -> str | None:
    """Who a vocative is for: the cast member it names, else the next (or previous) other
    speaker of the scene."""
    words = [w.strip(".,!?").lower() for w in form.split()]
    for word in reversed(words):
        if word.upper() in names:
            return word.upper()
    line = reading.lines[position]
    for step in (1, -1):
        for other in range(position + step, position + step * ADDRESS_REACH, step):
            if not 0 <= other < len(reading.lines) or reading.lines[other].scene != line.scene:
                break
            if reading.lines[other].speaker != line.speaker:
                return reading.lines[other].speaker
    return None


def _vocatives(text: str) -> list[str]:
    """Who a line speaks to, as it says it: set off by commas at its start or end ("Honey,",
    ", Fenn."), or a title and a name anywhere (", Mr. Quibble,")."""
    found: list[str] = []
    for pattern in (_VOCATIVE_START, _VOCATIVE_END, _VOCATIVE_TITLED):
        if match := pattern.search(text):
            form = match.group(1).strip().rstrip(".!?")
            lowered = form.lower()
            if form not in found and (
                lowered in ENDEARMENTS or (form[:1].isupper() and len(form.split()) <= 3)
            ):
                found.append(form)
    return found


def _address(
    reading: _Reading, cast: Sequence[str]
) -> tuple[dict[str, Counter[str]], Counter[tuple[str, str, str]]]:
    """(addressee -> forms of address, (speaker, addressee, endearment) -> uses)."""
    names = {cue: cue for cue in cast}
    forms: dict[str, Counter[str]] = defaultdict(Counter)
    endearments: Counter[tuple[str, str, str]] = Counter()
    for position, line in enumerate(reading.lines):
        for form in _vocatives(line.text):
            addressee = _addressee(reading, position, names, form)
            if addressee is None or addressee == line.speaker or addressee not in names:
                continue
            lowered = form.lower()
            if lowered in ENDEARMENTS:
                forms[addressee][lowered] += 1
                endearments[(line.speaker, addressee, lowered)] += 1
            elif form.split()[0] in TITLES and form.upper() not in names:
                forms[addressee][form] += 1
    return forms, endearments


def _relationships(
    reading: _Reading,
    cast: Sequence[str],
    endearments: Counter[tuple[str, str, str]],
    names: dict[str, str],
) -> list[episode_pb2.Relationship]:
    scenes: dict[str, set[int]] = defaultdict(set)
    for number, speakers in enumerate(reading.scene_speakers):
        for cue in speakers:
            scenes[cue].add(number)
    found: list[episode_pb2.Relationship] = []
    done: set[frozenset[str]] = set()
    said: Counter[tuple[str, str]] = Counter()
    for (speaker, _, word), count in endearments.items():
        said[(speaker, word)] += count
    for (speaker, addressee, word), count in endearments.most_common():
        # Mostly to one person (a tic such as "Honey," said to anyone is not a relationship).
        pair = frozenset((speaker, addressee))
        if count >= 2 and count >= MIN_SHARE * said[(speaker, word)] and pair not in done:
            done.add(pair)
            kind = f"{ENDEARMENTS[word]} (calls them '{word}')"
            found.append(_relationship(names[speaker], names[addressee], kind))
    for cue in cast:
        partners = sorted(
            ((len(scenes[cue] & scenes[other]), other) for other in cast if other != cue),
            key=lambda item: (-item[0], cast.index(item[1])),
        )
        if not partners or partners[0][0] < 2:
            continue
        shared, other = partners[0]
        if frozenset((cue, other)) in done:
            continue
        done.add(frozenset((cue, other)))
        share = shared / max(1, min(len(scenes[cue]), len(scenes[other])))
        kind = f"shares scenes ({shared}, {share:.0%} of the fewer)"
        found.append(_relationship(names[cue], names[other], kind))
    return found[:40]


def _relationship(source: str, target: str, kind: str) -> episode_pb2.Relationship:
    return episode_pb2.Relationship(from_character=source, to_character=target, kind=kind[:60])


def _structure(scripts: Sequence[ReadScript], warnings: list[str]) -> episode_pb2.EpisodeStructure:
    """As most scripts with act sections have it; two acts, no cold open or tag, without any."""
    shapes: Counter[tuple[bool, int, bool]] = Counter()
    for script in scripts:
        sections = list(dict.fromkeys(scene.act for scene in script.scenes if scene.act))
        if not sections:
            continue
        lowered = [section.lower() for section in sections]
        cold = any(word in lowered[0] for word in ("cold open", "teaser", "prologue"))
        tag = any(word in lowered[-1] for word in ("tag", "epilogue", "coda"))
        count = sum(1 for act in lowered if act.startswith("act"))
        shapes[(cold, max(1, min(5, count)), tag)] += 1
    if not shapes:
        warnings.append("no act sections (# ACT ONE ...) in the scripts: structure assumed")
        return episode_pb2.EpisodeStructure(cold_open=False, acts=2, tag=False)
    cold, acts, tag = shapes.most_common(1)[0][0]
    return episode_pb2.EpisodeStructure(cold_open=cold, acts=acts, tag=tag)


def _patterns(
    reading: _Reading, catchphrases: dict[str, list[str]], warnings: list[str]
) -> list[script_pb2.PatternEvidence]:
    library = {pattern.id for pattern in catalog.load_patterns()}
    marked = Counter(
        joke.pattern for scene in reading.scenes for joke in scene.jokes if joke.pattern in library
    )
    if marked:
        total = marked.total()
        return [
            script_pb2.PatternEvidence(
                pattern=pattern,
                score=round(count / total, 3),
                evidence=f"{count} of the {total} jokes marked in the scripts",
            )
            for pattern, count in marked.most_common(MAX_PATTERNS)
        ]
    texts = [
        f"({line.parenthetical}) {line.text}" if line.parenthetical else line.text
        for line in reading.lines
    ] + reading.prose
    evidence: list[script_pb2.PatternEvidence] = []
    for pattern, cues in PATTERN_CUES.items():
        hits = [text for text in texts if any(cue in text.lower() for cue in cues)]
        if hits and pattern in library:
            score = min(1.0, len(hits) / max(1, len(reading.scenes)))
            example = hits[0] if len(hits[0]) <= 100 else hits[0][:99] + "…"
            evidence.append(script_pb2.PatternEvidence(
                pattern=pattern, score=round(score, 3), evidence=f"{len(hits)}x, e.g. {example!r}"
            ))  # fmt: skip
    repeated = sum(len(phrases) for phrases in catchphrases.values())
    if repeated and "running-gag" in library:
        evidence.append(script_pb2.PatternEvidence(
            pattern="running-gag", score=round(min(1.0, repeated / 10), 3),
            evidence=f"{repeated} catchphrases come back across scenes",
        ))  # fmt: skip
    evidence.sort(key=lambda item: (-item.score, item.pattern))
    if not evidence:
        warnings.append("no humour pattern could be inferred: 'misunderstanding' assumed")
        evidence.append(script_pb2.PatternEvidence(pattern="misunderstanding", score=0.0))
    return evidence[:MAX_PATTERNS]


def _cue_rates(texts: Sequence[str]) -> dict[str, float]:
    """Lines with each archetype's cue words, per line."""
    lowered = [text.lower() for text in texts]
    return {
        archetype: sum(1 for text in lowered if any(cue in text for cue in cues))
        / max(1, len(lowered))
        for archetype, cues in ARCHETYPE_CUES.items()
    }


def _archetypes(lines_of: dict[str, list[str]], cast: Sequence[str]) -> dict[str, str]:
    """Each character's archetype: the one whose cue words they use most often compared with
    the rest of the cast (at least 1.5 times as often, in 2 lines or more); else the lead is a
    schemer, the foil the straight man and anyone else a sidekick."""
    everyone = _cue_rates([text for cue in cast for text in lines_of[cue]])
    chosen: dict[str, str] = {}
    for rank, cue in enumerate(cast):
        own = _cue_rates(lines_of[cue])
        ratios = {a: own[a] / everyone[a] for a in own if everyone[a] > 0}
        best = max(ratios, key=lambda a: (ratios[a], a), default="")
        if best and ratios[best] >= 1.5 and own[best] * len(lines_of[cue]) >= 2:
            chosen[cue] = best
        else:
            chosen[cue] = "schemer" if rank == 0 else "straight man" if rank == 1 else "sidekick"
    return chosen


def _aliases(name: str, forms: Counter[str], taken: set[str]) -> list[str]:
    """Title-and-surname forms others use ("Mr. Marsh"), and the surname alone."""
    aliases: list[str] = []
    for form, _ in forms.most_common():
        words = form.split()
        if words[0] not in TITLES or len(words) < 2:
            continue
        for alias in (form, " ".join(words[1:])):
            if alias.lower() not in taken and alias != name and alias not in aliases:
                aliases.append(alias[:60])
    return aliases[:12]


def analyze_scripts(
    scripts: Sequence[ReadScript], title: str = "", warnings: Sequence[str] = ()
) -> tuple[episode_pb2.Show, script_pb2.ShowAnalysis]:
    """The show the scripts describe and the analysis behind it (see the module docstring)."""
    notes = list(warnings)
    reading = _read(scripts)
    cast = _cast(reading, notes)
    names = {cue: _spelling(cue, reading.prose) for cue in cast}
    tics = _tics(reading, cast)
    catchphrases = _catchphrases(reading, cast, tics)
    forms, endearments = _address(reading, cast)
    taken = {name.lower() for name in names.values()}
    lines_of: dict[str, list[str]] = defaultdict(list)
    scenes_of: dict[str, set[int]] = defaultdict(set)
    for line in reading.lines:
        lines_of[line.speaker].append(line.text)
        scenes_of[line.speaker].add(line.scene)
    if not title.strip():
        notes.append("no title given: 'Untitled show' (a script's title is an episode's)")
    title = title.strip() or "Untitled show"
    show = episode_pb2.Show(id=show_slug(title), title=title[:200], source="analysed")
    analysis = script_pb2.ShowAnalysis(scripts=len(scripts), scenes=len(reading.scenes))
    archetypes = _archetypes(lines_of, cast)
    for cue in cast:
        name = names[cue]
        address = [form for form, _ in forms[cue].most_common(MAX_FORMS)]
        show.characters.add(
            name=name,
            archetype=archetypes[cue],
            verbal_tics=tics.get(cue, []),
            catchphrases=catchphrases.get(cue, []),
            aliases=_aliases(name, forms[cue], taken - {name.lower()}),
        )
        analysis.characters.add(
            name=name,
            lines=len(lines_of[cue]),
            words=sum(len(text.split()) for text in lines_of[cue]),
            scenes=len(scenes_of[cue]),
            catchphrases=catchphrases.get(cue, []),
            verbal_tics=tics.get(cue, []),
            forms_of_address=address,
        )
    show.relationships.extend(_relationships(reading, cast, endearments, names))
    places = Counter(s.slugline.location for s in reading.scenes if s.slugline.location.strip())
    locations = [place[:100] for place, _ in places.most_common(MAX_LOCATIONS)]
    show.locations.extend(locations)
    analysis.locations.extend(locations)
    show.structure.CopyFrom(_structure(scripts, notes))
    evidence = _patterns(reading, catchphrases, notes)
    analysis.humor_patterns.extend(evidence)
    show.humor_patterns.extend(item.pattern for item in evidence)
    if len(cast) >= 2:
        lead, foil = names[cast[0]], names[cast[1]]
        where = locations[0].title() if locations else "their world"
        show.premise = f"{lead} and {foil}, and the people around them, at {where}."
    else:
        notes.append(f"fewer than 2 speakers with {MIN_LINES} lines or more: not a show's cast yet")
    analysis.warnings.extend(notes)
    return show, analysis
