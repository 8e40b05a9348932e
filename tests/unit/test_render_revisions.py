"""Locked scene numbers, OMITTED scenes and revision marks in every format, read back from the
documents themselves: Fountain (our parser and screenplain), PDF text positions (pypdf), FDX
(ElementTree) and HTML (html.parser). The readers here serve the acceptance test too."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence

import pypdf
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from screenplain.parsers import fountain as screenplain_fountain
from screenplain.types import Action, Dialog, DualDialog, Slug, Transition

from doppelganger.v1 import episode_pb2, scene_pb2
from services.scene.fountain import Block, DialogueBlock, parse_fountain, render_scene
from services.scene.layout import LineKind
from services.scene.pdf import write_pdf
from services.scene.render import FDX, FOUNTAIN, HTML, PDF, renderer_for
from services.scene.screenplay import Screenplay
from services.scene.validation import check_episode_request, check_scene_request
from shared.printed import element_parts
from shared.revisions import label_after
from shared.screenplay_diff import paragraphs
from testkit import action, episode, line, scene, transition
from tests.unit.render_checks import (
    HEADER_BASELINE,
    INCH,
    check_fdx_marks,
    check_html_marks,
    check_pdf_marks,
    fdx_marked,
    from_our_parser,
    from_screenplain,
    html_pages,
    parse,
    pdf_pages,
    runs,
)
from tests.unit.revision_drafts import LONG_SPEECH, RevisedDraft, first_draft, revise


@pytest.fixture(scope="module")
def draft() -> RevisedDraft:
    return revise(first_draft())


# --- What changed, as words ----------------------------------------------------------------------


def parsed_revisions(blocks: Sequence[Block]) -> list[int]:
    """The revision of each marked printed paragraph of parsed Fountain: a block, or a dialogue
    block's cue and each of its lines."""
    found: list[int] = []
    for block in blocks:
        if isinstance(block, DialogueBlock):
            found += [block.cue_revision] + [part.revision for part in block.parts]
        else:
            found.append(block.revision)
    return [revision for revision in found if revision]


# --- PDF -----------------------------------------------------------------------------------------


# --- FDX -----------------------------------------------------------------------------------------


# --- HTML ----------------------------------------------------------------------------------------


# --- Tests ---------------------------------------------------------------------------------------


def test_the_revised_draft_is_what_the_tests_expect(draft: RevisedDraft) -> None:
    labels = [s.number_label for s in draft.revised.scenes]
    assert labels == ["1", "2", "3", "3A", "4", "5", "6", "7", "8"]
    assert draft.revised.scenes[6].omitted
    assert draft.comparison.changed_paragraphs == sum(
        len(s.revision_marks) for s in draft.revised.scenes
    )
    assert draft.revision_set.name == "Blue Revision"


def test_fountain_prints_locked_numbers_omitted_scenes_and_revision_notes(
    draft: RevisedDraft,
) -> None:
    text = FOUNTAIN.render_episode(draft.revised).data.decode()
    assert "\nINT. GREENHOUSE ANNEX - DAY #3A# [[rev 1 Blue]]\n" in text
    assert (
        "\n.OMITTED #6# [[rev 1 Blue]]\n\n# " in text
        or "\n.OMITTED #6# [[rev 1 Blue]]\n\nINT" in text
    )
    assert "\nSMASH CUT TO:[[rev 1 Blue]]\n" in text  # Glued: the line must end in TO:.
    assert text.count("[[rev 1 Blue]]") == draft.comparison.changed_paragraphs
    parsed = parse_fountain(text)
    assert [s.number for s in parsed.scenes] == ["1", "2", "3", "3A", "4", "5", "6", "7", "8"]
    omitted = parsed.scenes[6]
    assert (omitted.heading, omitted.blocks) == ("OMITTED", ())
    revisions = parsed_revisions(parsed.blocks)
    assert len(revisions) == draft.comparison.changed_paragraphs
    assert set(revisions) == {1}


