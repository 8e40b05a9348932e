"""What the library raises, and the gRPC status each maps to (`grpc_code`, as WriterError has).

Messages name ids and limits, never the database URL's password or a row's content.
"""

from __future__ import annotations

import grpc

from shared.config import ConfigError


class LibraryError(Exception):
    """Anything the library refuses or fails to do."""

    grpc_code = grpc.StatusCode.INTERNAL


class NotFound(LibraryError):
    """No such draft, episode, show, series or batch job."""

    grpc_code = grpc.StatusCode.NOT_FOUND


class Conflict(LibraryError):
    """The id is taken by something else, or a version check failed (read again, retry)."""

    grpc_code = grpc.StatusCode.ABORTED


class InvalidArgument(LibraryError, ValueError):
    """A bad page size, page token, kind or id."""

    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


class Unavailable(LibraryError, ConnectionError):
    """The database cannot be reached, or stayed busy past the timeout. A ConnectionError, so
    a service that cannot reach it at start exits 1 with this message (shared/server.py)."""

    grpc_code = grpc.StatusCode.UNAVAILABLE


class SchemaNotReady(LibraryError, ConfigError):
    """The database's schema is not the one this code needs: the service refuses to start
    (exit code 2) until `python -m services.script.library migrate` has run."""

    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
