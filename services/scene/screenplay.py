"""A script in the three shapes the format writers need: Fountain text, parsed blocks, pages.

Every format is written from one `Screenplay`, built from the Fountain we render, so all formats
of a script hold the same elements and report the same page count.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.scene.fountain import ParsedScript, parse_fountain
from services.scene.layout import Layout, layout_script

UNTITLED = "Untitled"


@dataclass(frozen=True)
class Screenplay:
    fountain: str
    script: ParsedScript
    layout: Layout

    @classmethod
    def from_fountain(cls, text: str) -> Screenplay:
        script = parse_fountain(text)
        return cls(text, script, layout_script(script))

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
