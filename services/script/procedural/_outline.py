"""The outline: acts as the show's structure says, one beat per scene, A and B plots, a card for
every scene (_cards.py), built around the writer's premise when there is one.

A scene's dramatic stage (inciting, scheme, ..., climax, tag) follows from the sequence of plot
lines alone, so a scene can recover it from any outline, the procedural writer's or an LLM's. The
premise's named elements (premise.py) go into the logline (the premise itself), the A plot and the
A plot's first beat; the kernel already weaves its people, things and events into every template.
"""

from __future__ import annotations

from collections.abc import Sequence

from doppelganger.v1 import episode_pb2
from services.script.premise import join_elements, premise_elements
from services.script.procedural._cards import write_cards
from services.script.procedural._grammar import (
    A_STAGES,
    B_STAGES,
    BEAT_TEMPLATES,
    LOGLINE,
    PREMISE_A_PLOT,
    PREMISE_BEAT,
    TITLES,
)
from services.script.procedural._kernel import EpisodeKernel, build_kernel
from services.script.procedural._text import digest, mid_sentence, seeded_rng, sentence
from services.script.validation import DEFAULT_SCENE_SECONDS, allocate_targets

MAX_SCENES = 20
MAX_ACTS = 5
ACT_NAMES = ("Act One", "Act Two", "Act Three", "Act Four", "Act Five")
COLD_OPEN = "Cold Open"
TAG = "Tag"


