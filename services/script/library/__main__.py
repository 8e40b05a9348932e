"""`python -m services.script.library COMMAND`: the library's schema from the command line.

    migrate            apply pending migrations (the Kubernetes Job / init container runs this;
                       replicas running it at once take turns on a PostgreSQL advisory lock)
    status             the schema's revision and the one this release needs (exit 1: behind)
    check              models and migrations agree (a temporary SQLite; no server; `make lint`)
    revision -m TEXT   write a migration for what the models gained (then review it)
    downgrade REV      revert to REV (`-1`: one step back)

The database is the script service's (DOPPEL_DATABASE_URL, else SQLite in DOPPEL_DATA_DIR).
Exit codes: 0 done, 1 failed or behind, 2 configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from services.script.library import migrations
from services.script.library.engine import create_engine, database_url, display_url
from services.script.library.errors import LibraryError
from shared.config import ConfigError, Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.script.library")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply pending migrations")
    commands.add_parser("status", help="current and needed schema revisions")
    commands.add_parser("check", help="models and migrations agree (offline, temporary SQLite)")
    revision = commands.add_parser("revision", help="autogenerate a migration")
    revision.add_argument("-m", "--message", required=True)
    downgrade = commands.add_parser("downgrade", help="revert migrations")
    downgrade.add_argument("revision")
    args = parser.parse_args(argv)
    quiet = args.command in ("check", "status")
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "check":
            return asyncio.run(_check())
        if args.command == "revision":
            print(asyncio.run(migrations.new_revision(args.message)))
            return 0
        settings = Settings.from_env()
        if args.command == "migrate":
            return asyncio.run(_on_database(settings, _migrate))
        if args.command == "status":
            return asyncio.run(_on_database(settings, _status))
        return asyncio.run(_on_database(settings, lambda engine: _downgrade(engine, args.revision)))
    except ConfigError as exc:
        print(f"library: configuration: {exc}", file=sys.stderr)
        return 2
    except (LibraryError, OSError) as exc:
        print(f"library: {exc}", file=sys.stderr)
        return 1


async def _on_database(settings: Settings, action: Callable[[AsyncEngine], Awaitable[int]]) -> int:
    url = database_url(settings)
    print(f"library database: {display_url(url)}")
    engine = create_engine(url)
    try:
        return await action(engine)
    finally:
        await engine.dispose()


async def _migrate(engine: AsyncEngine) -> int:
    await migrations.upgrade(engine)
    found = await migrations.status(engine)
    print(f"schema at {', '.join(found.current)} (up to date)")
    return 0


async def _status(engine: AsyncEngine) -> int:
    found = await migrations.status(engine)
    print(f"schema at {', '.join(found.current) or '(empty)'}; needed {', '.join(found.heads)}")
    if not found.known:
        print("the database is at a revision this release does not know", file=sys.stderr)
    return 0 if found.up_to_date else 1


async def _downgrade(engine: AsyncEngine, revision: str) -> int:
    await migrations.downgrade(engine, revision)
    found = await migrations.status(engine)
    print(f"schema at {', '.join(found.current) or '(empty)'}")
    return 0


async def _check() -> int:
    differences = await migrations.check_models()
    for difference in differences:
        print(f"models differ from migrations: {difference}", file=sys.stderr)
    if differences:
        print(
            "write a migration: python -m services.script.library revision -m '...'",
            file=sys.stderr,
        )
        return 1
    print("library: models and migrations agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
