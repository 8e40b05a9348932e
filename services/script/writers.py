"""The writers this replica has, by the name requests give.

The procedural writer (offline, deterministic by seed) is always there; LLM writers and the
fallback chain are added by configuration. What a writer is (the protocol, its context and its
errors) lives in writing.py, which every writer imports; only this registry imports the writers.
"""

from __future__ import annotations

from collections.abc import Mapping

from services.script.coordination import CoordinationClient
from services.script.llm import build_llm_writers
from services.script.procedural import ProceduralWriter
from services.script.writing import Writer
from shared.config import Settings
from shared.telemetry import Telemetry


def build_writers(
    settings: Settings, telemetry: Telemetry, coordination: CoordinationClient | None = None
) -> Mapping[str, Writer]:
    """Every writer this replica can use, by the name requests give: procedural always; the
    LLM writers and the `chain` when configured (services/script/llm/factory.py), sharing rate
    limits and budgets with the other replicas through `coordination` when given."""
    writers: dict[str, Writer] = {ProceduralWriter.name: ProceduralWriter()}
    writers.update(build_llm_writers(settings, telemetry, writers, coordination))
    return writers
