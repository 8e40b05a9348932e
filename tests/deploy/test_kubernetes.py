"""deploy/k8s: every overlay rendered by `kubectl kustomize` and validated offline against the
Kubernetes 1.30 API schemas (kubernetes-validate, strict: unknown fields are errors), plus the
rules the schemas cannot express: non-root, probes, limits, read-only root filesystem."""

from __future__ import annotations

import copy

import pytest

from tests.deploy.conftest import DEPLOY
from tests.deploy.kustomize_support import (
    KUSTOMIZATIONS,
    Manifest,
    of_kind,
    render,
    schema_errors,
)

WORKLOADS = ("Deployment", "StatefulSet")
APP_SERVICES = {"script", "scene", "cache", "monitor"}


def containers(workload: Manifest) -> list[Manifest]:
    spec = workload["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_renders_and_validates_against_kubernetes_1_30(kustomization: str) -> None:
    manifests = render(kustomization)
    assert len(of_kind(manifests, "Deployment")) >= 5
    assert schema_errors(manifests) == []


def test_the_validator_rejects_what_kubernetes_would() -> None:
    """The check above can fail: an unknown field, a wrong type and a missing field are errors."""
    deployment = of_kind(render("base"), "Deployment")[0]
    unknown = copy.deepcopy(deployment)
    unknown["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "two"
    missing = copy.deepcopy(deployment)
    del missing["spec"]["selector"]
    assert len(schema_errors([unknown, wrong_type, missing])) == 3


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_no_container_runs_as_root(kustomization: str) -> None:
    for workload in of_kind(render(kustomization), *WORKLOADS):
        pod = workload["spec"]["template"]["spec"]
        pod_context = pod.get("securityContext", {})
        assert pod_context.get("seccompProfile", {}).get("type") == "RuntimeDefault"
        assert pod.get("automountServiceAccountToken") is False, workload["metadata"]["name"]
        for container in containers(workload):
            context = {**pod_context, **container.get("securityContext", {})}
            where = f"{workload['metadata']['name']}/{container['name']}"
            assert context.get("runAsNonRoot") is True, where
            assert context.get("runAsUser", 0) > 0, where
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, where
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, where
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"], where


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_workload_has_probes_requests_and_limits(kustomization: str) -> None:
    """Every container has requests and limits; every long-running one probes (Kubernetes
    refuses probes on init containers, which run to completion)."""
    for workload in of_kind(render(kustomization), *WORKLOADS):
        running = workload["spec"]["template"]["spec"]["containers"]
        for container in containers(workload):
            where = f"{workload['metadata']['name']}/{container['name']}"
            if container in running:
                assert "readinessProbe" in container and "livenessProbe" in container, where
            else:
                assert not {"readinessProbe", "livenessProbe"} & container.keys(), where
            resources = container["resources"]
            assert {"cpu", "memory"} <= resources["requests"].keys(), where
            assert {"cpu", "memory"} <= resources["limits"].keys(), where


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_services_use_native_grpc_probes(kustomization: str) -> None:
    """The four services are probed through grpc.health.v1 (readiness asks for the API service)."""
    deployments = {d["metadata"]["name"]: d for d in of_kind(render(kustomization), "Deployment")}
    assert deployments.keys() >= APP_SERVICES
    for name in APP_SERVICES:
        container = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        port = container["ports"][0]["containerPort"]
        assert container["livenessProbe"]["grpc"] == {"port": port}
        readiness = container["readinessProbe"]["grpc"]
        assert readiness["port"] == port and readiness["service"].startswith("doppelganger.v1.")
        assert container["command"] == ["python", "-m", f"services.{name}"]


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_script_and_scene_autoscale_and_the_monitor_does_not(kustomization: str) -> None:
    manifests = render(kustomization)
    targets = {
        h["spec"]["scaleTargetRef"]["name"] for h in of_kind(manifests, "HorizontalPodAutoscaler")
    }
    assert targets == {"script", "scene"}
    monitor = next(
        d for d in of_kind(manifests, "Deployment") if d["metadata"]["name"] == "monitor"
    )
    assert monitor["spec"]["replicas"] == 1 and monitor["spec"]["strategy"]["type"] == "Recreate"


def test_prod_has_disruption_budgets_and_spreads_replicas() -> None:
    manifests = render("overlays/prod")
    budgets = {p["metadata"]["name"] for p in of_kind(manifests, "PodDisruptionBudget")}
    assert budgets == {"script", "scene", "cache"}
    hpas = {h["metadata"]["name"]: h["spec"] for h in of_kind(manifests, "HorizontalPodAutoscaler")}
    assert all(spec["minReplicas"] >= 2 for spec in hpas.values())
    for deployment in of_kind(manifests, "Deployment"):
        if deployment["metadata"]["name"] in {"script", "scene", "cache", "otel-collector"}:
            assert deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]


def test_the_api_key_comes_from_a_secret_that_is_not_committed() -> None:
    for kustomization in KUSTOMIZATIONS:
        manifests = render(kustomization)
        assert of_kind(manifests, "Secret") == []
        script = next(
            d for d in of_kind(manifests, "Deployment") if d["metadata"]["name"] == "script"
        )
        env = {e["name"]: e for e in script["spec"]["template"]["spec"]["containers"][0]["env"]}
        reference = env["ANTHROPIC_API_KEY"]["valueFrom"]["secretKeyRef"]
        assert reference["name"] == "doppelganger-llm"
    committed = "\n".join(p.read_text() for p in (DEPLOY / "k8s").rglob("*.yaml"))
    assert "kind: Secret" not in committed and "sk-ant-" not in committed


def test_ingress_is_denied_by_default_and_each_service_admits_its_callers() -> None:
    policies = {p["metadata"]["name"]: p["spec"] for p in of_kind(render("base"), "NetworkPolicy")}
    assert policies["default-deny-ingress"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    callers = {
        name: policies[name]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
        for name in ("scene", "cache", "redis", "postgres")
    }
    assert callers == {
        "scene": {"app.kubernetes.io/component": "script"},
        "cache": {"app.kubernetes.io/component": "script"},
        "redis": {"app.kubernetes.io/component": "cache"},
        "postgres": {"app.kubernetes.io/component": "script"},
    }
    # Only script pods reach PostgreSQL: one rule, one source, its port only.
    assert len(policies["postgres"]["ingress"]) == 1
    assert len(policies["postgres"]["ingress"][0]["from"]) == 1
    assert policies["postgres"]["ingress"][0]["ports"] == [{"port": 5432, "protocol": "TCP"}]


def test_services_reach_each_other_and_the_collector_by_service_name() -> None:
    manifests = render("base")
    config = next(
        m["data"] for m in of_kind(manifests, "ConfigMap")
        if m["metadata"]["name"].startswith("doppelganger-config")
    )  # fmt: skip
    services = {s["metadata"]["name"]: s for s in of_kind(manifests, "Service")}
    for variable in ("DOPPEL_SCENE_TARGET", "DOPPEL_CACHE_TARGET", "DOPPEL_MONITOR_TARGET"):
        host, port = config[variable].split(":")
        assert int(port) in {p["port"] for p in services[host]["spec"]["ports"]}, variable
    assert config["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4317"
    assert config["DOPPEL_HOST"] == "0.0.0.0"


def test_every_service_pod_names_itself_on_its_telemetry() -> None:
    """k8s.pod.name reaches the SDK (OTEL_RESOURCE_ATTRIBUTES), after the variables it expands."""
    for deployment in of_kind(render("overlays/prod"), "Deployment"):
        if deployment["metadata"]["name"] not in APP_SERVICES:
            continue
        env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        names = [e["name"] for e in env]
        attributes = env[names.index("OTEL_RESOURCE_ATTRIBUTES")]["value"]
        assert "k8s.pod.name=$(POD_NAME)" in attributes
        assert names.index("POD_NAME") < names.index("OTEL_RESOURCE_ATTRIBUTES")
        assert env[names.index("POD_NAME")]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_service_checks_tokens_from_a_secret_that_is_not_committed(
    kustomization: str,
) -> None:
    """Secure by default: every service mounts the accepted tokens from the doppelganger-auth
    Secret (not optional: no Secret, no pod), the script service sends its own token from it,
    and nothing enables FaultService."""
    manifests = render(kustomization)
    assert of_kind(manifests, "Secret") == []
    config = next(
        m["data"] for m in of_kind(manifests, "ConfigMap")
        if m["metadata"]["name"].startswith("doppelganger-config")
    )  # fmt: skip
    tokens_file = config["DOPPEL_AUTH_TOKENS_FILE"]
    assert "DOPPEL_FAULTS_ENABLED" not in config and "DOPPEL_FAULTS" not in config
    for deployment in of_kind(manifests, "Deployment"):
        name = deployment["metadata"]["name"]
        if name not in APP_SERVICES:
            continue
        pod = deployment["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        secret = volumes["auth"]["secret"]
        assert secret["secretName"] == "doppelganger-auth" and not secret.get("optional")
        assert secret["defaultMode"] == 0o440  # Group-readable: fsGroup 10001.
        assert pod["securityContext"]["fsGroup"] == 10001
        mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
        assert mounts["auth"]["readOnly"] is True
        item = secret["items"][0]
        assert f"{mounts['auth']['mountPath']}/{item['path']}" == tokens_file, name
        env = {e["name"]: e for e in pod["containers"][0].get("env", [])}
        assert "DOPPEL_AUTH_TOKENS" not in env, name
        if name == "script":
            reference = env["DOPPEL_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
            assert reference == {"name": "doppelganger-auth", "key": "service-token"}
        else:
            assert "DOPPEL_AUTH_TOKEN" not in env, name


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_the_replicas_hint_is_the_script_hpas_maximum(kustomization: str) -> None:
    """Without the cache service each script replica keeps to limits / DOPPEL_LLM_REPLICAS_HINT:
    the hint must count every replica the HPA may run, or the replicas pass the provider's
    limit together."""
    manifests = render(kustomization)
    config = next(
        m["data"] for m in of_kind(manifests, "ConfigMap")
        if m["metadata"]["name"].startswith("doppelganger-config")
    )  # fmt: skip
    (hpa,) = [h for h in of_kind(manifests, "HorizontalPodAutoscaler")
              if h["metadata"]["name"] == "script"]  # fmt: skip
    assert int(config["DOPPEL_LLM_REPLICAS_HINT"]) == hpa["spec"]["maxReplicas"]


def _workload(manifests: tuple[Manifest, ...], kind: str, name: str) -> Manifest:
    (found,) = [m for m in of_kind(manifests, kind) if m["metadata"]["name"] == name]
    return found


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_the_library_is_postgresql_on_a_volume_with_credentials_from_a_secret(
    kustomization: str,
) -> None:
    manifests = render(kustomization)
    postgres = _workload(manifests, "StatefulSet", "postgres")
    spec = postgres["spec"]
    assert spec["replicas"] == 1 and spec["serviceName"] == "postgres"
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    container = spec["template"]["spec"]["containers"][0]
    assert container["image"].startswith("postgres:16")
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == "/var/lib/postgresql/data"
    env = {e["name"]: e for e in container["env"]}
    assert env["PGDATA"]["value"].startswith("/var/lib/postgresql/data/")
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "doppelganger-db", "key": "postgres-password",
    }  # fmt: skip
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["exec"]["command"][0] == "pg_isready", probe
    service = _workload(manifests, "Service", "postgres")
    assert [p["port"] for p in service["spec"]["ports"]] == [5432]
    assert of_kind(manifests, "Secret") == []


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_script_pods_migrate_the_library_once_before_the_service_starts(
    kustomization: str,
) -> None:
    """An init container of the script pod runs the migration (the NetworkPolicy admits it as a
    script pod); the service only checks the schema, so no two code paths migrate."""
    manifests = render(kustomization)
    pod = _workload(manifests, "Deployment", "script")["spec"]["template"]["spec"]
    (migrate,) = pod["initContainers"]
    (script,) = pod["containers"]
    assert migrate["command"] == ["python", "-m", "services.script.library", "migrate"]
    assert migrate["image"] == script["image"]
    url = {"name": "doppelganger-db", "key": "database-url"}
    for container in (migrate, script):
        env = {e["name"]: e for e in container["env"]}
        assert env["DOPPEL_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == url, container["name"]
        assert container["envFrom"] == [{"configMapRef": {"name": config_name(manifests)}}]
    config = next(
        m["data"] for m in of_kind(manifests, "ConfigMap")
        if m["metadata"]["name"].startswith("doppelganger-config")
    )  # fmt: skip
    assert config["DOPPEL_DATABASE_MIGRATE"] == "check"


def config_name(manifests: tuple[Manifest, ...]) -> str:
    return next(
        str(m["metadata"]["name"]) for m in of_kind(manifests, "ConfigMap")
        if m["metadata"]["name"].startswith("doppelganger-config")
    )  # fmt: skip


def test_prod_gives_the_library_a_larger_volume() -> None:
    def storage(kustomization: str) -> str:
        postgres = _workload(render(kustomization), "StatefulSet", "postgres")
        return str(
            postgres["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
        )

    assert (storage("base"), storage("overlays/prod")) == ("5Gi", "50Gi")
