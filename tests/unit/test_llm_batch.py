"""Pure logic of batch mode: custom ids, answers as JSON, the batch caller (collect, answer at
half price, fall back), the GetBatch view of a job, the loopback's multipart parsing."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from services.script.batch_jobs import job_proto
from services.script.library.records import BatchRecord
from services.script.llm.batch import BATCH_PRICE_FACTOR, ItemResult, _openai_item, custom_id
from services.script.llm.batch_caller import BatchCaller, Deferred
from services.script.llm.budget import Prices, Usage
from services.script.llm.caller import LLMCaller
from services.script.llm.provenance import part_scope
from services.script.llm.providers import AnthropicChat, ChatRequest, ChatResult
from testkit.llm_batches import _multipart

PRICES = Prices([("claude-test", 3.0, 15.0)])


def chat_request(task_text: str = "write the outline") -> ChatRequest:
    return ChatRequest(
        model="", instructions="universal", context="show", messages=(("user", task_text),),
        max_tokens=1000, temperature=0.7, reply_schema={"type": "object", "properties": {}},
    )  # fmt: skip


@dataclass
class FakeInner:
    """The interactive caller: answers and counts (a unit test's stand-in)."""

    provider: Any = field(default_factory=lambda: AnthropicChat("k", "http://127.0.0.1:9", 1.0))
    model: str = "claude-test"
    limiter: Any = None
    instruments: Any = None
    policy: Any = None
    calls: list[ChatRequest] = field(default_factory=list)

    def prepare(self, request: ChatRequest) -> ChatRequest:
        from dataclasses import replace

        return replace(request, model=self.model, temperature=None)

    async def chat(self, request: ChatRequest, task: str, budget: Any) -> ChatResult:
        self.calls.append(request)
        return ChatResult("{}", "msg_live", self.model, ("end_turn",), Usage(10, 5))


def test_custom_ids_are_stable_digests_in_the_providers_alphabet() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 5}
    same = dict(reversed(list(body.items())))
    assert custom_id("scene", body) == custom_id("scene", same)
    assert custom_id("scene", body) != custom_id("scene", {**body, "max_tokens": 6})
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", custom_id("outline", body))


def test_an_answer_survives_json_and_becomes_a_chat_result() -> None:
    item = ItemResult("scene-ab", ok=True, text='{"a": 1}', response_id="msg_1",
                      response_model="claude-test", finish_reason="max_tokens",
                      input_tokens=100, output_tokens=50, cache_read_tokens=7)  # fmt: skip
    again = ItemResult.from_json(item.to_json())
    assert again == item
    result = again.chat_result()
    assert result.truncated and result.usage == Usage(100, 50, 0, 7) and result.text == '{"a": 1}'


def test_openai_error_lines_and_cached_tokens() -> None:
    ok = _openai_item({"custom_id": "c1", "response": {"status_code": 200, "body": {
        "id": "chatcmpl-1", "model": "gpt", "choices": [{"message": {"content": "{}"},
                                                         "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 9,
                  "prompt_tokens_details": {"cached_tokens": 60}}}}})  # fmt: skip
    assert ok.ok and ok.input_tokens == 40 and ok.cache_read_tokens == 60 and ok.output_tokens == 9
    failed = _openai_item({"custom_id": "c2", "response": {"status_code": 500, "body": {
        "error": {"type": "api_error"}}}})  # fmt: skip
    assert not failed.ok and failed.error == "HTTP 500: api_error"


async def test_collecting_records_the_exact_body_and_defers() -> None:
    inner = FakeInner()
    caller = BatchCaller(inner, PRICES, None, frozenset({"outline"}))  # type: ignore[arg-type]
    with pytest.raises(Deferred) as deferred:
        await caller.chat(chat_request(), "outline", budget=None)  # type: ignore[arg-type]
    body = inner.provider.body(inner.prepare(chat_request()))
    assert deferred.value.item.body == body and "stream" not in body
    assert deferred.value.item.custom_id == custom_id("outline", body)
    assert inner.calls == [] and caller.tally.collected == [deferred.value.item]


async def test_answers_come_from_the_batch_at_half_price_and_the_rest_interactively() -> None:
    inner = FakeInner()
    request = chat_request()
    key = custom_id("outline", inner.provider.body(inner.prepare(request)))
    answer = ItemResult(key, ok=True, text='{"title": "x"}', response_model="claude-test",
                        input_tokens=1_000_000, output_tokens=100_000)  # fmt: skip
    caller = BatchCaller(inner, PRICES, {key: answer})  # type: ignore[arg-type]
    with part_scope("outline") as record:
        result = await caller.chat(request, "outline", budget=None)  # type: ignore[arg-type]
    assert result.text == '{"title": "x"}' and inner.calls == []
    full = PRICES.cost("claude-test", Usage(1_000_000, 100_000))
    assert record.cost_usd == pytest.approx(BATCH_PRICE_FACTOR * full) and full == 4.5
    assert record.llm_calls == 1 and record.input_tokens == 1_000_000
    # A repair (another body) and a failed item go to the interactive caller.
    repair = chat_request("repair this")
    failed_key = custom_id("scene", inner.provider.body(inner.prepare(chat_request("scene"))))
    caller = BatchCaller(
        cast(LLMCaller, inner),
        PRICES,
        {key: answer, failed_key: ItemResult(failed_key, ok=False, error="x")},
    )
    await caller.chat(repair, "outline", budget=None)  # type: ignore[arg-type]
    await caller.chat(chat_request("scene"), "scene", budget=None)  # type: ignore[arg-type]
    assert len(inner.calls) == 2 and caller.tally.interactive == 2 and caller.tally.answered == 0


def record(**changes: Any) -> BatchRecord:
    values: dict[str, Any] = {
        "id": "bj-1", "provider": "anthropic", "provider_batch_id": "msgbatch_1",
        "status": "in_progress", "series_id": None, "request": {}, "stage": "scenes",
        "result": {"requests": 3, "succeeded": 2, "failed": 1, "episode_ids": []},
        "created_at": datetime(2026, 12, 3, tzinfo=UTC),
        "updated_at": datetime(2026, 12, 3, 1, tzinfo=UTC), "error": None,
    }  # fmt: skip
    values.update(changes)
    return BatchRecord(**values)


def test_get_batch_reports_status_stage_and_counts() -> None:
    job = job_proto(record())
    assert (job.status, job.stage, job.requests, job.succeeded, job.failed) == (
        "in_progress", "scenes", 3, 2, 1,
    )  # fmt: skip
    assert job.updated_at.ToDatetime(UTC) == datetime(2026, 12, 3, 1, tzinfo=UTC)
    assert job_proto(record(stage="assembling")).status == "ended"
    done = job_proto(record(status="completed", stage="done",
                            result={"episode_ids": ["ep-1"]}))  # fmt: skip
    assert done.status == "assembled" and list(done.episode_ids) == ["ep-1"]
    failed = job_proto(record(status="failed", error="provider batch expired"))
    assert failed.status == "failed" and failed.error == "provider batch expired"


def test_the_loopback_reads_multipart_uploads() -> None:
    boundary = "XyZ"
    raw = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="b.jsonl"\r\n'
        f'Content-Type: application/jsonl\r\n\r\n{{"a": 1}}\n\r\n--{boundary}--\r\n'
    ).encode()
    fields = _multipart(f"multipart/form-data; boundary={boundary}", raw)
    assert fields == {"purpose": b"batch", "file": b'{"a": 1}\n'}
