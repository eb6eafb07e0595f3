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


def test_defaults_are_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("METRICS_PORT", "DRAIN_TIMEOUT", "MAX_RESULT_BYTES"):
        monkeypatch.delenv(f"CONDUCTOR_WORKER_{var}", raising=False)
    args = cli.build_parser().parse_args(["run"])
    assert (args.metrics_port, args.drain_timeout, args.max_result_bytes) == (8000, 25.0, 20_000_000)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--metrics-port", "70000"], "argument --metrics-port: '70000' is out of range (-1 to 65535)"),
        (["--metrics-port", "x"], "argument --metrics-port: 'x' is not a number"),
        (["--drain-timeout", "-3"], "argument --drain-timeout: '-3' is out of range (>= 0)"),
        (["--max-result-bytes", "0"], "argument --max-result-bytes: '0' is out of range (>= 1)"),
    ],
)
def test_out_of_range_numbers_are_usage_errors(argv: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.build_parser().parse_args(["run", *argv])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_a_bad_number_in_the_environment_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("CONDUCTOR_WORKER_METRICS_PORT", "abc")
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["run"])
    assert "argument --metrics-port: 'abc' is not a number" in capsys.readouterr().err


@pytest.mark.parametrize(("value", "expected"), [("on", True), ("0", False), ("FALSE", False), ("yes", True)])
def test_boolean_flags_from_the_environment(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    monkeypatch.setenv("CONDUCTOR_WORKER_UPDATE_V2", value)
    monkeypatch.setenv("CONDUCTOR_WORKER_JSON_LOGS", value)
    args = cli.build_parser().parse_args(["run"])
    assert (args.update_v2, args.json_logs) == (expected, expected)


def test_a_misspelt_boolean_in_the_environment_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("CONDUCTOR_WORKER_UPDATE_V2", "ture")
    with pytest.raises(SystemExit) as exit_:
        cli.build_parser()
    assert exit_.value.code == 2
    assert "CONDUCTOR_WORKER_UPDATE_V2: 'ture' is not a boolean" in capsys.readouterr().err
