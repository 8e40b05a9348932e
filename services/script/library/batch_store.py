"""Batch jobs as batch mode uses them: written whole at submission, claimed by one poller at a
time, advanced only by the poller that holds the claim.

A claim (`claimed_by`, `claimed_until`) is what makes a job finish exactly once: after a restart
(or on a second replica) a poller takes over a job only once the previous holder's claim has
run out, and every change it makes is conditional on still holding it. Each function is one
transaction (the library's `_write`).
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, insert, or_, select, update

from services.script.library.database import uninterrupted
from services.script.library.errors import Conflict, NotFound
from services.script.library.models import PENDING_BATCH_STATUSES, BatchJob, utc_now
from services.script.library.planning import series_row
from services.script.library.records import BatchRecord
from services.script.library.store import Library

_BATCH = list(BatchJob.__table__.c)


def new_job_id() -> str:
    return "bj-" + secrets.token_hex(10)


@uninterrupted
async def submit_job(
    library: Library,
    *,
    job_id: str,
    provider: str,
    provider_batch_id: str | None,
    request: Any,
    result: Any,
    stage: str,
    series_id: str | None = None,
) -> BatchRecord:
    """The job as submitted (its first provider batch already created; None when there was
    nothing to send), in one transaction."""
    now = utc_now()
    with library._errors():
        async with library._write() as connection:
            if series_id is not None:
                await series_row(connection, series_id)
            await connection.execute(
                insert(BatchJob).values(
                    id=job_id, provider=provider, provider_batch_id=provider_batch_id,
                    status="submitted", series_id=series_id, request=request, result=result,
                    stage=stage, created_at=now, updated_at=now,
                )
            )  # fmt: skip
            row = (await connection.execute(select(*_BATCH).where(BatchJob.id == job_id))).one()
    return BatchRecord.from_row(row)


async def get_job(library: Library, job_id: str) -> BatchRecord:
    with library._errors():
        async with library._read() as connection:
            row = (
                await connection.execute(select(*_BATCH).where(BatchJob.id == job_id))
            ).one_or_none()
    if row is None:
        raise NotFound(f"batch_id {job_id} not found")
    return BatchRecord.from_row(row)


@uninterrupted
async def claim(library: Library, job_id: str, owner: str, seconds: float) -> bool:
    """Takes (or renews) the claim on an unfinished job for `seconds`; False while another
    poller's claim runs."""
    now = utc_now()
    with library._errors():
        async with library._write() as connection:
            result = await connection.execute(
                update(BatchJob)
                .where(
                    and_(
                        BatchJob.id == job_id,
                        BatchJob.status.in_(PENDING_BATCH_STATUSES),
                        or_(
                            BatchJob.claimed_until.is_(None),
                            BatchJob.claimed_until < now,
                            BatchJob.claimed_by == owner,
                        ),
                    )
                )
                .values(claimed_by=owner, claimed_until=now + timedelta(seconds=seconds))
            )
    return bool(result.rowcount)


@uninterrupted
async def release_claims(library: Library, owner: str) -> int:
    """Gives up every claim `owner` holds (a poller stopping: another replica resumes the jobs
    at once instead of after the claim's time); how many."""
    with library._errors():
        async with library._write() as connection:
            result = await connection.execute(
                update(BatchJob)
                .where(BatchJob.claimed_by == owner)
                .values(claimed_by=None, claimed_until=None)
            )
    return int(result.rowcount)


@uninterrupted
async def advance(
    library: Library,
    job_id: str,
    owner: str,
    *,
    claim_seconds: float = 0.0,
    **changes: Any,
) -> BatchRecord:
    """Changes the job (status, stage, provider_batch_id, result, error) if `owner` still
    holds its claim, renewing it for `claim_seconds` (0: released); Conflict otherwise."""
    now = utc_now()
    until: datetime | None = now + timedelta(seconds=claim_seconds) if claim_seconds else None
    values = {**changes, "updated_at": now, "claimed_until": until}
    if not claim_seconds:
        values["claimed_by"] = None
    with library._errors():
        async with library._write() as connection:
            result = await connection.execute(
                update(BatchJob)
                .where(and_(BatchJob.id == job_id, BatchJob.claimed_by == owner))
                .values(**values)
            )
            if not result.rowcount:
                raise Conflict(f"batch job {job_id} is no longer held by {owner}")
            row = (await connection.execute(select(*_BATCH).where(BatchJob.id == job_id))).one()
    return BatchRecord.from_row(row)
