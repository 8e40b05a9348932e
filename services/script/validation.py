"""Script validation: four weighted sub-scores computed from the episode itself.

- character consistency: every speaker is in the cast; catchphrases are used sparingly and only by
  their owners.
- comedy distribution: comedic beats (punchlines and callbacks; setups do not count) about every
  45 s on the episode timeline; beats closer than 20 s form clusters; gaps over 120 s are dead
  zones.
- plot coherence: every outline beat is played by a non-empty scene; A and B plots both present;
  the characters a beat names actually speak in its scene; with a premise, premise adherence
  (`_premise_adherence`): the premise's named people, things and events (premise.py) are in the
  outline, and every scene whose beat names one mentions it.
- production: every scene 30-180 s; the episode's runtime within 15 % of the outline's target
  (`target_runtime_seconds`, else scene_count * DEFAULT_SCENE_SECONDS); no line heard twice.

The craft checks (checks/: self-naming, original names, forms of address, presence, heading
against action, time of day, setups and payoffs) each lower the sub-score they belong to by
their findings' penalties. Every issue carries a stable `check` id and, when it is about one line,
its `element_index`.

`overall` is the weighted sum (WEIGHTS). An episode passes when `overall >= threshold` and no issue
is an error or worse: a stranger speaking, an original name or an empty scene fails the script
whatever the average. Runtime estimates (`element_seconds`, in script_text.py) are shared with the
procedural writer.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from doppelganger.v1 import episode_pb2
from services.script.checks import Finding, run_checks
from services.script.premise import mentioned, outline_texts, premise_elements, scene_texts
from services.script.script_text import (
    ACTION_BASE_SECONDS,
    ACTION_SECONDS_PER_WORD,
    SPOKEN_WORDS_PER_MINUTE,
    action_seconds,
    dialogue_seconds,
    element_seconds,
    word_pattern,
)
from shared.config import DEFAULTS
from shared.revisions import is_label, label_key, printed_number

__all__ = [
    "ACTION_BASE_SECONDS",
    "ACTION_SECONDS_PER_WORD",
    "CLUSTER_SECONDS",
    "COMEDY_INTERVAL_SECONDS",
    "DEFAULT_SCENE_SECONDS",
    "DEFAULT_THRESHOLD",
    "RUNNER_WEIGHT",
    "SPOKEN_WORDS_PER_MINUTE",
    "WEIGHTS",
    "action_seconds",
    "allocate_targets",
    "dialogue_seconds",
    "element_seconds",
    "scene_seconds",
    "target_runtime",
    "validate_episode",
    "word_pattern",
]

WEIGHTS: Mapping[str, float] = MappingProxyType(
    {
        "character_consistency": 0.30,
        "comedy_distribution": 0.30,
        "plot_coherence": 0.25,
        "production": 0.15,
    }
)
DEFAULT_THRESHOLD = DEFAULTS.validation_threshold

COMEDY_INTERVAL_SECONDS = 45.0
CLUSTER_SECONDS = 20.0
DEAD_ZONE_SECONDS = 120.0

MIN_SCENE_SECONDS = 30.0
MAX_SCENE_SECONDS = 180.0
# Runtime targets. The outline carries them (Outline.target_runtime_seconds, Beat.target_seconds);
# an outline without them gets DEFAULT_SCENE_SECONDS a scene (the default of DOPPEL_SCENE_SECONDS:
# a 22-minute episode is about eleven such scenes). Cold open and tag run RUNNER_WEIGHT of an act
# scene.
DEFAULT_SCENE_SECONDS = DEFAULTS.scene_seconds
RUNNER_WEIGHT = 0.5
RUNTIME_TOLERANCE = 0.15  # within +-15 % of the target scores full marks
REPEAT_PENALTY = 0.02  # production score lost per dialogue line heard twice in the episode

CATCHPHRASES_PER_SCENE = 1
MIN_BORROWED_CATCHPHRASE_WORDS = 3

Severity = episode_pb2.Severity
_COMEDIC_ROLES = frozenset(
    {
        episode_pb2.JOKE_ROLE_PUNCHLINE,
        episode_pb2.JOKE_ROLE_CALLBACK,
        episode_pb2.JOKE_ROLE_UNSPECIFIED,
    }
)
_NOT_WORD = re.compile(r"[^\w\s']+")


def scene_seconds(scene: episode_pb2.Scene) -> float:
    return sum(element_seconds(element) for element in scene.elements)


def _duration(scene: episode_pb2.Scene) -> float:
    return scene.duration_seconds if scene.duration_seconds > 0 else scene_seconds(scene)


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))


def _dialogue(scene: episode_pb2.Scene) -> list[episode_pb2.DialogueLine]:
    return [e.dialogue for e in scene.elements if e.WhichOneof("element") == "dialogue"]


def _numbered_dialogue(scene: episode_pb2.Scene) -> list[tuple[int, episode_pb2.DialogueLine]]:
    """(element index, line) of every dialogue line."""
    return [
        (index, element.dialogue)
        for index, element in enumerate(scene.elements)
        if element.WhichOneof("element") == "dialogue"
    ]


def _normalise(text: str) -> str:
    return " ".join(_NOT_WORD.sub(" ", text.lower()).split())


def _mean(values: Iterable[float], empty: float = 0.0) -> float:
    items = list(values)
    return sum(items) / len(items) if items else empty


class _Issues:
    """Collects issues; a scene_index of -1 means the whole episode."""

    def __init__(self) -> None:
        self.items: list[episode_pb2.ValidationIssue] = []

    def add(
        self,
        severity: int,
        category: str,
        scene_index: int,
        message: str,
        check: str,
        element_index: int = -1,
    ) -> None:
        self.items.append(
            episode_pb2.ValidationIssue(
                severity=severity,
                category=category,
                scene_index=scene_index,
                message=message,
                check=check,
                element_index=element_index,
            )
        )

    @property
    def blocking(self) -> bool:
        return any(issue.severity >= Severity.SEVERITY_ERROR for issue in self.items)


# ---------------------------------------------------------------------------------------------
# Character consistency


def _catchphrase_owners(cast: Iterable[episode_pb2.Character]) -> dict[str, str]:
    """Normalised catchphrase -> owner name."""
    owners: dict[str, str] = {}
    for character in cast:
        for phrase in character.catchphrases:
            key = _normalise(phrase)
            if key:
                owners.setdefault(key, character.name)
    return owners


def _says(text: str, phrase: str) -> bool:
    """Whether a normalised line delivers a normalised catchphrase. A short phrase ('i know')
    only counts when it is most of the line, not when it is buried in a longer sentence."""
    if phrase not in text or word_pattern(phrase).search(text) is None:
        return False
    size = len(phrase.split())
    return size >= MIN_BORROWED_CATCHPHRASE_WORDS or 2 * size >= len(text.split())


def _scene_voice(
    scene: episode_pb2.Scene,
    cast_names: set[str],
    owners: Mapping[str, str],
    uses: Counter[str],
    issues: _Issues,
) -> float:
    numbered = _numbered_dialogue(scene)
    lines = [line for _, line in numbered]
    if not lines:
        return 1.0
    strangers = Counter(line.character for line in lines if line.character not in cast_names)
    first_line = {}
    for index, line in reversed(numbered):
        first_line[line.character] = index
    for name, count in sorted(strangers.items()):
        shown = name or "(no name)"
        issues.add(
            Severity.SEVERITY_ERROR,
            "character",
            scene.index,
            f"{_scene_label(scene)}: {shown!r} speaks {count} line(s) but is not in the cast",
            "stranger",
            first_line[name],
        )
    own: Counter[str] = Counter()
    borrowed = 0
    for element_index, line in numbered:
        text = _normalise(line.text)
        for phrase, owner in owners.items():
            if not _says(text, phrase):
                continue
            if owner == line.character:
                own[owner] += 1
            elif len(phrase.split()) >= MIN_BORROWED_CATCHPHRASE_WORDS and line.character:
                borrowed += 1
                issues.add(
                    Severity.SEVERITY_WARNING,
                    "character",
                    scene.index,
                    f"{_scene_label(scene)}: {line.character} uses {owner}'s catchphrase",
                    "catchphrase_borrowed",
                    element_index,
                )
    overused = 0
    for name, count in sorted(own.items()):
        uses[name] += count
        if count > CATCHPHRASES_PER_SCENE:
            overused += 1
            issues.add(
                Severity.SEVERITY_WARNING,
                "character",
                scene.index,
                f"{_scene_label(scene)}: {name} uses catchphrases {count} times",
                "catchphrase_overused",
            )
    stranger_share = sum(strangers.values()) / len(lines)
    return _clamp(1.0 - 3.0 * stranger_share - 0.15 * overused - 0.1 * borrowed)


def _character_consistency(episode: episode_pb2.Episode, issues: _Issues) -> float:
    if not episode.cast:
        issues.add(Severity.SEVERITY_ERROR, "character", -1, "the episode has no cast", "no_cast")
        return 0.0
    cast_names = {character.name for character in episode.cast}
    owners = _catchphrase_owners(episode.cast)
    uses: Counter[str] = Counter()
    scores = [_scene_voice(s, cast_names, owners, uses, issues) for s in episode.scenes]
    limit = max(2, math.ceil(0.5 * len(episode.scenes)))
    penalty = 0.0
    for name, count in sorted(uses.items()):
        if count > limit:
            penalty += 0.05
            issues.add(
                Severity.SEVERITY_WARNING,
                "character",
                -1,
                f"{name} uses catchphrases {count} times in {len(episode.scenes)} scenes",
                "catchphrase_overused",
            )
    return _clamp(_mean(scores) - penalty)


# ---------------------------------------------------------------------------------------------
# Comedy distribution


@dataclass(frozen=True)
class _Beat:
    seconds: float  # on the episode timeline
    scene_index: int


def _joke_is_placed(scene: episode_pb2.Scene, joke: episode_pb2.Joke) -> bool:
    if not 0 <= joke.element_index < len(scene.elements):
        return False
    element = scene.elements[joke.element_index]
    return element.WhichOneof("element") == "dialogue" and element.dialogue.joke_id == joke.id


def _scene_beats(scene: episode_pb2.Scene, start: float, issues: _Issues) -> list[_Beat]:
    duration = _duration(scene)
    beats = []
    for joke in scene.jokes:
        if not _joke_is_placed(scene, joke):
            issues.add(
                Severity.SEVERITY_WARNING,
                "comedy",
                scene.index,
                f"{_scene_label(scene)}: joke {joke.id or '(no id)'} does not point at its line",
                "joke_unplaced",
            )
            continue
        if joke.role in _COMEDIC_ROLES:
            offset = min(max(joke.offset_seconds, 0.0), duration)
            beats.append(_Beat(start + offset, scene.index))
    if not beats and _dialogue(scene):
        issues.add(
            Severity.SEVERITY_WARNING,
            "comedy",
            scene.index,
            f"{_scene_label(scene)} has no comedic beat",
            "no_comedy",
        )
    return beats


def _scene_at(episode: episode_pb2.Episode, seconds: float) -> int:
    start = 0.0
    for scene in episode.scenes:
        start += _duration(scene)
        if seconds < start:
            return scene.index
    return episode.scenes[-1].index if episode.scenes else -1


def _dead_time(
    episode: episode_pb2.Episode, times: list[float], runtime: float, issues: _Issues
) -> float:
    dead = 0.0
    points = [0.0, *times, runtime]
    for before, after in itertools.pairwise(points):
        gap = after - before
        if gap > DEAD_ZONE_SECONDS:
            dead += gap - DEAD_ZONE_SECONDS
            scene_index = _scene_at(episode, before)
            issues.add(
                Severity.SEVERITY_WARNING,
                "comedy",
                scene_index,
                f"dead zone: {gap:.0f} s without a comedic beat from {before:.0f} s "
                f"(scene {scene_index + 1})",
                "dead_zone",
            )
    return dead


def _clusters(beats: list[_Beat], issues: _Issues) -> int:
    per_scene: Counter[int] = Counter()
    for earlier, later in itertools.pairwise(beats):
        if later.seconds - earlier.seconds < CLUSTER_SECONDS:
            per_scene[later.scene_index] += 1
    for scene_index, count in sorted(per_scene.items()):
        issues.add(
            Severity.SEVERITY_INFO,
            "comedy",
            scene_index,
            f"scene {scene_index + 1}: {count} comedic beat(s) closer than "
            f"{CLUSTER_SECONDS:.0f} s to the previous one",
            "comedy_cluster",
        )
    return sum(per_scene.values())


def _comedy_distribution(episode: episode_pb2.Episode, issues: _Issues) -> float:
    beats: list[_Beat] = []
    start = 0.0
    for scene in episode.scenes:
        beats.extend(_scene_beats(scene, start, issues))
        start += _duration(scene)
    runtime = start
    if runtime <= 0:
        return 0.0
    beats.sort(key=lambda beat: beat.seconds)
    expected = max(1.0, runtime / COMEDY_INTERVAL_SECONDS)
    density = min(1.0, len(beats) / expected)
    if density < 0.75:
        issues.add(
            Severity.SEVERITY_WARNING,
            "comedy",
            -1,
            f"{len(beats)} comedic beats in {runtime:.0f} s; about {expected:.0f} expected",
            "comedy_density",
        )
    spacing = 1.0 - _clusters(beats, issues) / max(1, len(beats) - 1)
    dead = _dead_time(episode, [beat.seconds for beat in beats], runtime, issues)
    coverage = 1.0 - min(1.0, dead / runtime)
    return _clamp(0.5 * density + 0.25 * spacing + 0.25 * coverage)


# ---------------------------------------------------------------------------------------------
# Plot coherence


def _beats(outline: episode_pb2.Outline) -> list[episode_pb2.Beat]:
    return [beat for act in outline.acts for beat in act.beats]


def _named(text: str, names: Iterable[str]) -> set[str]:
    return {name for name in names if name and word_pattern(name).search(text)}


def _beat_penalty(
    beat: episode_pb2.Beat, scene: episode_pb2.Scene | None, cast: set[str], issues: _Issues
) -> float:
    """0 when the beat is played; 1 when its scene is missing or empty; 0.05 when off-voice."""
    if scene is None or not _dialogue(scene):
        state = "is missing" if scene is None else "is empty"
        issues.add(
            Severity.SEVERITY_ERROR,
            "plot",
            beat.scene_index,
            f"scene {beat.scene_index + 1} {state}; its beat is not played: "
            f"{beat.description[:80]}",
            "beat_missing",
        )
        return 1.0
    named = _named(beat.description, cast)
    speakers = {line.character for line in _dialogue(scene)}
    if named and not named & speakers:
        issues.add(
            Severity.SEVERITY_WARNING,
            "plot",
            beat.scene_index,
            f"scene {beat.scene_index + 1}: none of {', '.join(sorted(named))} speaks in it",
            "beat_off_voice",
        )
        return 0.05
    return 0.0


def _plot_lines(beats: list[episode_pb2.Beat], scene_count: int, issues: _Issues) -> float:
    plots = {beat.plot for beat in beats}
    score = 0.0
    if episode_pb2.PLOT_LINE_A in plots:
        score += 0.5
    else:
        issues.add(
            Severity.SEVERITY_ERROR, "plot", -1, "the outline has no A plot beat", "plot_line"
        )
    if episode_pb2.PLOT_LINE_B in plots or scene_count < 2:
        score += 0.5
    else:
        issues.add(
            Severity.SEVERITY_WARNING, "plot", -1, "the outline has no B plot beat", "plot_line"
        )
    return score


def _plot_coherence(episode: episode_pb2.Episode, issues: _Issues) -> float:
    beats = _beats(episode.outline)
    if not beats:
        issues.add(Severity.SEVERITY_ERROR, "plot", -1, "the outline has no beats", "no_beats")
        return 0.0
    scenes = {scene.index: scene for scene in episode.scenes}
    cast = {character.name for character in episode.cast}
    penalties = [_beat_penalty(b, scenes.get(b.scene_index), cast, issues) for b in beats]
    missing = sum(1 for penalty in penalties if penalty >= 1.0)
    off_voice = sum(penalty for penalty in penalties if penalty < 1.0)
    coverage = 1.0 - missing / len(beats)
    scene_count = episode.outline.scene_count or len(episode.scenes)
    plots = _plot_lines(beats, scene_count, issues)
    covered = {beat.scene_index for beat in beats}
    orphans = [index for index in sorted(scenes) if index not in covered]
    for index in orphans:
        issues.add(
            Severity.SEVERITY_WARNING,
            "plot",
            index,
            f"scene {index + 1} has no beat",
            "orphan_scene",
        )
    if not episode.outline.title or not episode.outline.logline:
        issues.add(
            Severity.SEVERITY_INFO,
            "plot",
            -1,
            "the outline has no title or logline",
            "outline_title",
        )
        off_voice += 0.05
    penalty = off_voice + 0.05 * len(orphans)
    adherence = _premise_adherence(episode, scenes, issues)
    if adherence is None:
        return _clamp(0.6 * coverage + 0.4 * plots - penalty)
    return _clamp(0.5 * coverage + 0.3 * plots + 0.2 * adherence - penalty)


def _premise_adherence(
    episode: episode_pb2.Episode, scenes: Mapping[int, episode_pb2.Scene], issues: _Issues
) -> float | None:
    """How well the script keeps to the writer's premise, in [0, 1]; None without a premise.

    Each named element of the premise (premise.py) counts half for being in the outline and half
    for the scenes: every scene whose beat names it mentions it (when no beat names it, any scene
    mentioning it will do). A warning names what is missing, with its scene when it is a scene's.
    """
    premise = episode.outline.premise or episode.premise
    world = f"{episode.setting.name} {episode.setting.description}"
    elements = premise_elements(premise, episode.cast, world)
    if not elements:
        return None
    outline = outline_texts(episode.outline)
    texts = {index: scene_texts(scene) for index, scene in scenes.items()}
    scores = []
    for element in elements:
        in_outline = mentioned(element, outline)
        if not in_outline:
            issues.add(
                Severity.SEVERITY_WARNING,
                "plot",
                -1,
                f"the premise's {element.text!r} is not in the outline",
                "premise_adherence",
            )
        naming = [
            b.scene_index for b in _beats(episode.outline) if mentioned(element, [b.description])
        ]
        if naming:
            missing = [i for i in naming if not mentioned(element, texts.get(i, []))]
            for index in missing:
                issues.add(
                    Severity.SEVERITY_WARNING,
                    "plot",
                    index,
                    f"scene {index + 1} never mentions {element.text!r}, which its beat and the "
                    "premise name",
                    "premise_adherence",
                )
            in_scenes = 1.0 - len(missing) / len(naming)
        else:
            in_scenes = float(any(mentioned(element, t) for t in texts.values()))
            if not in_scenes:
                issues.add(
                    Severity.SEVERITY_WARNING,
                    "plot",
                    -1,
                    f"no scene mentions the premise's {element.text!r}",
                    "premise_adherence",
                )
        scores.append(0.5 * in_outline + 0.5 * in_scenes)
    return _mean(scores)


# ---------------------------------------------------------------------------------------------
# Production


def _scene_production(
    scene: episode_pb2.Scene, numbering_fault: str | None, issues: _Issues
) -> float:
    label = _scene_label(scene)
    if not scene.elements:
        issues.add(
            Severity.SEVERITY_ERROR, "production", scene.index, f"{label} is empty", "empty_scene"
        )
        return 0.0
    seconds = _duration(scene)
    score = 1.0
    if seconds < MIN_SCENE_SECONDS:
        score = seconds / MIN_SCENE_SECONDS
    elif seconds > MAX_SCENE_SECONDS:
        score = max(0.0, 1.0 - (seconds - MAX_SCENE_SECONDS) / MAX_SCENE_SECONDS)
    if score < 1.0:
        issues.add(
            Severity.SEVERITY_WARNING,
            "production",
            scene.index,
            f"{label} runs {seconds:.0f} s; scenes should run "
            f"{MIN_SCENE_SECONDS:.0f}-{MAX_SCENE_SECONDS:.0f} s",
            "scene_length",
        )
    if not scene.slugline.location:
        issues.add(
            Severity.SEVERITY_WARNING,
            "production",
            scene.index,
            f"{label}: no slugline",
            "slugline",
        )
        score -= 0.25
    if numbering_fault:
        issues.add(
            Severity.SEVERITY_WARNING, "production", scene.index, numbering_fault, "numbering"
        )
        score -= 0.1
    return _clamp(score)


def _numbering_faults(episode: episode_pb2.Episode) -> list[str | None]:
    """What is wrong with each scene's number (None: nothing). Before numbers are locked a scene
    is numbered by its position; once they are (a revised draft: inserted 3A, omitted scenes
    kept), each printed number must come after the one before it and be used once."""
    faults: list[str | None] = []
    if not episode.revision.numbers_locked:
        for at, scene in enumerate(episode.scenes):
            wrong = scene.index != at or scene.number != at + 1
            fault = f"scene {scene.index + 1} is numbered {scene.number} at position {at + 1}"
            faults.append(fault if wrong else None)
        return faults
    previous: str | None = None
    seen: set[str] = set()
    for position, scene in enumerate(episode.scenes, 1):
        number = printed_number(scene, position)
        ordered = previous is None or not (is_label(number) and is_label(previous))
        if not ordered:
            ordered = label_key(number) > label_key(previous or "")
        faults.append(
            None
            if ordered and number not in seen
            else f"scene {number} is numbered out of order after scene {previous}"
        )
        seen.add(number)
        previous = number
    return faults


def allocate_targets(outline: episode_pb2.Outline, total_seconds: float) -> None:
    """Sets the outline's runtime target and shares it among the beats: cold open and tag (runner
    beats) get RUNNER_WEIGHT of an act scene. Writers write each scene to its beat's target."""
    beats = _beats(outline)
    outline.target_runtime_seconds = round(total_seconds, 1)
    weights = [RUNNER_WEIGHT if b.plot == episode_pb2.PLOT_LINE_RUNNER else 1.0 for b in beats]
    unit = total_seconds / sum(weights) if beats else 0.0
    for beat, weight in zip(beats, weights, strict=True):
        beat.target_seconds = round(unit * weight, 1)