def test_screenplain_reads_the_revised_fountain_as_our_parser_does(draft: RevisedDraft) -> None:
    text = FOUNTAIN.render_episode(draft.revised).data.decode()
    assert from_screenplain(text) == from_our_parser(text)
    paragraphs = screenplain_fountain.parse(io.StringIO(text))
    slugs = [(str(p.line), str(p.scene_number)) for p in paragraphs if isinstance(p, Slug)]
    assert slugs[3] == ("INT. GREENHOUSE ANNEX - DAY", "3A")
    assert slugs[6] == ("OMITTED", "6")
    printed: list[str] = []
    for paragraph in paragraphs:
        if isinstance(paragraph, Action):
            printed += [str(text) for text in paragraph.lines]
        if isinstance(paragraph, Transition):
            printed.append(str(paragraph.line))
        dialogues = [paragraph.left, paragraph.right] if isinstance(paragraph, DualDialog) else []
        for dialogue in [paragraph] if isinstance(paragraph, Dialog) else dialogues:
            printed += [str(dialogue.character)] + [str(text) for _, text in dialogue.blocks]
    assert printed and not any("[[" in text or "rev 1" in text for text in printed)
    transitions = [str(p.line) for p in paragraphs if isinstance(p, Transition)]
    assert "SMASH CUT TO:" in transitions


def test_a_lone_scene_prints_its_label_and_marks() -> None:
    lone = scene("dock", action("Waves."), line("Luna", "Hi."), number=4)
    lone.number_label = "4B"
    lone.revision_marks.add(element_index=1, revision_id=3)
    text = render_scene(lone)
    assert text.startswith("INT. DOCK - DAY #4B#\n")
    assert "Hi. [[rev 3]]" in text
    document = FDX.render_scene(lone)
    root = ET.fromstring(document.data)
    [revision] = root.findall("Revisions/Revision")
    assert (revision.get("ID"), revision.get("Name")) == ("3", "Yellow Revision")
    assert root.find("Content/Paragraph").get("Number") == "4B"  # type: ignore[union-attr]


def test_a_changed_block_broken_across_pages_is_marked_on_both(draft: RevisedDraft) -> None:
    screenplay = Screenplay.from_fountain(
        FOUNTAIN.render_episode(draft.revised).data.decode(), draft.revised.revision
    )
    pages = screenplay.layout.pages
    speech = LONG_SPEECH[: LONG_SPEECH.index(" of ")]  # "This is sentence 0"
    starts = [n for n, page in enumerate(pages) if any(speech in ln.text for ln in page)]
    assert starts, "the long speech is printed"
    first, second = pages[starts[0]], pages[starts[0] + 1]
    assert first[-1].kind is LineKind.MORE and first[-1].revision == 1
    cue = next(ln for ln in second if ln.kind is LineKind.CHARACTER)
    assert cue.text.endswith("(CONT'D)") and cue.revision == 1
    body = [ln for ln in (*first, *second) if ln.kind is not LineKind.BLANK]
    start = body.index(next(ln for ln in body if speech in ln.text))
    cue = next(ln for ln in reversed(body[:start]) if ln.kind is LineKind.CHARACTER)
    assert cue.revision == 0  # Only the speech changed: its cue is not marked.
    block = []
    for printed in body[start:]:
        continued = printed.kind is LineKind.CHARACTER and printed.text.endswith("(CONT'D)")
        if printed.kind not in (LineKind.DIALOGUE, LineKind.MORE) and not continued:
            break
        block.append(printed)
    # The speech, (MORE) and the repeated cue: the changed passage runs on through the break.
    assert len(block) > 20 and all(ln.revision == 1 for ln in block)
    later = body[start + len(block) :]
    assert not any(ln.revision for ln in later if ln.kind is LineKind.CHARACTER)
    assert screenplay.page_revision(first) == screenplay.page_revision(second)
    assert screenplay.page_revision(first).header == "Blue Revision (2026-11-03)"  # type: ignore[union-attr]


