"""Reading Final Draft XML (FDX) into scenes, for ImportDraft and ValidateEpisode.

An FDX file comes from a writer's machine, so it is untrusted XML: it is parsed with defusedxml
(no DTDs, no entities, no external references: no billion laughs, no file or network reads),
never with xml.etree directly. Each `<Paragraph Type="...">` of `<Content>` becomes the Fountain
element it prints as (Scene Heading with its `Number`, Action, Character with the Parenthetical
and Dialogue paragraphs after it, Transition, New Act as a section), and the result is read by
script_reader.read_fountain, so both formats share one reading of scenes, cues, labels and
durations. Errors name the line of the FDX file.
"""

from __future__ import annotations

from xml.etree.ElementTree import Element, ParseError, TreeBuilder

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from services.script.script_reader import ReadScript, ScriptReadError, read_fountain

LINE = "_doppel_line"  # Attribute the reader adds to each element: its line in the file.
_ACTION_TYPES = {"Action", "General", "Shot", "Cast List"}
_SPEECH_TYPES = {"Parenthetical", "Dialogue"}
_ACT_TYPES = {"New Act", "End of Act"}


class _LineBuilder(TreeBuilder):
    """A TreeBuilder that notes on every element the line where its start tag is."""

    def __init__(self) -> None:
        super().__init__()
        self.where = lambda: 0

    def start(self, tag: str, attrs: dict[str, str]) -> Element:
        return super().start(tag, {**attrs, LINE: str(self.where())})


def _parse(text: str) -> Element:
    builder = _LineBuilder()
    parser = DefusedXMLParser(target=builder, forbid_dtd=True)
    builder.where = lambda: int(parser.parser.CurrentLineNumber)
    try:
        parser.feed(text)
        root: Element = parser.close()
    except ParseError as exc:
        line = getattr(exc, "position", (0, 0))[0]
        raise ScriptReadError(f"content: line {line}: not well-formed FDX (XML): {exc}") from None
    except DefusedXmlException as exc:
        raise ScriptReadError(
            f"content: line {builder.where()}: FDX with a DTD, entities or external references "
            f"is refused ({type(exc).__name__})"
        ) from None
    if root.tag != "FinalDraft":
        raise ScriptReadError(
            f"content: line {root.get(LINE)}: the root element is <{root.tag[:40]}>, "
            "not <FinalDraft>: not an FDX file"
        )
    return root


def _text(paragraph: Element) -> str:
    """The paragraph's text: its Text runs joined (a run may end a line with a newline)."""
    return "".join(run.text or "" for run in paragraph.findall("Text")).replace("\r", "")


def _title(root: Element) -> str:
    for paragraph in root.iterfind("TitlePage/Content/Paragraph"):
        if text := _text(paragraph).strip():
            return text.split("\n")[0].strip()
    return ""


def _heading(paragraph: Element, text: str) -> str:
    number = (paragraph.get("Number") or "").strip()
    label = f" #{number}#" if number and "#" not in number else ""
    return "." + " ".join(text.split()) + label


def _speech(kind: str, text: str) -> list[str]:
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    if kind == "Parenthetical":
        joined = " ".join(lines)
        return [joined if joined.startswith("(") else f"({joined})"] if joined else []
    return lines


def _fountain(root: Element) -> str:
    """The FDX body as Fountain with every element forced, so it reads as FDX typed it."""
    content = root.find("Content")
    if content is None:
        raise ScriptReadError(
            f"content: line {root.get(LINE)}: <FinalDraft> has no <Content>: no script"
        )
    blocks: list[list[str]] = []
    in_scene = False
    dialogue: list[str] | None = None  # The dialogue block being collected.
    for paragraph in content.iter("Paragraph"):
        kind = paragraph.get("Type", "")
        text = _text(paragraph)
        if kind in _SPEECH_TYPES and dialogue is not None:
            dialogue.extend(_speech(kind, text))
            continue
        if dialogue is not None:
            blocks.append(dialogue)
            dialogue = None
        if not text.strip():
            continue
        if kind == "Scene Heading":
            blocks.append([_heading(paragraph, text)])
            in_scene = True
        elif kind == "Character":
            if not in_scene:
                raise ScriptReadError(
                    f"content: line {paragraph.get(LINE)} is dialogue before the first scene "
                    "heading (INT. / EXT. ...): every line of a script belongs to a scene"
                )
            dialogue = ["@" + " ".join(text.split())]
        elif kind in _SPEECH_TYPES or kind in _ACTION_TYPES:
            blocks.append(["!" + line.strip() for line in text.split("\n") if line.strip()])
        elif kind == "Transition":
            blocks.append(["> " + " ".join(text.split()).upper()])
        elif kind in _ACT_TYPES:
            blocks.append(["# " + " ".join(text.split())])
    if dialogue is not None:
        blocks.append(dialogue)
    return "\n\n".join("\n".join(block) for block in blocks) + "\n"


def read_fdx(text: str) -> ReadScript:
    """The title and scenes of a Final Draft (FDX) script; ScriptReadError naming the line when
    it cannot be read."""
    root = _parse(text)
    title = _title(root)
    body = _fountain(root)
    head = f"Title: {' '.join(title.split())}\n\n" if title else "\n"
    script = read_fountain(head + body)
    return ReadScript(title or script.title, script.scenes)
