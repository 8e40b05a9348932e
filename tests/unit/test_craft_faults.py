"""The validator catches what a showrunner catches: faults injected into good episodes of every
bundled show are each flagged, in their scene, at warning level or worse; the clean episodes
(with scene cards read back from their scenes) raise no craft finding at all."""

from __future__ import annotations

import pytest

from bench.craft_faults import INJECTORS, ISSUE_KINDS, copy, ensure_cards, flagged, inject
from doppelganger.v1 import episode_pb2
from services.script import catalog
from services.script.checks import run_checks
from services.script.validation import validate_episode
from testkit import draft_episode

SETTING = "mars-colony-2157"


@pytest.mark.parametrize("show", catalog.load_shows(), ids=lambda show: show.id)
async def test_every_fault_kind_is_flagged_in_its_scene(show: episode_pb2.Show) -> None:
    _, episode = await draft_episode(show.id, SETTING, 2)
    carded = copy(episode)
    ensure_cards(carded)
    assert run_checks(carded) == []
    injected = set()
    for kind in INJECTORS:
        for index in range(1, len(episode.scenes)):
            found = inject(episode, kind, index)
            if found is None:
                continue
            faulty, fault = found
            report = validate_episode(faulty)
            assert flagged(report, fault), (kind, index, [i.message for i in report.issues])
            assert fault.scene_index == index
            injected.add(kind)
            break
    assert set(ISSUE_KINDS) <= injected
    assert len(injected) >= 12  # form_of_address needs spouses or a boss


async def test_the_issues_six_fault_kinds_lower_the_score() -> None:
    _, episode = await draft_episode("i-love-lucy", SETTING, 4)
    clean = validate_episode(episode)
    for kind in ISSUE_KINDS:
        placed = (inject(episode, kind, i) for i in range(1, len(episode.scenes)))
        found = next((item for item in placed if item is not None), None)
        assert found is not None, kind
        faulty, fault = found
        report = validate_episode(faulty)
        assert flagged(report, fault), kind
        assert report.overall < clean.overall, kind
