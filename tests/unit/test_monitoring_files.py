"""The shipped alert rules and Grafana dashboard parse and name only metrics we expose."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from ingest.metrics import exposed_names

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
METRIC = re.compile(r"\bingest_[a-z0-9_]+\b")
BUILTIN = {"up"}  # Prometheus' own scrape metric


def alert_rules() -> list[dict[str, Any]]:
    data = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    data = json.loads((DEPLOY / "grafana" / "ingest-dashboard.json").read_text())
    return [t["expr"] for p in data["panels"] for t in p["targets"]]


def test_every_alert_rule_is_complete() -> None:
    """Each rule has a unique name, an expression, a duration, a severity and both annotations."""
    rules = alert_rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names)) >= 8
    for rule in rules:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_alert_rules_name_only_exposed_metrics() -> None:
    """Every metric an alert queries is one that ingest.metrics or the health collector exposes."""
    used = set()
    for rule in alert_rules():
        names = set(METRIC.findall(rule["expr"]))
        assert names or BUILTIN & set(re.findall(r"\b[a-z_]+\b", rule["expr"])), rule["alert"]
        used |= names
    assert used <= exposed_names(), used - exposed_names()


def test_alerts_cover_what_the_issue_asks_for() -> None:
    """Stalled accounts, auth, quarantine, storage, scheduler and the events outbox all alert."""
    exprs = " ".join(r["expr"] for r in alert_rules())
    for name in (
        "ingest_last_success_timestamp_seconds",
        "ingest_auth_failures_total",
        "ingest_quarantined_messages",
        "ingest_storage_errors_total",
        "ingest_events_pending",
        "ingest_events_dead_letter",
    ):
        assert name in exprs
    assert 'check="scheduler"' in exprs


def test_dashboard_queries_name_only_exposed_metrics_and_show_each_one() -> None:
    """The dashboard parses, queries nothing undefined, and charts every metric family."""
    used = {n for expr in dashboard_exprs() for n in METRIC.findall(expr)}
    assert used <= exposed_names(), used - exposed_names()
    families = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in exposed_names()}
    charted = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in used}
    assert families == charted
