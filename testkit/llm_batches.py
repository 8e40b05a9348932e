"""The loopback provider's batch endpoints: Anthropic Message Batches and the OpenAI Batch API.

Anthropic: `POST /v1/messages/batches` (`{"requests": [{"custom_id", "params"}]}`), `GET
/v1/messages/batches/{id}`, and the results as JSONL at the batch's `results_url` once it has
ended. OpenAI: `POST /v1/files` (multipart, purpose `batch`, a JSONL of `{"custom_id", "method",
"url", "body"}`), `POST /v1/batches`, `GET /v1/batches/{id}`, `GET /v1/files/{id}/content` (the
output file; failed items in the error file).

Every item is answered as the interactive endpoint would answer it (the same content, the same
structured-output checks and 400s), when the batch is created; the batch reports it is still in
progress for `delay` seconds after that, or until `release()` after `hold()` (tests stop a
server in the middle of a batch that way, without timing). Usage is reported as the interactive
endpoint reports it: the half price of a batch is the client's to apply, as with the real APIs.
One-shot item faults (`inject_items`): "invalid" (a speaker not in the cast: the client repairs),
"errored" (the item fails: Anthropic `errored`, OpenAI a 500 line in the error file); batch
faults (`fail_next_batch`): "expired" (every item expires; OpenAI status `expired`).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol

# How the server answers one item: (provider, custom_id, body, item fault) -> result dict
# ({"custom_id", "ok", "status", "message" or "error"}); testkit/llm_server.py's batch_answer.
Answer = Callable[[str, str, dict[str, Any], str], dict[str, Any]]


class LLMServer(Protocol):
    """What the batch endpoints need of testkit/llm_server.py's server (no import cycle)."""

    batches: Batches

    @property
    def anthropic_url(self) -> str: ...

    def anthropic_url_for(self, client: str) -> str: ...


ANTHROPIC_BATCHES = "/v1/messages/batches"
OPENAI_FILES = "/v1/files"
OPENAI_BATCHES = "/v1/batches"
ITEM_FAULTS = frozenset({"invalid", "errored"})
BATCH_FAULTS = frozenset({"expired"})


@dataclass
class LoopbackBatch:
    """One submitted batch: its answers are written at creation, shown once it is ready."""

    id: str
    provider: str  # "anthropic" or "openai"
    created: float  # time.monotonic()
    results: list[dict[str, Any]]  # {"custom_id", "ok", "message" or "error", "status"}
    client: str = ""
    fault: str = ""
    input_file_id: str = ""
    endpoint: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    retrieved: int = 0  # GETs of the batch (the pollers' visits)


class Batches:
    """The batch state of one LLMServer."""

    def __init__(self, answer: Answer, delay: float = 0.0) -> None:
        self.answer = answer
        self.delay = delay
        self.batches: dict[str, LoopbackBatch] = {}
        self.files: dict[str, bytes] = {}
        self._held = False
        self._item_faults: deque[str] = deque()
        self._batch_faults: deque[str] = deque()
        self._lock = threading.Lock()

    # -- test controls ----------------------------------------------------------------------

    def hold(self) -> None:
        """Batches stay in progress until `release` (whatever their delay)."""
        self._held = True

    def release(self) -> None:
        self._held = False

    def inject_items(self, *faults: str) -> None:
        """One-shot faults for the next batch items, in order."""
        unknown = set(faults) - ITEM_FAULTS
        if unknown:
            raise ValueError(f"unknown item faults: {sorted(unknown)}")
        with self._lock:
            self._item_faults.extend(faults)

    def fail_next_batch(self, fault: str = "expired") -> None:
        if fault not in BATCH_FAULTS:
            raise ValueError(f"unknown batch fault: {fault}")
        with self._lock:
            self._batch_faults.append(fault)

    def created(self, provider: str | None = None) -> list[LoopbackBatch]:
        with self._lock:
            return [b for b in self.batches.values() if provider in (None, b.provider)]

    # -- state ------------------------------------------------------------------------------

    def ready(self, batch: LoopbackBatch) -> bool:
        return not self._held and time.monotonic() >= batch.created + self.delay

    def _new(self, provider: str, items: list[tuple[str, dict[str, Any]]], client: str) -> Any:
        with self._lock:
            fault = self._batch_faults.popleft() if self._batch_faults else ""
            faults = [self._item_faults.popleft() if self._item_faults else "" for _ in items]
        results = [
            self.answer(provider, custom_id, body, item_fault)
            for (custom_id, body), item_fault in zip(items, faults, strict=True)
        ]
        prefix = "msgbatch_" if provider == "anthropic" else "batch_"
        batch = LoopbackBatch(
            prefix + uuid.uuid4().hex[:24], provider, time.monotonic(), results, client, fault
        )
        with self._lock:
            self.batches[batch.id] = batch
        return batch

    def get(self, batch_id: str) -> LoopbackBatch | None:
        with self._lock:
            batch = self.batches.get(batch_id)
            if batch is not None:
                batch.retrieved += 1
            return batch


