"""tokens.py: the minimum cacheable prefix per model, prefixes counted once (the count is a
stand-in provider here: pure logic), estimates before counts, calibration from usage."""

from __future__ import annotations

from services.script.llm.budget import Usage
from services.script.llm.providers import ChatRequest
from services.script.llm.tokens import TokenCounter, min_cacheable_tokens


def test_minimum_cacheable_prefix_by_model() -> None:
    assert min_cacheable_tokens("anthropic", "claude-sonnet-4-5") == 1024
    assert min_cacheable_tokens("anthropic", "claude-opus-4-5-20251101") == 4096
    assert min_cacheable_tokens("anthropic", "claude-haiku-4-5") == 4096
    assert min_cacheable_tokens("anthropic", "claude-3-5-haiku-latest") == 2048
    assert min_cacheable_tokens("openai", "gpt-4o-mini") == 1024
    assert min_cacheable_tokens("other", "x") == 1024


class _Counting:
    """Counts 1 token per 2 characters, and how often it was asked."""

    def __init__(self) -> None:
        self.asked: list[int] = []

    async def count_tokens(self, request: ChatRequest, blocks: int) -> int:
        self.asked.append(blocks)
        texts = (request.instructions, request.context, request.episode)[:blocks]
        return sum(len(text) for text in texts) // 2


def _request(episode: str = "e" * 400) -> ChatRequest:
    return ChatRequest(
        model="m", instructions="u" * 4000, context="s" * 1000, episode=episode,
        messages=(("user", "t" * 200),), max_tokens=10, temperature=None,
    )  # fmt: skip


async def test_prefixes_are_estimated_then_counted_once() -> None:
    provider = _Counting()
    counter = TokenCounter(provider, "m")
    first = counter.prefixes(_request())
    assert first == (1000, 1250, 1350)  # characters / 4 until the counts answer
    assert counter.prefixes(_request()) == first  # no second count while one is in flight
    await counter.settled()
    assert sorted(provider.asked) == [1, 2, 3]
    assert counter.prefixes(_request()) == (2000, 2500, 2700)
    # Another episode block: only its own prefix is counted.
    counter.prefixes(_request("f" * 800))
    await counter.settled()
    assert sorted(provider.asked) == [1, 2, 3, 3]
    assert counter.estimate(_request(), (2000, 2500, 2700)) == 2700 + 50 + 1


async def test_without_a_count_endpoint_calibration_moves_the_estimate() -> None:
    counter = TokenCounter(object(), "m")
    request = _request()
    before = counter.estimate(request, counter.prefixes(request))
    reported = 2 * before  # the provider counts twice what characters / 4 says
    for _ in range(20):
        counter.calibrate(request, Usage(input_tokens=reported // 3, cache_read_tokens=reported
                                         - reported // 3))  # fmt: skip
    after = counter.estimate(request, counter.prefixes(request))
    assert abs(after - reported) / reported < 0.02
    counter.calibrate(request, Usage())  # nothing reported: nothing learnt
    assert counter.estimate(request, counter.prefixes(request)) == after


def test_without_an_event_loop_prefixes_are_estimated_and_nothing_is_counted() -> None:
    provider = _Counting()
    counter = TokenCounter(provider, "m")
    assert counter.prefixes(_request()) == (1000, 1250, 1350)
    assert provider.asked == []
    assert counter.prefixes(_request()) == (1000, 1250, 1350)  # still not marked as counted
