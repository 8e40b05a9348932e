"""A loopback LLM provider: a real HTTP server on 127.0.0.1 speaking the Anthropic Messages API
(`POST /v1/messages`) and the OpenAI chat completions API (`POST /v1/chat/completions`).

The real SDK clients talk to it. Its answers are real content: it reads the show context and the
REQUEST block of our prompts and writes the outline or scene with the procedural writer, as the
JSON our LLM writers ask for. Usage comes back with prompt-cache tokens (the first call with a
given show context creates the cache, later ones read it) and Anthropic rate-limit headers.

Faults, for the tests: fixed latency; a request limit per sliding window answered with 429 and
`retry-after-ms`, `retry-after` (seconds) or `retry-after` (HTTP date); and one-shot faults queued
with `inject`: "429", "500", "529", "401", "malformed" (prose, not JSON), "truncated" (the JSON
cut in half, stop reason max_tokens), "invalid" (valid JSON, a speaker not in the cast),
"bad_body" (an HTTP body that is not JSON), "slow" (answers after `slow_seconds`), and
"drop_payoff" (a scene reply without the lines that pay off the setups its card says are due, as
a model that lost a thread would write it), "upper_speaker" (speakers in screenplay capitals),
"stall" (a streamed reply that stops sending for `slow_seconds` half way).
A request with `stream: true` is answered with server-sent events in the provider's format
(Anthropic message_start ... message_stop; OpenAI chat.completion.chunk ... [DONE], usage last
when `stream_options.include_usage`), the text in `stream_chunks` pieces `stream_chunk_seconds`
apart.
Structured output is checked as the real APIs do (testkit/provider_schemas.py): a request without
the native constraint (`output_config.format`, `response_format` json_schema strict), with one
outside the provider's subset, or (OpenAI) with the deprecated `max_tokens`, gets the provider's
400; answers are in the constrained shape (OpenAI strict: every property, null when not given)
and checked against the schema sent (`violations` lists any that do not match).
Like a good model, a revision follows the continuity notes it is given: a missing payoff or an
unplanted setup the note names (`'description'`) gets a line that carries it; and a scene whose
card calls back to an earlier episode (`series_callbacks`) has a line that brings the fact up
(testkit/llm_scene_notes.py).
The batch endpoints (Anthropic Message Batches, OpenAI Files and Batches) are in
testkit/llm_batches.py: items are answered as here (`batch_answer`), shown after `batch_delay`.
Every request is recorded (`received`) with its receive time, the call id and attempt our
writers send, the status and any retry-after given, and the client it came from: a client given
`anthropic_url_for(name)` (or `openai_url_for`) sends to `/r/<name>/v1/...`, so the requests of
several processes sharing one key and one limit can be told apart (`max_in_window` counts them
per window), and records the one-shot fault each request got and a revision's notes.
"""

from __future__ import annotations

import email.utils
import functools
import json
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf import json_format

from doppelganger.v1 import episode_pb2
from services.script import catalog, procedural
from services.script.llm import prompts, schema
from services.script.validation import DEFAULT_SCENE_SECONDS, allocate_targets
from testkit import llm_batches, llm_wire
from testkit.llm_scene_notes import drop_payoffs, follow_thread_notes, play_callbacks
from testkit.llm_wire import (
    ANTHROPIC_COUNT_PATH,
    ANTHROPIC_PATH,
    OPENAI_PATH,
    constrained,
    refusal,
    sse_events,
    text_blocks,
    tokens_of,
    upper_speakers,
    usage_fields,
)

FAULTS = frozenset(
    {
        "429",
        "500",
        "529",
        "401",
        "malformed",
        "truncated",
        "invalid",
        "bad_body",
        "slow",
        "drop_payoff",
        "upper_speaker",
        "stall",
    }
)