# ---------------------------------------------------------------------------------------------
# HTTP


def handles(path: str) -> bool:
    return path.startswith((ANTHROPIC_BATCHES, OPENAI_FILES, OPENAI_BATCHES))


def _iso(moment: float) -> str:
    when = datetime.now(UTC) - timedelta(seconds=time.monotonic() - moment)
    return when.isoformat().replace("+00:00", "Z")


def _anthropic_view(batches: Batches, batch: LoopbackBatch, base: str) -> dict[str, Any]:
    ready = batches.ready(batch)
    counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    if not ready:
        counts["processing"] = len(batch.results)
    elif batch.fault == "expired":
        counts["expired"] = len(batch.results)
    else:
        counts["succeeded"] = sum(1 for r in batch.results if r["ok"])
        counts["errored"] = len(batch.results) - counts["succeeded"]
    return {
        "id": batch.id, "type": "message_batch",
        "processing_status": "ended" if ready else "in_progress",
        "request_counts": counts, "created_at": _iso(batch.created),
        "expires_at": _iso(batch.created + 86400), "ended_at": _iso(time.monotonic()) if ready
        else None, "cancel_initiated_at": None, "archived_at": None,
        "results_url": f"{base}{ANTHROPIC_BATCHES}/{batch.id}/results" if ready else None,
    }  # fmt: skip


def _anthropic_results(batch: LoopbackBatch) -> bytes:
    lines = []
    for result in batch.results:
        if batch.fault == "expired":
            outcome: dict[str, Any] = {"type": "expired"}
        elif result["ok"]:
            outcome = {"type": "succeeded", "message": result["message"]}
        else:
            outcome = {"type": "errored", "error": result["error"]}
        lines.append(json.dumps({"custom_id": result["custom_id"], "result": outcome}))
    return ("\n".join(lines) + "\n").encode()


def _openai_view(batches: Batches, batch: LoopbackBatch) -> dict[str, Any]:
    ready = batches.ready(batch)
    total = len(batch.results)
    completed = sum(1 for r in batch.results if r["ok"]) if ready else 0
    failed = total - completed if ready else 0
    status = "in_progress"
    output_file = error_file = None
    if ready and batch.fault == "expired":
        status, completed, failed = "expired", 0, 0
    elif ready:
        status = "completed"
        output_file = f"file-out-{batch.id}" if completed else None
        error_file = f"file-err-{batch.id}" if failed else None
    created = int(time.time() - (time.monotonic() - batch.created))
    return {
        "id": batch.id, "object": "batch", "endpoint": batch.endpoint, "errors": None,
        "input_file_id": batch.input_file_id, "completion_window": "24h", "status": status,
        "output_file_id": output_file, "error_file_id": error_file, "created_at": created,
        "request_counts": {"total": total, "completed": completed, "failed": failed},
        "metadata": batch.metadata,
    }  # fmt: skip


def _openai_file(batch: LoopbackBatch, errors: bool) -> bytes:
    lines = []
    for result in batch.results:
        if result["ok"] == errors:
            continue
        body = result["message"] if result["ok"] else result["error"]
        lines.append(json.dumps({
            "id": f"batch_req_{uuid.uuid4().hex[:16]}", "custom_id": result["custom_id"],
            "response": {"status_code": result["status"], "request_id": uuid.uuid4().hex,
                         "body": body},
            "error": None,
        }))  # fmt: skip
    return ("\n".join(lines) + "\n").encode()


