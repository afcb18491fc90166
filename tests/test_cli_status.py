"""cli/status.StatusLine: the progress line a terminal sees (the commands' use of it:
tests/test_analyze_cli.py, through a pseudo-terminal)."""

import io
import warnings

from gpuwatch.cli.status import StatusLine, _cut


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_steps_redraw_one_line_padded_over_a_longer_one_then_cleared():
    t = Terminal()
    s = StatusLine(t)  # (no real terminal behind it: 80 columns assumed, 79 used)
    assert s.enabled and s.width() == 79
    s.show("reading run.parquet")
    s.show("joining")
    assert t.getvalue() == "\rreading run.parquet" + "\rjoining" + " " * 12
    s.clear()
    assert t.getvalue().endswith("\r" + " " * 7 + "\r")
    s.clear()  # (nothing drawn: nothing written)
    assert t.getvalue().endswith("\r" + " " * 7 + "\r") and "\x1b" not in t.getvalue()


def test_a_long_line_loses_its_middle_not_its_ends():
    text = "reading /a/rather/long/directory/name/of/traces/recorded/today/run_0042.parquet"
    cut = _cut(text, 40)
    assert len(cut) == 40 and cut.startswith("reading /a/") and cut.endswith("run_0042.parquet")
    assert "..." in cut and _cut("short", 40) == "short" and _cut(text, 3) == "rea"


def test_every_step_is_drawn_a_counter_at_most_ten_times_a_second():
    t = Terminal()
    s = StatusLine(t)
    for i in range(5):
        s.show(f"step {i}")
    assert all(f"step {i}" in t.getvalue() for i in range(5))
    for i in range(100):
        s.show(f"{i}/100 traces", throttle=i < 99)
    drawn = [p for p in t.getvalue().split("\r") if "traces" in p]
    assert len(drawn) <= 3 and drawn[-1].strip() == "99/100 traces"


def test_a_warning_starts_at_the_margin_and_the_line_comes_back():
    t = Terminal()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        # (as the CLI's warnings go: one line on the terminal, the stream the line is on)
        warnings.showwarning = lambda m, *a, **k: t.write(f"gpuwatch: warning: {m}\n")
        before = warnings.showwarning
        with StatusLine(t) as s:
            s.show("joining the telemetry onto 1,000,000 regions")
            warnings.warn("an unfinished recording", UserWarning)
            s.show("gap=20ms (condition 2 of 5)")
        assert warnings.showwarning is before
    assert t.getvalue() == ("\rjoining the telemetry onto 1,000,000 regions" + "\r" + " " * 44
                            + "\r" + "gpuwatch: warning: an unfinished recording\n"
                            + "\rgap=20ms (condition 2 of 5)" + "\r" + " " * 27 + "\r")


def test_no_terminal_no_line():
    t = io.StringIO()
    before = warnings.showwarning
    with StatusLine(t) as s:
        s.show("reading run.parquet")
        assert warnings.showwarning is before  # (nothing to clear: left as it is)
    assert not s.enabled and t.getvalue() == ""
