"""Roles, and the one table of which role each gRPC method needs.

Roles are ordered: a caller may call a method when its role is at least the method's.
- `reader`: read episodes, shows, renders, health, alerts, traces, cache statistics.
- `writer`: also write (GenerateEpisode, RegenerateScene): what a writer's client needs.
- `service`: also the cache's data (Get, GetMany, Set, Delete) and its coordination primitives
  (rate permits, spend reservations, leases): what the script service needs.
  Above writer so an ordinary client can neither read nor plant cache entries.
- `admin`: everything, among it FaultService.SetFaults and MonitorService.UpdateThresholds.

`METHOD_ROLES` names every method of doppelganger.v1; a method missing from it needs `admin`
(fail closed), and tests/unit/test_roles.py fails when a service of doppelganger.v1 has a method
without an entry, so whoever adds an RPC classifies it here. Probes, reflection and OTLP
ingestion (`OPEN_METHOD_PREFIXES`) stay open: probes and exporters carry no token.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType


class Role(enum.IntEnum):
    READER = 1
    WRITER = 2
    SERVICE = 3
    ADMIN = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        """A role from its name (any case); ValueError listing the names otherwise."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(role.label for role in cls)
            raise ValueError(f"unknown role; expected one of {names}") from None


ROLE_NAMES = tuple(role.label for role in Role)

# Method prefixes anyone may call: probes, reflection, and telemetry exporters.
OPEN_METHOD_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
    "/opentelemetry.proto.collector.",
)

_SCRIPT = "/doppelganger.v1.ScriptService/"
_SCENE = "/doppelganger.v1.SceneService/"
_CACHE = "/doppelganger.v1.CacheService/"
_MONITOR = "/doppelganger.v1.MonitorService/"
_FAULTS = "/doppelganger.v1.FaultService/"

METHOD_ROLES: Mapping[str, Role] = MappingProxyType(
    {
        _SCRIPT + "GenerateEpisode": Role.WRITER,
        _SCRIPT + "RegenerateScene": Role.WRITER,
        _SCRIPT + "GetEpisode": Role.READER,
        _SCRIPT + "ListShows": Role.READER,
        _SCRIPT + "ProposeOutlines": Role.WRITER,
        _SCRIPT + "ListEpisodes": Role.READER,
        _SCRIPT + "GetHistory": Role.READER,
        _SCRIPT + "ImportDraft": Role.WRITER,
        _SCRIPT + "CompareDrafts": Role.READER,
        _SCRIPT + "ArchiveEpisode": Role.WRITER,
        _SCRIPT + "ValidateEpisode": Role.READER,
        _SCRIPT + "ReviseEpisode": Role.WRITER,
        _SCRIPT + "CreateShow": Role.WRITER,
        _SCRIPT + "GetShow": Role.READER,
        _SCRIPT + "AnalyzeShow": Role.WRITER,
        _SCRIPT + "CreateSeries": Role.WRITER,
        _SCRIPT + "GetSeries": Role.READER,
        _SCRIPT + "ListSeries": Role.READER,
        _SCRIPT + "WriteSeason": Role.WRITER,
        _SCRIPT + "GetBatch": Role.READER,
        _SCENE + "RenderEpisode": Role.READER,
        _SCENE + "RenderScene": Role.READER,
        _CACHE + "Get": Role.SERVICE,
        _CACHE + "GetMany": Role.SERVICE,
        _CACHE + "Set": Role.SERVICE,
        _CACHE + "Delete": Role.SERVICE,
        _CACHE + "AcquireRate": Role.SERVICE,
        _CACHE + "SettleRate": Role.SERVICE,
        _CACHE + "ReserveSpend": Role.SERVICE,
        _CACHE + "SettleSpend": Role.SERVICE,
        _CACHE + "AcquireLease": Role.SERVICE,
        _CACHE + "RenewLease": Role.SERVICE,
        _CACHE + "ReleaseLease": Role.SERVICE,
        _CACHE + "Stats": Role.READER,
        _MONITOR + "GetHealth": Role.READER,
        _MONITOR + "ListAlerts": Role.READER,
        _MONITOR + "ListOperations": Role.READER,
        _MONITOR + "GetTrace": Role.READER,
        _MONITOR + "WatchAlerts": Role.READER,
        _MONITOR + "UpdateThresholds": Role.ADMIN,
        _FAULTS + "SetFaults": Role.ADMIN,
        _FAULTS + "GetFaults": Role.READER,
    }
)


def is_open(method: str) -> bool:
    return method.startswith(OPEN_METHOD_PREFIXES)


def required_role(method: str) -> Role:
    """The role `method` (`/package.Service/Method`) needs; `admin` when it is not listed."""
    return METHOD_ROLES.get(method, Role.ADMIN)