def post(server: LLMServer, handler: BaseHTTPRequestHandler, path: str, client: str) -> None:
    """POST of a batch endpoint (the body not yet read)."""
    batches = server.batches
    raw = handler.rfile.read(int(handler.headers.get("content-length", 0)))
    send = handler._send  # type: ignore[attr-defined]
    if path == ANTHROPIC_BATCHES:
        requests = json.loads(raw).get("requests") or []
        items = [(r["custom_id"], r["params"]) for r in requests]
        batch = batches._new("anthropic", items, client)
        send(200, _anthropic_view(batches, batch, _base(server, client)))
    elif path == OPENAI_FILES:
        fields = _multipart(handler.headers.get("content-type", ""), raw)
        if fields.get("purpose", b"").decode() != "batch" or "file" not in fields:
            send(400, {"error": {"message": "purpose must be batch, with a file",
                                 "type": "invalid_request_error"}})  # fmt: skip
            return
        file_id = f"file-{uuid.uuid4().hex[:24]}"
        batches.files[file_id] = fields["file"]
        send(200, {"id": file_id, "object": "file", "bytes": len(fields["file"]),
                   "created_at": int(time.time()), "filename": "batch.jsonl",
                   "purpose": "batch", "status": "processed"})  # fmt: skip
    elif path == OPENAI_BATCHES:
        body = json.loads(raw)
        data = batches.files.get(body.get("input_file_id", ""))
        if data is None:
            send(404, {"error": {"message": "no such file", "type": "invalid_request_error"}})
            return
        lines = [json.loads(line) for line in data.decode().splitlines() if line.strip()]
        batch = batches._new("openai", [(x["custom_id"], x["body"]) for x in lines], client)
        batch.input_file_id, batch.endpoint = body["input_file_id"], body.get("endpoint", "")
        batch.metadata = body.get("metadata") or {}
        send(200, _openai_view(batches, batch))
    else:
        send(404, {"error": {"type": "not_found_error", "message": path}})


def get(server: LLMServer, handler: BaseHTTPRequestHandler, path: str, client: str) -> None:
    batches = server.batches
    send = handler._send  # type: ignore[attr-defined]
    parts = path.strip("/").split("/")
    if path.startswith(ANTHROPIC_BATCHES + "/"):
        batch = batches.get(parts[3])
        if batch is None:
            send(404, {"type": "error", "error": {"type": "not_found_error", "message": path}})
        elif len(parts) == 5 and parts[4] == "results":
            if not batches.ready(batch):
                send(
                    400,
                    {
                        "type": "error",
                        "error": {
                            "type": "invalid_request_error",
                            "message": "batch has not ended",
                        },
                    },
                )
            else:
                send(200, _anthropic_results(batch))
        else:
            send(200, _anthropic_view(batches, batch, _base(server, client)))
    elif path.startswith(OPENAI_BATCHES + "/"):
        batch = batches.get(parts[2])
        if batch is None:
            send(404, {"error": {"message": "no such batch", "type": "invalid_request_error"}})
        else:
            send(200, _openai_view(batches, batch))
    elif path.startswith(OPENAI_FILES + "/") and path.endswith("/content"):
        file_id = parts[2]
        for prefix, errors in (("file-out-", False), ("file-err-", True)):
            if file_id.startswith(prefix):
                batch = batches.get(file_id.removeprefix(prefix))
                if batch is not None and batches.ready(batch):
                    send(200, _openai_file(batch, errors))
                    return
        send(404, {"error": {"message": "no such file", "type": "invalid_request_error"}})
    else:
        send(404, {"error": {"type": "not_found_error", "message": path}})


def _base(server: LLMServer, client: str) -> str:
    return server.anthropic_url_for(client) if client else server.anthropic_url


def _multipart(content_type: str, raw: bytes) -> dict[str, bytes]:
    """The fields of a multipart/form-data body."""
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + raw)
    fields: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if name:
            fields[str(name)] = payload if isinstance(payload, bytes) else b""
    return fields
