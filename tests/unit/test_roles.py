"""The role table (shared/roles.py) against the API itself: every method of every service of
doppelganger.v1 has an explicit entry, so whoever adds an RPC must classify it; and what is not
listed needs admin."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import doppelganger.v1
from shared.roles import METHOD_ROLES, Role, is_open, required_role


def api_methods() -> set[str]:
    """`/package.Service/Method` of every method of every service in doppelganger.v1."""
    methods: set[str] = set()
    for module_info in pkgutil.iter_modules(doppelganger.v1.__path__):
        if not module_info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(f"doppelganger.v1.{module_info.name}")
        for service in module.DESCRIPTOR.services_by_name.values():
            methods.update(f"/{service.full_name}/{method.name}" for method in service.methods)
    return methods


def test_the_walk_finds_every_service() -> None:
    services = {method.split("/")[1] for method in api_methods()}
    assert services == {
        "doppelganger.v1.ScriptService", "doppelganger.v1.SceneService",
        "doppelganger.v1.CacheService", "doppelganger.v1.MonitorService",
        "doppelganger.v1.FaultService",
    }  # fmt: skip


def test_every_method_of_the_api_has_an_explicit_role() -> None:
    missing = sorted(api_methods() - set(METHOD_ROLES))
    assert missing == [], f"classify these RPCs in shared/roles.py METHOD_ROLES: {missing}"


def test_the_table_names_only_methods_that_exist() -> None:
    assert sorted(set(METHOD_ROLES) - api_methods()) == []


def test_a_method_missing_from_the_table_needs_admin() -> None:
    assert required_role("/doppelganger.v1.ScriptService/DeleteEverything") is Role.ADMIN
    assert required_role("/doppelganger.v2.Other/Call") is Role.ADMIN
    assert required_role("") is Role.ADMIN


def test_roles_are_ordered_and_the_dangerous_methods_are_admin() -> None:
    assert Role.ADMIN > Role.SERVICE > Role.WRITER > Role.READER
    assert required_role("/doppelganger.v1.FaultService/SetFaults") is Role.ADMIN
    assert required_role("/doppelganger.v1.MonitorService/UpdateThresholds") is Role.ADMIN
    assert required_role("/doppelganger.v1.ScriptService/GenerateEpisode") is Role.WRITER
    assert required_role("/doppelganger.v1.ScriptService/GetEpisode") is Role.READER
    for method in ("Get", "GetMany", "Set", "Delete"):
        assert required_role(f"/doppelganger.v1.CacheService/{method}") is Role.SERVICE


def test_probes_reflection_and_otlp_stay_open_and_nothing_else() -> None:
    assert is_open("/grpc.health.v1.Health/Check")
    assert is_open("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
    assert is_open("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
    assert not any(is_open(method) for method in api_methods())


@pytest.mark.parametrize("text", ["admin", "ADMIN", " Writer "])
def test_role_names_parse_in_any_case(text: str) -> None:
    assert Role.parse(text).label == text.strip().lower()


def test_an_unknown_role_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="reader, writer, service, admin"):
        Role.parse("root")
