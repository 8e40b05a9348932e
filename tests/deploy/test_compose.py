"""docker-compose.yml against the Compose Specification schema (check-jsonschema's vendored copy),
and what the schema cannot say: gRPC health checks, non-root services, telemetry through the
collector, mounted files that exist. No Docker engine runs here, so nothing is started."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import ROOT

COMPOSE_FILE = ROOT / "docker-compose.yml"
APP_SERVICES = ("script", "scene", "cache", "monitor")
OBSERVABILITY = ("otel-collector", "jaeger", "prometheus", "grafana", "redis")
DATABASES = ("postgres",)


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE_FILE.read_text()))


def check_compose_schema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_compose_file_matches_the_compose_specification() -> None:
    result = check_compose_schema(COMPOSE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_an_invalid_file(tmp_path: Path) -> None:
    broken = compose()
    broken["services"]["script"]["depends_on"] = 5
    broken["services"]["scene"]["restart_policy"] = "always"
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    result = check_compose_schema(path)
    assert result.returncode == 1
    assert "depends_on" in result.stdout and "restart_policy" in result.stdout


def test_every_part_of_the_stack_is_there() -> None:
    assert set(compose()["services"]) == {*APP_SERVICES, *OBSERVABILITY, *DATABASES}


@pytest.mark.parametrize("name", APP_SERVICES)
def test_services_run_hardened_from_one_image_with_grpc_health_checks(name: str) -> None:
    service = compose()["services"][name]
    assert service["command"] == ["python", "-m", f"services.{name}"]
    assert service["healthcheck"]["test"] == ["CMD", "python", "-m", "shared.healthcheck", name]
    assert service["user"] == "10001:10001" and service["read_only"] is True
    assert service["cap_drop"] == ["ALL"]
    assert service["image"].startswith("doppelganger-studio:") and service["build"] == "."
    assert service["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4317"


def test_services_start_after_what_they_depend_on_is_healthy() -> None:
    services = compose()["services"]
    assert services["script"]["depends_on"]["cache"]["condition"] == "service_healthy"
    assert services["script"]["depends_on"]["scene"]["condition"] == "service_healthy"
    assert services["cache"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["cache"]["environment"]["REDIS_URL"] == "redis://redis:6379/0"


def test_the_collector_fans_out_to_jaeger_and_the_monitor() -> None:
    collector = compose()["services"]["otel-collector"]
    assert collector["environment"] == {
        "JAEGER_OTLP_ENDPOINT": "jaeger:4317",
        "MONITOR_OTLP_ENDPOINT": "monitor:4317",
    }
    assert "contrib" in collector["image"]


def test_every_mounted_file_exists() -> None:
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: {source}"


def test_secrets_come_from_the_environment_not_the_file() -> None:
    script = compose()["services"]["script"]["environment"]
    assert script["ANTHROPIC_API_KEY"] == "${ANTHROPIC_API_KEY:-}"
    grafana = compose()["services"]["grafana"]["environment"]
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD")


def test_no_default_passwords_or_tokens() -> None:
    """`:?` makes compose refuse to start without the value (`make secrets` writes .env): no
    admin/admin Grafana, no script service without its token."""
    services = compose()["services"]
    grafana = services["grafana"]["environment"]
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "${GRAFANA_ANONYMOUS_VIEWER:-false}"
    script = services["script"]["environment"]
    assert script["DOPPEL_AUTH_TOKEN"].startswith("${DOPPEL_SERVICE_TOKEN:?")
    text = COMPOSE_FILE.read_text()
    assert ":-admin}" not in text


@pytest.mark.parametrize("name", APP_SERVICES)
def test_every_service_checks_tokens_from_a_generated_secret(name: str) -> None:
    everything = compose()
    service = everything["services"][name]
    assert service["secrets"] == ["doppel_auth_tokens"]
    tokens_file = service["environment"]["DOPPEL_AUTH_TOKENS_FILE"]
    assert tokens_file == "/run/secrets/doppel_auth_tokens"
    assert everything["secrets"]["doppel_auth_tokens"] == {"file": "./.secrets/auth-tokens"}
    assert "DOPPEL_AUTH_TOKENS" not in service["environment"]
    assert "DOPPEL_FAULTS_ENABLED" not in service["environment"]  # FaultService stays off.


def test_generated_secrets_are_never_committed() -> None:
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert ".env" in ignored and ".secrets/" in ignored
    docker_ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ".env" in docker_ignored and ".secrets" in docker_ignored
    assert not (ROOT / ".secrets").exists() or not any(
        path.name in {"auth-tokens", "cli-token"} for path in tracked_files()
    )


def tracked_files() -> list[Path]:
    result = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False
    )
    return [Path(line) for line in result.stdout.splitlines()]


def test_prometheus_gets_a_reader_token_for_the_monitor() -> None:
    everything = compose()
    prometheus = everything["services"]["prometheus"]
    assert prometheus["secrets"] == [
        {"source": "prometheus_token", "target": "/etc/prometheus/monitor-token"}
    ]
    assert everything["secrets"]["prometheus_token"] == {"file": "./.secrets/prometheus-token"}


def test_published_ports_bind_loopback_unless_told_otherwise() -> None:
    published = [
        (name, port)
        for name, service in compose()["services"].items()
        for port in service.get("ports", [])
    ]
    assert {name for name, _ in published} == {
        "script", "monitor", "jaeger", "prometheus", "grafana",
    }  # fmt: skip
    for name, port in published:
        assert port.startswith("${DOPPEL_BIND:-127.0.0.1}:"), (name, port)
        assert port.count(":") == 3, (name, port)  # bind:host port:container port


def test_make_secrets_writes_what_compose_reads(tmp_path: Path) -> None:
    """The files compose names exist after `python -m doppel.local_tokens compose` (what
    `make secrets` runs), and .env holds every variable compose insists on."""
    result = subprocess.run(
        [sys.executable, "-m", "doppel.local_tokens", "compose",
         "--out", str(tmp_path / ".secrets"), "--env-file", str(tmp_path / ".env")],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for secret in compose()["secrets"].values():
        assert (tmp_path / secret["file"]).is_file(), secret
    required = set(re.findall(r"\$\{(\w+):\?", COMPOSE_FILE.read_text()))
    assert required == {"DOPPEL_SERVICE_TOKEN", "GRAFANA_ADMIN_PASSWORD", "POSTGRES_PASSWORD"}
    written = dict(
        line.split("=", 1)
        for line in (tmp_path / ".env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert required <= set(written) and all(written[name] for name in required)
    makefile = (ROOT / "Makefile").read_text()
    assert "secrets: venv\n\t$(BIN)/python -m doppel.local_tokens compose" in makefile


def test_the_library_is_postgresql_on_a_volume_that_script_waits_for() -> None:
    everything = compose()
    postgres = everything["services"]["postgres"]
    assert postgres["image"].startswith("postgres:16")
    assert "postgres-data:/var/lib/postgresql/data" in postgres["volumes"]
    assert "postgres-data" in everything["volumes"]
    assert postgres["environment"]["PGDATA"].startswith("/var/lib/postgresql/data/")
    test = postgres["healthcheck"]["test"]
    assert test[:2] == ["CMD", "pg_isready"] and "-h" in test  # TCP: not the init server.
    assert postgres["user"] == "70:70" and postgres["read_only"] is True
    assert postgres["cap_drop"] == ["ALL"] and "ports" not in postgres
    # The password is a generated secret file, never a value in the file.
    assert postgres["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert "POSTGRES_PASSWORD" not in postgres["environment"]
    assert everything["secrets"]["postgres_password"] == {"file": "./.secrets/postgres-password"}
    script = everything["services"]["script"]
    assert script["depends_on"]["postgres"]["condition"] == "service_healthy"
    url = script["environment"]["DOPPEL_DATABASE_URL"]
    assert url.startswith("postgresql+asyncpg://doppel:${POSTGRES_PASSWORD:?")
    assert url.endswith("@postgres:5432/doppelganger")
    assert script["environment"]["DOPPEL_DATABASE_MIGRATE"] == "auto"