def allocate(structure: episode_pb2.EpisodeStructure, scene_count: int) -> list[tuple[str, int]]:
    """Scenes per act: the acts get at least three, then the tag, then the cold open."""
    act_scenes = min(scene_count, 3)
    rest = scene_count - act_scenes
    tag = 1 if structure.tag and rest > 0 else 0
    rest -= tag
    cold = 1 if structure.cold_open and rest > 0 else 0
    act_scenes += rest - cold
    acts = min(max(1, structure.acts or 2), MAX_ACTS, act_scenes)
    counts = [act_scenes // acts + (1 if i < act_scenes % acts else 0) for i in range(acts)]
    segments = [(COLD_OPEN, 1)] if cold else []
    segments += [(ACT_NAMES[i], count) for i, count in enumerate(counts)]
    return segments + ([(TAG, 1)] if tag else [])


def _plots(segments: Sequence[tuple[str, int]]) -> list[int]:
    """Plot line per scene: runners in cold open and tag; A and B alternate; A has the climax."""
    act_total = sum(count for name, count in segments if name not in (COLD_OPEN, TAG))
    a_line, b_line = episode_pb2.PLOT_LINE_A, episode_pb2.PLOT_LINE_B
    act_plots = [a_line if j % 2 == 0 else b_line for j in range(act_total)]
    if act_total >= 3:
        act_plots[-1] = a_line
    plots: list[int] = []
    for name, count in segments:
        if name in (COLD_OPEN, TAG):
            plots.append(episode_pb2.PLOT_LINE_RUNNER)
        else:
            plots.extend(act_plots[:count])
            act_plots = act_plots[count:]
    return plots


def _stages(plots: Sequence[int]) -> list[str]:
    """Dramatic stage of each scene, from the sequence of plot lines alone."""
    story = [i for i, plot in enumerate(plots) if plot != episode_pb2.PLOT_LINE_RUNNER]
    climax = story[-1] if len(story) >= 2 else -1
    a_beats = [i for i in story if plots[i] == episode_pb2.PLOT_LINE_A and i != climax]
    b_beats = [i for i in story if plots[i] == episode_pb2.PLOT_LINE_B and i != climax]
    stages = []
    for index, plot in enumerate(plots):
        if index == climax:
            stages.append("climax")
        elif plot == episode_pb2.PLOT_LINE_RUNNER:
            stages.append("cold" if not story or index < story[0] else "tag")
        elif plot == episode_pb2.PLOT_LINE_B:
            position = b_beats.index(index)
            stages.append(B_STAGES[position * len(B_STAGES) // len(b_beats)])
        else:
            position = a_beats.index(index)
            stages.append(A_STAGES[position * len(A_STAGES) // len(a_beats)])
    return stages


def scene_stages(outline: episode_pb2.Outline, total: int) -> tuple[str, ...]:
    """The stage of each of `total` scenes, from the outline's beats ("scheme" where none)."""
    plots = {b.scene_index: b.plot for act in outline.acts for b in act.beats}
    known = sorted(i for i in plots if 0 <= i < total)
    stages = dict(zip(known, _stages([plots[i] for i in known]), strict=True))
    return tuple(stages.get(index, "scheme") for index in range(total))


def plot_key(stage: str) -> str:
    """The line of the story a stage belongs to: "A", "B", "runner" or "climax"."""
    if stage in ("cold", "tag"):
        return "runner"
    if stage == "climax":
        return "climax"
    return "B" if stage in B_STAGES else "A"


def push_key(stage: str) -> str:
    """Which plot's pushes a scene draws from ("B" or "A")."""
    return "B" if plot_key(stage) == "B" else "A"


def find_beat(
    outline: episode_pb2.Outline, scene_index: int
) -> tuple[episode_pb2.Beat | None, str]:
    """The scene's beat (the first one naming it) and its act's name."""
    for act in outline.acts:
        for beat in act.beats:
            if beat.scene_index == scene_index:
                return beat, act.name
    return None, ACT_NAMES[0]


def write_outline(
    show: episode_pb2.Show,
    setting: episode_pb2.Setting,
    cast: Sequence[episode_pb2.Character],
    relationships: Sequence[episode_pb2.Relationship],
    scene_count: int,
    seed: int,
    target_runtime_seconds: float = 0.0,
    *,
    kernel: EpisodeKernel | None = None,
    premise: str = "",
    kernel_id: str = "",
) -> episode_pb2.Outline:
    """Title, logline, A and B plots and one beat (with its card) per scene, acts as the show's
    structure says, and the runtime target shared among the beats (default: DEFAULT_SCENE_SECONDS
    a scene). `kernel` is the episode's when the caller keeps it (else it is built from the
    inputs, `premise` and `kernel_id` among them)."""
    if not 1 <= scene_count <= MAX_SCENES:
        raise ValueError(f"scene_count must be between 1 and {MAX_SCENES} (got {scene_count})")
    if kernel is None:
        kernel = build_kernel(show, setting, cast, seed, premise=premise, kernel_id=kernel_id)
    rng = seeded_rng("outline", show.id, setting.id, setting.description, seed, kernel.kernel_id)
    segments = allocate(show.structure, scene_count)
    plots = _plots(segments)
    stages = _stages(plots)
    slots = dict(kernel.slots)
    seen: dict[str, int] = {}
    descriptions = []
    for stage in stages:
        options = BEAT_TEMPLATES[stage]
        offset = digest("beat", seed, stage) % len(options)
        descriptions.append(options[(offset + seen.get(stage, 0)) % len(options)].format_map(slots))
        seen[stage] = seen.get(stage, 0) + 1
    elements = premise_elements(kernel.premise, cast, f"{setting.name} {setting.description}")
    _weave_premise(descriptions, stages, join_elements(elements) if elements else "")
    logline = _logline(show, setting, cast, kernel)
    a_plot = (
        f"{kernel.lead} sets out to {kernel.want}; {kernel.partner} is against it from the start."
    )
    if elements:
        logline = f"{sentence(kernel.premise.rstrip('.!?'))}. {logline}"
        a_plot += " " + PREMISE_A_PLOT.format(elements=join_elements(elements))
    outline = episode_pb2.Outline(
        title=rng.choice(TITLES).format_map(slots),
        logline=logline,
        a_plot=a_plot,
        b_plot=sentence(kernel.b_issue) + ".",
        scene_count=scene_count,
        premise=kernel.premise,
        kernel=kernel.kernel_id,
    )
    index = 0
    for name, count in segments:
        act = outline.acts.add(name=name)
        for _ in range(count):
            act.beats.add(scene_index=index, plot=plots[index], description=descriptions[index])
            index += 1
    _note_relationship(outline, relationships, kernel)
    write_cards(outline, kernel, setting, [c.name for c in cast], stages, seed)
    allocate_targets(outline, target_runtime_seconds or scene_count * DEFAULT_SCENE_SECONDS)
    return outline


def _weave_premise(descriptions: list[str], stages: Sequence[str], elements: str) -> None:
    """The premise's elements named in the A plot's first beat (the first beat when none)."""
    if not elements:
        return
    first = next((i for i, stage in enumerate(stages) if stage in A_STAGES), 0)
    descriptions[first] += " " + PREMISE_BEAT.format(elements=elements)


def _logline(
    show: episode_pb2.Show,
    setting: episode_pb2.Setting,
    cast: Sequence[episode_pb2.Character],
    kernel: EpisodeKernel,
) -> str:
    lead = next((c for c in cast if c.name == kernel.lead), cast[0])
    role = lead.role or lead.archetype or "a dreamer"
    article = "an" if role[:1].lower() in "aeiou" else "a"
    return LOGLINE.format(
        show=show.title,
        setting_lower=mid_sentence(setting.name or "somewhere new"),
        lead=kernel.lead,
        role=f"{article} {role}",
        want=kernel.want,
        b_issue=kernel.b_issue,
    )


def _note_relationship(
    outline: episode_pb2.Outline,
    relationships: Sequence[episode_pb2.Relationship],
    kernel: EpisodeKernel,
) -> None:
    """Names the B-plot pair's relationship in the B plot when the catalog knows it."""
    pair = {kernel.b1, kernel.b2}
    for relationship in relationships:
        if {relationship.from_character, relationship.to_character} == pair:
            outline.b_plot += (
                f" ({relationship.from_character} is {relationship.to_character}'s "
                f"{relationship.kind}.)"
            )
            return