@dataclass(frozen=True)
class Received:
    """One request as the server saw it."""

    at: float  # time.monotonic() when the request arrived
    path: str
    call_id: str
    attempt: int
    task: str
    status: int
    retry_after: float | None  # seconds the 429 asked for
    api_key: str
    scene_index: int = -1  # of a scene, revise or rewrite task; -1 for the outline
    answered_at: float = 0.0  # time.monotonic() when the answer was sent
    client: str = ""  # the <name> of a /r/<name>/ base URL
    fault: str = ""  # the one-shot fault this request got
    notes: tuple[str, ...] = ()  # the notes of a revise task
    request: dict[str, Any] = field(default_factory=dict)  # the task's request JSON, as sent
    input_tokens: int = 0  # all of the prompt, cached or not (as reported)
    cached_tokens: int = 0  # of which read from the prompt cache
    cache_creation_tokens: int = 0  # of which written to it (Anthropic)
    output_tokens: int = 0


def max_in_window(times: Iterable[float], window: float) -> int:
    """The most events inside any half-open window of `window` seconds."""
    ordered = sorted(times)
    best = start = 0
    for end, moment in enumerate(ordered):
        while moment - ordered[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


class _ThreadingServer(ThreadingHTTPServer):
    """A thread per connection, and a listen backlog a burst of parallel scenes fits in: with
    the default of 5, the sixth simultaneous new connection has its SYN dropped and the client
    retries it a second later, a stall no real provider adds."""

    daemon_threads = True
    request_queue_size = 128


class LLMServer:
    """Start with `with LLMServer(...) as server:`; `anthropic_url` and `openai_url` are bases."""

    def __init__(
        self,
        *,
        latency: float = 0.0,
        requests_per_window: int | None = None,
        window: float = 60.0,
        retry_after_style: str = "ms",  # "ms", "seconds" or "date"
        slow_seconds: float = 5.0,
        fault_retry_after: float | None = 0.2,
        reported_output_tokens: int | None = None,
        require_structured: bool = True,
        stream_chunks: int = 8,
        stream_chunk_seconds: float = 0.0,
        batch_delay: float = 0.0,
    ) -> None:
        self.latency = latency
        self.requests_per_window = requests_per_window
        self.window = window
        self.retry_after_style = retry_after_style
        self.slow_seconds = slow_seconds
        self.fault_retry_after = fault_retry_after
        self.reported_output_tokens = reported_output_tokens  # usage to report instead of ~chars/4
        self.require_structured = require_structured
        self.stream_chunks = stream_chunks
        self.stream_chunk_seconds = stream_chunk_seconds
        # The batch endpoints' state; items are answered by batch_answer.
        self.batches = llm_batches.Batches(functools.partial(batch_answer, self), batch_delay)
        self.violations: list[str] = []  # answers that did not match the schema they were sent
        self.received: list[Received] = []
        self._accepted: deque[float] = deque()
        self._faults: deque[tuple[str, str | None]] = deque()
        self._cached_prefixes: set[str] = set()
        self.counts: list[int] = []  # input tokens answered by the count endpoint, in order
        self.plans = procedural.EpisodePlans()  # the procedural writer's, kept between requests
        self._lock = threading.Lock()
        self._httpd = _ThreadingServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> LLMServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def anthropic_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def anthropic_url_for(self, client: str) -> str:
        """The Anthropic base URL for one named client (its requests record `client`)."""
        return f"http://127.0.0.1:{self.port}/r/{client}"

    def openai_url_for(self, client: str) -> str:
        return f"http://127.0.0.1:{self.port}/r/{client}/v1"

    # -- test controls ---------------------------------------------------------------------

    def inject(self, *faults: str, path: str | None = None) -> None:
        """Queues one-shot faults, used by the next requests (to `path` only, when given)."""
        unknown = set(faults) - FAULTS
        if unknown:
            raise ValueError(f"unknown faults: {sorted(unknown)}")
        with self._lock:
            self._faults.extend((fault, path) for fault in faults)

    def consume(self, count: int) -> None:
        """Fills the rate window as if another client had just made `count` requests."""
        with self._lock:
            self._accepted.extend([time.monotonic()] * count)

    def calls(self, path: str | None = None, status: int | None = None) -> list[Received]:
        with self._lock:
            return [
                r
                for r in self.received
                if (path is None or r.path == path) and (status is None or r.status == status)
            ]

    # -- request handling (server threads) ------------------------------------------------

    def _next_fault(self, path: str) -> str | None:
        with self._lock:
            for item in self._faults:
                if item[1] in (None, path):
                    self._faults.remove(item)
                    return item[0]
        return None

    def _rate_limited(self, now: float) -> float | None:
        """Seconds until a slot frees when the window is full, else None (and the slot taken)."""
        if self.requests_per_window is None:
            return None
        with self._lock:
            while self._accepted and self._accepted[0] + self.window <= now:
                self._accepted.popleft()
            if len(self._accepted) >= self.requests_per_window:
                return self._accepted[0] + self.window - now
            self._accepted.append(now)
            return None

    def _rate_headers(self, now: float) -> dict[str, str]:
        if self.requests_per_window is None:
            return {}
        with self._lock:
            remaining = max(0, self.requests_per_window - len(self._accepted))
            oldest = self._accepted[0] if self._accepted else now
        reset = datetime.now(UTC) + timedelta(seconds=max(0.0, oldest + self.window - now))
        return {
            "anthropic-ratelimit-requests-limit": str(self.requests_per_window),
            "anthropic-ratelimit-requests-remaining": str(remaining),
            "anthropic-ratelimit-requests-reset": reset.isoformat().replace("+00:00", "Z"),
        }

    def retry_after_headers(self, seconds: float) -> tuple[dict[str, str], float]:
        """The headers that ask for `seconds`, and what they tell a client exactly."""
        if self.retry_after_style == "ms":
            millis = math.ceil(seconds * 1000)
            return {"retry-after-ms": str(millis)}, millis / 1000
        if self.retry_after_style == "seconds":
            return {"retry-after": str(math.ceil(seconds))}, float(math.ceil(seconds))
        # An HTTP date has whole seconds: the next whole second at or after the wait.
        now = datetime.now(UTC)
        when = (now + timedelta(seconds=seconds)).replace(microsecond=0) + timedelta(seconds=1)
        told = (when - now).total_seconds()
        return {"retry-after": email.utils.format_datetime(when, usegmt=True)}, told

    def record(self, received: Received) -> None:
        with self._lock:
            self.received.append(received)

    def prompt_usage(self, path: str, body: dict[str, Any]) -> tuple[int, int, int]:
        """(uncached input, cache creation, cache read) tokens of a request, with a prompt cache
        as each provider keeps one: Anthropic at the request's `cache_control` breakpoints,
        OpenAI on any repeated prefix in steps of 128 tokens; from 1,024 tokens, per model."""
        total, seen = llm_wire.cacheable_prefixes(path, body)
        with self._lock:
            read = max((tokens for tokens, key in seen if key in self._cached_prefixes), default=0)
            self._cached_prefixes.update(key for _, key in seen)
        if path != ANTHROPIC_PATH:
            return total - read, 0, read
        created = max(0, max((tokens for tokens, _ in seen), default=0) - read)
        return total - read - created, created, read


# ---------------------------------------------------------------------------------------------
# Content: what a good model would answer, written by the procedural writer.


def _cast(document: dict[str, Any]) -> list[episode_pb2.Character]:
    return [json_format.ParseDict(c, episode_pb2.Character()) for c in document["cast"]]


def _story(context_text: str) -> tuple[Any, ...]:
    document = prompts.parse_marked_json(context_text, prompts.CONTEXT_MARKER)
    show = catalog.find_show(document["show"]["id"])
    if show is None:
        raise ValueError(f"unknown show {document['show']['id']!r}")
    setting = json_format.ParseDict(document["setting"], episode_pb2.Setting())
    relationships = [
        episode_pb2.Relationship(from_character=r["from"], to_character=r["to"], kind=r["kind"])
        for r in document["relationships"]
    ]
    return show, setting, _cast(document), relationships


def _outline(request: dict[str, Any]) -> episode_pb2.Outline:
    """The outline (or the scene's view of it) a request carries, with its runtime targets."""
    outline = schema.outline_from_payload(request["outline"], request.get("premise", ""))
    outline.scene_count = max(outline.scene_count, request["scene_count"])
    target = request.get("target_runtime_seconds", 0.0)
    allocate_targets(outline, target or outline.scene_count * DEFAULT_SCENE_SECONDS)
    return outline


def _scene_payload(
    story: tuple[Any, ...], request: dict[str, Any], seed: int, plans: procedural.EpisodePlans
) -> dict[str, Any]:
    show, setting, cast, _ = story
    outline = _outline(request)
    index = request["scene_index"]
    plan = plans.plan(show, setting, cast, seed, outline, procedural.scene_total(outline, index))
    payload = schema.scene_payload(procedural.write_planned_scene(plan, index, outline=outline))
    return play_callbacks(payload, request)


def _scene(
    story: tuple[Any, ...], request: dict[str, Any], outline: episode_pb2.Outline
) -> episode_pb2.Scene:
    """The scene a request shows, as a proto."""
    reply = schema.SceneOut.model_validate(request["scene"])
    return schema.scene_to_proto(reply, request["scene_index"], outline, story[2], story[1])


def _revised_scene(
    story: tuple[Any, ...], request: dict[str, Any], seed: int, plans: procedural.EpisodePlans
) -> dict[str, Any]:
    show, setting, cast, _ = story
    outline = _outline(request)
    index = _scene(story, request, outline).index
    plan = plans.plan(show, setting, cast, seed, outline, procedural.scene_total(outline, index))
    revised = procedural.revise_planned_scene(plan, index, request["notes"], outline=outline)
    payload = follow_thread_notes(schema.scene_payload(revised), request["notes"])
    return play_callbacks(payload, request)


def _rewritten_line(
    story: tuple[Any, ...], request: dict[str, Any], seed: int, plans: procedural.EpisodePlans
) -> dict[str, Any]:
    """The procedural writer's punch-up; when it keeps the line, a plain topper."""
    show, setting, cast, _ = story
    joke_fields = request["joke"]
    scene = _scene(story, request, episode_pb2.Outline())
    joke = episode_pb2.Joke(
        id=joke_fields["id"],
        element_index=joke_fields["element_index"],
        pattern=joke_fields["pattern"],
        role=schema.ROLES[joke_fields["role"]],
    )
    original = joke_fields["text"].strip()
    kernel = plans.kernel(show, setting, cast, seed)
    text = procedural.punch_up(show, setting, cast, scene, joke, seed, kernel=kernel)
    if schema.line_problems(schema.LineOut(text=text), original):
        prop = setting.props[0] if setting.props else "paperwork"
        text = f"{original} Blame the {prop}."
    return {"text": text}


def parse_request(task_text: str) -> dict[str, Any]:
    """The REQUEST block of a prompt; a scene's view of the outline joined back together from
    the episode block's structure and the request's detailed beats (prompts.py)."""
    request: dict[str, Any] = prompts.parse_marked_json(task_text, prompts.REQUEST_MARKER)
    if "outline_beats" in request:
        structure = prompts.parse_marked_json(task_text, prompts.EPISODE_MARKER)
        request["outline"] = prompts.joined_outline(structure, request["outline_beats"])
    return request


def answer(context_text: str, task_text: str, plans: procedural.EpisodePlans) -> dict[str, Any]:
    """The reply JSON for one of our prompts; `plans` keeps the episode plans between calls."""
    story = _story(context_text)
    request = parse_request(task_text)
    task, seed = request["task"], int(request.get("seed", 0))
    if task == "outline":
        show, setting, cast, relationships = story
        premise = request.get("premise", "")
        kernel_id = procedural.choose_kernel(
            show.id, seed, " ".join(premise.split()), request.get("avoid_kernels", ())
        )
        outline = procedural.write_outline(
            show, setting, cast, relationships, request["scene_count"], seed,
            request.get("target_runtime_seconds", 0.0),
            kernel=plans.kernel(show, setting, cast, seed, premise, kernel_id),
        )  # fmt: skip
        return schema.outline_payload(outline)
    if task == "scene":
        return _scene_payload(story, request, seed, plans)
    if task == "revise":
        return _revised_scene(story, request, seed, plans)
    if task == "rewrite":
        return _rewritten_line(story, request, seed, plans)
    raise ValueError(f"unknown task {task!r}")


def _invalid(payload: dict[str, Any]) -> dict[str, Any]:
    for element in payload.get("elements", []):
        if element.get("type") == "dialogue":
            element["character"] = "Nobody McNoname"
            break
    else:
        payload["unexpected"] = True
    return payload


def batch_answer(
    server: LLMServer, provider: str, custom_id: str, body: dict[str, Any], fault: str
) -> dict[str, Any]:
    """One batch item (testkit/llm_batches.py) answered as the interactive endpoint answers it,
    not streamed; `fault` is the item's: "invalid" or "errored"."""
    path = ANTHROPIC_PATH if provider == "anthropic" else OPENAI_PATH
    if fault == "errored":
        return {"custom_id": custom_id, "ok": False, "status": 500,
                "error": _error(path, 500)}  # fmt: skip
    refused = refusal(path, body) if server.require_structured else None
    if refused is not None:
        return {"custom_id": custom_id, "ok": False, "status": 400, "error": refused}
    context_text, task_text = _prompt_parts(path, body)
    payload = answer(context_text, task_text, server.plans)
    if fault == "invalid":
        payload = _invalid(payload)
    else:
        payload, violation = constrained(path, body, payload)
        if violation is not None:
            with server._lock:
                server.violations.append(violation)
    text = json.dumps(payload)
    uncached, created, read = server.prompt_usage(path, body)
    prompt_tokens = uncached + created + read
    output_tokens = server.reported_output_tokens or tokens_of(text)
    if path == ANTHROPIC_PATH:
        message: dict[str, Any] = {
            "id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant",
            "model": body["model"], "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": uncached, "output_tokens": output_tokens,
                      "cache_creation_input_tokens": created, "cache_read_input_tokens": read},
        }  # fmt: skip
    else:
        message = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion",
            "created": int(time.time()), "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": output_tokens,
                      "total_tokens": prompt_tokens + output_tokens,
                      "prompt_tokens_details": {"cached_tokens": read}},
        }  # fmt: skip
    return {"custom_id": custom_id, "ok": True, "status": 200, "message": message}


