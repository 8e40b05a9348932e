"""Acceptance of ReviseEpisode (issue 17) on real servers on loopback: the script service with its
library on a real SQLite file (PostgreSQL too for the failed write), the cache on a real Redis,
the scene service rendering every format; the procedural writer, and the anthropic writer against
the loopback provider.

An 8-scene draft revised locking 1, 2 and 5, with notes on 3 and 4, a scene inserted after 3 and
scene 6 omitted: the locked scenes come back byte for byte; the FDX paragraphs carrying a
RevisionID number exactly the changed paragraphs the comparison counts; the PDF's asterisks sit
on exactly the changed lines; 3A and OMITTED print in all four formats; screenplain reads the
Fountain as our parser does. A Pink pass on top keeps Blue marks where nothing changed again.
The draft is stored as `revised` with its parent and notes; a failed write fails the RPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy.engine import URL

from doppelganger.v1 import episode_pb2, library_pb2, scene_pb2_grpc, script_pb2, script_pb2_grpc
from services.scene.fountain import parse_fountain
from services.script.library import Library
from services.script.revision_plan import revised_draft_id
from shared.config import Settings
from shared.redis_server import RedisServer
from shared.screenplay_diff import compare_drafts
from testkit import in_process_stack
from testkit.llm_server import ANTHROPIC_PATH, LLMServer
from tests.fakes.llm_support import llm_settings
from tests.integration.library_samples import refuse_draft_inserts_sql
from tests.integration.scene_support import FORMATS, check_document, render
from tests.unit.render_checks import (
    check_fdx_marks,
    check_html_marks,
    check_pdf_marks,
    fdx_marked,
    from_our_parser,
    from_screenplain,
    pdf_pages,
)
from tests.unit.render_checks import parse as parse_html

Stage = script_pb2.Stage
LABELS = ["1", "2", "3", "3A", "4", "5", "6", "7", "8"]


@dataclass
class Studio:
    script: script_pb2_grpc.ScriptServiceStub
    scene: scene_pb2_grpc.SceneServiceStub
    library: Library


@contextlib.asynccontextmanager
async def studio(
    settings: Settings, redis: RedisServer, library: Library, **changes: Any
) -> AsyncIterator[Studio]:
    base = settings.with_changes(redis_url=redis.url, **changes)
    async with in_process_stack(base, library=library) as stack:
        yield Studio(stack.script_stub, stack.scene_stub, library)


@pytest.fixture
async def sqlite_library(tmp_path: Path) -> AsyncIterator[Library]:
    url = URL.create("sqlite+aiosqlite", database=str(tmp_path / "library.db"))
    library = await Library.open(url, migrate="auto")
    yield library
    await library.close()


@pytest.fixture
async def procedural(
    settings: Settings, redis_server: RedisServer, sqlite_library: Library
) -> AsyncIterator[Studio]:
    async with studio(settings, redis_server, sqlite_library) as running:
        yield running


async def generate(stub: script_pb2_grpc.ScriptServiceStub, **fields: Any) -> episode_pb2.Episode:
    values: dict[str, Any] = {
        "show": "I Love Lucy", "setting": "a Mars colony in 2157", "scene_count": 8, "seed": 7,
    }  # fmt: skip
    values.update(fields)
    message = script_pb2.GenerateEpisodeRequest(**values)
    events = [event async for event in stub.GenerateEpisode(message, timeout=120)]
    return events[-1].episode


def the_issue_s_revision(
    base: episode_pb2.Episode, **fields: Any
) -> script_pb2.ReviseEpisodeRequest:
    """Lock 1, 2, 5; notes on 3 and 4; a scene after 3 from a beat and a card; omit 6."""
    first, second = base.cast[0].name, base.cast[1].name
    card = episode_pb2.Beat(
        location="GREENHOUSE ANNEX", time_of_day="NIGHT", characters=[first, second]
    )
    return script_pb2.ReviseEpisodeRequest(
        draft_id=base.id,
        lock=["1", "2", "5"],
        notes=[
            script_pb2.SceneNotes(scene="3", notes=f"Shorter, and give {second} the last word."),
            script_pb2.SceneNotes(scene="4", notes="Funnier: more jokes."),
        ],
        inserts=[
            script_pb2.SceneInsertion(
                after="3", beat=f"{first} hides the evidence; {second} nearly finds it.", card=card
            )
        ],
        omit=["6"],
        **fields,
    )


async def revise(
    stub: script_pb2_grpc.ScriptServiceStub, message: script_pb2.ReviseEpisodeRequest
) -> list[script_pb2.GenerateEpisodeEvent]:
    return [event async for event in stub.ReviseEpisode(message, timeout=120)]


def labels(episode: episode_pb2.Episode) -> list[str]:
    return [scene.number_label or str(scene.number) for scene in episode.scenes]


def scene(episode: episode_pb2.Episode, label: str) -> episode_pb2.Scene:
    return next(
        s for s, printed in zip(episode.scenes, labels(episode), strict=True) if printed == label
    )


def raw(scene_: episode_pb2.Scene) -> bytes:
    return scene_.SerializeToString(deterministic=True)


def check_revision(base: episode_pb2.Episode, revised: episode_pb2.Episode) -> None:
    """What the issue's revision must give, whoever wrote it."""
    assert labels(revised) == LABELS
    for locked in ("1", "2", "5"):
        assert raw(scene(revised, locked)) == raw(scene(base, locked)), f"scene {locked}"
    for untouched in ("7", "8"):  # Neither locked nor named: left alone too.
        assert raw(scene(revised, untouched)) == raw(scene(base, untouched))
    for rewritten in ("3", "4"):
        assert scene(revised, rewritten).elements != scene(base, rewritten).elements
        assert scene(revised, rewritten).index == scene(base, rewritten).index
    omitted = scene(revised, "6")
    assert omitted.omitted and not omitted.elements and omitted.number == 6
    inserted = scene(revised, "3A")
    assert inserted.elements and inserted.number_label == "3A"
    assert inserted.index == max(s.index for s in base.scenes) + 1
    joke_ids = [joke.id for s in revised.scenes for joke in s.jokes]
    assert len(joke_ids) == len(set(joke_ids))
    assert revised.revision.numbers_locked and revised.revision.active_set == 1
    [blue] = revised.revision.sets
    assert (blue.id, blue.name, blue.color, blue.color_hex) == (
        1,
        "Blue Revision",
        "Blue",
        "#BFD7FF",
    )
    assert revised.kind == episode_pb2.DRAFT_KIND_REVISED
    assert revised.parent_episode_id == base.id
    comparison = compare_drafts(base, revised)
    marks = sum(len(s.revision_marks) for s in revised.scenes)
    assert marks == comparison.changed_paragraphs > 0
    unchanged = library_pb2.CHANGE_KIND_UNCHANGED
    changed = {d.number for d in comparison.scenes if d.change != unchanged and d.number}
    assert {"3", "3A", "4", "6"} <= changed <= {"3", "3A", "4", "6"}
    assert "#3A#" in revised.fountain and ".OMITTED #6#" in revised.fountain
    assert not revised.render_error and revised.page_count >= 1


