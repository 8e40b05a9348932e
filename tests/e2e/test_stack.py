"""The whole studio as real processes: `doppel up`, `doppel generate`, one trace in the monitor."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from doppel.local_tokens import LocalTokens, local_stack_env, read_local_tokens
from doppelganger.v1 import (
    cache_pb2,
    cache_pb2_grpc,
    faults_pb2,
    faults_pb2_grpc,
    monitor_pb2,
    monitor_pb2_grpc,
    scene_pb2,
    scene_pb2_grpc,
    script_pb2,
    script_pb2_grpc,
)
from services.scene.fountain import parse_fountain
from testkit import eventually_sync, free_port
from tests.e2e.processes import read_until_ready, stop_up

pytestmark = pytest.mark.e2e

SERVICE_NAMES = {
    "script": "doppelganger.v1.ScriptService",
    "scene": "doppelganger.v1.SceneService",
    "cache": "doppelganger.v1.CacheService",
    "monitor": "doppelganger.v1.MonitorService",
}


@dataclass
class RunningStack:
    process: subprocess.Popen[str]
    env: dict[str, str]
    addresses: dict[str, str]
    banner: list[str]
    data_dir: Path  # XDG_DATA_HOME: where `doppel up` keeps the local stack's tokens.

    @property
    def tokens(self) -> LocalTokens:
        return read_local_tokens(self.data_dir / "doppelganger" / "auth-tokens")

    def as_cli(self) -> tuple[tuple[str, str], ...]:
        """The metadata the CLI sends: the local writer token `doppel up` made."""
        return (("authorization", f"Bearer {self.tokens.cli}"),)


def doppel(
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "doppel.cli", *args],
        env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    ports = {name: free_port() for name in ("script", "scene", "cache", "monitor", "http")}
    env = {
        **os.environ,
        "DOPPEL_SCRIPT_PORT": str(ports["script"]),
        "DOPPEL_SCENE_PORT": str(ports["scene"]),
        "DOPPEL_CACHE_PORT": str(ports["cache"]),
        "DOPPEL_MONITOR_PORT": str(ports["monitor"]),
        "DOPPEL_MONITOR_HTTP_PORT": str(ports["http"]),
        "DOPPEL_GRACE_SECONDS": "5",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_METRIC_EXPORT_INTERVAL": "1000",
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("REDIS_URL", "OTEL_SDK_DISABLED", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        env.pop(name, None)
    for name in ("DOPPEL_AUTH_TOKENS", "DOPPEL_AUTH_TOKENS_FILE", "DOPPEL_AUTH_TOKEN"):
        env.pop(name, None)  # None configured: `doppel up` makes its own.
    data_dir = tmp_path_factory.mktemp("data")
    env["XDG_DATA_HOME"] = str(data_dir)
    log_dir = tmp_path_factory.mktemp("logs")
    process = subprocess.Popen(
        [sys.executable, "-m", "doppel.cli", "up", "--log-dir", str(log_dir)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        banner = read_until_ready(process, timeout=60)
        addresses = {name: f"127.0.0.1:{ports[name]}" for name in SERVICE_NAMES}
        yield RunningStack(process, env, addresses, banner, data_dir)
    finally:
        stop_up(process)


def test_up_prints_one_line_per_service(stack: RunningStack) -> None:
    text = "\n".join(stack.banner)
    for name, address in stack.addresses.items():
        assert re.search(rf"^{name}\s+{re.escape(address)}$", text, flags=re.M), text
    assert re.search(r"^redis\s+unix://", text, flags=re.M)
    tokens_file = stack.data_dir / "doppelganger" / "auth-tokens"
    assert re.search(rf"^tokens\s+{re.escape(str(tokens_file))} ", text, flags=re.M), text


def test_up_protects_the_stack_with_its_own_tokens(stack: RunningStack) -> None:
    """No tokens configured: `doppel up` made some (a private file) and every service checks
    them; the CLI uses them with no extra step (the other tests here)."""
    tokens_file = stack.data_dir / "doppelganger" / "auth-tokens"
    assert stat.S_IMODE(tokens_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(tokens_file.parent.stat().st_mode) == 0o700
    for name, address in stack.addresses.items():
        with grpc.insecure_channel(address) as channel, pytest.raises(grpc.RpcError) as refused:
            call_any_method(channel, name)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, name
    with grpc.insecure_channel(stack.addresses["script"]) as channel:
        shows = script_pb2_grpc.ScriptServiceStub(channel).ListShows(
            script_pb2.ListShowsRequest(), metadata=stack.as_cli(), timeout=10
        )
        assert shows.shows


def call_any_method(channel: grpc.Channel, name: str) -> None:
    """One read of service `name`, without a token."""
    if name == "script":
        script_pb2_grpc.ScriptServiceStub(channel).ListShows(
            script_pb2.ListShowsRequest(), timeout=10
        )
    elif name == "cache":
        cache_pb2_grpc.CacheServiceStub(channel).Stats(cache_pb2.StatsRequest(), timeout=10)
    elif name == "monitor":
        monitor_pb2_grpc.MonitorServiceStub(channel).GetHealth(
            monitor_pb2.GetHealthRequest(), timeout=10
        )
    else:
        scene_pb2_grpc.SceneServiceStub(channel).RenderScene(
            scene_pb2.RenderSceneRequest(), timeout=10
        )


def test_the_default_stack_has_no_fault_service(stack: RunningStack) -> None:
    for name, address in stack.addresses.items():
        with grpc.insecure_channel(address) as channel:
            faults = faults_pb2_grpc.FaultServiceStub(channel)
            with pytest.raises(grpc.RpcError) as missing:
                faults.SetFaults(
                    faults_pb2.SetFaultsRequest(reset=True), metadata=stack.as_cli(), timeout=10
                )
            assert missing.value.code() == grpc.StatusCode.UNIMPLEMENTED, name


def test_every_service_is_healthy_and_reflects_its_api(stack: RunningStack) -> None:
    for name, address in stack.addresses.items():
        with grpc.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=SERVICE_NAMES[name]), timeout=5
            )
            assert health.status == health_pb2.HealthCheckResponse.SERVING, name
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            responses = stub.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
            )
            listed = {s.name for r in responses for s in r.list_services_response.service}
            assert SERVICE_NAMES[name] in listed and "grpc.health.v1.Health" in listed


def test_generate_writes_a_screenplay_and_one_trace_spans_every_hop(
    stack: RunningStack, tmp_path: Path
) -> None:
    result = doppel(
        "generate", "--show", "I Love Lucy", "--setting", "a Mars colony in 2157",
        "--scenes", "3", "--seed", "7", "--out", str(tmp_path), "--quiet", env=stack.env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    fountain_path = Path(re.search(r"^fountain\s+(\S+)$", result.stdout, re.M).group(1))  # type: ignore[union-attr]
    json_path = Path(re.search(r"^json\s+(\S+)$", result.stdout, re.M).group(1))  # type: ignore[union-attr]
    trace_id = re.search(r"^trace id\s+([0-9a-f]{32})$", result.stdout, re.M).group(1)  # type: ignore[union-attr]
    script = parse_fountain(fountain_path.read_text())
    episode = json.loads(json_path.read_text())
    cast = {character["name"] for character in episode["cast"]}
    dialogue = [line for scene in script.scenes for line in scene.dialogue]
    assert len(script.scenes) >= 3
    assert len(dialogue) >= 20
    assert {line.speaker for line in dialogue} <= {name.upper() for name in cast}

    services = wait_for_services(stack, trace_id, timeout=30)
    assert {"doppel-cli", "script", "cache", "scene"} <= services


def wait_for_services(stack: RunningStack, trace_id: str, timeout: float) -> set[str]:
    """Polls GetTrace until every service reported and every span's parent has arrived."""
    wanted = {"doppel-cli", "script", "cache", "scene"}
    spans: list[monitor_pb2.SpanSummary] = []
    with grpc.insecure_channel(stack.addresses["monitor"]) as channel:
        stub = monitor_pb2_grpc.MonitorServiceStub(channel)

        def complete() -> bool:
            nonlocal spans
            try:
                request = monitor_pb2.GetTraceRequest(trace_id=trace_id)
                spans = list(stub.GetTrace(request, metadata=stack.as_cli()).spans)
            except grpc.RpcError:
                spans = []
            return wanted <= {span.service for span in spans} and not orphans(spans)

        with contextlib.suppress(AssertionError):  # The checks below say what is missing.
            eventually_sync(complete, timeout=timeout, interval=0.25)
    # Every hop propagated: one root (the CLI's), every other span's parent in the same trace.
    roots = [span for span in spans if not span.parent_span_id]
    assert [root.service for root in roots] == ["doppel-cli"]
    assert not orphans(spans)
    assert all(span.trace_id == trace_id for span in spans)
    return {span.service for span in spans}