def test_pdf_asterisks_sit_on_exactly_the_changed_lines(draft: RevisedDraft) -> None:
    data = PDF.render_episode(draft.revised).data
    check_pdf_marks(data, draft.comparison, "Blue Revision (2026-11-03)")
    lines = [printed for page in pdf_pages(data) for printed in page.lines]
    greenhouse = next(ln for ln in lines if ln.text == "INT. GREENHOUSE ANNEX - DAY")
    assert [text for _, text in greenhouse.numbers] == ["3A", "3A"]
    assert greenhouse.numbers[0][0] + 7.2 * 2 == pytest.approx(1.25 * INCH)
    assert greenhouse.numbers[1][0] == pytest.approx(7.75 * INCH)
    omitted = next(ln for ln in lines if ln.text == "OMITTED")
    assert [text for _, text in omitted.numbers] == ["6", "6"] and omitted.marks
    after = lines[lines.index(omitted) + 1]
    assert after.numbers and after.text.startswith("INT."), "an omitted scene has no body"


def test_unrevised_drafts_print_as_before(draft: RevisedDraft) -> None:
    """No marks, no header, no <Revisions>, no legend: a draft without revisions is unchanged."""
    base = draft.base
    pdf = PDF.render_episode(base).data
    assert not any(ln.marks for page in pdf_pages(pdf) for ln in page.lines)
    assert not any(page.header for page in pdf_pages(pdf))
    assert ET.fromstring(FDX.render_episode(base).data).find("Revisions") is None
    html = HTML.render_episode(base).data
    assert b"revision" not in html.split(b"</style>")[1]
    assert "[[rev" not in FOUNTAIN.render_episode(base).data.decode()


def test_fdx_marks_changed_paragraphs_and_lists_the_sets(draft: RevisedDraft) -> None:
    data = FDX.render_episode(draft.revised).data
    headings = check_fdx_marks(data, draft.comparison)
    numbered = [(h.get("Number"), "".join(t.text or "" for t in h)) for h in headings]
    assert numbered[3] == ("3A", "INT. GREENHOUSE ANNEX - DAY")
    assert numbered[6] == ("6", "OMITTED")
    root = ET.fromstring(data)
    revisions = root.find("Revisions")
    assert revisions is not None and list(root).index(revisions) == 2  # After the title page.
    assert revisions.attrib == {
        "ActiveSet": "1",
        "Location": "7.75",
        "RevisionMode": "No",
        "RevisionsShown": "Active",
        "ShowAllMarks": "No",
        "ShowAllSets": "No",
        "ShowPageColor": "No",
    }
    [revision] = revisions
    assert revision.attrib == {
        "ID": "1",
        "Name": "Blue Revision",
        "Color": "#BFBFD7D7FFFF",
        "Mark": "*",
        "FullRevision": "No",
        "PageColor": "#FFFFFFFFFFFF",
        "Style": "",
    }


def test_html_highlights_changed_lines_with_a_legend(draft: RevisedDraft) -> None:
    data = HTML.render_episode(draft.revised).data
    check_html_marks(data, draft.comparison, "Blue Revision (2026-11-03)")
    tree = parse(data).root
    [legend] = tree.find_all("aside", "revision-legend")
    [item] = legend.find_all("li")
    assert item.text == "Blue Revision (2026-11-03)"
    assert item.attrs["data-revision"] == "1"
    headings = [p for p in tree.find_all("p", "heading")]
    numbered = [
        (p.own_text, [s.text for s in p.find_all("span", "scene-number")]) for p in headings
    ]
    assert ("INT. GREENHOUSE ANNEX - DAY", ["3A", "3A"]) in numbered
    assert ("OMITTED", ["6", "6"]) in numbered


def test_every_format_keeps_the_same_page_count(draft: RevisedDraft) -> None:
    counts = {
        r.name: r.render_episode(draft.revised).page_count for r in (FOUNTAIN, PDF, FDX, HTML)
    }
    assert len(set(counts.values())) == 1
    pdf = PDF.render_episode(draft.revised)
    assert len(pypdf.PdfReader(io.BytesIO(pdf.data)).pages) == pdf.page_count + 1
    assert len(html_pages(HTML.render_episode(draft.revised).data)) == pdf.page_count


