"""The procedural writer: offline, deterministic by seed, built on the bundled catalog.

The same inputs give byte-identical protos in any process. A scene depends only on its episode's
plan (`EpisodePlan`: the kernel of story choices, the stage and runtime target of every scene, the
joke plan and the line plan that keeps every dialogue line of the episode unique; built from the
outline's structure, never a beat's text) and on its own beat and card and the cards that feed it
(its view of the outline, services/script/cards.py), so scenes can be written concurrently, in
any order, and cached one by one, and editing one beat changes one scene. The plan is an explicit
value: the free functions build one per call; `EpisodePlans` (one per `ProceduralWriter`) keeps
the plans of recent episodes.

Modules: _names (every form of a name, renamed) and _cast (cast transform), _kernel (the story
choices, the premise's elements among them), _outline and _cards (the outline and its scene
cards), _plan, _scenes (scene grammar), _staging (a card on the page), _fit and _assembly (a scene
to its runtime target), _jokes (scoring and punch-up), _revision (notes), _runtime (scene counts
and targets), _writer (the Writer protocol).
"""

from services.script.procedural._assembly import (
    revise_planned_scene,
    revise_scene,
    scene_total,
    write_planned_scene,
    write_scene,
)
from services.script.procedural._cast import transform_cast
from services.script.procedural._grammar import GENERIC_PROPS, JOKES
from services.script.procedural._jokes import JOKE_WEIGHTS, joke_context, punch_up, score_joke
from services.script.procedural._kernel import (
    KERNEL_IDS,
    EpisodeKernel,
    choose_kernel,
    kernel_order,
)
from services.script.procedural._names import WorldNames, renamer, world_names
from services.script.procedural._outline import MAX_SCENES, write_outline
from services.script.procedural._plan import EpisodePlan, plan_episode
from services.script.procedural._revision import (
    FIRST_DRAFT,
    LONGER_FACTOR,
    SHORTER_FACTOR,
    SceneDirectives,
    read_notes,
)
from services.script.procedural._runtime import MAX_JOKES, auto_scene_count, longest_scene_seconds
from services.script.procedural._writer import (
    PROMPT_VERSION,
    WRITER_NAME,
    EpisodePlans,
    ProceduralWriter,
)

__all__ = [
    "FIRST_DRAFT",
    "GENERIC_PROPS",
    "JOKES",
    "JOKE_WEIGHTS",
    "KERNEL_IDS",
    "LONGER_FACTOR",
    "MAX_JOKES",
    "MAX_SCENES",
    "PROMPT_VERSION",
    "SHORTER_FACTOR",
    "WRITER_NAME",
    "EpisodeKernel",
    "EpisodePlan",
    "EpisodePlans",
    "ProceduralWriter",
    "SceneDirectives",
    "WorldNames",
    "auto_scene_count",
    "choose_kernel",
    "joke_context",
    "kernel_order",
    "longest_scene_seconds",
    "plan_episode",
    "punch_up",
    "read_notes",
    "renamer",
    "revise_planned_scene",
    "revise_scene",
    "scene_total",
    "score_joke",
    "transform_cast",
    "world_names",
    "write_outline",
    "write_planned_scene",
    "write_scene",
]