# ---------------------------------------------------------------------------------------------
# HTTP


def _handler(server: LLMServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in separate writes; with Nagle on, keep-alive responses stall
        # ~40 ms on the client's delayed ACK, which would show up as our "overhead".
        disable_nagle_algorithm = True

        fault = ""  # the one-shot fault of the request being answered

        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            path, client = _client_path(self.path.split("?")[0])
            llm_batches.get(server, self, path, client)

        def do_POST(self) -> None:
            arrived = time.monotonic()
            batch_path, batch_client = _client_path(self.path.split("?")[0])
            if llm_batches.handles(batch_path):
                llm_batches.post(server, self, batch_path, batch_client)
                return
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
            path, client = _client_path(self.path.split("?")[0])
            key = self.headers.get("x-api-key") or self.headers.get("authorization", "")
            call = (
                self.headers.get("x-doppel-call-id", ""),
                int(self.headers.get("x-doppel-attempt", "0")),
            )
            if path == ANTHROPIC_COUNT_PATH:  # free, and limited apart from messages
                counted = sum(tokens_of(text) for text, _ in text_blocks(ANTHROPIC_PATH, body))
                with server._lock:
                    server.counts.append(counted)
                self._send(200, {"input_tokens": counted})
                return
            if path not in (ANTHROPIC_PATH, OPENAI_PATH):
                self._send(404, {"error": {"type": "not_found_error", "message": path}})
                return
            context_text, task_text = _prompt_parts(path, body)
            task, scene_index = _task_name(task_text), _scene_index(task_text)
            self.fault = ""
            status, retry_after, headers, payload = self._respond(
                path, body, context_text, task_text, arrived
            )
            # The answer is written while the "model" thinks: a provider's latency is wall
            # time on its side, and our own CPU (the benchmark's subject) must not add to it.
            if server.latency:
                time.sleep(max(0.0, arrived + server.latency - time.monotonic()))
            received = Received(
                arrived, path, call[0], call[1], task, status, retry_after, key or "", scene_index,
                answered_at=time.monotonic(), client=client, fault=self.fault,
                notes=_notes(task_text), request=_request(task_text),
                **usage_fields(payload if status == 200 else None),
            )  # fmt: skip
            server.record(received)
            if status == 200 and body.get("stream"):
                self._send_stream(path, body, payload, headers)
            else:
                self._send(status, payload, headers)

        def _send_stream(
            self, path: str, body: dict[str, Any], payload: Any, headers: dict[str, str]
        ) -> None:
            """The answer as server-sent events, chunked (the connection is kept, as a real
            provider's is)."""
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("cache-control", "no-cache")
            self.send_header("transfer-encoding", "chunked")
            self.send_header("request-id", f"req_{uuid.uuid4().hex[:16]}")
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if isinstance(payload, bytes):  # bad_body: an event that is not JSON
                events = [b"event: content_block_delta\ndata: " + payload + b"\n\n"]
            else:
                events = sse_events(path, body, payload, server.stream_chunks)
            stall_at = len(events) // 2 if self.fault == "stall" else -1
            try:
                for number, event in enumerate(events):
                    if number == stall_at:
                        time.sleep(server.slow_seconds)
                        self.close_connection = True  # The client has given up on it.
                    elif number and server.stream_chunk_seconds:
                        time.sleep(server.stream_chunk_seconds)
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                return  # The client gave up (its idle timeout).

        def _respond(
            self, path: str, body: dict[str, Any], context_text: str, task_text: str, arrived: float
        ) -> tuple[int, float | None, dict[str, str], Any]:
            headers: dict[str, str] = {}
            told: float | None = None
            wait = server._rate_limited(arrived)
            if wait is not None:
                headers, told = server.retry_after_headers(wait)
                headers.update(server._rate_headers(arrived))
                return 429, told, headers, _error(path, 429)
            refused = refusal(path, body) if server.require_structured else None
            if refused is not None:
                return 400, None, {}, refused
            fault = server._next_fault(path)
            self.fault = fault or ""
            if fault in ("429", "500", "529", "401"):
                status = int(fault)
                if status == 429 and server.fault_retry_after is not None:
                    headers, told = server.retry_after_headers(server.fault_retry_after)
                return status, told, headers, _error(path, status)
            if fault == "slow":
                time.sleep(server.slow_seconds)
            if fault == "bad_body":
                return 200, None, {}, b'{"id": "msg_01", "content": [{"type": "te'
            payload = answer(context_text, task_text, server.plans)
            if fault == "drop_payoff" and _task_name(task_text) == "scene":
                request = parse_request(task_text)
                payload = drop_payoffs(payload, request)
            if fault == "invalid":
                payload = _invalid(payload)
            elif fault == "upper_speaker":
                payload = upper_speakers(payload)
            else:
                payload, violation = constrained(path, body, payload)
                if violation is not None:
                    with server._lock:
                        server.violations.append(violation)
            text = json.dumps(payload)
            stop = "end_turn"
            if fault == "malformed":
                text = "Sure! Here is the scene you asked for. It opens on a quiet morning..."
            elif fault == "truncated":
                text, stop = text[: len(text) // 2], "max_tokens"
            response = _message(path, body, context_text, text, stop)
            return 200, None, server._rate_headers(arrived), response

        def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.send_header("request-id", f"req_{uuid.uuid4().hex[:16]}")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    def _message(path: str, body: dict[str, Any], context_text: str, text: str, stop: str) -> Any:
        uncached, created, read = server.prompt_usage(path, body)
        prompt_tokens = uncached + created + read
        output_tokens = server.reported_output_tokens or tokens_of(text)
        if path == ANTHROPIC_PATH:
            return {
                "id": f"msg_{uuid.uuid4().hex[:24]}",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": [{"type": "text", "text": text}],
                "stop_reason": stop,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": uncached,
                    "output_tokens": output_tokens,
                    "cache_creation_input_tokens": created,
                    "cache_read_input_tokens": read,
                },
            }
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "length" if stop == "max_tokens" else "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": output_tokens,
                "total_tokens": prompt_tokens + output_tokens,
                "prompt_tokens_details": {"cached_tokens": read},
            },
        }

    return Handler