async def test_the_issue_s_revision_with_the_procedural_writer(procedural: Studio) -> None:
    base = await generate(procedural.script)
    message = the_issue_s_revision(base)
    events = await revise(procedural.script, message)
    stages = [event.stage for event in events]
    assert stages[0] == Stage.STAGE_ACCEPTED
    assert stages.count(Stage.STAGE_SCENES) == 3  # Two rewrites and an insert.
    assert stages[-2:] == [Stage.STAGE_STORED, Stage.STAGE_DONE]
    order = [Stage.STAGE_SCENES, Stage.STAGE_COMEDY, Stage.STAGE_VALIDATION, Stage.STAGE_STORED]
    assert [s for s in stages if s in order] == sorted(
        (s for s in stages if s in order), key=order.index
    )
    assert [e.HasField("episode") for e in events] == [False] * (len(events) - 1) + [True]
    fractions = [event.fraction_done for event in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    revised = events[-1].episode
    assert revised.id == revised_draft_id(base.id, message)
    assert {event.episode_id for event in events} == {revised.id}
    check_revision(base, revised)
    inserted = scene(revised, "3A")
    assert inserted.slugline.location == "GREENHOUSE ANNEX"  # The card is honoured.
    assert [r.scene_index for r in revised.revisions][-2:] == [2, 3]

    # The library: a revised draft of the same episode, its parent and what was asked.
    assert (
        await procedural.script.GetEpisode(script_pb2.GetEpisodeRequest(episode_id=revised.id))
        == revised
    )
    [generated, stored] = await procedural.library.history(base.id)
    assert (generated.id, generated.kind) == (base.id, "generated")
    assert (stored.id, stored.kind, stored.parent_id) == (revised.id, "revised", base.id)
    assert stored.notes == revised.notes
    assert stored.notes.splitlines()[1:] == [
        "locked: 1, 2, 5",
        f"rewrite 3: {message.notes[0].notes}",
        f"rewrite 4: {message.notes[1].notes}",
        f"insert 3A after 3: {message.inserts[0].beat}",
        "omit: 6",
    ]

    # The same request again is the stored draft; another request_id is another take.
    again = await revise(procedural.script, message)
    assert [e.stage for e in again] == [Stage.STAGE_ACCEPTED, Stage.STAGE_STORED, Stage.STAGE_DONE]
    assert again[-1].episode == revised
    retried = await revise(procedural.script, the_issue_s_revision(base, request_id="take-2"))
    assert retried[-1].episode.id != revised.id
    assert len(await procedural.library.history(base.id)) == 3


async def test_every_format_marks_exactly_what_changed(procedural: Studio) -> None:
    base = await generate(procedural.script, seed=17)
    revised = (await revise(procedural.script, the_issue_s_revision(base)))[-1].episode
    comparison = compare_drafts(base, revised)
    header = f"Blue Revision ({revised.revision.sets[0].date})"
    documents = {name: await render(procedural.scene, revised, name) for name in FORMATS}
    assert len({info.page_count for info, _ in documents.values()}) == 1
    for name, (info, data) in documents.items():
        check_document(name, data, info.page_count, has_title_page=True)

    fountain = documents["fountain"][1].decode()
    assert fountain == revised.fountain  # What the script service stored, byte for byte.
    assert [s.number for s in parse_fountain(fountain).scenes] == LABELS
    assert from_screenplain(fountain) == from_our_parser(fountain)  # Same scenes and speakers.

    # FDX: the <Paragraph>s carrying a RevisionID are exactly the changed paragraphs.
    fdx = documents["fdx"][1]
    headings = check_fdx_marks(fdx, comparison)
    assert len(fdx_marked(ET.fromstring(fdx))) == comparison.changed_paragraphs
    numbered = [(h.get("Number"), "".join(t.text or "" for t in h)) for h in headings]
    assert numbered[3][0] == "3A" and numbered[6] == ("6", "OMITTED")

    # PDF: an asterisk on exactly the changed lines, the set's header on revised pages.
    pdf = documents["pdf"][1]
    check_pdf_marks(pdf, comparison, header)
    lines = [line for page in pdf_pages(pdf) for line in page.lines]
    numbers = {line.text: [text for _, text in line.numbers] for line in lines if line.numbers}
    assert numbers["OMITTED"] == ["6", "6"]
    assert ["3A", "3A"] in numbers.values()

    html = documents["html"][1]
    check_html_marks(html, comparison, header)
    shown = {
        p.own_text: [s.text for s in p.find_all("span", "scene-number")]
        for p in parse_html(html).root.find_all("p", "heading")
    }
    assert shown["OMITTED"] == ["6", "6"] and ["3A", "3A"] in shown.values()


async def test_a_pink_pass_keeps_blue_marks_where_nothing_changed_again(
    procedural: Studio,
) -> None:
    base = await generate(procedural.script, seed=23)
    blue = (await revise(procedural.script, the_issue_s_revision(base)))[-1].episode
    message = script_pb2.ReviseEpisodeRequest(
        draft_id=blue.id,
        lock=["1", "2", "3", "5"],
        notes=[script_pb2.SceneNotes(scene="7", notes="Longer, and it ends on a joke.")],
        inserts=[script_pb2.SceneInsertion(after="3A", beat=f"{base.cast[0].name} panics.")],
    )
    pink = (await revise(procedural.script, message))[-1].episode
    assert labels(pink) == ["1", "2", "3", "3A", "3B", "4", "5", "6", "7", "8"]
    assert [(s.id, s.name) for s in pink.revision.sets] == [
        (1, "Blue Revision"),
        (2, "Pink Revision"),
    ]
    assert pink.revision.active_set == 2
    for kept in (
        "3",
        "3A",
        "4",
        "6",
    ):  # Blue's changes, untouched by Pink: Blue marks as they were.
        assert raw(scene(pink, kept)) == raw(scene(blue, kept))
        assert {m.revision_id for m in scene(pink, kept).revision_marks} == {1}
    comparison = compare_drafts(blue, pink)
    pink_marks = [m for s in pink.scenes for m in s.revision_marks if m.revision_id == 2]
    assert len(pink_marks) == comparison.changed_paragraphs > 0
    assert {
        s.number_label or str(s.number)
        for s in pink.scenes
        if any(m.revision_id == 2 for m in s.revision_marks)
    } == {"3B", "7"}

    _, fdx = await render(procedural.scene, pink, "fdx")
    root = ET.fromstring(fdx)
    revisions = root.find("Revisions")
    assert revisions is not None and revisions.get("ActiveSet") == "2"
    assert [(r.get("ID"), r.get("Name")) for r in revisions] == [
        ("1", "Blue Revision"),
        ("2", "Pink Revision"),
    ]
    by_set = [
        next(iter({t.get("RevisionID") for t in p.findall("Text")})) for p in fdx_marked(root)
    ]
    assert by_set.count("2") == comparison.changed_paragraphs
    blue_kept = sum(1 for s in pink.scenes for m in s.revision_marks if m.revision_id == 1)
    assert by_set.count("1") == blue_kept > 0
    _, pdf = await render(procedural.scene, pink, "pdf")
    headers = {page.header for page in pdf_pages(pdf)} - {""}
    pink_header = f"Pink Revision ({pink.revision.sets[1].date})"
    assert pink_header in headers <= {pink_header, f"Blue Revision ({blue.revision.sets[0].date})"}


@pytest.mark.parametrize(
    ("change", "code", "message"),
    [
        (lambda m: m.lock.append("9"), "INVALID_ARGUMENT", "lock[3] '9' is not a scene of draft"),
        (
            lambda m: m.notes.add(scene="1", notes="x"),
            "INVALID_ARGUMENT",
            "notes[2].scene '1' is locked (lock[0])",
        ),
        (lambda m: m.omit.append("5"), "INVALID_ARGUMENT", "omit[1] '5' is locked (lock[2])"),
        (
            lambda m: setattr(m.notes[0], "notes", "n" * 2001),
            "INVALID_ARGUMENT",
            "notes[0].notes must be at most 2000 characters (got 2001)",
        ),
        (
            lambda m: m.inserts.extend([m.inserts[0]] * 20),
            "INVALID_ARGUMENT",
            "inserts has 21 entries; the limit is 20",
        ),
        (
            lambda m: setattr(m.revision_set, "color_hex", "#12345"),
            "INVALID_ARGUMENT",
            "revision_set.color_hex '#12345' is not a colour of the form #RRGGBB",
        ),
        (
            lambda m: (m.ClearField("notes"), m.ClearField("inserts"), m.ClearField("omit")),
            "INVALID_ARGUMENT",
            "nothing to change",
        ),
        (
            lambda m: setattr(m, "draft_id", "ep-00000000000000000000"),
            "NOT_FOUND",
            "episode_id ep-00000000000000000000 not found",
        ),
        (lambda m: setattr(m, "draft_id", "draft-1"), "INVALID_ARGUMENT", "draft_id must look"),
    ],
)
async def test_bad_requests_are_refused_naming_the_field(
    procedural: Studio, change: Any, code: str, message: str
) -> None:
    base = await generate(procedural.script, scene_count=6, seed=5)
    request = the_issue_s_revision(base)
    change(request)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await revise(procedural.script, request)
    assert refused.value.code().name == code
    assert message in (refused.value.details() or "")
    assert len(await procedural.library.history(base.id)) == 1  # Nothing stored.


async def test_a_failed_library_write_fails_the_rpc(
    settings: Settings, redis_server: RedisServer, database_url: URL
) -> None:
    library = await Library.open(database_url, migrate="auto")
    backend = database_url.get_backend_name()
    try:
        async with studio(settings, redis_server, library) as running:
            base = await generate(running.script, scene_count=6, seed=41)
            async with library.engine.begin() as connection:
                for statement in refuse_draft_inserts_sql(backend):
                    await connection.exec_driver_sql(statement)
            events: list[script_pb2.GenerateEpisodeEvent] = []
            message = the_issue_s_revision(base)
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                async for event in running.script.ReviseEpisode(message, timeout=120):
                    events.append(event)
            assert failed.value.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE)
            assert "could not be stored" in (failed.value.details() or "")
            assert events and not [e for e in events if e.stage >= Stage.STAGE_STORED]
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await running.script.GetEpisode(
                    script_pb2.GetEpisodeRequest(episode_id=revised_draft_id(base.id, message))
                )
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND
            assert [d.kind for d in await library.history(base.id)] == ["generated"]
    finally:
        await library.close()


