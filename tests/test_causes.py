"""analysis.causes is the one table of causes: the README's table is its docs_table(), and every
code a verdict gives is in it."""

from pathlib import Path

from gpuwatch.analysis import causes


def test_the_readme_table_of_causes_is_the_code_table():
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert causes.docs_table() in readme


def test_every_factor_has_one_code_and_words():
    assert len(set(causes.FACTORS)) == len(causes.FACTORS)
    for f in causes.FACTORS:
        assert causes.code_of(f) in causes.CAUSE_CODES and causes.text_of(f)
    assert causes.code_of("throttling", reasons=0x20) == "thermal"
    assert causes.code_of("throttling", reasons=0x4) == "power_cap"
    assert causes.code_of("nonsense") is None
