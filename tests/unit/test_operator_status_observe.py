"""Pure parts around the autoscaler: metrics parsing, scrape targets, status conditions, CLI options."""

from __future__ import annotations

import http.server
import threading
import time
from pathlib import Path

import pytest

from conductor_operator.config import Config
from conductor_operator.main import parse_args
from conductor_operator.observe import Scraper, ScrapeResult, parse_metrics, pod_targets, queue_key
from conductor_operator.status import (
    condition,
    deployment_problems,
    metrics_verdict,
    ready_condition_args,
    spec_problems,
    utilization_text,
)

RUNTIME_TEXT = """\
# HELP task_poll_counter_total Polls sent to the server
# TYPE task_poll_counter_total counter
task_poll_counter_total{taskType="resize"} 12.0
task_poll_counter_total{taskType="ship"} 3.0
# HELP task_poll_empty_total Polls that returned no task
# TYPE task_poll_empty_total counter
task_poll_empty_total{taskType="resize"} 5.0
# HELP task_execute_time_seconds Execution time
# TYPE task_execute_time_seconds histogram
task_execute_time_seconds_bucket{le="0.5",taskType="resize"} 4.0
task_execute_time_seconds_bucket{le="+Inf",taskType="resize"} 7.0
task_execute_time_seconds_sum{taskType="resize"} 3.2
task_execute_time_seconds_count{taskType="resize"} 7.0
# HELP worker_busy_slots Slots executing a task now
# TYPE worker_busy_slots gauge
worker_busy_slots{taskType="resize"} 3.0
worker_busy_slots{taskType="ship"} 0.0
# HELP worker_slot_capacity Slots configured
# TYPE worker_slot_capacity gauge
worker_slot_capacity{taskType="resize"} 4.0
worker_slot_capacity{taskType="ship"} 2.0
"""


GO_TEXT = 'task_poll{taskType="get-inventory"} 76\n'


def test_parse_metrics_sums_slots_and_polls():
    m = parse_metrics(RUNTIME_TEXT)
    assert (m.busy_slots, m.slot_capacity, m.polls, m.empty_polls) == (3, 6, 15.0, 5.0)
    assert m.per_task_busy == {"resize": 3, "ship": 0}
    assert parse_metrics("").slot_capacity == 0


def test_queue_key_and_pod_targets():
    assert queue_key("t", None) == "t" and queue_key("t", "eu") == "eu:t"
    pods = [
        {"metadata": {"name": "a"}, "status": {"phase": "Running", "podIP": "127.0.0.11"}},
        {"metadata": {"name": "b"}, "status": {"phase": "Pending"}},
        {"metadata": {"name": "c"}, "status": {"phase": "Running"}},
    ]
    assert pod_targets(pods, 9100) == {"a": "http://127.0.0.11:9100/metrics"}


def test_scraper_is_concurrent_and_reports_failures():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/slow":
                threading.Event().wait(3)
            body = {"/go": GO_TEXT, "/html": "<html>hello</html>\n"}.get(self.path, RUNTIME_TEXT).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    class Server(http.server.ThreadingHTTPServer):
        request_queue_size = 64  # the default backlog of 5 drops concurrent connects

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    scraper = Scraper(timeout=0.5)
    try:
        targets = {f"p{i}": f"http://127.0.0.1:{port}/metrics" for i in range(10)}
        targets["slow"] = f"http://127.0.0.1:{port}/slow"
        targets["dead"] = "http://127.0.0.1:1/metrics"
        targets["go"] = f"http://127.0.0.1:{port}/go"  # answers without busy slots: not an error
        targets["html"] = f"http://127.0.0.1:{port}/html"  # no Conductor metric: not a worker's page
        t0 = time.monotonic()
        result = scraper.scrape(targets)
        assert time.monotonic() - t0 < 2.5  # one timeout, not one per pod
        assert len(result.pods) == 11 and set(result.errors) == {"slow", "dead", "html"}
        assert "no Conductor worker metric" in result.errors["html"]
        assert result.unmetered == ["go"] and result.pods["go"].polls == 76
        assert result.busy_slots == 30 and result.slot_capacity == 60 and len(result.busy_pods) == 10
    finally:
        scraper.close()
        server.shutdown()


def test_spec_problems():
    spec = {"conductor": {"serverUrl": "x", "authSecretRef": {"name": "s"}}}
    assert [p.reason for p in spec_problems(spec, None, False)] == ["SecretNotFound"]
    missing = spec_problems(spec, {"keyId": "eA=="}, False)
    assert [p.reason for p in missing] == ["SecretKeyMissing"] and "keySecret" in missing[0].message
    assert spec_problems(spec, {"keyId": "a", "keySecret": "b"}, False) == []
    custom = {"conductor": {"authSecretRef": {"name": "s", "keyIdKey": "id", "keySecretKey": "sec"}}}
    assert spec_problems(custom, {"id": "a", "sec": "b"}, False) == []
    assert spec_problems({"conductor": {}}, None, False) == []  # no reference: Conductor OSS
    sm = {"conductor": {}, "metrics": {"serviceMonitor": {"enabled": True}}}
    assert [p.reason for p in spec_problems(sm, None, False)] == ["ServiceMonitorUnavailable"]
    assert spec_problems(sm, None, True) == []


