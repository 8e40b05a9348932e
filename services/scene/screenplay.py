"""A script in the three shapes the format writers need: Fountain text, parsed blocks, pages.

Every format is written from one `Screenplay`, built from the Fountain we render, so all formats
of a script hold the same elements and report the same page count. Revision marks travel in the
Fountain (`[[rev N]]` notes, read back onto the lines); the sets they name (name, colour, date)
come from the episode's revision state.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from doppelganger.v1 import episode_pb2
from services.scene.fountain import ParsedScript, parse_fountain
from services.scene.layout import Layout, Page, layout_script
from shared.revisions import default_revision_set, mark_hex

UNTITLED = "Untitled"


@dataclass(frozen=True)
class RevisionStyle:
    """How a revision set prints: its name and date in revised pages' headers, its colour."""

    id: int
    name: str  # e.g. "Blue Revision".
    colour: str  # e.g. "Blue".
    hex: str  # "#RRGGBB", always well formed.
    date: str  # ISO date, or "".

    @classmethod
    def of(cls, revision_set: episode_pb2.RevisionSet) -> RevisionStyle:
        name = " ".join(revision_set.name.split()) or f"Revision {revision_set.id}"
        colour = " ".join(revision_set.color.split())
        date = " ".join(revision_set.date.split())
        return cls(revision_set.id, name, colour, mark_hex(revision_set), date)

    @property
    def header(self) -> str:
        """What a revised page's header says: "Blue Revision (2026-11-03)"."""
        return f"{self.name} ({self.date})" if self.date else self.name


@dataclass(frozen=True)
class Screenplay:
    fountain: str
    script: ParsedScript
    layout: Layout
    revisions: tuple[RevisionStyle, ...] = ()  # Every set of the draft, oldest first.
    active_revision: int = 0  # RevisionState.active_set.
    _styles: dict[int, RevisionStyle] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_fountain(
        cls, text: str, revision: episode_pb2.RevisionState | None = None
    ) -> Screenplay:
        script = parse_fountain(text)
        layout = layout_script(script)
        sets = list(revision.sets) if revision is not None else []
        active = revision.active_set if revision is not None else 0
        styles = {s.id: RevisionStyle.of(s) for s in sets if s.id > 0}
        for mark in sorted(_marked(layout.pages)):  # A mark naming no set: pass N's colour.
            styles.setdefault(mark, RevisionStyle.of(default_revision_set(mark)))
        ordered = tuple(styles[key] for key in sorted(styles))
        return cls(text, script, layout, ordered, active or max(styles, default=0), styles)

    @property
    def title(self) -> str:
        """The title page's title on one line; the first scene heading for a lone scene."""
        title = " ".join(self.script.title_page.get("Title", "").split())
        if not title and self.script.scenes:
            title = self.script.scenes[0].heading
        return title or UNTITLED

    @property
    def author(self) -> str:
        return " ".join(self.script.title_page.get("Author", "").split())

    def revision(self, revision_id: int) -> RevisionStyle:
        style = self._styles.get(revision_id)
        return style if style is not None else RevisionStyle.of(default_revision_set(revision_id))

    def page_revision(self, page: Page) -> RevisionStyle | None:
        """The newest set marked on the page (it names the page in its header); None: unrevised."""
        newest = max((line.revision for line in page), default=0)
        return self.revision(newest) if newest > 0 else None


def _marked(pages: Iterable[Page]) -> set[int]:
    return {line.revision for page in pages for line in page if line.revision > 0}
