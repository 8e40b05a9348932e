"""HTML: the printed pages as a styled, printable web page. Pure functions.

The document mirrors the PDF page for page (it is drawn from the same layout): a title page, then
one `<section class="page">` per numbered page with its page number, each element a
`<div class="block KIND">` of `<p class="line KIND">` lines (dialogue blocks hold the cue,
parentheticals, speech and (MORE)). CSS places the lines with the PDF's indents in inches, shows
sheets on a grey desk on screen, and prints one sheet a US Letter page (`@page`, `@media print`).
All text is escaped; characters XML does not allow are dropped.

Revisions: a draft with revision sets opens with a legend of them (colour, name, date; not
printed); each line of a changed paragraph is highlighted in its set's colour
(`class="line ... revised" data-revision="N"`) with an asterisk in the right margin, as in the
PDF; a revised page names its newest set and date in its header (`p.revision-header`).
"""

from __future__ import annotations

from html import escape

from services.scene.fdx import NOT_XML_RE
from services.scene.layout import (
    LEFT_MARGIN_INCHES,
    Line,
    LineKind,
    Page,
    TitleLine,
    revision_mark_inches,
    title_page_lines,
)
from services.scene.screenplay import RevisionStyle, Screenplay

MEDIA_TYPE = "text/html; charset=utf-8"
DIALOGUE_KINDS = frozenset(
    {LineKind.CHARACTER, LineKind.PARENTHETICAL, LineKind.DIALOGUE, LineKind.MORE}
)

STYLE = """
@page { size: 8.5in 11in; margin: 0; }
html { background: #d9d9d6; }
body { margin: 0; padding: 0.25in 0; }
.screenplay {
  font-family: "Courier Prime", "Courier Final Draft", "Courier New", Courier, monospace;
  font-size: 12pt; line-height: 12pt; color: #000;
}
.page {
  position: relative; box-sizing: border-box; width: 8.5in; height: 11in;
  margin: 0 auto 0.25in; padding: 1in 1in 0 1.5in; background: #fff;
  box-shadow: 0 1px 6px rgba(0, 0, 0, 0.35); overflow: hidden;
}
.line { margin: 0; height: 12pt; white-space: pre; }
.block + .block { margin-top: 12pt; }
.page-number { position: absolute; top: 0.5in; right: 1in; margin: 0; }
p.heading { position: relative; }
.scene-number { position: absolute; top: 0; }
.scene-number.left { right: calc(100% + 0.25in); }
.scene-number.right { left: 6.25in; }
p.character, p.more { padding-left: 2.2in; }
p.parenthetical { padding-left: 1.6in; }
p.dialogue, p.lyrics { padding-left: 1in; }
p.transition { text-align: right; }
p.centered { text-align: center; }
.title-page .line { position: absolute; left: 1.5in; right: 1in; }
.title-page .center { text-align: center; }
.title-page .right { text-align: right; }
.title-page .underline span { text-decoration: underline; }
p.revised { position: relative; }
.revision-mark { position: absolute; top: 0; }
.revision-header { position: absolute; top: 0.5in; right: 1.6in; margin: 0; }
.revision-legend {
  width: 8.5in; margin: 0 auto 0.25in; padding: 0.1in 0.25in; box-sizing: border-box;
  background: #fff; font-family: sans-serif; font-size: 10pt;
}
.revision-legend h2 { font-size: 11pt; margin: 0 0 0.05in; }
.revision-legend ol { margin: 0; padding-left: 1.5em; }
.swatch { display: inline-block; width: 1em; height: 1em; border: 1px solid #888;
  vertical-align: middle; margin-right: 0.4em; }
@media print {
  html { background: none; }
  body { padding: 0; }
  .revision-legend { display: none; }
  .page { margin: 0; box-shadow: none; break-after: page; page-break-after: always; }
  .page:last-child { break-after: auto; page-break-after: auto; }
}
""".strip()


def write_html(screenplay: Screenplay) -> bytes:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="generator" content="Doppelganger Studio">',
        f"<title>{_text(screenplay.title)}</title>",
        f"<style>\n{STYLE}\n</style>",
        "</head>",
        "<body>",
        '<main class="screenplay">',
    ]
    if screenplay.revisions:
        parts.append(_legend(screenplay.revisions))
    if screenplay.script.title_page:
        parts.append(_title_page(title_page_lines(screenplay.script.title_page)))
    parts += [
        _page(page, number, screenplay) for number, page in enumerate(screenplay.layout.pages, 1)
    ]
    parts += ["</main>", "</body>", "</html>", ""]
    return "\n".join(parts).encode("utf-8")


def _title_page(lines: list[TitleLine]) -> str:
    rows = [
        f'<p class="line {line.align}{" underline" if line.underline else ""}" '
        f'style="top: {1 + line.row / 6:.3f}in"><span>{_text(line.text)}</span></p>'
        for line in lines
    ]
    return '<section class="page title-page">\n' + "\n".join(rows) + "\n</section>"


def _legend(styles: tuple[RevisionStyle, ...]) -> str:
    """The draft's revision sets, oldest first: swatch, name and date."""
    items = [
        f'<li data-revision="{style.id}"><span class="swatch" '
        f'style="background: {style.hex}"></span>{_text(style.header)}</li>'
        for style in styles
    ]
    return (
        '<aside class="revision-legend">\n<h2>Revisions</h2>\n<ol>\n'
        + "\n".join(items)
        + "\n</ol>\n</aside>"
    )


def _page(page: Page, number: int, screenplay: Screenplay) -> str:
    head = f'<section class="page" id="page-{number}" data-page="{number}">'
    body = [head]
    if (revision := screenplay.page_revision(page)) is not None:
        body.append(
            f'<p class="revision-header" data-revision="{revision.id}">{_text(revision.header)}</p>'
        )
    if number > 1:
        body.append(f'<p class="page-number">{number}.</p>')
    body += [_block(lines, screenplay) for lines in _blocks(page)]
    body.append("</section>")
    return "\n".join(body)


def _blocks(page: Page) -> list[list[Line]]:
    """The page's lines grouped into elements (blank lines separate them)."""
    blocks: list[list[Line]] = [[]]
    for line in page:
        if line.kind is LineKind.BLANK:
            blocks.append([])
        else:
            blocks[-1].append(line)
    return [block for block in blocks if block]


def _block(lines: list[Line], screenplay: Screenplay) -> str:
    kind = "speech" if lines[0].kind in DIALOGUE_KINDS else lines[0].kind.value
    inner = "".join(_line(line, screenplay) for line in lines)
    return f'<div class="block {kind}">{inner}</div>'


def _line(line: Line, screenplay: Screenplay) -> str:
    text = _text(line.text)
    if line.scene_number:
        number = _text(line.scene_number)
        text = (
            f'<span class="scene-number left">{number}</span>{text}'
            f'<span class="scene-number right">{number}</span>'
        )
    if not line.revision:
        return f'<p class="line {line.kind.value}">{text}</p>'
    style = screenplay.revision(line.revision)
    # Where the PDF puts it; the line's box starts at the text column, 1.5" from the edge.
    mark_at = revision_mark_inches(line.scene_number) - LEFT_MARGIN_INCHES
    return (
        f'<p class="line {line.kind.value} revised" data-revision="{style.id}" '
        f'style="background: {style.hex}">{text}'
        f'<span class="revision-mark" style="left: {mark_at:.2f}in">*</span></p>'
    )


def _text(text: str) -> str:
    return escape(NOT_XML_RE.sub("", text), quote=True)
