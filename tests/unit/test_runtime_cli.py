"""The CLI's argument checks: a bad value is a one-line usage error, never a traceback."""

from __future__ import annotations

import pytest

from worker_runtime import cli


def test_log_level_takes_any_case() -> None:
    assert cli.build_parser().parse_args(["run", "--log-level", "debug"]).log_level == "DEBUG"


def test_an_unknown_log_level_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.build_parser().parse_args(["run", "--log-level", "LOUD"])
    assert exit_.value.code == 2
    assert "'LOUD' is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL" in capsys.readouterr().err


def test_an_unknown_log_level_from_the_environment_is_a_usage_error_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONDUCTOR_WORKER_LOG_LEVEL", "verbose")
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["run"])
    assert "'verbose' is not one of" in capsys.readouterr().err
