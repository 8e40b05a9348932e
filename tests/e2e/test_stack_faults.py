"""Faults against the studio running as real processes (doppel.stack.Stack, what `doppel up` runs).

Each fault of shared/faults.py is switched on at runtime with FaultService on the running process
that owns it, 20 episodes are written at once through ScriptService over gRPC, and then: every
episode completed or failed with a status that says why (never INTERNAL/UNKNOWN), the fault was
counted where it acted, it is switched off again (and no longer acts), and no process exited.
The LLM writer is the anthropic SDK against the loopback provider (testkit/llm_server.py).

Real process kills get a stack of their own (procedural writer), so the shared one stays healthy
and its monitor's alerts stay its own: SIGKILL of the cache, SIGTERM of the monitor, SIGKILL of
the scene service, in that order (each kill test leaves its service dead; each is also correct
run alone).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest

from testkit import eventually
from testkit.llm_server import ANTHROPIC_PATH, LLMServer
from tests.e2e.fault_support import (
    EPISODES,
    POLL_SECONDS,
    POLLS,
    Outcome,
    Studio,
    assert_all_rendered,
    assert_clear,
    get_faults,
    health,
    injected,
    llm_env,
    reset_faults,
    run_episodes,
    running_studio,
    set_switches,
    switch_values,
    trace_services,
    wait_for_error_alert,
)

pytestmark = pytest.mark.e2e

CACHE_OPS = "doppelganger.v1.CacheService/"


@pytest.fixture(scope="module")
def provider() -> Iterator[LLMServer]:
    with LLMServer() as server:
        yield server


@pytest.fixture(scope="module")
def shared_stack(provider: LLMServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    """One stack for every fault switch test of this module."""
    with running_studio(llm_env(provider), tmp_path_factory.mktemp("stack-logs")) as studio:
        yield studio


@pytest.fixture
async def studio(shared_stack: Studio) -> AsyncIterator[Studio]:
    """The shared stack with every switch off before and after the test."""
    await reset_faults(shared_stack)
    yield shared_stack
    await reset_faults(shared_stack)
    shared_stack.assert_none_exited()


@pytest.fixture(scope="module")
def doomed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    """A stack of its own for the kill tests (procedural writer). Its survivors are SIGKILLed at
    the end: with the monitor gone, a SIGTERMed service spends some 20 s retrying its last
    telemetry exports before it exits (0); test_stack.py covers the clean stop."""
    with running_studio({}, tmp_path_factory.mktemp("doomed-logs")) as studio:
        yield studio
        for name in studio.alive():
            studio.stop_service(name, signal.SIGKILL)


def assert_written_by(outcomes: list[Outcome], writer: str) -> None:
    """Every episode names `writer`, and the LLM was called for it."""
    for outcome in outcomes:
        assert outcome.episode is not None
        assert outcome.episode.writer == writer, outcome.episode.writer
        assert outcome.episode.usage.calls > 0, outcome.episode.id


async def switched_on(
    studio: Studio, service: str, switches: dict[str, float], writer: str = ""
) -> tuple[list[Outcome], int]:
    """20 episodes with `switches` on at `service`; returns them and how often the (first)
    fault acted. Switches the fault off again, and checks it is off and no process exited."""
    address, name = studio.address(service), next(iter(switches))
    before = await injected(address, name)
    state = await set_switches(address, switches)
    assert switch_values(state)[name] == switches[name]
    outcomes = await run_episodes(studio, writer=writer)
    state = await set_switches(address, dict.fromkeys(switches, 0.0))
    assert switch_values(state)[name] == 0.0
    studio.assert_none_exited()
    return outcomes, state.injected[name] - before


async def assert_recovered(studio: Studio, service: str, name: str, writer: str = "") -> None:
    """With the fault off, new episodes come out whole and the fault no longer acts."""
    before = await injected(studio.address(service), name)
    assert_all_rendered(await run_episodes(studio, count=2, writer=writer))
    assert await injected(studio.address(service), name) == before


# -- FaultService on every process ---------------------------------------------------------------


async def test_every_process_serves_fault_switches(studio: Studio) -> None:
    for name in ("script", "scene", "cache", "monitor"):
        address = studio.address(name)
        state = await set_switches(address, {"render_delay_ms": 7})
        assert switch_values(state)["render_delay_ms"] == 7, name
        assert switch_values(await get_faults(address))["render_delay_ms"] == 7, name
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await set_switches(address, {"llm_error_rate": 2})
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, name
        assert "llm_error_rate" in (raised.value.details() or ""), name


# -- one fault at a time, 20 episodes each -------------------------------------------------------


async def test_llm_error_rate_with_fallback_every_episode_completes(studio: Studio) -> None:
    outcomes, acted = await switched_on(studio, "script", {"llm_error_rate": 0.5}, writer="chain")
    assert_clear(outcomes)
    assert acted > 0
    assert_all_rendered(outcomes)  # Retries, then the procedural fallback, absorb 50% errors.
    assert_written_by(outcomes, "anthropic>procedural")
    # A quarter of the calls run out of their 2 attempts and fall back: of 60+ calls, some do.
    outcomes_of = [a.outcome for o in outcomes if o.episode for a in o.episode.attempts]
    assert "fallback" in outcomes_of
    await assert_recovered(studio, "script", "llm_error_rate", writer="anthropic")


async def test_llm_error_rate_alone_failures_say_http_500(studio: Studio) -> None:
    outcomes, acted = await switched_on(
        studio, "script", {"llm_error_rate": 0.7}, writer="anthropic"
    )
    assert_clear(outcomes)
    assert acted > 0
    failed = [o for o in outcomes if not o.ok]
    assert failed  # At 70%, most episodes have a call that runs out of its 2 attempts.
    # Without a fallback, an episode fails when one call runs out of attempts: UNAVAILABLE,
    # naming the provider and the status.
    assert all(o.code == grpc.StatusCode.UNAVAILABLE for o in failed), [
        o.describe() for o in failed
    ]
    assert all("anthropic" in o.details and "500" in o.details for o in failed)
    assert_all_rendered([o for o in outcomes if o.ok])
    assert_written_by([o for o in outcomes if o.ok], "anthropic")


async def test_llm_latency_slows_but_every_episode_completes(studio: Studio) -> None:
    outcomes, acted = await switched_on(
        studio, "script", {"llm_latency_ms": 20}, writer="anthropic"
    )
    assert_clear(outcomes)
    assert_all_rendered(outcomes)
    assert_written_by(outcomes, "anthropic")
    assert acted >= EPISODES * 3  # Before every attempt: an outline and two scenes at least.
    await assert_recovered(studio, "script", "llm_latency_ms", writer="anthropic")


async def test_llm_429_storm_with_fallback_the_procedural_writer_takes_over(
    studio: Studio, provider: LLMServer
) -> None:
    asked = len(provider.calls(ANTHROPIC_PATH))
    outcomes, acted = await switched_on(studio, "script", {"llm_429_storm": 1}, writer="chain")
    assert_clear(outcomes)
    assert_all_rendered(outcomes)
    assert acted >= EPISODES * 2  # Every attempt of every first call, at least.
    assert len(provider.calls(ANTHROPIC_PATH)) == asked  # The storm was ours: nothing sent.
    for outcome in outcomes:
        assert outcome.episode is not None
        writers = {attempt.writer for attempt in outcome.episode.attempts}
        assert "procedural" in writers, outcome.episode.attempts


async def test_llm_429_storm_alone_every_episode_fails_saying_429(
    studio: Studio, provider: LLMServer
) -> None:
    asked = len(provider.calls(ANTHROPIC_PATH))
    outcomes, acted = await switched_on(studio, "script", {"llm_429_storm": 1}, writer="anthropic")
    assert_clear(outcomes)
    assert acted >= EPISODES * 2
    assert [o.code for o in outcomes] == [grpc.StatusCode.UNAVAILABLE] * EPISODES
    assert all("429" in o.details for o in outcomes), [o.details for o in outcomes]
    assert len(provider.calls(ANTHROPIC_PATH)) == asked
    await assert_recovered(studio, "script", "llm_429_storm", writer="anthropic")


async def test_cache_unavailable_episodes_complete_and_the_monitor_alerts(
    studio: Studio,
) -> None:
    outcomes, acted = await switched_on(studio, "cache", {"cache_unavailable": 1})
    assert_clear(outcomes)
    assert_all_rendered(outcomes)
    assert acted >= EPISODES * 3  # Outline, scenes and episode are each looked up.
    found = await wait_for_error_alert(studio, "cache", CACHE_OPS)
    assert any(a.startswith(f"error_rate cache {CACHE_OPS}") for a in found), found
    await assert_recovered(studio, "cache", "cache_unavailable")


async def test_render_delay_past_the_deadline_gives_a_clear_render_error(
    studio: Studio,
) -> None:
    """DOPPEL_RPC_TIMEOUT_SECONDS is 2 on this stack; a 2.5 s render delay outlasts it."""
    outcomes, acted = await switched_on(studio, "scene", {"render_delay_ms": 2500})
    assert_clear(outcomes)
    assert acted >= EPISODES
    assert [o.code for o in outcomes] == [grpc.StatusCode.OK] * EPISODES
    for outcome in outcomes:
        assert outcome.episode is not None
        assert outcome.episode.render_error.startswith("scene service: DEADLINE_EXCEEDED")
        assert not outcome.episode.fountain
    await assert_recovered(studio, "scene", "render_delay_ms")


async def test_render_delay_under_the_deadline_only_slows(studio: Studio) -> None:
    outcomes, acted = await switched_on(studio, "scene", {"render_delay_ms": 50})
    assert_clear(outcomes)
    assert_all_rendered(outcomes)
    assert acted >= EPISODES


async def test_monitor_unreachable_generation_unaffected_exports_dropped(studio: Studio) -> None:
    services = ("script", "scene", "cache")
    before = {
        name: await injected(studio.address(name), "monitor_unreachable") for name in services
    }
    for name in services:
        await set_switches(studio.address(name), {"monitor_unreachable": 1})
    outcomes = await run_episodes(studio)
    # Kept on until every service has dropped an export (metrics go out every second).
    dropped = await wait_for_drops(studio, services, before)
    for name in services:
        state = await set_switches(studio.address(name), {"monitor_unreachable": 0})
        assert switch_values(state)["monitor_unreachable"] == 0.0
    studio.assert_none_exited()
    assert_clear(outcomes)
    assert_all_rendered(outcomes)
    assert all(dropped[name] > before[name] for name in services), (before, dropped)
    # Switched off, telemetry flows again: a new episode's trace reaches the monitor.
    fresh = await run_episodes(studio, count=1)
    assert_all_rendered(fresh)
    wanted = {"script", "cache", "scene"}
    assert await trace_services(studio, fresh[0].trace_id, wanted) >= wanted


async def wait_for_drops(
    studio: Studio, services: tuple[str, ...], before: dict[str, int]
) -> dict[str, int]:
    """Polls GetFaults (bounded) until every service counted a dropped export."""
    counts = dict(before)

    async def all_dropped() -> bool:
        for name in services:
            counts[name] = await injected(studio.address(name), "monitor_unreachable")
        return all(counts[name] > before[name] for name in services)

    with contextlib.suppress(AssertionError):  # The caller's check says which did not.
        await eventually(all_dropped, timeout=POLLS * POLL_SECONDS, interval=POLL_SECONDS)
    return counts


# -- real process kills, on a stack of their own ------------------------------------------------


async def test_cache_sigkilled_episodes_complete_and_the_monitor_sees_it(doomed: Studio) -> None:
    assert_all_rendered(await run_episodes(doomed, count=5))
    baseline = (await health(doomed)).score
    assert doomed.stop_service("cache", signal.SIGKILL) == -signal.SIGKILL
    outcomes = await run_episodes(doomed)
    assert_clear(outcomes)
    assert_all_rendered(outcomes)  # Uncached, but whole.
    found = await wait_for_error_alert(doomed, "script", CACHE_OPS)
    assert any(a.startswith(f"error_rate script {CACHE_OPS}") for a in found), found
    assert (await health(doomed)).score < baseline
    assert doomed.alive() == ["monitor", "scene", "script"]


async def test_monitor_stopped_generation_is_unaffected(doomed: Studio) -> None:
    assert doomed.stop_service("monitor", signal.SIGTERM) == 0
    outcomes = await run_episodes(doomed)
    assert_clear(outcomes)
    assert_all_rendered(outcomes)
    assert "monitor" not in doomed.alive() and {"scene", "script"} <= set(doomed.alive())


async def test_scene_killed_episodes_come_back_with_a_render_error(doomed: Studio) -> None:
    assert doomed.stop_service("scene", signal.SIGKILL) == -signal.SIGKILL
    outcomes = await run_episodes(doomed)
    assert_clear(outcomes)
    assert [o.code for o in outcomes] == [grpc.StatusCode.OK] * EPISODES
    for outcome in outcomes:
        assert outcome.episode is not None
        # Refused (UNAVAILABLE) or, while the channel reconnects, out of time.
        assert outcome.episode.render_error.startswith("scene service: "), outcome.episode
        assert "UNAVAILABLE" in outcome.episode.render_error or (
            "DEADLINE_EXCEEDED" in outcome.episode.render_error
        )
        assert not outcome.episode.fountain
    assert "script" in doomed.alive()
