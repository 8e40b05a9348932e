"""The project's test kit: what tests and benchmarks share, behind one import.

    from testkit import eventually, free_port, in_process_stack, ...

The modules behind it are private (`testkit._stack`, ...); import from `testkit` only, so they can
move. `testkit.postgres` and `testkit.llm_server` (the loopback Anthropic and OpenAI providers,
with `llm_wire`, `llm_batches`, `provider_schemas` behind it) are public as well (benchmarks use
them). Fixtures built on the kit live in
tests/conftest.py; docs/testing.md says which to use.

Names are loaded on first use (PEP 562): `from testkit import free_port` in a benchmark or in the
`doppel` CLI must not import every service the in-process stack starts.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from testkit._episodes import (
        action,
        draft_episode,
        episode,
        generated_episode,
        line,
        numbered_scene,
        numbered_scenes,
        scene,
        transition,
    )
    from testkit._eventually import eventually, eventually_sync
    from testkit._ports import free_port
    from testkit._stack import InProcessStack, in_process_stack, loopback_settings

_HOMES = {
    "action": "_episodes",
    "draft_episode": "_episodes",
    "episode": "_episodes",
    "generated_episode": "_episodes",
    "line": "_episodes",
    "numbered_scene": "_episodes",
    "numbered_scenes": "_episodes",
    "scene": "_episodes",
    "transition": "_episodes",
    "eventually": "_eventually",
    "eventually_sync": "_eventually",
    "free_port": "_ports",
    "InProcessStack": "_stack",
    "in_process_stack": "_stack",
    "loopback_settings": "_stack",
}

__all__ = [
    "InProcessStack",
    "action",
    "draft_episode",
    "episode",
    "eventually",
    "eventually_sync",
    "free_port",
    "generated_episode",
    "in_process_stack",
    "line",
    "loopback_settings",
    "numbered_scene",
    "numbered_scenes",
    "scene",
    "transition",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'testkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"testkit.{home}"), name)
    globals()[name] = value  # Found once, then an ordinary attribute.
    return value
