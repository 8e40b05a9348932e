"""The project's test kit: what tests and benchmarks share, behind one import.

    from testkit import eventually, free_port, in_process_stack, ...

The modules behind it are private (`testkit._stack`, ...); import from `testkit` only, so they can
move. `testkit.postgres` is public as well (benchmarks use it). Fixtures built on the kit live in
tests/conftest.py; docs/testing.md says which to use.
"""

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
