"""Craft checks: what a showrunner flags first, beyond the validator's four scores' basics.

Each check reads the episode (`EpisodeView`: scenes with their cards, the cast) and returns
findings: a ValidationIssue with its scene, element and stable `check` id, and the points of its
sub-score it costs. The validator (validation.py) runs them all and lowers each sub-score by its
findings' penalties. Modules: names (self_naming, original_name), address (form_of_address),
presence (speaks_before_entering, speaks_after_leaving, silent_presence), places
(heading_action, time_of_day), threads (orphan_payoff, missing_payoff).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from doppelganger.v1 import episode_pb2
from services.script.checks.address import FORM_OF_ADDRESS, check_forms_of_address
from services.script.checks.base import CheckSpec, EpisodeView, Finding
from services.script.checks.names import (
    ORIGINAL_NAME,
    SELF_NAMING,
    check_original_names,
    check_self_naming,
)
from services.script.checks.places import (
    HEADING_ACTION,
    TIME_OF_DAY,
    check_heading_action,
    check_time_of_day,
)
from services.script.checks.presence import (
    SILENT_PRESENCE,
    SPEAKS_AFTER_LEAVING,
    SPEAKS_BEFORE_ENTERING,
    check_presence,
)
from services.script.checks.threads import MISSING_PAYOFF, ORPHAN_PAYOFF, check_threads

__all__ = ["CHECKS", "SPECS", "EpisodeView", "Finding", "run_checks"]

CHECKS: Sequence[Callable[[EpisodeView], list[Finding]]] = (
    check_self_naming,
    check_original_names,
    check_forms_of_address,
    check_presence,
    check_heading_action,
    check_time_of_day,
    check_threads,
)
# Every craft check's id, sub-score, severity and penalty (the README's validator table).
SPECS: Sequence[CheckSpec] = (
    SELF_NAMING,
    ORIGINAL_NAME,
    FORM_OF_ADDRESS,
    SPEAKS_BEFORE_ENTERING,
    SPEAKS_AFTER_LEAVING,
    SILENT_PRESENCE,
    HEADING_ACTION,
    TIME_OF_DAY,
    ORPHAN_PAYOFF,
    MISSING_PAYOFF,
)


def run_checks(episode: episode_pb2.Episode) -> list[Finding]:
    """Every craft check's findings, in check order then scene order."""
    view = EpisodeView(episode)
    return [finding for check in CHECKS for finding in check(view)]
