"""The script validator: weighted sub-scores computed from the episode itself."""

from __future__ import annotations

import pytest

from doppelganger.v1 import episode_pb2
from services.script import catalog, validation
from services.script.validation import validate_episode
from shared.config import Settings
from testkit import generated_episode

Severity = episode_pb2.Severity


def _episode(show_id: str, setting_text: str, scene_count: int, seed: int) -> episode_pb2.Episode:
    """The kit's procedural episode, with its runtime summed as the pipeline does."""
    episode = generated_episode(show_id, setting_text, scene_count, seed)
    episode.runtime_seconds = sum(scene.duration_seconds for scene in episode.scenes)
    return episode


def _issues(report: episode_pb2.ValidationReport, scene_index: int) -> list[str]:
    return [issue.message for issue in report.issues if issue.scene_index == scene_index]


def _weighted(report: episode_pb2.ValidationReport) -> float:
    return sum(weight * getattr(report, name) for name, weight in validation.WEIGHTS.items())


def test_weights_are_the_documented_ones() -> None:
    assert dict(validation.WEIGHTS) == {
        "character_consistency": 0.30,
        "comedy_distribution": 0.30,
        "plot_coherence": 0.25,
        "production": 0.15,
    }


@pytest.mark.parametrize("show", catalog.load_shows(), ids=lambda show: show.id)
def test_procedural_output_passes_for_every_show(show: episode_pb2.Show) -> None:
    for setting, count in (("mars-colony-2157", 3), ("a haunted lighthouse", 8)):
        report = validate_episode(_episode(show.id, setting, count, 1), threshold=0.75)
        assert report.passed, [issue.message for issue in report.issues]
        assert report.overall >= 0.75
        assert report.threshold == 0.75
        assert report.overall == pytest.approx(_weighted(report), abs=1e-3)
        assert not [i for i in report.issues if i.severity >= Severity.SEVERITY_ERROR]


def test_a_stranger_speaking_fails_and_names_the_scene() -> None:
    episode = _episode("i-love-lucy", "mars-colony-2157", 3, 2)
    baseline = validate_episode(episode)
    line = next(e.dialogue for e in episode.scenes[1].elements if e.HasField("dialogue"))
    line.character = "Mysterious Stranger"
    report = validate_episode(episode)
    assert not report.passed
    assert report.character_consistency < baseline.character_consistency
    errors = [
        issue
        for issue in report.issues
        if issue.category == "character" and issue.severity == Severity.SEVERITY_ERROR
    ]
    assert [issue.scene_index for issue in errors] == [1]
    assert "Mysterious Stranger" in errors[0].message
    assert "scene 2" in errors[0].message


def test_an_empty_scene_fails_and_names_the_scene() -> None:
    episode = _episode("cheers", "victorian-london", 4, 3)
    del episode.scenes[2].elements[:]
    del episode.scenes[2].jokes[:]
    episode.scenes[2].duration_seconds = 0
    report = validate_episode(episode)
    assert not report.passed
    categories = {i.category for i in report.issues if i.scene_index == 2}
    assert {"plot", "production"} <= categories
    assert any("scene 3" in message for message in _issues(report, 2))
    assert report.plot_coherence < 1.0
    assert report.production < 1.0


def test_a_missing_scene_is_an_error() -> None:
    episode = _episode("taxi", "ancient-rome", 4, 3)
    del episode.scenes[3]
    report = validate_episode(episode)
    assert not report.passed
    assert any("missing" in message for message in _issues(report, 3))
    assert any("missing" in message for message in _issues(report, -1))


def test_missing_b_plot_is_reported() -> None:
    episode = _episode("frasier", "underwater-city", 5, 1)
    baseline = validate_episode(episode).plot_coherence
    for act in episode.outline.acts:
        for beat in act.beats:
            if beat.plot == episode_pb2.PLOT_LINE_B:
                beat.plot = episode_pb2.PLOT_LINE_A
    report = validate_episode(episode)
    assert report.plot_coherence < baseline
    assert any("no B plot" in message for message in _issues(report, -1))


def test_an_episode_without_jokes_scores_low_on_comedy() -> None:
    episode = _episode("seinfeld", "wild-west-town", 4, 5)
    for scene in episode.scenes:
        del scene.jokes[:]
        for element in scene.elements:
            if element.HasField("dialogue"):
                element.dialogue.joke_id = ""
    report = validate_episode(episode)
    assert report.comedy_distribution < 0.5
    assert any("dead zone" in issue.message for issue in report.issues)
    assert all(any("no comedic beat" in m for m in _issues(report, i)) for i in range(4))


def test_clustered_jokes_are_penalised() -> None:
    episode = _episode("friends", "enchanted-forest", 3, 4)
    baseline = validate_episode(episode).comedy_distribution
    for scene in episode.scenes:
        for joke in scene.jokes:
            joke.offset_seconds = 5.0
    report = validate_episode(episode)
    assert report.comedy_distribution < baseline
    assert any("closer than 20 s" in issue.message for issue in report.issues)


def test_jokes_pointing_at_the_wrong_line_are_reported() -> None:
    episode = _episode("mash", "medieval-castle", 3, 4)
    episode.scenes[0].jokes[0].element_index = 0  # the opening action line
    report = validate_episode(episode)
    assert any("does not point at its line" in message for message in _issues(report, 0))


