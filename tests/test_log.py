"""gpuwatch.log: diagnostics through one logger, on stderr by default as before, and a
program's to take over (issue 29)."""

import logging

from gpuwatch.log import DEFAULT_HANDLER, logger


def test_by_default_a_diagnostic_is_one_line_on_stderr(capsys):
    logger.warning("the probe is off: %s", "no NVRTC")
    assert capsys.readouterr().err == "gpuwatch: the probe is off: no NVRTC\n"


def test_a_program_can_quiet_or_take_over_the_diagnostics(capsys):
    level = logger.level
    try:
        logger.setLevel(logging.ERROR)
        logger.warning("quiet")
        assert capsys.readouterr().err == ""
    finally:
        logger.setLevel(level)
    got: list[str] = []

    class Mine(logging.Handler):
        def emit(self, record):
            got.append(record.getMessage())

    mine = Mine()
    logger.removeHandler(DEFAULT_HANDLER)
    logger.addHandler(mine)
    try:
        logger.warning("mine now")
        assert got == ["mine now"] and capsys.readouterr().err == ""
    finally:
        logger.removeHandler(mine)
        logger.addHandler(DEFAULT_HANDLER)
