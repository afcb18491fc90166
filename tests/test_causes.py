"""analysis.causes is the one table of causes: the docs' table (docs/verdicts.md) is its
docs_table(), and every code a verdict gives is in it."""

from pathlib import Path

from gpuwatch.analysis import causes


def test_the_docs_table_of_causes_is_the_code_table():
    page = (Path(__file__).parent.parent / "docs" / "verdicts.md").read_text()
    assert causes.docs_table() in page


def test_every_factor_has_one_code_and_words():
    assert len(set(causes.FACTORS)) == len(causes.FACTORS)
    for f in causes.FACTORS:
        assert causes.code_of(f) in causes.CAUSE_CODES and causes.text_of(f)
    assert causes.code_of("throttling", reasons=0x20) == "thermal"
    assert causes.code_of("throttling", reasons=0x4) == "power_cap"
    assert causes.code_of("nonsense") is None
