"""LLM writers for the script service: Anthropic and OpenAI-compatible providers behind
client-side rate limits, retries, per-episode budgets and GenAI telemetry, plus the fallback
chain. `build_llm_writers` is what `services.script.writers.build_writers` calls. The writer
errors live in services/script/writing.py (every writer raises them) and are re-exported here."""

from services.script.llm.factory import CHAIN, build_llm_writers
from services.script.llm.provenance import Fallback, PartRecord, Provenance, collect_provenance
from services.script.writing import (
    BudgetExceeded,
    InvalidOutputError,
    ProviderError,
    WriterError,
)

__all__ = [
    "CHAIN",
    "BudgetExceeded",
    "Fallback",
    "InvalidOutputError",
    "PartRecord",
    "Provenance",
    "ProviderError",
    "WriterError",
    "build_llm_writers",
    "collect_provenance",
]