def test_several_sets_print_the_newest_on_each_page() -> None:
    """Marks of an older pass keep their set; a page is named by the newest set on it."""
    older = scene("lab", action("Old news."), line("Luna", "Blue line."), number=1)
    older.revision_marks.add(element_index=1, revision_id=1)
    newer = scene("yard", action("Pink news."), number=2)
    newer.revision_marks.add(element_index=0, revision_id=2)
    message = episode(older, newer)
    message.revision.sets.add(id=1, name="Blue Revision", color="Blue", date="2026-11-03")
    message.revision.sets.add(
        id=2, name="Pink Revision", color="Pink", color_hex="#FFCCE0", date="2026-11-10"
    )
    message.revision.active_set = 2
    text = FOUNTAIN.render_episode(message).data.decode()
    assert "Blue line. [[rev 1 Blue]]" in text and "Pink news. [[rev 2 Pink]]" in text
    [page] = pdf_pages(PDF.render_episode(message).data)
    assert page.header == "Pink Revision (2026-11-10)"
    assert sum(bool(ln.marks) for ln in page.lines) == 3  # Cue, speech, and the Pink action.
    root = ET.fromstring(FDX.render_episode(message).data)
    assert [r.get("Color") for r in root.findall("Revisions/Revision")] == [
        "#BFBFD7D7FFFF",
        "#FFFFCCCCE0E0",
    ]
    assert root.find("Revisions").get("ActiveSet") == "2"  # type: ignore[union-attr]
    html = parse(HTML.render_episode(message).data).root
    styles = {p.attrs["data-revision"]: p.attrs["style"] for p in html.find_all("p", "revised")}
    assert styles == {"1": "background: #BFD7FF", "2": "background: #FFCCE0"}


def test_page_colour_tints_only_revised_pages(draft: RevisedDraft) -> None:
    screenplay = Screenplay.from_fountain(
        FOUNTAIN.render_episode(draft.revised).data.decode(), draft.revised.revision
    )
    plain = pypdf.PdfReader(io.BytesIO(write_pdf(screenplay)))
    tinted = pypdf.PdfReader(io.BytesIO(write_pdf(screenplay, page_colour=True)))
    assert renderer_for(scene_pb2.DOCUMENT_FORMAT_PDF, page_colour=True) is not PDF
    assert renderer_for(scene_pb2.DOCUMENT_FORMAT_FDX, page_colour=True) is FDX
    blue = ".74902 .843137 1 rg"  # #BFD7FF as reportlab writes it.
    for page, plain_page, tinted_page in zip(
        screenplay.layout.pages, plain.pages[1:], tinted.pages[1:], strict=True
    ):
        revised = screenplay.page_revision(page) is not None
        content = tinted_page.get_contents().get_data().decode("latin-1")  # type: ignore[union-attr]
        assert (blue in content and " re f" in content) == revised
        assert blue not in plain_page.get_contents().get_data().decode("latin-1")  # type: ignore[union-attr]
        assert tinted_page.extract_text() == plain_page.extract_text()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda e: setattr(e.scenes[0], "number_label", "3 A"), "episode.scenes[0].number_label"),
        (lambda e: setattr(e.scenes[0], "number_label", "1234567"), "up to 6 letters"),
        (
            lambda e: e.scenes[0].revision_marks.add(element_index=9, revision_id=1),
            "element_index 9",
        ),
        (
            lambda e: e.scenes[0].revision_marks.add(element_index=-2, revision_id=1),
            "-1 (the heading)",
        ),
        (lambda e: e.scenes[0].revision_marks.add(element_index=0, revision_id=0), "revision_id 0"),
        (
            lambda e: e.scenes[0].revision_marks.add(element_index=1, part=4, revision_id=2),
            "revision_marks[0].part 4 is out of range: 0 (the whole element) to 2",
        ),
        (
            lambda e: e.scenes[0].revision_marks.add(element_index=-1, part=2, revision_id=2),
            "part 2 is out of range: 0 (the whole element) to 1",
        ),
        (
            lambda e: e.scenes[0].revision_marks.add(element_index=0, revision_id=7),
            "not in episode.revision.sets",
        ),
        (lambda e: e.revision.sets.add(id=1, color_hex="red"), "color_hex 'red'"),
        (
            lambda e: e.revision.sets.add(id=1, name="x" * 33),
            "name is 33 characters; the limit is 32",
        ),
        (lambda e: e.revision.sets.add(id=0), "sets[1].id 0"),
        (lambda e: e.revision.sets.add(id=3, date="y" * 21), "date is 21 characters"),
        (lambda e: setattr(e.revision, "active_set", 5), "active_set 5"),
    ],
)
def test_bad_revision_fields_are_rejected_naming_the_field(mutate, message: str) -> None:
    message_episode = episode(scene("lab", action("One."), line("Luna", "Two.")))
    message_episode.revision.sets.add(id=2, name="Pink Revision", color="Pink")
    mutate(message_episode)
    error = check_episode_request(scene_pb2.RenderEpisodeRequest(episode=message_episode))
    assert error is not None and message in error, error