def test_deployment_problems_and_ready():
    stalled = {
        "status": {
            "conditions": [
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "m"}
            ]
        }
    }
    assert [p.reason for p in deployment_problems(stalled)] == ["ProgressDeadlineExceeded"]
    assert deployment_problems(None) == []
    dep = {"status": {"replicas": 2, "readyReplicas": 2, "updatedReplicas": 2}}
    assert ready_condition_args(2, dep, False)[:2] == (True, "AllReplicasReady")
    assert ready_condition_args(3, dep, False)[:2] == (False, "WaitingForReplicas")
    assert ready_condition_args(0, {"status": {}}, False)[:2] == (True, "ScaledToZero")
    assert ready_condition_args(2, dep, True)[:2] == (False, "Degraded")
    assert ready_condition_args(2, None, False)[:2] == (False, "DeploymentMissing")
    assert utilization_text(3, 4) == "75%" and utilization_text(0, 0) is None


def test_condition_keeps_transition_time_while_status_holds():
    first = condition("Ready", False, "Waiting", "0/1", "T1", 1, [])
    assert first["lastTransitionTime"] == "T1" and first["observedGeneration"] == 1
    same = condition("Ready", False, "Waiting", "0/2", "T2", 2, [first])
    assert same["lastTransitionTime"] == "T1"
    flipped = condition("Ready", True, "AllReplicasReady", "1/1", "T3", 2, [same])
    assert flipped["lastTransitionTime"] == "T3" and flipped["status"] == "True"
    assert condition("X", None, "r", "m", "T", None, [])["status"] == "Unknown"


def test_cli_namespaces(monkeypatch):
    monkeypatch.delenv("WATCH_NAMESPACES", raising=False)
    assert parse_args([]).all_namespaces is True
    args = parse_args(["-n", "a", "-n", "b", "--standalone"])
    assert args.namespaces == ("a", "b") and not args.all_namespaces and args.standalone
    monkeypatch.setenv("WATCH_NAMESPACES", "x, y")
    assert parse_args([]).namespaces == ("x", "y")
    assert parse_args([], env={"WATCH_NAMESPACES": "z"}).namespaces == ("z",)
    with pytest.raises(SystemExit):
        parse_args(["-n", "a", "--all-namespaces"])


def test_config_reads_the_environment_once_and_flags_win():
    env = {
        "CWO_RESYNC_SECONDS": "2.5",
        "CWO_MAX_WORKERS": "8",
        "CWO_WATCH_SERVER_TIMEOUT": "60",
        "CWO_PRIORITY": "7",
        "CWO_PEERING": "p",
        "CWO_PEERING_LIFETIME": "20",
        "CWO_METRICS_PORT": "9000",
        "CWO_LIVENESS": "",
        "CWO_LOG_FORMAT": "json",
        "KUBECONFIG": "/k",
    }
    cfg = Config.from_env(env)
    assert (cfg.resync_seconds, cfg.max_workers, cfg.watch_server_timeout, cfg.peering_lifetime) == (2.5, 8, 60, 20)
    assert (cfg.priority, cfg.peering, cfg.metrics_port, cfg.liveness, cfg.log_format, cfg.kubeconfig) == (
        7,
        "p",
        9000,
        "",
        "json",
        "/k",
    )
    assert cfg.all_namespaces and not cfg.standalone
    flags = parse_args(["--metrics-port", "9100", "--priority", "3", "-v"], env=env)
    assert (flags.metrics_port, flags.priority, flags.verbose, flags.resync_seconds) == (9100, 3, True, 2.5)
    assert Config.from_env({}).resync_seconds == Config().resync_seconds == 60.0
    assert Config.from_env({}).peering_lifetime == 60  # kopf's default


def test_parse_metrics_reads_only_the_autoscaler_series_line_by_line():
    text = (
        'worker_busy_slots{taskType="a\\"b",other="x"} 2\n'
        "worker_busy_slots 1 1700000000000\n"  # no task type: not a task's slots
        'worker_busy_slots{taskType="t"} 1 1700000000000\n'  # a timestamp
        'worker_slot_capacity{ taskType = "q" } 4.0\n'
        'worker_busy_slots_created{taskType="a"} 9\n'  # another series with the same prefix
        'worker_slot_capacity{taskType="z"} not-a-number\n'
        "# worker_busy_slots 100\n"
        'task_poll_counter_total{taskType="q"} 1e3\n'
    )
    m = parse_metrics(text)
    assert (m.busy_slots, m.slot_capacity, m.polls, m.empty_polls) == (3, 4, 1000.0, 0.0)
    assert m.per_task_busy == {'a"b': 2, "t": 1}


FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sdk_metrics"


@pytest.mark.parametrize(
    ("fixture", "has_busy", "capacity", "dialects"),
    [
        ("python.txt", True, 3, {"runtime", "shared"}),  # worker_slot_capacity on the page wins over the spec
        ("java.txt", True, 4, {"shared"}),  # active_workers; capacity from spec.tasks[].concurrency
        ("javascript-canonical.txt", True, 4, {"shared"}),
        ("javascript.txt", False, 0, {"js-legacy"}),  # legacy names: no busy slots
        ("go.txt", False, 0, {"go"}),
    ],
)
def test_parse_metrics_reads_every_sdks_real_page(fixture, has_busy, capacity, dialects):
    m = parse_metrics((FIXTURES / fixture).read_text(), {"get-inventory": 4})
    assert (m.has_busy, m.slot_capacity, set(m.dialects)) == (has_busy, capacity, dialects)
    assert m.busy_slots == 0 and m.polls > 0  # captured idle, after 30 workflows
    assert m.per_task_busy == ({"get-inventory": 0} if has_busy else {})


def test_scrape_result_counts_only_pods_that_report_busy_slots():
    pods = {
        "java": parse_metrics('active_workers{taskType="t"} 2\n', {"t": 3}),
        "go": parse_metrics('task_poll{taskType="t"} 5\n', {"t": 3}),
        "page": parse_metrics("<html>not metrics</html>", {"t": 3}),
    }
    result = ScrapeResult(pods, {"dead": "ConnectionError"})
    assert (result.busy_slots, result.slot_capacity, result.busy_pods) == (2, 3, ["java"])
    assert set(result.metered) == {"java"} and result.unmetered == ["go", "page"]
    assert result.dialects == {"shared", "go"}


def test_metrics_verdict():
    none: frozenset[str] = frozenset()
    ok = metrics_verdict(True, 2, 1, {"x": "e"}, frozenset({"shared"}), "java")
    assert ok == (True, "BusySlotsRead", "busy slots read from 2 of 4 pods (shared)")
    off = metrics_verdict(False, 0, 0, {}, none, "go")
    assert off[:2] == (False, "MetricsDisabled") and off[2].startswith("queue depth only")
    quiet = metrics_verdict(True, 0, 2, {}, frozenset({"go"}), "go")
    assert quiet[:2] == (False, "NoBusySlotMetrics") and "go workers' /metrics (go)" in quiet[2]
    unknown = metrics_verdict(True, 0, 1, {}, none, "javascript")
    assert "no known Conductor metric" in unknown[2]
    failed = metrics_verdict(True, 0, 0, {"b": "Timeout", "a": "ConnectionError: refused"}, none, "go")
    assert failed[:2] == (False, "MetricsScrapeFailed") and "a: ConnectionError: refused" in failed[2]
    assert metrics_verdict(True, 0, 0, {}, none, "go") is None  # no pod: the caller keeps the last verdict


def test_pod_targets_use_the_metrics_path():
    pods = [{"metadata": {"name": "a"}, "status": {"phase": "Running", "podIP": "10.0.0.1"}}]
    assert pod_targets(pods, 2112, "/prom") == {"a": "http://10.0.0.1:2112/prom"}


def test_a_setting_that_is_no_number_is_a_usage_error_naming_the_variable(capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_args([], env={"CWO_RESYNC_SECONDS": "10s"})
    assert exit_.value.code == 2
    assert "CWO_RESYNC_SECONDS='10s' is not a number" in capsys.readouterr().err


def test_last_active_time_moves_once_a_minute_while_the_fleet_works():
    from conductor_operator.status import last_active_text

    first = last_active_text(None, 1_000_000.0)
    assert first == "1970-01-12T13:46:40Z"
    assert last_active_text(first, 1_000_030.0) is None  # 30 s later: no status write for it
    assert last_active_text(first, 1_000_060.0) == "1970-01-12T13:47:40Z"
    assert last_active_text(first, 999_000.0) == "1970-01-12T13:30:00Z"  # earlier (a restarted operator): shown


def test_turning_autoscaling_off_removes_what_only_the_autoscaler_reports():
    from conductor_operator.status import AUTOSCALER_KEYS, assemble_status

    body = {
        "metadata": {"name": "w", "generation": 2},
        "spec": {"tasks": [{"name": "t"}], "autoscaling": {"enabled": False}},
        "status": {"busySlots": 3, "slotCapacity": 8, "lastActiveTime": "1970-01-01T00:00:00Z", "queueDepth": {"t": 1}},
    }
    status = assemble_status(
        body, desired=1, deployment=None, problems=[], auto=None, spec_hash=None, last_active=None, now="T"
    )
    assert {k: status[k] for k in AUTOSCALER_KEYS} == dict.fromkeys(AUTOSCALER_KEYS)
    assert {"busySlots", "slotCapacity", "lastActiveTime"} <= set(AUTOSCALER_KEYS)
