"""`doppel outline` and the steering flags of `doppel generate`: a premise, an outline file, a cast.

doppel outline --show S --setting T --premise P --alternatives 3 --out DIR
    ProposeOutlines; writes each OutlineProposal as proto3 JSON in DIR and prints its path and
    A plot. Edit one (beats, cards, cast), then:
doppel generate --outline DIR/....json [--cast FILE] [--premise P]
    GenerateEpisode with that outline and cast. Show, setting, seed and premise default to the
    proposal's. A cast file is a JSON list of characters (proto3 JSON, as in the proposal), or a
    proposal whose cast and relationships are taken.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from doppelganger.v1 import episode_pb2, script_pb2

DEFAULT_SHOW = "I Love Lucy"
DEFAULT_SETTING = "a Mars colony in 2157"
DEFAULT_SEED = 7


class SteeringFileError(ValueError):
    """An outline or cast file that cannot be read (the message names the file)."""


@dataclass(frozen=True)
class Steering:
    """What `generate` sends besides show, setting and seed."""

    outline: episode_pb2.Outline | None
    cast: list[episode_pb2.Character]
    relationships: list[episode_pb2.Relationship]
    proposal: script_pb2.OutlineProposal | None


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SteeringFileError(f"cannot read {path}: {exc}") from None


def read_proposal(path: Path) -> script_pb2.OutlineProposal:
    """An OutlineProposal from its JSON (what `doppel outline` writes); a bare Outline's JSON
    (an object with `acts`) is taken as a proposal with that outline and no cast."""
    document = _load_json(path)
    if not isinstance(document, dict):
        raise SteeringFileError(f"{path} must hold a JSON object (an outline proposal)")
    try:
        if "acts" in document:
            outline = json_format.ParseDict(document, episode_pb2.Outline())
            return script_pb2.OutlineProposal(outline=outline)
        return json_format.ParseDict(
            document, script_pb2.OutlineProposal(), ignore_unknown_fields=True
        )
    except json_format.ParseError as exc:
        raise SteeringFileError(f"{path} is not an outline proposal: {exc}") from None


def read_cast(
    path: Path,
) -> tuple[list[episode_pb2.Character], list[episode_pb2.Relationship]]:
    """A cast file: a JSON list of characters, or a proposal (its cast and relationships)."""
    document = _load_json(path)
    try:
        if isinstance(document, list):
            return [json_format.ParseDict(c, episode_pb2.Character()) for c in document], []
        if isinstance(document, dict) and "cast" in document:
            proposal = json_format.ParseDict(
                document, script_pb2.OutlineProposal(), ignore_unknown_fields=True
            )
            return list(proposal.cast), list(proposal.relationships)
    except (json_format.ParseError, AttributeError) as exc:
        raise SteeringFileError(f"{path} is not a cast: {exc}") from None
    raise SteeringFileError(f"{path} must hold a JSON list of characters or a proposal")


def steering_of(args: argparse.Namespace) -> Steering:
    """The outline and cast `generate` was given (files read), and the proposal they came from."""
    proposal = read_proposal(Path(args.outline)) if args.outline else None
    cast: list[episode_pb2.Character] = list(proposal.cast) if proposal else []
    links: list[episode_pb2.Relationship] = list(proposal.relationships) if proposal else []
    if args.cast:
        cast, sent_links = read_cast(Path(args.cast))
        links = sent_links
    outline = proposal.outline if proposal and proposal.HasField("outline") else None
    return Steering(outline, cast, links, proposal)


def generate_request(args: argparse.Namespace) -> script_pb2.GenerateEpisodeRequest:
    """The GenerateEpisode request of `doppel generate`: flags first, then the proposal's
    show, setting, seed and premise, then the defaults."""
    steering = steering_of(args)
    proposal = steering.proposal or script_pb2.OutlineProposal()
    request = script_pb2.GenerateEpisodeRequest(
        show=args.show or proposal.show or DEFAULT_SHOW,
        setting=args.setting or proposal.setting or DEFAULT_SETTING,
        seed=args.seed if args.seed is not None else (proposal.seed or DEFAULT_SEED),
        request_id=args.request_id or "",
        writer=args.writer or "",
        premise=args.premise if args.premise is not None else proposal.premise,
        cast=steering.cast,
        relationships=steering.relationships,
    )
    if args.scenes is not None:
        request.scene_count = args.scenes
    if steering.outline is not None:
        request.outline.CopyFrom(steering.outline)
    return request


def propose_request(args: argparse.Namespace) -> script_pb2.ProposeOutlinesRequest:
    request = script_pb2.ProposeOutlinesRequest(
        show=args.show, setting=args.setting, premise=args.premise or "",
        count=args.alternatives, seed=args.seed, writer=args.writer or "",
    )  # fmt: skip
    if args.scenes is not None:
        request.scene_count = args.scenes
    if args.cast:
        cast, links = read_cast(Path(args.cast))
        request.cast.extend(cast)
        request.relationships.extend(links)
    return request


def write_proposals(
    response: script_pb2.ProposeOutlinesResponse, directory: Path, slug: str
) -> list[Path]:
    """Each proposal as proto3 JSON in `directory`; returns the paths, in order."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, proposal in enumerate(response.proposals, start=1):
        path = directory / f"{slug}-outline-{number}-{proposal.draft_id[3:11]}.json"
        text = json_format.MessageToJson(proposal, indent=2, sort_keys=True)
        path.write_text(text + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--premise", help="the writer's pitch (at most 2,000 characters)")
    parser.add_argument(
        "--outline", help="write from this outline: a proposal's JSON (`doppel outline`), edited"
    )
    parser.add_argument(
        "--cast", help="this cast: a JSON list of characters, or a proposal's JSON (its cast)"
    )


def add_outline_command(commands: Any) -> argparse.ArgumentParser:
    outline = commands.add_parser("outline", help="outlines to choose from (distinct A plots)")
    outline.add_argument("--show", default=DEFAULT_SHOW, help="show id or title")
    outline.add_argument("--setting", default=DEFAULT_SETTING, help="setting or text")
    outline.add_argument("--premise", help="the writer's pitch (at most 2,000 characters)")
    outline.add_argument(
        "--alternatives", type=int, default=3, help="how many outlines (1-5, default 3)"
    )
    outline.add_argument("--scenes", type=int, help="number of scenes (1-20)")
    outline.add_argument("--seed", type=int, default=DEFAULT_SEED, help="same seed, same outlines")
    outline.add_argument("--writer", help="writer (default: DOPPEL_WRITER)")
    outline.add_argument("--cast", help="a cast of your own: a JSON list of characters")
    outline.add_argument("--out", default="out", help="directory for the files")
    return outline