def _client_path(path: str) -> tuple[str, str]:
    """(`/v1/...`, client name) of `/r/<name>/v1/...`; (path, "") of any other path."""
    if path.startswith("/r/"):
        client, _, rest = path[3:].partition("/")
        return "/" + rest, client
    return path, ""


def _error(path: str, status: int) -> dict[str, Any]:
    kinds = {429: "rate_limit_error", 500: "api_error", 529: "overloaded_error",
             401: "authentication_error"}  # fmt: skip
    kind = kinds.get(status, "api_error")
    if path == ANTHROPIC_PATH:
        return {"type": "error", "error": {"type": kind, "message": f"loopback {kind}"}}
    return {"error": {"message": f"loopback {kind}", "type": kind, "code": str(status)}}


def _prompt_parts(path: str, body: dict[str, Any]) -> tuple[str, str]:
    """(show context text, first user message) of an Anthropic or OpenAI request."""
    if path == ANTHROPIC_PATH:
        system = body.get("system", [])
        blocks = [system] if isinstance(system, str) else [b.get("text", "") for b in system]
        context = next((b for b in blocks if prompts.CONTEXT_MARKER in b), "")
        messages = body["messages"]
    else:
        context = next((m["content"] for m in body["messages"] if m["role"] == "system"), "")
        messages = [m for m in body["messages"] if m["role"] != "system"]
    first = messages[0]["content"]
    task = first if isinstance(first, str) else "\n\n".join(b.get("text", "") for b in first)
    return context, task


def _task_name(task_text: str) -> str:
    try:
        return str(prompts.parse_marked_json(task_text, prompts.REQUEST_MARKER)["task"])
    except (ValueError, KeyError):
        return ""


def _request(task_text: str) -> dict[str, Any]:
    try:
        request = parse_request(task_text)
    except (ValueError, AttributeError, KeyError):
        return {}
    return request if isinstance(request, dict) else {}


def _notes(task_text: str) -> tuple[str, ...]:
    try:
        notes = prompts.parse_marked_json(task_text, prompts.REQUEST_MARKER).get("notes", [])
    except (ValueError, AttributeError):
        return ()
    return tuple(str(note) for note in notes) if isinstance(notes, list) else ()


def _scene_index(task_text: str) -> int:
    try:
        return int(prompts.parse_marked_json(task_text, prompts.REQUEST_MARKER)["scene_index"])
    except (ValueError, KeyError, TypeError):
        return -1