def test_catchphrase_overuse_is_reported() -> None:
    episode = _episode("the-office-us", "antarctic-station", 3, 1)
    baseline = validate_episode(episode).character_consistency
    speaker = episode.cast[0]
    said = sum(  # the writer may have given the scene one of them already
        1
        for e in episode.scenes[1].elements
        if e.dialogue.character == speaker.name and e.dialogue.text in speaker.catchphrases
    )
    for _ in range(3):
        element = episode.scenes[1].elements.add()
        element.dialogue.character = speaker.name
        element.dialogue.text = speaker.catchphrases[0]
    report = validate_episode(episode)
    assert report.character_consistency < baseline
    assert any(f"catchphrases {said + 3} times" in message for message in _issues(report, 1))


def test_another_characters_catchphrase_is_reported() -> None:
    episode = _episode("the-office-us", "antarctic-station", 3, 1)
    owner, borrower = episode.cast[1], episode.cast[3]
    element = episode.scenes[0].elements.add()
    element.dialogue.character = borrower.name
    element.dialogue.text = owner.catchphrases[0]
    report = validate_episode(episode)
    assert any(f"{owner.name}'s catchphrase" in message for message in _issues(report, 0))


def test_scene_runtime_out_of_range_is_reported() -> None:
    episode = _episode("the-golden-girls", "1920s-speakeasy", 3, 1)
    baseline = validate_episode(episode).production
    episode.scenes[1].duration_seconds = 400
    report = validate_episode(episode)
    assert report.production < baseline
    assert any("runs 400 s" in message for message in _issues(report, 1))


def test_an_episode_without_scenes_fails() -> None:
    episode = _episode("i-love-lucy", "mars-colony-2157", 3, 1)
    del episode.scenes[:]
    report = validate_episode(episode)
    assert not report.passed
    assert report.overall < 0.5
    assert any(i.severity == Severity.SEVERITY_CRITICAL for i in report.issues)


def test_the_threshold_decides_passing() -> None:
    episode = _episode("taxi", "generation-starship", 3, 1)
    assert validate_episode(episode, threshold=0.75).passed
    strict = validate_episode(episode, threshold=1.01)
    assert not strict.passed
    assert strict.threshold == 1.01


def test_validation_does_not_modify_the_episode() -> None:
    episode = _episode("cheers", "mars-colony-2157", 3, 1)
    before = episode.SerializeToString(deterministic=True)
    validate_episode(episode)
    assert episode.SerializeToString(deterministic=True) == before


def test_element_seconds_uses_150_words_a_minute() -> None:
    line = episode_pb2.ScriptElement(dialogue=episode_pb2.DialogueLine(text="word " * 150))
    assert validation.element_seconds(line) == pytest.approx(60.0)
    action = episode_pb2.ScriptElement(action=episode_pb2.ActionLine(text="one two three"))
    assert validation.element_seconds(action) > validation.ACTION_BASE_SECONDS
    transition = episode_pb2.ScriptElement(transition=episode_pb2.Transition(text="CUT TO:"))
    assert validation.element_seconds(transition) == 0.0


def test_the_defaults_agree_with_the_configuration() -> None:
    defaults = Settings()
    assert defaults.scene_seconds == validation.DEFAULT_SCENE_SECONDS
    assert defaults.validation_threshold == validation.DEFAULT_THRESHOLD
    assert defaults.episode_minutes == 22.0


def test_allocate_targets_gives_runner_beats_less() -> None:
    episode = _episode("seinfeld", "mars-colony-2157", 6, 2)
    validation.allocate_targets(episode.outline, 600.0)
    beats = [beat for act in episode.outline.acts for beat in act.beats]
    assert episode.outline.target_runtime_seconds == 600.0
    assert sum(beat.target_seconds for beat in beats) == pytest.approx(600.0, abs=0.5)
    runner = [b.target_seconds for b in beats if b.plot == episode_pb2.PLOT_LINE_RUNNER]
    acts = [b.target_seconds for b in beats if b.plot != episode_pb2.PLOT_LINE_RUNNER]
    assert runner and acts
    assert max(runner) == pytest.approx(validation.RUNNER_WEIGHT * min(acts), abs=0.1)


@pytest.mark.parametrize(("ratio", "full_marks"), [(1.0, True), (1.14, True), (0.86, True),
                                                    (1.3, False), (0.6, False)])  # fmt: skip
def test_runtime_is_measured_against_the_outline_target(ratio: float, full_marks: bool) -> None:
    episode = _episode("cheers", "enchanted-forest", 4, 1)
    runtime = sum(scene.duration_seconds for scene in episode.scenes)
    episode.outline.target_runtime_seconds = runtime / ratio
    report = validate_episode(episode)
    runtime_issues = [m for m in _issues(report, -1) if m.startswith("runtime ")]
    assert (not runtime_issues) is full_marks
    if not full_marks:
        assert f"target of {runtime / ratio:.0f} s" in runtime_issues[0]
        assert report.production < 1.0


def test_a_line_heard_twice_is_a_warning_with_both_scenes() -> None:
    episode = _episode("frasier", "victorian-london", 3, 2)
    assert not any("repeats a line" in issue.message for issue in validate_episode(episode).issues)
    heard = next(e.dialogue for e in episode.scenes[0].elements if e.HasField("dialogue"))
    again = next(e.dialogue for e in episode.scenes[2].elements if e.HasField("dialogue"))
    again.text = heard.text
    report = validate_episode(episode)
    repeats = [m for m in _issues(report, 2) if "repeats a line" in m]
    assert repeats == [f"scene 3 repeats a line of scene 1: {heard.text[:60]!r}"]
    assert report.production < 1.0
