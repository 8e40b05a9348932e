"""The render pipeline around the renderers: formats, limits, cache keys, the LRU."""

from __future__ import annotations

import hashlib

from doppelganger.v1 import episode_pb2, scene_pb2
from services.scene.lru import DocumentCache
from services.scene.render import FOUNTAIN, RENDERERS, Document, format_error, renderer_for
from services.scene.server import cache_key, chunks
from services.scene.validation import MAX_TEXT_CHARS, find_long_text


def document(data: bytes) -> Document:
    return Document(scene_pb2.DOCUMENT_FORMAT_FOUNTAIN, "text/plain; charset=utf-8", data, 2, 1)


def test_unspecified_format_means_fountain() -> None:
    assert renderer_for(scene_pb2.DOCUMENT_FORMAT_UNSPECIFIED) is FOUNTAIN
    assert format_error(scene_pb2.DOCUMENT_FORMAT_UNSPECIFIED) is None
    assert format_error(scene_pb2.DOCUMENT_FORMAT_FOUNTAIN) is None


def test_every_declared_format_has_a_renderer() -> None:
    declared = set(scene_pb2.DocumentFormat.values()) - {scene_pb2.DOCUMENT_FORMAT_UNSPECIFIED}
    assert set(RENDERERS) == declared
    assert all(format_error(value) is None for value in declared)
    assert {r.name for r in RENDERERS.values()} == {"fountain", "pdf", "fdx", "html"}
    # Only Fountain is cheap enough to render on the event loop.
    assert [r.name for r in RENDERERS.values() if not r.threaded] == ["fountain"]


def test_unknown_formats_are_named_in_the_error() -> None:
    assert format_error(9) == (
        "format 9 is not a known DocumentFormat; supported: DOCUMENT_FORMAT_FOUNTAIN, "
        "DOCUMENT_FORMAT_PDF, DOCUMENT_FORMAT_FDX, DOCUMENT_FORMAT_HTML"
    )


def test_document_info_describes_the_bytes() -> None:
    info = document(b"INT. LAB - DAY\n").info()
    assert (info.page_count, info.runtime_seconds, info.size_bytes) == (2, 120.0, 15)
    assert info.content_hash == hashlib.sha256(b"INT. LAB - DAY\n").hexdigest()


def test_fountain_renderer_counts_pages_of_what_it_renders() -> None:
    scene = episode_pb2.Scene(slugline=episode_pb2.Slugline(placement=1, location="LAB"))
    scene.elements.add(action=episode_pb2.ActionLine(text="\n".join(["Beat."] * 60)))
    rendered = FOUNTAIN.render_scene(scene)
    # Heading, blank, then 60 one-line action lines: 53 on page one, 7 on page two.
    assert rendered.page_count == 2
    assert rendered.data.decode("utf-8").startswith("INT. LAB\n")


def test_chunks_split_at_64_kib_and_only_the_first_has_info() -> None:
    pieces = chunks(document(b"x" * (64 * 1024 * 2 + 1)))
    assert [len(p.data) for p in pieces] == [65536, 65536, 1]
    assert [p.HasField("info") for p in pieces] == [True, False, False]
    (only,) = chunks(document(b""))
    assert only.HasField("info") and only.data == b""


def test_long_text_is_found_anywhere_with_its_path() -> None:
    episode = episode_pb2.Episode()
    episode.cast.add(name="Lucy", catchphrases=["ok", "w" * (MAX_TEXT_CHARS + 1)])
    assert find_long_text(episode, "episode") == (
        "episode.cast[0].catchphrases[1] is 10001 characters; the limit is 10000"
    )
    joke = episode_pb2.Joke()
    joke.dimensions["k" * (MAX_TEXT_CHARS + 5)] = 0.5
    assert "joke.dimensions key is 10005 characters" in (find_long_text(joke, "joke") or "")
    fine = episode_pb2.ActionLine(text="a" * MAX_TEXT_CHARS)
    assert find_long_text(fine, "action") is None


def test_cache_key_depends_on_content_and_format_only() -> None:
    joke_a, joke_b = episode_pb2.Joke(), episode_pb2.Joke()
    for key in ("surprise", "timing", "callback"):
        joke_a.dimensions[key] = 0.5
    for key in ("callback", "timing", "surprise"):
        joke_b.dimensions[key] = 0.5
    scene_a = episode_pb2.Scene(jokes=[joke_a])
    scene_b = episode_pb2.Scene(jokes=[joke_b])
    fountain, unspecified = scene_pb2.DOCUMENT_FORMAT_FOUNTAIN, 0
    assert cache_key(b"scene", fountain, scene_a) == cache_key(b"scene", unspecified, scene_b)
    assert cache_key(b"scene", fountain, scene_a) != cache_key(b"episode", fountain, scene_a)
    assert cache_key(b"scene", fountain, scene_a) != cache_key(
        b"scene", fountain, episode_pb2.Scene()
    )


def test_lru_evicts_least_recently_used_entries() -> None:
    cache = DocumentCache(max_entries=2)
    cache.put("a", document(b"a"))
    cache.put("b", document(b"b"))
    assert cache.get("a") is not None  # "b" is now the least recently used.
    cache.put("c", document(b"c"))
    assert cache.get("b") is None
    assert cache.get("a") is not None and cache.get("c") is not None
    assert (len(cache), cache.hits, cache.misses) == (2, 3, 1)


def test_lru_is_bounded_in_bytes() -> None:
    cache = DocumentCache(max_entries=100, max_bytes=100)
    cache.put("big", document(b"x" * 26))  # Over a quarter of the budget: not kept.
    assert cache.get("big") is None
    for name in "abcde":
        cache.put(name, document(b"y" * 25))
    assert len(cache) == 4 and cache.get("a") is None
