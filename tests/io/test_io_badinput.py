"""Bad input never changes a number silently (issue 22): the seeded bad-input corpus.

Every variant of ``_badinput.build_corpus`` (lost slices, unrelated files, pixel data length,
implausible or non-numeric values, pipes and symlink loops, the fuzz families of
``test_io_fuzz.py``) must end, within a time limit, in a typed one-line error naming the file
or the gap, or in a load equal to the clean series; lost slices load with an ``incomplete
series`` warning only when ``allow_incomplete`` is given. ``docs/loader.md`` holds the tally
(``python bench/badinput_tally.py`` regenerates it; this test checks it is current).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from _badinput import problems, run_corpus, tally

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    return run_corpus(tmp_path_factory.mktemp("badinput"), seed=22)


def test_every_bad_input_is_a_typed_error_or_an_unchanged_load(outcomes):
    wrong = {f"{o.variant.kind} ({o.variant.name})": p for o in outcomes if (p := problems(o))}
    assert not wrong, wrong
    kinds = {o.variant.kind for o in outcomes}
    assert len(outcomes) >= 80 and len(kinds) >= 35


def test_unrelated_files_load_as_the_clean_series_with_a_word_for_pipes(outcomes):
    pipe = next(o for o in outcomes if o.variant.kind == "unrelated: named pipe beside the slices")
    assert pipe.result == "equal"
    assert any("not regular files" in w for w in pipe.warnings)
    readme = next(o for o in outcomes if o.variant.kind == "unrelated: README.txt")
    assert readme.result == "equal" and readme.warnings == ()


def test_the_tally_in_docs_is_current(outcomes):
    text = (REPO / "docs" / "loader.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- badinput-tally -->\n(.*?)\n<!-- /badinput-tally -->", text, re.S)
    assert m, "docs/loader.md lacks the bad-input tally block"
    fuzz = "; ".join(f"{o.variant.name}: {o.result} {o.detail[-80:]}" for o in outcomes
                     if o.variant.kind.startswith("fuzz") and o.result != "equal")
    assert m.group(1).strip() == tally(outcomes).strip(), (
        "docs/loader.md's tally is stale: run python bench/badinput_tally.py "
        f"(fuzz outcomes other than equal: {fuzz})")