def target_runtime(episode: episode_pb2.Episode) -> float:
    """The runtime the episode is written to, in seconds."""
    if episode.outline.target_runtime_seconds > 0:
        return episode.outline.target_runtime_seconds
    scene_count = episode.outline.scene_count or len(episode.scenes)
    return max(1, scene_count) * DEFAULT_SCENE_SECONDS


def _runtime_score(episode: episode_pb2.Episode, runtime: float, issues: _Issues) -> float:
    scene_count = episode.outline.scene_count or len(episode.scenes)
    if len(episode.scenes) < scene_count:
        issues.add(
            Severity.SEVERITY_ERROR,
            "production",
            -1,
            f"{scene_count - len(episode.scenes)} of {scene_count} scenes are missing",
            "scenes_missing",
        )
    target = target_runtime(episode)
    error = abs(runtime / target - 1.0)
    if error <= RUNTIME_TOLERANCE:
        return 1.0
    issues.add(
        Severity.SEVERITY_WARNING,
        "production",
        -1,
        f"runtime {runtime:.0f} s against a target of {target:.0f} s",
        "runtime",
    )
    return _clamp(1.0 - (error - RUNTIME_TOLERANCE) / (1.0 - RUNTIME_TOLERANCE))


def _production(episode: episode_pb2.Episode, issues: _Issues) -> float:
    if not episode.scenes:
        issues.add(
            Severity.SEVERITY_CRITICAL, "production", -1, "the episode has no scenes", "no_scenes"
        )
        return 0.0
    faults = _numbering_faults(episode)
    scores = [_scene_production(s, f, issues) for s, f in zip(episode.scenes, faults, strict=True)]
    runtime = sum(_duration(scene) for scene in episode.scenes)
    if episode.runtime_seconds > 0 and abs(episode.runtime_seconds - runtime) > 0.05 * runtime:
        issues.add(
            Severity.SEVERITY_WARNING,
            "production",
            -1,
            f"runtime_seconds {episode.runtime_seconds:.0f} s but the scenes add up to "
            f"{runtime:.0f} s",
            "runtime_sum",
        )
    repeats = _repeated_lines(episode, issues)
    runtime_score = _runtime_score(episode, runtime, issues)
    return _clamp(0.7 * _mean(scores) + 0.3 * runtime_score - REPEAT_PENALTY * repeats)


