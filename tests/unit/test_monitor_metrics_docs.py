"""docs/monitor.md's `/metrics` table names exactly the families the monitor emits (the module
docstring no longer lists them, so this table is the one list, and it cannot drift)."""

from __future__ import annotations

import re
from pathlib import Path

from services.monitor.prometheus import render_metrics
from services.monitor.state import MonitorState
from shared.config import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "monitor.md"


def _documented() -> set[str]:
    text = DOCS.read_text(encoding="utf-8")
    section = text[text.index("## Prometheus: `/metrics`") :]
    table = "\n".join(line for line in section.splitlines() if line.startswith("| `doppel_"))
    return {name for name in re.findall(r"`(doppel_[a-z_]+)", table)}


def test_the_docs_table_lists_every_family_the_monitor_emits() -> None:
    emitted = set(re.findall(r"^# TYPE (\S+) ", render_metrics(MonitorState(Settings())), re.M))
    assert "doppel_monitor_operations" in emitted and "doppel_monitor_llm_models" in emitted
    assert emitted == _documented()
