"""PDF renders on many threads at once give the bytes of the same renders one at a time.

The scene service renders PDFs on worker threads, and reportlab shares one parsed TrueType face
between documents (see `services.scene.pdf.SubsetLockedTTFont`). Without the guard this test
fails on nearly every run (KeyError / IndexError in `makeSubset`, or PDFs with wrong glyphs).
"""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import pytest

from services.scene.pdf import write_pdf
from services.scene.screenplay import Screenplay
from tests.unit.render_checks import LATIN_EXTENDED_A, NAMES, PHRASES, dense_thread_switching

# Text the fallback font (Courier Prime: Latin Extended-A) draws, and some it draws as boxes.
SCRIPTS = 100
ROUNDS = 3  # Each script rendered this many times concurrently: 300 concurrent renders.


def script(seed: int) -> str:
    """A short scene; the seed picks the phrases, the names and most of Latin Extended-A in its
    own order, so every script subsets the fallback font differently (and subsets are big)."""
    rng = random.Random(seed)
    letters = "".join(rng.sample(LATIN_EXTENDED_A, 100))
    name = rng.choice(NAMES)
    return (
        f"INT. KAWIARNIA {seed} - NOC\n\n"
        f"{rng.choice(PHRASES)} {letters}\n\n"
        f"{name}\n{rng.choice(PHRASES)} {rng.choice(PHRASES)}\n\n"
        f"{rng.choice(NAMES)}\n(ściszając głos)\n{rng.choice(PHRASES)}\n"
    )


@pytest.mark.slow
def test_hundreds_of_concurrent_non_latin_renders_match_sequential_ones() -> None:
    screenplays = [Screenplay.from_fountain(script(seed)) for seed in range(SCRIPTS)]
    sequential = [write_pdf(screenplay) for screenplay in screenplays]
    assert all(b"CourierPrime" in pdf for pdf in sequential)  # The subsetting path is taken.
    assert len(set(sequential)) == SCRIPTS
    with dense_thread_switching(), ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(write_pdf, screenplays * ROUNDS))
    mismatched = [i for i, pdf in enumerate(concurrent) if pdf != sequential[i % SCRIPTS]]
    assert not mismatched, f"{len(mismatched)} of {len(concurrent)} concurrent renders differ"
