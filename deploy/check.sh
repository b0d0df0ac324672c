#!/usr/bin/env bash
# Checks the deploy/ assets: the Grafana dashboard is valid JSON and its
# queries parse; the Prometheus alert rules pass `promtool check rules` and
# their unit tests (`promtool test rules`); every alert has a runbook section
# in docs/operations.md and a unit test. Installs Debian's prometheus package
# (which ships promtool) when promtool is missing. Run from anywhere:
#   bash deploy/check.sh
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

dashboard=deploy/grafana/headway-dashboard.json
rules=deploy/prometheus/headway-alerts.yml
tests=deploy/prometheus/headway-alerts_test.yml
runbook=docs/operations.md

step "deploy: promtool"
if ! command -v promtool >/dev/null 2>&1; then
  echo "promtool is missing: installing Debian's prometheus package"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
promtool --version 2>&1 | head -n 1

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

step "deploy: Grafana dashboard ($dashboard)"
# Valid JSON, and every query parses as PromQL once Grafana's variables are
# replaced: the queries become recording rules for promtool to check.
python3 - "$dashboard" "$tmp/dashboard-rules.yml" <<'PY'
import json, re, sys
with open(sys.argv[1]) as f:
    d = json.load(f)
for key in ("title", "uid", "schemaVersion", "panels", "templating"):
    if key not in d:
        sys.exit(f"dashboard: no {key!r}")
if not any(v.get("type") == "datasource" and v.get("name") == "datasource" for v in d["templating"]["list"]):
    sys.exit("dashboard: no ${datasource} variable")
exprs = []
for p in d["panels"]:
    for t in p.get("targets", []):
        exprs.append((p["title"], t["expr"]))
for a in d.get("annotations", {}).get("list", []):
    if "expr" in a:
        exprs.append((a["name"], a["expr"]))
with open(sys.argv[2], "w") as out:
    out.write("groups:\n  - name: dashboard\n    rules:\n")
    for i, (title, e) in enumerate(exprs):
        e = e.replace("$__rate_interval", "5m").replace("$__range", "1h")
        e = re.sub(r"\$\{?\w+\}?", ".*", e)
        out.write(f"      # {title}\n      - record: dashboard:query{i}\n        expr: {json.dumps(e)}\n")
print(f"{len(d['panels'])} panels, {len(exprs)} queries")
PY
promtool check rules "$tmp/dashboard-rules.yml"

step "deploy: alert rules ($rules)"
promtool check rules "$rules"

step "deploy: alert rule unit tests ($tests)"
promtool test rules "$tests"

step "deploy: runbook sections and tests for every alert"
python3 - "$rules" "$tests" "$runbook" <<'PY'
import re, sys
rules, tests, runbook = (open(p).read() for p in sys.argv[1:4])

def slug(heading):  # GitHub's heading anchors
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")

anchors = {slug(h) for h in re.findall(r"^#{1,6} (.+)$", runbook, re.M)}
alerts = re.findall(r"^\s*- alert: (\S+)", rules, re.M)
urls = re.findall(r"runbook_url: \S+/docs/operations\.md#(\S+)", rules)
bad = []
if len(urls) != len(alerts):
    bad.append(f"{len(alerts)} alerts but {len(urls)} runbook_url annotations")
for alert, anchor in zip(alerts, urls):
    if anchor != alert.lower():
        bad.append(f"{alert}: runbook_url anchor #{anchor} is not #{alert.lower()}")
    if anchor not in anchors:
        bad.append(f"{alert}: no section #{anchor} in docs/operations.md")
    if not re.search(rf"alertname: {alert}\b", tests):
        bad.append(f"{alert}: no unit test")
if bad:
    sys.exit("\n".join(bad))
print(f"{len(alerts)} alerts, each with a runbook section and a unit test")
PY
