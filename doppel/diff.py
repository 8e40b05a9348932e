"""`doppel diff A B [--format text|html] [--out FILE]`: what changed from draft A to draft B.

A and B are draft ids (compared by the script service's CompareDrafts) or episode JSON files
(compared here with the same shared/screenplay_diff.py, so no server is needed). In the terminal:
one line a scene (its printed number, heading, and whether it was changed, added, removed or is
unchanged), then its differing paragraphs, `-` for the old text and `+` for the new. With
`--format html`, a side-by-side page (A left, B right, every paragraph of every scene, removed
and changed ones red on the left, added and changed ones green on the right) is written to --out
(default diff-<A>-<B>.html).
"""

from __future__ import annotations

import argparse
import difflib
import html
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from doppel.library_client import CALL_TIMEOUT, LocalRefusal, read_draft
from doppel.output import DRAFT_ID_RE
from doppelganger.v1 import episode_pb2, library_pb2, script_pb2, script_pb2_grpc
from shared import security
from shared.config import Settings
from shared.screenplay_diff import Paragraph, compare_drafts, paragraphs

CHANGES = {
    library_pb2.CHANGE_KIND_UNCHANGED: "unchanged",
    library_pb2.CHANGE_KIND_CHANGED: "changed",
    library_pb2.CHANGE_KIND_ADDED: "added",
    library_pb2.CHANGE_KIND_REMOVED: "removed",
}
STYLES = {"changed": "yellow", "added": "green", "removed": "red", "unchanged": "dim"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("base", help="the older draft: an id (ep-...) or an episode JSON file")
    parser.add_argument("draft", help="the newer draft: an id or an episode JSON file")
    parser.add_argument("--format", default="text", choices=("text", "html"))
    parser.add_argument("--out", help="the HTML file (default: diff-<A>-<B>.html)")


def _is_id(reference: str) -> bool:
    return bool(DRAFT_ID_RE.fullmatch(reference)) and not Path(reference).exists()


def comparison_of(
    settings: Settings, base: episode_pb2.Episode, new: episode_pb2.Episode, remote: bool
) -> library_pb2.DraftComparison:
    if not remote:
        return compare_drafts(base, new)
    with security.blocking_channel(settings.script_address, settings) as channel:
        return script_pb2_grpc.ScriptServiceStub(channel).CompareDrafts(
            script_pb2.CompareDraftsRequest(base_draft_id=base.id, draft_id=new.id),
            timeout=CALL_TIMEOUT,
        )


def _who(paragraph: library_pb2.ParagraphDiff) -> str:
    if paragraph.character and paragraph.element == "dialogue":
        return f"{paragraph.character}: "
    if paragraph.element in ("heading", "character", "dialogue"):
        return ""
    return f"({paragraph.element}) "


def text_lines(comparison: library_pb2.DraftComparison) -> list[tuple[str, str]]:
    """(style, line) of the terminal report."""
    changed = sum(1 for s in comparison.scenes if s.change != library_pb2.CHANGE_KIND_UNCHANGED)
    found = [
        ("bold", f"{comparison.base_draft_id} -> {comparison.draft_id}: {changed} of "
                 f"{len(comparison.scenes)} scenes differ, {comparison.changed_paragraphs} "
                 f"paragraphs changed or added, {comparison.removed_paragraphs} removed"),
    ]  # fmt: skip
    for scene in comparison.scenes:
        change = CHANGES.get(scene.change, "?")
        number = scene.number or scene.base_number
        found.append((STYLES[change], f"scene {number:<4} {scene.heading}  [{change}]"))
        for paragraph in scene.paragraphs:
            who = _who(paragraph)
            if paragraph.change in (
                library_pb2.CHANGE_KIND_CHANGED,
                library_pb2.CHANGE_KIND_REMOVED,
            ):
                found.append(("red", f"  - {who}{paragraph.base_text}"))
            if paragraph.change in (library_pb2.CHANGE_KIND_CHANGED, library_pb2.CHANGE_KIND_ADDED):
                found.append(("green", f"  + {who}{paragraph.text}"))
    return found


def _cell(paragraph: Paragraph | None, mark: str) -> str:
    if paragraph is None:
        return '<td class="empty"></td>'
    label = paragraph.character if paragraph.element == "character" else ""
    text = html.escape(label or paragraph.text).replace("\n", "<br>")
    return f'<td class="{paragraph.element} {mark}">{text}</td>'


def _rows(old: list[Paragraph], new: list[Paragraph]) -> list[str]:
    """Side-by-side rows of two scenes' paragraphs, aligned as CompareDrafts aligns them."""
    matcher = difflib.SequenceMatcher(
        None, [p.key for p in old], [p.key for p in new], autojunk=False
    )
    rows: list[str] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        lefts, rights = old[i1:i2], new[j1:j2]
        for k in range(max(len(lefts), len(rights))):
            left = lefts[k] if k < len(lefts) else None
            right = rights[k] if k < len(rights) else None
            mark_left = "" if tag == "equal" else "old"
            mark_right = "" if tag == "equal" else "new"
            rows.append(f"<tr>{_cell(left, mark_left)}{_cell(right, mark_right)}</tr>")
    return rows


PAGE_STYLE = """
body { font-family: "Courier Prime", Courier, monospace; margin: 2em; }
table { border-collapse: collapse; width: 100%; table-layout: fixed; }
th { text-align: left; border-bottom: 2px solid #444; padding: .4em; }
td { vertical-align: top; padding: .25em .6em; white-space: pre-wrap; }
td.heading { font-weight: bold; padding-top: 1.2em; }
td.character { padding-left: 10em; }
td.parenthetical { padding-left: 8em; font-style: italic; }
td.dialogue { padding-left: 5em; padding-right: 4em; }
td.transition { text-align: right; }
td.old { background: #ffd7d7; }
td.new { background: #d7ffd7; }
tr.scene td { border-top: 1px solid #bbb; font-family: sans-serif; font-size: .85em; color: #555; }
"""


def html_page(
    base: episode_pb2.Episode, new: episode_pb2.Episode, comparison: library_pb2.DraftComparison
) -> str:
    """A standalone page: the two drafts side by side, scene by scene."""
    rows: list[str] = []
    for scene in comparison.scenes:
        old = paragraphs(base.scenes[scene.base_scene_index]) if scene.base_scene_index >= 0 else []
        current = paragraphs(new.scenes[scene.scene_index]) if scene.scene_index >= 0 else []
        label = html.escape(
            f"scene {scene.number or scene.base_number}: {CHANGES.get(scene.change, '?')}"
        )
        rows.append(f'<tr class="scene"><td colspan="2">{label}</td></tr>')
        rows.extend(_rows(old, current))
    title = html.escape(f"{base.outline.title}: {base.id} -> {new.id}")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{PAGE_STYLE}</style></head><body>"
        f"<h1>{title}</h1><p>{comparison.changed_paragraphs} paragraphs changed or added, "
        f"{comparison.removed_paragraphs} removed.</p><table>"
        f"<tr><th>{html.escape(base.id)}</th><th>{html.escape(new.id)}</th></tr>"
        + "\n".join(rows)
        + "</table></body></html>\n"
    )


def run(args: argparse.Namespace, settings: Settings, out: Console, err: Console) -> int:
    try:
        base = read_draft(settings, args.base)
        new = read_draft(settings, args.draft)
    except LocalRefusal as exc:
        err.print(f"[red]{escape(str(exc))}[/]")
        return 2
    comparison = comparison_of(settings, base, new, _is_id(args.base) and _is_id(args.draft))
    if args.format == "html":
        path = Path(args.out or f"diff-{base.id[3:11]}-{new.id[3:11]}.html")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(html_page(base, new, comparison), encoding="utf-8")
        out.print(f"html      {path}", markup=False)
        return 0
    for style, line in text_lines(comparison):
        out.print(line, style=style, markup=False, highlight=False)
    return 0
