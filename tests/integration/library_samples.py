"""Episodes for the library tests, built by hand (no writer, no catalog): ids, titles, shows,
scenes with jokes whose score maps exercise deterministic serialization."""

from __future__ import annotations

import hashlib

from doppelganger.v1 import episode_pb2

SHOWS = {
    "i-love-lucy": "I Love Lucy",
    "the-honeymooners": "The Honeymooners",
    "seinfeld": "Seinfeld",
}


def draft_id(*parts: object) -> str:
    """An id shaped like the service's: "ep-" and 20 hex digits."""
    return "ep-" + hashlib.sha256(repr(parts).encode()).hexdigest()[:20]


def sample_episode(
    episode_id: str,
    *,
    title: str = "Lucy Does the Airlock",
    logline: str = "Lucy sneaks into the colony talent show.",
    show: str = "i-love-lucy",
    scenes: int = 3,
    parent_id: str = "",
    input_tokens: int = 0,
    cost_usd: float = 0.0,
    text: str = "",
) -> episode_pb2.Episode:
    episode = episode_pb2.Episode(
        id=episode_id,
        show=episode_pb2.Show(id=show, title=SHOWS.get(show, show)),
        setting=episode_pb2.Setting(id="mars", name="Mars colony, 2157"),
        outline=episode_pb2.Outline(title=title, logline=logline, scene_count=scenes),
        writer="anthropic" if input_tokens else "procedural",
        model="claude-sonnet-4-5" if input_tokens else "",
        seed=7,
        parent_episode_id=parent_id,
        usage=episode_pb2.LlmUsage(
            input_tokens=input_tokens,
            output_tokens=input_tokens // 4,
            cache_read_input_tokens=input_tokens // 2,
            calls=3 if input_tokens else 0,
            cost_usd=cost_usd,
        ),
    )
    for index in range(scenes):
        scene = episode.scenes.add(index=index, number=index + 1, summary=f"scene {index} {text}")
        scene.elements.add().dialogue.CopyFrom(
            episode_pb2.DialogueLine(character="LUNA", text=f"Line {index}. {text}")
        )
        joke = scene.jokes.add(id=f"s{index}-j1", scene_index=index, score=0.5 + index / 100)
        for name, value in (("surprise", 0.7), ("timing", 0.4), ("callback", 0.2)):
            joke.dimensions[name] = value
    return episode


def refuse_draft_inserts_sql(backend: str) -> list[str]:
    """A trigger that makes the database refuse new drafts while reads go on working."""
    if backend == "sqlite":
        return [
            "CREATE TRIGGER refuse_drafts BEFORE INSERT ON drafts "
            "BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END"
        ]
    return [
        "CREATE FUNCTION refuse_drafts() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'disk full (test)'; END $$",
        "CREATE TRIGGER refuse_drafts BEFORE INSERT ON drafts "
        "FOR EACH ROW EXECUTE FUNCTION refuse_drafts()",
    ]
