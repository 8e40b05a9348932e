"""Runtime: how many scenes an open request gets, each scene's target, and how long lines run.

Estimates are the validator's (services/script/validation.py), so the writer aims at the same
clock the validator checks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

from doppelganger.v1 import episode_pb2
from services.script.procedural._outline import COLD_OPEN, TAG, allocate
from services.script.procedural._text import digest
from services.script.validation import (
    COMEDY_INTERVAL_SECONDS,
    DEFAULT_SCENE_SECONDS,
    RUNNER_WEIGHT,
    action_seconds,
    dialogue_seconds,
)

AUTO_MIN_SCENES, AUTO_MAX_SCENES = 8, 12
LONGEST_AUTO_SCENE_SECONDS = 170.0
MIN_JOKES, MAX_JOKES = 2, 6
MIN_TARGET_SECONDS, MAX_TARGET_SECONDS = 40.0, 175.0


def auto_scene_count(
    show: episode_pb2.Show,
    seed: int,
    episode_seconds: float,
    scene_seconds: float = DEFAULT_SCENE_SECONDS,
) -> int:
    """Scenes for an episode whose request leaves the count open: as many scenes of about
    `scene_seconds` as fill `episode_seconds`, give or take one (by seed), within 8-12, and never
    so few that an act scene would run longer than LONGEST_AUTO_SCENE_SECONDS."""
    jitter = digest("scene-count", show.id, seed) % 3 - 1
    count = round(episode_seconds / max(1.0, scene_seconds)) + jitter
    count = min(AUTO_MAX_SCENES, max(AUTO_MIN_SCENES, count))
    while count < AUTO_MAX_SCENES and longest_scene_seconds(show, count, episode_seconds) > (
        LONGEST_AUTO_SCENE_SECONDS
    ):
        count += 1
    return count


def longest_scene_seconds(
    show: episode_pb2.Show, scene_count: int, episode_seconds: float
) -> float:
    """The runtime of an act scene when `episode_seconds` is shared among `scene_count` scenes
    (cold open and tag get RUNNER_WEIGHT of an act scene's share)."""
    segments = allocate(show.structure, scene_count)
    units = sum(RUNNER_WEIGHT if name in (COLD_OPEN, TAG) else count for name, count in segments)
    return episode_seconds / units


def scene_targets(outline: episode_pb2.Outline, total: int) -> tuple[float, ...]:
    """Runtime target of every scene, from the beats (DEFAULT_SCENE_SECONDS when unset)."""
    targets = {b.scene_index: b.target_seconds for act in outline.acts for b in act.beats}
    return tuple(targets.get(index) or DEFAULT_SCENE_SECONDS for index in range(total))


def joke_count(target: float) -> int:
    """One comedic beat about every COMEDY_INTERVAL_SECONDS."""
    return min(MAX_JOKES, max(MIN_JOKES, math.ceil(target / COMEDY_INTERVAL_SECONDS)))


# Pure memos of the validator's estimates: a scene is fitted by re-timing its lines many times.
# Bounded; the keys are line texts, the values floats.
line_seconds: Callable[[str], float] = lru_cache(maxsize=65536)(dialogue_seconds)
action_line_seconds: Callable[[str], float] = lru_cache(maxsize=16384)(action_seconds)
