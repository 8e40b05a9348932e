"""Episodes for tests, built two ways: by hand from elements (exact content, no writer), or by
the procedural writer (a realistic script, deterministic for a seed).

By hand: `episode(scene("bay", action(...), line("Luna", ...)), ...)`, or
`episode(*numbered_scenes(n))` for filler scenes with an index, a number and a few lines.
Written: `generated_episode` calls the procedural writer's functions directly (synchronous, for
parametrised unit tests);
`draft_episode` drives it through the writer protocol as the pipeline does (request validation,
runtime targets, scenes written last to first), with no comedy pass and no validation.
"""

from __future__ import annotations

import dataclasses

from doppelganger.v1 import episode_pb2, script_pb2
from services.script import catalog, procedural
from services.script.cards import scene_view
from services.script.procedural import ProceduralWriter
from services.script.requests import RuntimeDefaults, validate_generate
from services.script.validation import allocate_targets
from services.script.writing import StoryContext

_WRITER = ProceduralWriter()
_DEFAULTS = RuntimeDefaults(episode_seconds=22 * 60.0, scene_seconds=120.0)


def action(text: str) -> episode_pb2.ScriptElement:
    return episode_pb2.ScriptElement(action=episode_pb2.ActionLine(text=text))


def line(
    character: str, text: str, parenthetical: str = "", extension: str = ""
) -> episode_pb2.ScriptElement:
    return episode_pb2.ScriptElement(
        dialogue=episode_pb2.DialogueLine(
            character=character, text=text, parenthetical=parenthetical, extension=extension
        )
    )


def transition(text: str) -> episode_pb2.ScriptElement:
    return episode_pb2.ScriptElement(transition=episode_pb2.Transition(text=text))


def scene(
    location: str,
    *elements: episode_pb2.ScriptElement,
    placement: episode_pb2.Placement.ValueType = episode_pb2.PLACEMENT_INT,
    time_of_day: str = "DAY",
    act: str = "",
    number: int = 0,
) -> episode_pb2.Scene:
    return episode_pb2.Scene(
        act=act,
        number=number,
        slugline=episode_pb2.Slugline(
            placement=placement, location=location, time_of_day=time_of_day
        ),
        elements=list(elements),
    )


def numbered_scene(index: int, lines: int = 3, act: str = "Act One") -> episode_pb2.Scene:
    """Filler scene `index` (number index + 1): one action line, then `lines` lines of
    dialogue alternating between two speakers."""
    built = scene(
        f"set {index}",
        action(f"Beat {index}."),
        *(
            line(("Ricky", "Zoë")[i % 2], f"Line {i} of scene {index}, with a few more words.")
            for i in range(lines)
        ),
        act=act,
        number=index + 1,
    )
    built.index = index
    return built


def numbered_scenes(count: int, lines: int = 3) -> list[episode_pb2.Scene]:
    """Filler scenes 0 to count - 1 (`numbered_scene`), for `episode(*numbered_scenes(n))`."""
    return [numbered_scene(index, lines) for index in range(count)]


def episode(*scenes: episode_pb2.Scene) -> episode_pb2.Episode:
    """An episode of I Love Lucy titled "The Moon Rent" holding `scenes`, and nothing else."""
    return episode_pb2.Episode(
        writer="procedural",
        show=episode_pb2.Show(title="I Love Lucy"),
        outline=episode_pb2.Outline(title="The Moon Rent"),
        scenes=list(scenes),
    )


def generated_episode(
    show_id: str, setting_text: str = "mars-colony-2157", scene_count: int = 8, seed: int = 7
) -> episode_pb2.Episode:
    """An episode as the procedural writer builds it (outline and scenes, no comedy pass)."""
    show = catalog.find_show(show_id)
    assert show is not None
    setting = catalog.resolve_setting(setting_text)
    cast, relationships = procedural.transform_cast(show, setting, seed)
    outline = procedural.write_outline(show, setting, cast, relationships, scene_count, seed)
    scenes = [
        procedural.write_scene(show, setting, cast, outline, index, seed)
        for index in range(scene_count)
    ]
    return episode_pb2.Episode(
        show=show,
        setting=setting,
        cast=cast,
        relationships=relationships,
        outline=outline,
        scenes=scenes,
        seed=seed,
        writer=procedural.WRITER_NAME,
    )


async def draft_episode(
    show: str, setting: str, seed: int, scene_count: int | None = None, premise: str = ""
) -> tuple[StoryContext, episode_pb2.Episode]:
    """The story context and the first draft of an episode through the writer protocol (no
    comedy pass, no validation). Scenes are written last to first, each from its own view of
    the outline: a scene must not depend on the others."""
    request = script_pb2.GenerateEpisodeRequest(
        show=show, setting=setting, seed=seed, scene_count=scene_count, premise=premise
    )
    order = validate_generate(request, _DEFAULTS, "procedural", {"procedural"})
    cast, relationships = list(order.cast), list(order.relationships)
    context = StoryContext(
        show=order.show, setting=order.setting, cast=cast, relationships=relationships,
        seed=order.seed, scene_count=order.scene_count, premise=order.world_premise,
    )  # fmt: skip
    outline = await _WRITER.write_outline(context)
    allocate_targets(outline, order.target_runtime_seconds)
    context = dataclasses.replace(context, kernel=outline.kernel, premise=outline.premise)
    scenes = [
        await _WRITER.write_scene(context, scene_view(outline, index), index, [])
        for index in reversed(range(order.scene_count))
    ]
    drafted = episode_pb2.Episode(
        id="ep-" + "0" * 20,
        show=order.show,
        setting=order.setting,
        cast=cast,
        relationships=relationships,
        outline=outline,
        scenes=sorted(scenes, key=lambda scene: scene.index),
        writer=_WRITER.name,
        seed=seed,
        premise=premise,
        runtime_seconds=round(sum(scene.duration_seconds for scene in scenes), 1),
    )
    return context, drafted