def test_valid_revision_fields_pass_and_a_lone_scene_needs_no_sets() -> None:
    ok = episode(scene("lab", action("One."), transition("cut to:")))
    ok.scenes[0].number_label = "A1"  # An imported label: printed as it is.
    ok.scenes[0].revision_marks.add(element_index=-1, revision_id=2)
    ok.scenes[0].revision_marks.add(element_index=1, revision_id=2)
    ok.revision.sets.add(id=2, name="Pink Revision", color_hex="#ffccE0", date="2026-11-10")
    ok.revision.active_set = 2
    assert check_episode_request(scene_pb2.RenderEpisodeRequest(episode=ok)) is None
    lone = scene_pb2.RenderSceneRequest(scene=ok.scenes[0])
    lone.scene.revision_marks.add(element_index=0, revision_id=9)  # Set 9: the order's colour.
    assert check_scene_request(lone) is None
    for _ in range(4):  # Heading, action, transition: 3 paragraphs, 3 with the 2 elements.
        lone.scene.revision_marks.add(element_index=0, part=1, revision_id=9)
    assert "has 7 marks; the limit is one a printed paragraph or element (6)" in (
        check_scene_request(lone) or ""
    )
    lone.scene.revision_marks[2].element_index = 2
    del lone.scene.revision_marks[3:]
    assert "scene.revision_marks[2].element_index 2" in (check_scene_request(lone) or "")
    assert "#A1#" in FOUNTAIN.render_episode(ok).data.decode()


def test_parsed_blocks_carry_the_newest_revision_note() -> None:
    text = (
        "INT. LAB - DAY #2A# [[rev 2 Pink]]\n\nLUNA\nHello. [[rev 1]] [[rev 3 Yellow]]\n\n"
        "RICO (O.S.) [[rev 4]]\n(softly)\nFine. [[a note\nover two lines]] Really. [[rev 1]]\n\n"
        "Quiet.\nStill quiet. [[rev 2]]\n"
    )
    parsed = parse_fountain(text)
    heading, speech, other, quiet = parsed.blocks
    assert (heading.scene_number, heading.revision) == ("2A", 2)  # type: ignore[union-attr]
    assert isinstance(speech, DialogueBlock) and speech.text == "Hello."
    assert (speech.cue_revision, [p.revision for p in speech.parts]) == (0, [3])
    assert isinstance(other, DialogueBlock) and other.cue == "RICO (O.S.)"
    assert (other.cue_revision, [p.revision for p in other.parts]) == (4, [0, 1])
    assert other.text == "Fine.  Really."  # The note over two lines joined them.
    assert quiet.revision == 2  # type: ignore[union-attr]  # Any line's note marks it.


TEXTS = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8"), max_size=60),  # UTF-8 has no surrogates.
    st.sampled_from(["", " ", "<", "\x00", "\x00\n\x01", "a\n\nb", "cut to: <", "[[x]]"]),
)
ELEMENTS = st.lists(
    st.tuples(
        st.sampled_from(["action", "dialogue", "transition"]),
        TEXTS,
        TEXTS,  # A dialogue's parenthetical.
        st.integers(min_value=-1, max_value=4),  # -1: no mark; 0: the whole element; k: part k.
    ),
    max_size=8,
)


