# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The decisions of the stack role, as pure functions over plain data (unit-tested).

The role's task files run the steps; what each step acts on is decided here:

- ``deploy_plan``: from the planned rollouts (check mode), which services change, whether a
  pre-deploy backup is taken, which migrations run and when, the revert order, the plan line.
- ``deploy_revert``: after a failed deploy, which services go back (reverse dependency order)
  to which release, and which were created by the run (nothing to go back to).
- ``release_manifest_body``: the body of a stack release manifest (flags, order, each
  service's release); the deploy and the flag flip both build it here.
- ``verify_verdict``: the verify summary (lines, problems, ok) from what verify read.
- ``rollback_target``: the stack release manifest a stack rollback goes back to.
- ``flag_flip``: a flag flip's value before and after, and the services that read the flag.
- ``rollout_outcome``: what one rollout call reported, as the record the other decisions read.
- ``run_summary``: the closing summary of a deploy or a rollback (per service from -> to,
  strategy, time, result; the manifest and its known-good status; the total time) and the
  ``set_stats`` data an AWX workflow reads.

Words: a *release* is one service's recorded container spec (rollout's ``releases/``); a
*release manifest* is the stack-wide record of every service's release and the flag set
(``manifests/``); an *outcome* is what one rollout call reported, per phase (``plan``,
``apply``, ``revert``, ``rollback``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re

from ansible_collections.tradeops.stack.plugins.module_utils._spec import DEFAULT_STRATEGY

# what a stack release manifest records of each service's release
RELEASE_FIELDS = ("release", "spec_hash", "image", "image_id", "image_digest", "strategy")
BACKUP_POLICIES = ("auto", "always", "never")


def _plain(data):
    """Plain Python data (ansible-core's tagged containers and lazy values become dicts, lists, strings)."""
    return json.loads(json.dumps(data, default=str))


def _names(services):
    """Service names from a list of service dicts or of names."""
    return [svc["name"] if isinstance(svc, dict) else svc for svc in services or []]


def _changed_services(order, names):
    return [svc for svc in order if svc["name"] in names]


# --------------------------------------------------------------------------------------------- outcome
def rollout_outcome(result, service):
    """The outcome record of one rollout call (``result``, the module's result or the finished job's) for
    ``service`` (its description): operation, changed, failed, the release before and after, why it failed,
    the strategy, the running containers and the image, image id and digest of the release it serves."""
    r, svc = _plain(result or {}), _plain(service or {})
    failed = bool(r.get("failed"))
    attempted = r.get("attempted_release") or r.get("release") or "-"
    image = next((rel.get("image") for rel in r.get("releases") or [] if rel.get("id") == attempted), None)
    containers = r.get("containers") or []
    serving = [c for c in containers if c.get("release") is not None and c["release"] == r.get("release")]
    return {
        "operation": r.get("operation", "unknown"),
        "changed": bool(r.get("changed")),
        "failed": failed,
        "release": r.get("release"),
        "previous_release": r.get("previous_release"),
        "spec_hash": r.get("spec_hash"),
        "rolled_back": bool(r.get("rolled_back")),
        "rollback_failed": bool(r.get("rollback_failed")),
        "seconds": (r.get("timings") or {}).get("total"),
        "reason": (r["reason"] if "reason" in r else r.get("msg", "")) if failed else "",
        "strategy": r.get("strategy") or svc.get("strategy") or DEFAULT_STRATEGY,
        "containers": [c["name"] for c in containers if c.get("running")],
        "image": image or svc.get("image"),
        "image_id": serving[0].get("image_id") if serving else None,
        "image_digest": serving[0].get("image_digest") if serving else None,
    }


# --------------------------------------------------------------------------------------------- deploy
def deploy_plan(planned, order, stack="", postgres_service="postgres", backup_policy="auto", waivers=None):
    """What the deploy does, decided from the planned rollouts (``_stack_outcomes.plan``).

    ``planned`` maps each service name to its planned outcome (at least ``operation``: ``noop``,
    ``create``, ``upgrade``...); ``order`` is the enabled services in dependency order. The
    pre-deploy backup is taken (outside check mode) when the policy is not ``never``, the
    PostgreSQL service exists already (its planned operation is not ``create``), and either the
    policy is ``always`` and something changes, or a changing service is stateful or has a
    migration. Migrations of upgraded services run before any rollout; the migration of a new
    service runs right before its own rollout (its dependencies are up by then).
    """
    planned = _plain(planned) or {}
    order = _plain(order) or []
    waivers = _plain(waivers) or []
    changes = [name for name, outcome in planned.items() if outcome.get("operation") != "noop"]
    changing = _changed_services(order, changes)
    pg = planned.get(postgres_service)
    backup = (
        backup_policy != "never"
        and pg is not None
        and pg.get("operation") != "create"
        and (
            (backup_policy == "always" and len(changes) > 0)
            or any(svc.get("stateful") for svc in changing)
            or any("migration" in svc for svc in changing)
        )
    )
    upgraded = [name for name, outcome in planned.items() if outcome.get("operation") == "upgrade"]
    summary = ["%s: %s" % (name, outcome.get("operation")) for name, outcome in planned.items()]
    message = "plan for %s (%d to change): %s" % (stack, len(changes), ", ".join(summary))
    if waivers:
        message += "; hardening waived: " + ", ".join(
            "%s %s (%s: %s; %s)" % (w.get("service"), w.get("rule"), w.get("field"), w.get("detail"), w.get("reason"))
            for w in waivers
        )
    return {
        "changes": changes,
        "summary": summary,
        "message": message,
        "backup": bool(backup),
        "migrations": [svc for svc in changing if "migration" in svc and svc["name"] in upgraded],
        "migrations_at_create": [
            svc["name"]
            for svc in order
            if "migration" in svc and (planned.get(svc["name"]) or {}).get("operation") == "create"
        ],
        "revert_order": list(reversed(_names(order))),
    }


def deploy_revert(applied, order):
    """After a failed deploy: the services the run changed, to go back in reverse dependency order.

    ``applied`` is ``_stack_outcomes.apply`` (the rollouts that ran, each with ``changed``,
    ``failed`` and ``previous_release``). A changed service without a previous release was
    created by this run: it has nothing to go back to and is listed in ``created``.
    """
    applied = _plain(applied) or {}
    order = _plain(order) or []
    changed = [name for name, outcome in applied.items() if outcome.get("changed") and not outcome.get("failed")]
    created = [name for name in changed if applied[name].get("previous_release") is None]
    services = [svc for svc in reversed(_changed_services(order, changed)) if svc["name"] not in created]
    return {
        "services": services,
        "releases": {svc["name"]: applied[svc["name"]]["previous_release"] for svc in services},
        "created": created,
    }


# ------------------------------------------------------------------------------------ release manifest
def release_manifest_body(services, flags, order):
    """The body of a stack release manifest: the flag set, the service order, each service's release.

    ``services`` maps a service name to its release as a rollout reported it (``_stack_outcomes.apply``)
    or as a manifest recorded it; only the manifest's fields (``RELEASE_FIELDS``) are kept. ``order``
    is the service names (or service dicts) in dependency order; the services follow it.
    """
    services = _plain(services) or {}
    names = _names(_plain(order))
    body_services = {}
    for name in names + [name for name in services if name not in names]:
        if name in services:
            record = services[name] or {}
            body_services[name] = {key: record[key] for key in RELEASE_FIELDS if key in record}
    return {"flags": _plain(flags) or {}, "order": names, "services": body_services}


# --------------------------------------------------------------------------------------------- verify
def _container_name(container):
    return re.sub(r"^/", "", (container.get("Names") or ["?"])[0])


def _labels(container):
    return container.get("Labels") or {}


def _skipped(result):
    return result is None or bool(result.get("skipped"))


def _service_problems(order, containers, healthy_ids):
    """(number of services running and healthy, problems) for the services of the stack."""
    ok, problems = 0, []
    for svc in order:
        names, bad = [], []
        for c in containers:
            labels = _labels(c)
            if (
                labels.get("tradeops.service") == svc["name"]
                and labels.get("tradeops.role", "service") == "service"
                and c.get("State") == "running"
            ):
                names.append(_container_name(c))
                if c.get("Id") not in healthy_ids:
                    bad.append("%s is %s" % (_container_name(c), c.get("Status")))
        if not names:
            problems.append("%s: no running container" % svc["name"])
        elif bad:
            problems.append("%s: %s (Docker health is not exactly healthy)" % (svc["name"], ", ".join(bad)))
        elif svc.get("strategy", DEFAULT_STRATEGY) == "exclusive" and len(names) > 1:
            problems.append(
                "%s: %d instances running (%s), exclusive allows one" % (svc["name"], len(names), ", ".join(names))
            )
        else:
            ok += 1
    return ok, problems


def _other_problems(containers, healthy_ids):
    """Containers of the stack that are not services (monitoring, proxies) and run unhealthy."""
    problems = []
    for c in containers:
        labels = _labels(c)
        unhealthy = c.get("State") == "running" and c.get("Id") not in healthy_ids
        unhealthy = unhealthy and "(unhealthy)" in (c.get("Status") or "")
        not_a_service = labels.get("tradeops.role", "service") != "service" or labels.get("tradeops.service") is None
        if unhealthy and not_a_service:
            problems.append("%s is %s" % (_container_name(c), c.get("Status")))
    return problems


def _broker_verdict(broker):
    if _skipped(broker):
        return ["broker     not checked (no broker URL)"], []
    if broker.get("healthy"):
        latency = broker.get("latency") or {}
        line = "broker     healthy, %s, p95 %s ms" % (broker.get("environment", "?"), latency.get("p95_ms", "?"))
        return [line], []
    failures = broker.get("failures")
    if failures is None:
        failures = [broker.get("msg", "check failed")]
    text = "; ".join(str(f) for f in failures)
    return ["broker     UNHEALTHY: " + text], ["broker: " + text]


def _prometheus_verdict(targets_result, alerts_result, prometheus_url):
    if _skipped(targets_result):
        return ["prometheus not checked (monitoring disabled)"], []
    if targets_result.get("status", 0) != 200:
        return (
            ["prometheus UNREACHABLE at %s: %s" % (prometheus_url, targets_result.get("msg", "?"))],
            ["prometheus unreachable at %s" % prometheus_url],
        )
    targets = ((targets_result.get("json") or {}).get("data") or {}).get("activeTargets") or []
    down = [t for t in targets if t.get("health") != "up"]
    alerts = []
    if alerts_result and alerts_result.get("status", 0) == 200:
        alerts = ((alerts_result.get("json") or {}).get("data") or {}).get("alerts") or []
    critical = [
        a
        for a in alerts
        if a.get("state") == "firing"
        and "severity" in (a.get("labels") or {})
        and a["labels"]["severity"] == "critical"
    ]
    lines = [
        "prometheus %d/%d targets up, %d critical alert(s) firing"
        % (len(targets) - len(down), len(targets), len(critical))
    ]
    problems = [
        "target down: %s %s (%s)"
        % ((t.get("labels") or {}).get("job", "?"), t.get("scrapeUrl", ""), t.get("lastError", ""))
        for t in down
    ]
    for a in critical:
        annotations = a.get("annotations") or {}
        summary = (" - %s" % annotations["summary"]) if "summary" in annotations else ""
        problems.append("critical alert firing: %s%s" % (a["labels"].get("alertname"), summary))
    return lines, problems


def _block_verdict(block_result, active_block, prometheus_url):
    if _skipped(block_result):
        active_block = active_block or {}
        return ["paper block " + (("active: %s" % active_block["id"]) if "id" in active_block else "none active")], []
    if block_result.get("failed"):
        text = "paper block status unavailable: %s" % block_result.get("msg", "?")
        return [text], [text]
    block = block_result.get("block")
    if not block:
        return ["paper block none active"], []
    window = block_result.get("window") or {}
    hours = round(block_result.get("elapsed_seconds", 0) / 3600, 1)
    lines = [
        "paper block %s active, %s h elapsed, window: %s ticks, %s signals, %s trades%s"
        % (
            block.get("id", "?"),
            hours,
            window.get("ticks", "no data"),
            window.get("signals", "no data"),
            window.get("trades", "no data"),
            ", OVERDUE" if block_result.get("overdue") else "",
        )
    ]
    problems = []
    if block_result.get("zai"):
        if prometheus_url:
            problems.append(
                "paper block %s: ZERO-ACTIVITY INCIDENT (%s)" % (block.get("id"), block_result.get("zai_reason", ""))
            )
        else:
            lines.append("            activity not measured (no Prometheus configured)")
    return lines, problems


def verify_verdict(
    order, stack="", host="",  # what should run, and where
    containers=None, healthy=None, manifest=None,  # what Docker and the release state say
    broker=None, targets=None, alerts=None, block=None, active_block=None, prometheus_url="",  # the checks
    marks_known_good=False,
):  # fmt: skip
    """The verify summary: ``{lines, problems, ok}``, one line per area, each problem listed.

    ``marks_known_good``: this verify is the deploy's own, which marks the manifest known-good when
    it passes (so a manifest not known-good yet is said to be so, not flagged).

    ``order`` is the enabled services; ``containers`` every container of the stack (Docker's
    listing, all states) and ``healthy`` those Docker reports exactly ``healthy``; ``manifest``
    the current release manifest; ``broker``, ``targets``, ``alerts`` and ``block`` the results of
    the broker check, the Prometheus targets and alerts reads and the paper block status (None or a
    skipped result when not checked); ``active_block`` the active block read from the host.
    """
    order = _plain(order) or []
    containers = _plain(containers) or []
    healthy_ids = [c.get("Id") for c in _plain(healthy) or []]
    manifest = _plain(manifest) or {}
    prometheus_url = prometheus_url or ""
    ok, problems = _service_problems(order, containers, healthy_ids)
    if "id" in manifest:
        if manifest.get("known_good"):
            known = ", known-good"
        else:
            known = ", known-good once this verify passes" if marks_known_good else ", NOT yet known-good"
        where = " (manifest %s%s)" % (manifest["id"], known)
    else:
        where = " (no manifest yet)"
    lines = ["services   %d/%d running and healthy%s" % (ok, len(order), where)]
    problems += _other_problems(containers, healthy_ids)
    for area_lines, area_problems in (
        _broker_verdict(_plain(broker)),
        _prometheus_verdict(_plain(targets), _plain(alerts), prometheus_url),
        _block_verdict(_plain(block), _plain(active_block), prometheus_url),
    ):
        lines += area_lines
        problems += area_problems
    head = "%s %s on %s: %d problem(s)" % ("OK  " if not problems else "FAIL", stack, host, len(problems))
    return {"lines": [head, *lines] + ["  ! " + p for p in problems], "problems": problems, "ok": not problems}


# ------------------------------------------------------------------------------------------- rollback
def rollback_target(history, current=None, requested=""):
    """The release manifest a stack rollback goes to: the one requested, else the newest known-good
    manifest older than the current one (manifest ids sort by time), else ''."""
    if requested:
        return requested
    current_id = (_plain(current) or {}).get("id", "~")
    older = [m["id"] for m in _plain(history) or [] if m.get("known_good") and m["id"] < current_id]
    return older[-1] if older else ""


# ------------------------------------------------------------------------------------------ flag flip
def flag_flip(order, name, value, defaults=None, overrides=None):
    """A flag flip's decision: the flag's value before (declared default, then the host's override,
    else false), after (``value`` read as true/false), and the services that read it."""
    effective = dict(_plain(defaults) or {})
    effective.update(_plain(overrides) or {})
    return {
        "before": effective.get(name, False),
        "after": str(value).lower() == "true",
        "readers": [svc["name"] for svc in _plain(order) or [] if name in (svc.get("flags") or [])],
    }


# --------------------------------------------------------------------------------------- run summary
def _dedupe_clauses(text):
    """``a; last health checks: b; b; b`` -> ``a; last health checks: b (x3)``: a gate's health log
    repeats the same probe line (the label in front of the first one does not make it different)."""
    out, counts = [], {}
    for clause in str(text).split("; "):
        key = clause.split("last health checks: ", 1)[-1]
        if key in counts:
            counts[key] += 1
        else:
            counts[key] = 1
            out.append((key, clause))
    return "; ".join(clause if counts[key] == 1 else "%s (x%d)" % (clause, counts[key]) for key, clause in out)


def _image(record):
    return (record or {}).get("image") or "?"


def run_summary(
    outcomes, kind="deploy", order=None,  # what ran
    before=None, manifest=None, history=None,  # the releases before and after, and their records
    seconds=None, failure="", created=None,  # how it ended
    audit_log="", stack="", host="",  # where it is written down
):  # fmt: skip
    """The closing summary of a deploy or a rollback, and what ``set_stats`` hands to an AWX workflow.

    ``outcomes`` is ``_stack_outcomes`` (phases ``apply`` and ``revert`` for a deploy, ``rollback`` for a
    rollback), a failed rollout's outcome included; ``before`` the manifest current when the run started,
    ``manifest`` the one current at the end, known-good when it or its record in ``history`` says so;
    ``failure`` the run's failure message (empty: it succeeded), printed here and nowhere else; ``created``
    the services a failed deploy created and left running (nothing to go back to).
    """
    outcomes = _plain(outcomes) or {}
    before = (_plain(before) or {}).get("services") or {}
    manifest = _plain(manifest) or {}
    known_good = bool(manifest.get("known_good")) or any(
        record.get("id") == manifest.get("id") and record.get("known_good") for record in _plain(history) or []
    )
    names = _names(_plain(order) or [])
    done = outcomes.get("rollback" if kind == "rollback" else "apply") or {}
    reverted = outcomes.get("revert") or {}
    rows, changed = [], []
    for name in names + sorted(n for n in done if n not in names):
        outcome = done.get(name)
        if outcome is None or (not outcome.get("changed") and not outcome.get("failed")):
            continue
        changed.append(name)
        if outcome.get("failed"):
            result = "FAILED, rollback failed" if outcome.get("rollback_failed") else "FAILED, rolled back"
        else:
            result = "ok"
        if name in reverted:
            back = reverted[name]
            result += ", reverted" if not back.get("failed") else ", revert FAILED: %s" % back.get("reason")
        took = "" if outcome.get("seconds") is None else ", %.1f s" % float(outcome["seconds"])
        rows.append(
            "  %s: %s -> %s (%s, %s%s): %s"
            % (name, _image(before.get(name)), outcome.get("image") or "?", outcome.get("operation"),
               outcome.get("strategy"), took, result)
        )  # fmt: skip
    rollback_failed = any(o.get("rollback_failed") for o in done.values()) or any(
        o.get("failed") for o in reverted.values()
    )
    if not failure:
        outcome = "ok" if changed or kind == "rollback" else "nothing to change"
    elif kind == "rollback":
        outcome = "failed"  # what was rolled back and what not is in the rows
    else:
        outcome = "failed, rollback failed" if rollback_failed else "failed, rolled back"
    total = "" if seconds is None else " in %.0f s" % float(seconds)
    lines = ["%s %s: %s on %s%s" % (kind.upper(), outcome.upper() if failure else outcome, stack, host, total)]
    lines += rows or ["  no service changed"]
    if manifest.get("id"):
        lines.append("  manifest %s (%s)" % (manifest["id"], "known-good" if known_good else "NOT known-good"))
    if failure:
        lines.append("  why: %s" % _dedupe_clauses(failure))
        if created:
            lines.append("  left running (created by this run, nothing to go back to): %s" % ", ".join(created))
        if audit_log:
            lines.append("  audit log: %s" % audit_log)
    stats = {
        "outcome": outcome,
        "kind": kind,
        "stack": stack,
        "host": host,
        "manifest": manifest.get("id"),
        "known_good": known_good,
        "changed": changed,
        "seconds": None if seconds is None else round(float(seconds), 1),
    }
    return {"lines": lines, "outcome": outcome, "stats": stats}


class FilterModule(object):
    def filters(self):
        return {
            "deploy_plan": deploy_plan,
            "deploy_revert": deploy_revert,
            "release_manifest_body": release_manifest_body,
            "verify_verdict": verify_verdict,
            "rollback_target": rollback_target,
            "flag_flip": flag_flip,
            "run_summary": run_summary,
            "rollout_outcome": rollout_outcome,
        }
