"""The craft benchmark: does the validator catch what a showrunner catches, and does the
refinement loop fix it?

Good episodes of every bundled show are written by a real stack (GenerateEpisode, the procedural
writer, default 8-12 scenes); each gets scene cards read back from its scenes when its outline
has none (bench/craft_faults.py). Every fault kind of bench/craft_faults.py is injected into one
scene of each episode that has a place for it, and the faulty script is sent to the stack's
ValidateEpisode as episode JSON.

- recall: injected faults flagged (their check, in their scene, at warning or worse) over faults
  injected; target 0.95.
- false positives: clean episodes with any issue of a fault-set check at warning or worse, over
  clean episodes; target at most 0.02.
- fixed: flagged faults the finishing passes remove: the continuity pass, then the refinement
  loop (services/script/continuity.py, refinement.py), as the pipeline runs them after the
  parallel draft with the procedural writer, in this process; validated again through the stack;
  target 0.90.
The notes list the kinds missed or left unfixed.
"""

from __future__ import annotations

from collections import Counter

import grpc
from google.protobuf import json_format
from opentelemetry import trace

from bench.craft_faults import INJECTORS, Fault, copy, ensure_cards, flagged, inject
from bench.measure import Figure
from bench.stacks import running, stack_env
from bench.suites.common import Scale
from doppelganger.v1 import episode_pb2, script_pb2, script_pb2_grpc
from services.script import catalog
from services.script.continuity import continuity_pass
from services.script.procedural import ProceduralWriter
from services.script.refinement import RefinementPolicy, refine
from services.script.writing import StoryContext

SETTINGS = ("a Mars colony in 2157", "an enchanted forest", "a haunted lighthouse")
WRITER = ProceduralWriter()
Severity = episode_pb2.Severity


def _fault_checks() -> frozenset[str]:
    """The check ids the fault set exercises."""
    probe = {
        "stranger": "stranger",
        "gutted": "no_comedy",
        "never_entered": "speaks_before_entering",
        "after_exit": "speaks_after_leaving",
        "time_reversal": "time_of_day",
        "continuous_elsewhere": "time_of_day",
    }
    return frozenset(probe.get(kind, kind) for kind in INJECTORS)


async def _generate(
    stub: script_pb2_grpc.ScriptServiceStub, show: str, setting: str, seed: int
) -> episode_pb2.Episode:
    request = script_pb2.GenerateEpisodeRequest(show=show, setting=setting, seed=seed)
    events = [event async for event in stub.GenerateEpisode(request)]
    return events[-1].episode


async def _validate(
    stub: script_pb2_grpc.ScriptServiceStub, episode: episode_pb2.Episode
) -> episode_pb2.ValidationReport:
    content = json_format.MessageToJson(episode).encode()
    request = script_pb2.ValidateEpisodeRequest(content=content, format="json")
    response = await stub.ValidateEpisode(request)
    return response.report


def _context(episode: episode_pb2.Episode) -> StoryContext:
    return StoryContext(
        show=episode.show, setting=episode.setting, cast=list(episode.cast),
        relationships=list(episode.relationships), seed=episode.seed,
        scene_count=len(episode.scenes),
    )  # fmt: skip


async def _fixed(
    stub: script_pb2_grpc.ScriptServiceStub, faulty: episode_pb2.Episode, fault: Fault
) -> bool:
    """Whether the continuity pass and the refinement loop remove the fault (validated again
    through the stack)."""
    refined = copy(faulty)
    del refined.refinement_rounds[:]
    del refined.continuity_notes[:]
    policy = RefinementPolicy()
    await continuity_pass(WRITER, _context(refined), refined, policy.parallel, trace.NoOpTracer())
    async for _ in refine(WRITER, _context(refined), refined, policy, trace.NoOpTracer()):
        pass
    return not flagged(await _validate(stub, refined), fault)


def _misses(counts: Counter[str], totals: Counter[str]) -> str:
    missed = [
        f"{kind} {counts[kind]}/{totals[kind]}" for kind in totals if counts[kind] < totals[kind]
    ]
    return ", ".join(missed) or "none"


async def run(scale: Scale) -> list[Figure]:
    checks = _fault_checks()
    seeds = range(1 if scale.episodes <= 6 else 3)
    injected: Counter[str] = Counter()
    caught: Counter[str] = Counter()
    fixed: Counter[str] = Counter()
    clean_episodes = noisy_episodes = 0
    with running(stack_env(telemetry=False)) as stack:
        async with grpc.aio.insecure_channel(stack.settings.script_address) as channel:
            stub = script_pb2_grpc.ScriptServiceStub(channel)
            for show in catalog.load_shows():
                for seed in seeds:
                    setting = SETTINGS[seed % len(SETTINGS)]
                    episode = await _generate(stub, show.id, setting, 500 + seed)
                    ensure_cards(episode)
                    report = await _validate(stub, episode)
                    clean_episodes += 1
                    noisy_episodes += any(
                        issue.check in checks and issue.severity >= Severity.SEVERITY_WARNING
                        for issue in report.issues
                    )
                    for kind in INJECTORS:
                        for index in range(1, len(episode.scenes)):
                            found = inject(episode, kind, (index + seed) % len(episode.scenes))
                            if found is None:
                                continue
                            faulty, fault = found
                            injected[kind] += 1
                            if flagged(await _validate(stub, faulty), fault):
                                caught[kind] += 1
                                fixed[kind] += await _fixed(stub, faulty, fault)
                            break
    total, hits = sum(injected.values()), sum(caught.values())
    recall = Figure(
        "craft.recall", "share", [hits / max(1, total)], target=0.95,
        note=f"{hits} of {total} faults of {len(injected)} kinds flagged; missed: "
        f"{_misses(caught, injected)}",
    )  # fmt: skip
    false_positives = Figure(
        "craft.false_positive_rate", "share", [noisy_episodes / max(1, clean_episodes)],
        higher_is_better=False, target=0.02,
        note=f"{noisy_episodes} of {clean_episodes} clean episodes with a fault-set issue",
    )  # fmt: skip
    repaired = sum(fixed.values())
    fixed_share = Figure(
        "craft.fixed_share", "share", [repaired / max(1, hits)], target=0.90,
        note=f"{repaired} of {hits} flagged faults fixed by the continuity pass and "
        f"refinement; left: "
        f"{_misses(fixed, caught)}",
    )  # fmt: skip
    return [recall, false_positives, fixed_share]
