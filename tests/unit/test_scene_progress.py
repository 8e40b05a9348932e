"""SceneProgress: fractions over the scenes' share that never go backwards, messages naming the
scenes in flight, and no update without new output."""

from __future__ import annotations

from services.script.scene_progress import IN_FLIGHT_CAP, MIN_EXPECTED_TOKENS, SceneProgress


def test_progress_grows_with_streamed_output_and_never_goes_back() -> None:
    progress = SceneProgress(2, 0.1, 0.5)
    assert progress.update() is None  # nothing streamed yet
    progress.expect(0, 100)  # 700 tokens expected
    progress.expect(1, 10)  # short: the minimum applies
    progress.output(0, 350)
    fraction, message = progress.update() or (0.0, "")
    assert fraction == 0.1 + 0.4 * (0.5 / 2)
    assert message == "writing scene 1: 350 tokens so far"
    assert progress.update() is None  # nothing new
    progress.output(1, 10 * MIN_EXPECTED_TOKENS)  # past its expectation: capped
    later, message = progress.update() or (0.0, "")
    assert later == round(0.1 + 0.4 * ((0.5 + IN_FLIGHT_CAP) / 2), 4)
    assert message == f"writing scenes 1, 2: {350 + 10 * MIN_EXPECTED_TOKENS} tokens so far"
    # Scene 1 finishes: its share is whole, scene 0's partial share is still counted, and the
    # fraction does not fall below what was reported.
    done = progress.finished(1)
    assert done >= later
    progress.output(1, 99999)  # late output of a finished scene is ignored
    assert progress.finished(0) == 0.5
    assert progress.update() is None


def test_output_that_does_not_grow_is_not_news() -> None:
    progress = SceneProgress(1, 0.0, 1.0)
    progress.expect(0, 60)
    progress.output(0, 100)
    assert progress.update() is not None
    progress.output(0, 100)
    progress.output(0, 50)
    assert progress.update() is None