def printed_paragraphs(element: episode_pb2.ScriptElement) -> int:
    """FDX paragraphs the element prints on its own."""
    alone = episode_pb2.Scene(elements=[element])
    return len(ET.fromstring(FDX.render_scene(alone).data).findall("Content/Paragraph")) - 1


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(ELEMENTS, st.booleans(), st.booleans()), min_size=1, max_size=5))
def test_any_marked_draft_renders_alike_in_every_format(
    scenes: list[tuple[list[tuple[str, str, str, int]], bool, bool]],
) -> None:
    """Random scenes, marks (of whole elements and of single parts), omissions and locked
    labels: every format renders with one page count; an element prints exactly the FDX
    paragraphs shared.printed says it has, and the comparison counts them; FDX and the parsed
    Fountain mark exactly the marked paragraphs."""
    message = episode()
    message.revision.sets.add(id=1, name="Blue Revision", color="Blue", date="2026-11-03")
    expected = 0
    label = "0"
    for elements, heading_marked, omitted in scenes:
        scene_ = message.scenes.add(number_label=(label := label_after(label)), omitted=omitted)
        scene_.slugline.location = "lab"
        if heading_marked:
            scene_.revision_marks.add(element_index=-1, part=1, revision_id=1)
            expected += 1
        for index, (kind, text, parenthetical, mark) in enumerate(elements):
            if kind == "action":
                scene_.elements.add(action=episode_pb2.ActionLine(text=text))
            elif kind == "dialogue":
                scene_.elements.add(
                    dialogue=episode_pb2.DialogueLine(
                        character="Luna", text=text, parenthetical=parenthetical
                    )
                )
            else:
                scene_.elements.add(transition=episode_pb2.Transition(text=text))
            printed = printed_paragraphs(scene_.elements[index])
            assert len(element_parts(scene_.elements[index])) == printed
            if 0 <= mark <= printed:
                scene_.revision_marks.add(element_index=index, part=mark, revision_id=1)
                expected += (printed if mark == 0 else 1) * (not omitted)
        compared = Counter(p.element_index for p in paragraphs(scene_)) - Counter({-1: 1})
        shown = Counter({i: printed_paragraphs(e) for i, e in enumerate(scene_.elements)})
        assert compared == (Counter() if omitted else +shown)
    assert check_episode_request(scene_pb2.RenderEpisodeRequest(episode=message)) is None
    documents = {r.name: r.render_episode(message) for r in (FOUNTAIN, PDF, FDX, HTML)}
    assert len({d.page_count for d in documents.values()}) == 1
    assert len(fdx_marked(ET.fromstring(documents["fdx"].data))) == expected
    parsed = parse_fountain(documents["fountain"].data.decode())
    assert [s.number for s in parsed.scenes] == [s.number_label for s in message.scenes]
    assert len(parsed_revisions(parsed.blocks)) == expected


def test_the_longest_header_fits_left_of_the_page_number() -> None:
    message = episode(*(scene(f"room {n}", action(f"Beat {n}."), number=n) for n in range(1, 3)))
    for index, scene_ in enumerate(message.scenes):
        scene_.revision_marks.add(element_index=0, revision_id=1)
        message.scenes[index].elements.extend([line("Luna", "Words. " * 300)])
    message.revision.sets.add(id=1, name="N" * 32, color="Blue", date="D" * 20)
    assert check_episode_request(scene_pb2.RenderEpisodeRequest(episode=message)) is None
    reader = pypdf.PdfReader(io.BytesIO(PDF.render_episode(message).data))
    headed = 0
    for number, page in enumerate(reader.pages[1:], start=1):
        top = [g for g in runs(page) if g.y == pytest.approx(HEADER_BASELINE)]
        headers = [g for g in top if g.text.startswith("N")]
        if not headers:
            continue
        headed += 1
        header = headers[0]
        assert header.text == f"{'N' * 32} ({'D' * 20})"
        assert header.x >= 1.25 * INCH
        label = [g for g in top if g.text == f"{number}."]
        assert not label or header.right + 4 * 7.2 <= label[0].x
    assert headed >= 2  # Both scenes' pages (the second one numbered).