async def test_the_issue_s_revision_with_the_anthropic_writer(
    settings: Settings, redis_server: RedisServer, sqlite_library: Library
) -> None:
    with LLMServer() as provider:
        config = llm_settings(provider, **_ports(settings))
        async with studio(config, redis_server, sqlite_library) as running:
            base = await generate(running.script, writer="anthropic", seed=31)
            before = len(provider.received)
            events = await revise(running.script, the_issue_s_revision(base))
    revised = events[-1].episode
    check_revision(base, revised)
    assert revised.writer == "anthropic"
    calls = provider.calls(ANTHROPIC_PATH)[before:]
    tasks = sorted((r.task, r.scene_index) for r in calls if r.task in ("scene", "revise"))
    assert ("revise", 2) in tasks and ("revise", 3) in tasks  # Scenes 3 and 4.
    assert ("scene", 3) in tasks  # 3A, written as the fourth scene of the revised draft.
    assert all(r.status == 200 for r in calls)
    assert revised.usage.calls == base.usage.calls + len(calls)
    assert revised.usage.cost_usd > base.usage.cost_usd
    assert len(revised.attempts) > len(base.attempts)


async def test_a_revision_takes_an_episode_slot_and_honours_deadlines(
    settings: Settings, redis_server: RedisServer, sqlite_library: Library
) -> None:
    with LLMServer(slow_seconds=4.0) as provider:
        config = llm_settings(provider, **_ports(settings), max_concurrent_episodes=1)
        async with studio(config, redis_server, sqlite_library) as running:
            base = await generate(running.script, writer="anthropic", scene_count=4, seed=37)
            message = script_pb2.ReviseEpisodeRequest(
                draft_id=base.id, notes=[script_pb2.SceneNotes(scene="2", notes="Tighter")]
            )
            provider.inject("slow")
            stream = running.script.ReviseEpisode(message, timeout=2.0)
            first = await stream.read()  # Accepted: the revision holds the replica's one slot.
            assert first.stage == Stage.STAGE_ACCEPTED
            with pytest.raises(grpc.aio.AioRpcError) as busy:
                await revise(
                    running.script, script_pb2.ReviseEpisodeRequest(draft_id=base.id, omit=["3"])
                )
            assert busy.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert dict(busy.value.trailing_metadata() or ())["retry-after-ms"].isdigit()
            with pytest.raises(grpc.aio.AioRpcError) as late:
                while await stream.read() is not grpc.aio.EOF:
                    pass
            assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await running.script.GetEpisode(
                    script_pb2.GetEpisodeRequest(episode_id=revised_draft_id(base.id, message))
                )
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND
            # The slot is free again once the deadline ended the revision.
            revised = await _eventually_revised(running.script, message)
            assert revised.parent_episode_id == base.id


async def _eventually_revised(
    stub: script_pb2_grpc.ScriptServiceStub, message: script_pb2.ReviseEpisodeRequest
) -> episode_pb2.Episode:
    """The revision, asked again while the server is still releasing the cancelled one's slot
    (RESOURCE_EXHAUSTED tells when to retry), for at most 30 s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        try:
            return (await revise(stub, message))[-1].episode
        except grpc.aio.AioRpcError as exc:
            hint = dict(exc.trailing_metadata() or ()).get("retry-after-ms")
            if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or loop.time() > deadline:
                raise
            await asyncio.sleep(int(str(hint)) / 1000)


def _ports(settings: Settings) -> dict[str, Any]:
    return {
        "script_port": 0, "scene_port": 0, "cache_port": 0, "monitor_port": 0,
        "monitor_http_port": 0, "grace_seconds": settings.grace_seconds,
    }  # fmt: skip
