"""A small in-process LRU of rendered documents, bounded by entries and by bytes.

Used from the event loop only (never from worker threads), so it needs no lock.
"""

from __future__ import annotations

from collections import OrderedDict

from services.scene.render import Document

DEFAULT_MAX_ENTRIES = 128
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


class DocumentCache:
    """Content hash of a request -> rendered document; least recently used evicted first."""

    def __init__(
        self, max_entries: int = DEFAULT_MAX_ENTRIES, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, Document] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Document | None:
        document = self._entries.get(key)
        if document is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return document

    def put(self, key: str, document: Document) -> None:
        """Stores the document unless it alone is over a quarter of the byte budget."""
        size = len(document.data)
        if size > self.max_bytes // 4 or self.max_entries < 1:
            return
        if (old := self._entries.pop(key, None)) is not None:
            self._bytes -= len(old.data)
        self._entries[key] = document
        self._bytes += size
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= len(evicted.data)
