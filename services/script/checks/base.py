"""What every craft check shares: the finding it reports and the episode as the checks read it."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from doppelganger.v1 import episode_pb2
from services.script.script_text import SceneText, cast_names, read_episode
from shared.revisions import printed_number

Severity = episode_pb2.Severity

# The validator's sub-scores, by issue category.
CHARACTER, COMEDY, PLOT, PRODUCTION = "character", "comedy", "plot", "production"


@dataclass(frozen=True)
class Finding:
    """One fault a check found: an issue for the report and the sub-score points it costs."""

    check: str  # stable id, e.g. "self_naming"
    category: str  # the sub-score it lowers
    severity: int  # episode_pb2.Severity
    scene_index: int  # -1: the whole episode
    element_index: int  # into Scene.elements; -1: the whole scene or its heading
    message: str
    penalty: float  # points of its sub-score (0..1) it costs

    def issue(self) -> episode_pb2.ValidationIssue:
        return episode_pb2.ValidationIssue(
            severity=self.severity,
            category=self.category,
            scene_index=self.scene_index,
            element_index=self.element_index,
            message=self.message,
            check=self.check,
        )


@dataclass(frozen=True)
class CheckSpec:
    """A check's id, the sub-score it lowers, its severity and what one finding costs."""

    check: str
    category: str
    severity: int
    penalty: float

    def finding(
        self, scene_index: int, element_index: int, message: str, weight: float = 1.0
    ) -> Finding:
        return Finding(
            self.check,
            self.category,
            self.severity,
            scene_index,
            element_index,
            message,
            self.penalty * weight,
        )


@dataclass
class EpisodeView:
    """The episode as the checks read it, built once for all of them."""

    episode: episode_pb2.Episode
    scenes: list[SceneText] = field(init=False)

    def __post_init__(self) -> None:
        self.scenes = read_episode(self.episode)

    @cached_property
    def cast(self) -> list[str]:
        return cast_names(self.episode.cast)

    @cached_property
    def characters(self) -> dict[str, episode_pb2.Character]:
        return {character.name: character for character in self.episode.cast}


def label(scene: SceneText) -> str:
    """How messages name a scene: as it prints (a revised draft's "3A"), else 1-based."""
    return f"scene {printed_number(scene.scene, scene.index + 1)}"