def _repeated_lines(episode: episode_pb2.Episode, issues: _Issues) -> int:
    """Dialogue lines heard earlier in the episode (exact text); each is a warning."""
    first_heard: dict[str, int] = {}
    repeats = 0
    for scene in episode.scenes:
        for element_index, line in _numbered_dialogue(scene):
            earlier = first_heard.get(line.text)
            if earlier is None:
                first_heard[line.text] = scene.index
                continue
            repeats += 1
            issues.add(
                Severity.SEVERITY_WARNING,
                "production",
                scene.index,
                f"scene {scene.index + 1} repeats a line of scene {earlier + 1}: "
                f"{line.text[:60]!r}",
                "repeated_line",
                element_index,
            )
    return repeats


# ---------------------------------------------------------------------------------------------


_SUB_SCORES = {
    "character": "character_consistency",
    "comedy": "comedy_distribution",
    "plot": "plot_coherence",
    "production": "production",
}


def _craft_penalties(findings: Iterable[Finding]) -> dict[str, float]:
    """Points each sub-score loses to the craft checks' findings."""
    lost: dict[str, float] = {}
    for finding in findings:
        name = _SUB_SCORES[finding.category]
        lost[name] = lost.get(name, 0.0) + finding.penalty
    return lost


def validate_episode(
    episode: episode_pb2.Episode, threshold: float = DEFAULT_THRESHOLD
) -> episode_pb2.ValidationReport:
    """Scores the script; pure and deterministic (the episode is not modified)."""
    issues = _Issues()
    scores = {
        "character_consistency": _character_consistency(episode, issues),
        "comedy_distribution": _comedy_distribution(episode, issues),
        "plot_coherence": _plot_coherence(episode, issues),
        "production": _production(episode, issues),
    }
    findings = run_checks(episode)
    for name, value in _craft_penalties(findings).items():
        scores[name] = _clamp(scores[name] - value)
    issues.items.extend(finding.issue() for finding in findings)
    overall = sum(WEIGHTS[name] * value for name, value in scores.items())
    rounded = {name: round(value, 4) for name, value in scores.items()}
    return episode_pb2.ValidationReport(
        overall=round(overall, 4),
        passed=overall >= threshold and not issues.blocking,
        threshold=threshold,
        issues=issues.items,
        **rounded,
    )


def _scene_label(scene: episode_pb2.Scene) -> str:
    """How messages name a scene: as it prints (a revised draft's "3A"), else 1-based."""
    return f"scene {printed_number(scene, scene.index + 1)}"
