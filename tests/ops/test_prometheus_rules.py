"""prometheus.yml and alerts.yml pass promtool, every alert has unit tests that make it fire, and the
rules only use metrics the services export. promtool is required: `make test` installs it (Debian's
prometheus package) or stops saying how."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.ops.promql import SCRAPE_SERIES, exported_metric_names, metric_names

OBSERVABILITY = Path(__file__).resolve().parents[2] / "observability"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail(
            "promtool is not installed: `apt-get install --no-install-recommends prometheus` "
            "(make test does it as root); these checks must run, never skip"
        )
    return subprocess.run([exe, *args], cwd=OBSERVABILITY, capture_output=True, text=True, timeout=120)


def alert_rules() -> list[dict[str, object]]:
    groups = yaml.safe_load((OBSERVABILITY / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_the_prometheus_config_passes_promtool_check_config_syntax() -> None:
    # syntax only: the token file it names exists in the container; test_compose_monitoring.py checks it all there
    result = promtool("check", "config", "--syntax-only", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_alert_rules_pass_promtool_check_rules() -> None:
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alert_unit_tests_pass_promtool_test_rules() -> None:
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_test_rules_fails_when_an_alert_does_not_fire_as_expected(tmp_path: Path) -> None:
    tests = yaml.safe_load((OBSERVABILITY / "alerts_test.yml").read_text())
    tests["rule_files"] = [str(OBSERVABILITY / "alerts.yml")]
    firing = next(t for t in tests["tests"] if t["name"].startswith("a halted or reducing account"))
    firing["alert_rule_test"][1]["exp_alerts"] = []  # claim that a HALTED account raises nothing
    tests["tests"] = [firing]
    (tmp_path / "broken_test.yml").write_text(yaml.safe_dump(tests))
    result = promtool("test", "rules", str(tmp_path / "broken_test.yml"))
    assert result.returncode != 0 and "TradingStateNotActive" in result.stdout + result.stderr


def test_every_alert_the_runbook_answers_exists_with_a_severity_and_a_summary() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    required = {
        "WebhookErrorRatioHigh",
        "NatsPublishErrors",
        "ConsumerLagGrowing",
        "NoSignalsDuringTradingHours",
        "TradingStateNotActive",
        "DrawdownNearLimit",
    }
    assert required <= rules.keys()
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule["annotations"]["summary"], name


def test_every_alert_has_a_unit_test_where_it_fires() -> None:
    tests = yaml.safe_load((OBSERVABILITY / "alerts_test.yml").read_text())["tests"]
    fired = {case["alertname"] for test in tests for case in test.get("alert_rule_test", []) if case.get("exp_alerts")}
    assert {rule["alert"] for rule in alert_rules()} <= fired


def test_the_rules_use_only_metrics_the_services_export() -> None:
    groups = yaml.safe_load((OBSERVABILITY / "alerts.yml").read_text())["groups"]
    recorded = {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}
    known = exported_metric_names() | SCRAPE_SERIES | recorded
    for group in groups:
        for rule in group["rules"]:
            used = metric_names(rule["expr"])
            assert used or "record" in rule, f"no metric found in {rule['expr']!r}"
            assert used <= known, f"{rule.get('alert') or rule.get('record')}: unknown {sorted(used - known)}"


def test_prometheus_scrapes_the_four_services_on_their_ports() -> None:
    config = yaml.safe_load((OBSERVABILITY / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]] for job in config["scrape_configs"]
    }
    assert targets == {
        "gateway": ["gateway:8001"],
        "mcp_server": ["mcp_server:8002"],
        "execsim": ["execsim:8004"],
        "authority": ["authority:8003"],
    }
    assert config["rule_files"] == ["alerts.yml"]


def test_the_metric_name_reader_finds_selected_series_and_skips_functions_and_labels() -> None:
    expr = 'histogram_quantile(0.99, sum by (le, job) (rate(a_bucket{job="x"}[5m]))) / on() group_left b:rec'
    assert metric_names(expr) == {"a_bucket", "b:rec"}
    assert "gateway_webhooks_received_total" in exported_metric_names()
    assert "no_such_metric_total" not in exported_metric_names()


def test_every_runbook_link_in_the_alerts_points_at_a_runbook_heading() -> None:
    runbook = (OBSERVABILITY.parent / "docs" / "RUNBOOK.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in runbook.splitlines()
        if line.startswith("#")
    }
    links = re.findall(r"RUNBOOK\.md#([a-z0-9-]+)", (OBSERVABILITY / "alerts.yml").read_text())
    assert links, "the alerts link no runbook section"
    assert set(links) <= anchors, f"missing runbook sections: {sorted(set(links) - anchors)}"