def orphans(spans: list[monitor_pb2.SpanSummary]) -> list[monitor_pb2.SpanSummary]:
    ids = {span.span_id for span in spans}
    return [span for span in spans if span.parent_span_id and span.parent_span_id not in ids]


def test_same_seed_gives_byte_identical_files(stack: RunningStack, tmp_path: Path) -> None:
    outputs = []
    for attempt in ("a", "b"):
        out_dir = tmp_path / attempt
        result = doppel(
            "generate", "--show", "Seinfeld", "--setting", "Victorian London", "--scenes", "4",
            "--seed", "11", "--out", str(out_dir), "--quiet", env=stack.env,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        outputs.append({p.name: p.read_bytes() for p in sorted(out_dir.iterdir())})
    assert outputs[0] == outputs[1]
    assert len(outputs[0]) == 2


def test_shows_and_health_commands(stack: RunningStack) -> None:
    shows = doppel("shows", "--json", env=stack.env)
    assert shows.returncode == 0, shows.stderr
    assert len(json.loads(shows.stdout)["shows"]) >= 5
    health = doppel("health", "--json", env=stack.env)
    assert health.returncode == 0, health.stderr
    report = json.loads(health.stdout)["health"]
    assert 0 <= report["score"] <= 100
    assert int(report["spansReceived"]) > 0
    for sub_score in ("errors", "alerts", "resources", "trends"):
        assert 0.0 <= report[sub_score] <= 1.0


def test_bad_request_through_the_cli_names_the_field(stack: RunningStack, tmp_path: Path) -> None:
    result = doppel("generate", "--scenes", "1000", "--out", str(tmp_path), env=stack.env)
    assert result.returncode == 1
    assert "INVALID_ARGUMENT" in result.stderr and "scene_count" in result.stderr


def test_sigterm_during_an_episode_exits_cleanly(stack: RunningStack) -> None:
    """A second script service, stopped mid-episode: it exits 0 and the client never hangs."""
    port = free_port()
    env = {**local_stack_env(stack.env, stack.tokens), "DOPPEL_SCRIPT_PORT": str(port),
           "DOPPEL_MAX_PARALLEL_SCENES": "1"}  # fmt: skip
    service = subprocess.Popen(
        [sys.executable, "-m", "services.script"], env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        from doppel.stack import wait_until_serving

        wait_until_serving(f"127.0.0.1:{port}", 30, service)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = script_pb2_grpc.ScriptServiceStub(channel)
            stream = stub.GenerateEpisode(
                script_pb2.GenerateEpisodeRequest(
                    show="Taxi", setting="an underwater city", scene_count=20, seed=99
                ),
                timeout=30,
                metadata=stack.as_cli(),
            )
            first = next(stream)
            assert first.stage == script_pb2.STAGE_ACCEPTED
            service.send_signal(signal.SIGTERM)
            try:
                last = list(stream)[-1]
                assert last.stage == script_pb2.STAGE_DONE  # Finished within the grace period.
            except grpc.RpcError as exc:
                assert exc.code() is grpc.StatusCode.UNAVAILABLE
        assert service.wait(timeout=15) == 0
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()


def test_sigterm_to_up_stops_everything_cleanly(stack: RunningStack) -> None:
    """Last: stop the stack the way an operator would and check every service exited 0."""
    stack.process.send_signal(signal.SIGTERM)
    output, _ = stack.process.communicate(timeout=60)
    assert stack.process.returncode == 0, output
    stopped = re.search(r"^stopped: (.*)$", output, flags=re.M)
    assert stopped, output
    codes = dict(re.findall(r"(\w+) \((-?\d+)\)", stopped.group(1)))
    assert codes == {"script": "0", "scene": "0", "cache": "0", "monitor": "0"}
