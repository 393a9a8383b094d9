#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: capital_com_health
short_description: Check that Capital.com is reachable, the account can trade and the round trip is fast enough
version_added: 0.1.0
description:
  - Read-only health check of the Capital.com REST API for a (paper) trading host, meant to run
    before and during a paper-trading block and from an AWX schedule every few minutes.
  - "Checks, each reported separately with its latency and a readable detail: C(time) (C(GET /time)
    reachable), C(clock_skew) (host clock against the broker's, O(max_clock_skew_ms)), C(login)
    (C(POST /session)), C(ping) (C(GET /ping)), C(account) (present, C(ENABLED), optionally
    O(min_available_balance)), one C(market:<EPIC>) per entry of O(epics) (market found,
    C(marketStatus), bid and offer present, quote fresh when the market is open, and
    C(TRADEABLE) when its opening hours say it should be open or it is listed in O(require_tradeable)) and
    C(latency) (O(latency_samples) calls of C(GET /ping), p50/p95/max against O(latency_slo_ms))."
  - "Opening hours: the broker's C(instrument.openingHours) (weekday ranges in a zone) decide whether a market
    should be open now. Should be open and not C(TRADEABLE) is unhealthy, naming the status and the hours;
    closed by its own hours (C(OIL_CRUDE) at the weekend) is reported with the next opening, not an outage,
    unless the epic is listed in O(require_tradeable)."
  - Logs out (C(DELETE /session)) at the end. Never returns or logs the API key, the password, the login,
    C(CST) or C(X-SECURITY-TOKEN).
  - Refuses the live host (O(environment=live) or a live O(base_url)) unless O(allow_live=true).
  - Optionally writes a Prometheus textfile (O(metrics_file)) for node-exporter's textfile collector.
extends_documentation_fragment:
  - tradeops.stack.capital_com
attributes:
  check_mode:
    support: full
    description:
      - The broker is queried the same way (nothing on the broker changes); the metrics textfile is not written.
  diff_mode:
    support: none
    description: Nothing changes, so there is no difference to show.
  idempotent:
    support: full
    description: Running it again gives the same kind of answer and changes nothing.
    details:
      - Never changes anything on the broker and always reports C(changed=false), also when it writes the textfile.
author:
  - tradeops.stack contributors (@tradeops-stack)
options:
  allow_live:
    description:
      - Allow O(environment=live) or a live O(base_url). A paper-trading stack never sets this.
    type: bool
    default: false
  epics:
    description:
      - Markets to check with C(GET /markets/{epic}).
    type: list
    elements: str
    default: [BTCUSD, OIL_CRUDE]
  require_tradeable:
    description:
      - Epics (each also in O(epics)) whose C(marketStatus) must be C(TRADEABLE) for the broker to be healthy, even
        outside their opening hours (an override; the hours already require it while they say open).
    type: list
    elements: str
    default: []
  max_quote_age:
    description:
      - Seconds after which the last quote of a C(TRADEABLE) market counts as stale.
      - The broker's C(updateTimeUTC) is used when present; a broker-local C(updateTime) is read as the
        smallest whole-hour offset ahead of UTC that makes it not lie in the future.
    type: float
    default: 120
  account_id:
    description:
      - Account that must be present and C(ENABLED). If not set, the current account of the login is checked.
    type: str
  min_available_balance:
    description:
      - Minimum C(available) balance of the account (in the account's currency). Not checked if not set.
    type: float
  max_clock_skew_ms:
    description:
      - Largest tolerated difference, in milliseconds, between the host clock and the broker's C(serverTime),
        measured against the midpoint of the C(GET /time) round trip.
      - The check fails only when the skew exceeds this by more than half the round trip (the broker read its
        clock somewhere within it), so a slow answer is not reported as a wrong clock.
    type: float
    default: 500
  latency_samples:
    description:
      - Number of C(GET /ping) calls timed for the latency check (1 to 100). The client's rate limit of
        10 requests per second applies to them.
    type: int
    default: 5
  latency_slo_ms:
    description:
      - Latency budget of one round trip, in milliseconds.
    type: float
    default: 100
  latency_quantile:
    description:
      - Which statistic of the samples must stay within O(latency_slo_ms).
    type: str
    choices: [p50, p95, max]
    default: p95
  fail_on_unhealthy:
    description:
      - Fail the task when any check fails. With V(false) the task succeeds and RV(healthy) says the outcome.
    type: bool
    default: true
  metrics_file:
    description:
      - Path of a Prometheus textfile to write atomically (mode 0644) with the outcome, for node-exporter's
        textfile collector. Its directory must exist.
      - If not set and O(stack) is set, the file is C(<state_root>/<stack>/metrics/capital_com.prom).
      - Not written in check mode.
    type: path
  stack:
    description:
      - Name of the stack whose state directory receives the textfile when O(metrics_file) is not set.
      - Accepted so that C(module_defaults) of the C(tradeops.stack.stack) action group apply to this module.
    type: str
  state_root:
    description:
      - Directory under which each stack keeps its state (see O(stack)).
    type: path
    default: /var/lib/tradeops
notes:
  - The module runs on the managed host (by default the trading host), because the latency that matters is
    the bot's own path to the broker.
  - "Metric names: see RV(metrics_file) and the collection's C(docs/capital_com_health.md)."
seealso:
  - name: Capital.com REST API
    description: The broker's API reference.
    link: https://open-api.capital.com/
"""

EXAMPLES = r"""
- name: Check the demo broker before a paper-trading block (credentials from the AWX credential)
  tradeops.stack.capital_com_health:
    epics: [BTCUSD, OIL_CRUDE]
    require_tradeable: [BTCUSD]
    min_available_balance: 1000
    metrics_file: /var/lib/tradeops/cdb/metrics/capital_com.prom
  register: broker
  no_log: false

- name: Report without failing (AWX schedule), against the local emulator
  tradeops.stack.capital_com_health:
    base_url: http://127.0.0.1:8080/api/v1
    api_key: "{{ capital_com_api_key }}"
    identifier: "{{ capital_com_identifier }}"
    password: "{{ capital_com_password }}"
    latency_samples: 10
    latency_slo_ms: 100
    fail_on_unhealthy: false
  register: broker

- name: Show why the broker is unhealthy
  ansible.builtin.debug:
    msg: "{{ broker.failures }}"
  when: not broker.healthy
"""

RETURN = r"""
healthy:
  description: Whether every check passed.
  returned: always
  type: bool
  sample: true
environment:
  description: The environment checked.
  returned: always
  type: str
  sample: demo
base_url:
  description: The base URL used.
  returned: always
  type: str
  sample: https://demo-api-capital.backend-capital.com/api/v1
checks:
  description:
    - One entry per check (C(time), C(clock_skew), C(login), C(ping), C(account), C(market:<EPIC>), C(latency)).
    - Each has C(ok), C(skipped), C(latency_ms) (of its own request, null when none was made) and C(detail);
      market checks add C(market_status), C(tradeable), C(required), C(bid), C(offer), C(quote_age_s) and,
      from the market's opening hours, C(should_be_open), C(next_open) and C(next_close) (UTC) and C(hours);
      C(clock_skew) adds C(skew_ms); C(account) adds C(account_id), C(status) and C(available);
      a failed check adds C(kind), the class of error (for example C(timeout), C(rate_limited), C(gateway)).
  returned: always
  type: dict
  sample:
    login: {ok: true, skipped: false, latency_ms: 3.1, detail: "logged in to account 12345678901234567"}
    "market:OIL_CRUDE":
      ok: true
      skipped: false
      latency_ms: 1.9
      detail: "CLOSED: closed by its opening hours, opens 2026-12-13T23:05:00Z"
      market_status: CLOSED
      tradeable: false
      required: false
      bid: 78.43
      offer: 78.46
      quote_age_s: 3600.2
      should_be_open: false
      next_open: "2026-12-13T23:05:00Z"
      next_close: null
failures:
  description: One readable line per failed check, naming the check and the reason.
  returned: always
  type: list
  elements: str
  sample: ["ping: GET /ping: HTTP 503 service unavailable (empty body): the broker failed; after 3 attempts"]
latency:
  description: The latency samples of C(GET /ping) and their statistics, in milliseconds.
  returned: always
  type: dict
  sample:
    endpoint: GET /ping
    samples_ms: [1.2, 1.1, 1.3, 1.2, 1.4]
    p50_ms: 1.2
    p95_ms: 1.38
    max_ms: 1.4
    slo_ms: 100.0
    quantile: p95
    ok: true
requests:
  description: What the client did, for tuning and alerts.
  returned: always
  type: dict
  sample: {requests: 11, retries: 0, rate_limited: 0, relogins: 0, logins: 1}
duration_s:
  description: Wall time of the whole check on the managed host, in seconds.
  returned: always
  type: float
  sample: 0.084
logged_out:
  description: Whether the session was closed with C(DELETE /session).
  returned: always
  type: bool
  sample: true
metrics_file:
  description:
    - The textfile written, or null.
    - Metrics (gauges unless noted) are C(capital_com_up), C(capital_com_check_ok{check}),
      C(capital_com_latency_seconds{quantile="0.5"|"0.95"|"1"}), C(capital_com_latency_slo_seconds),
      C(capital_com_market_tradeable{epic}), C(capital_com_market_should_be_open{epic}) (NaN without hours),
      C(capital_com_market_quote_age_seconds{epic}),
      C(capital_com_clock_skew_seconds), C(capital_com_rate_limited_responses), C(capital_com_rate_limited_total)
      (counter kept across runs), C(capital_com_check_duration_seconds) and C(capital_com_last_check_timestamp_seconds).
  returned: always
  type: str
  sample: /var/lib/tradeops/cdb/metrics/capital_com.prom
"""

import datetime
import math
import os
import time
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.tradeops.stack.plugins.module_utils import _market_hours, _textfile
from ansible_collections.tradeops.stack.plugins.module_utils._capital_com import (
    CAPITAL_COM_ARG_SPEC,
    CRYPTOGRAPHY_IMPORT_ERROR,
    HAS_CRYPTOGRAPHY,
    HAS_REQUESTS,
    REQUESTS_IMPORT_ERROR,
    CapitalComError,
    client_from_params,
    live_guard,
    percentile,
    quote_age,
)
from ansible_collections.tradeops.stack.plugins.module_utils._redact import Redactor, guard
from ansible_collections.tradeops.stack.plugins.module_utils._state import DEFAULT_STATE_ROOT, StackState, StateError


def _utc(timestamp):
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)


def least_skew_ms(skew_ms, round_trip_ms):
    """The smallest clock skew the measurement allows, in ms.

    The broker read its clock somewhere inside the round trip, not exactly at its midpoint, so the
    true skew lies within half a round trip of the estimate (as in NTP): a slow answer widens the
    interval and is not by itself evidence of a wrong clock (slowness is the latency check's job).
    """
    return max(0.0, abs(skew_ms) - max(0.0, round_trip_ms) / 2.0)


CHECK_ORDER = ("time", "clock_skew", "login", "ping", "account")


def ms(seconds):
    return None if seconds is None else round(seconds * 1000.0, 3)


class HealthCheck(object):
    """Runs every check against one broker session and builds the module result."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.checks = {}
        self.failures = []
        self.latency = {}
        self.skew_s = None
        self.client = None
        self.started = time.time()

    # -- bookkeeping ---------------------------------------------------------------------------
    def record(self, name, ok, detail, latency=None, **extra):
        entry = dict(ok=bool(ok), skipped=False, latency_ms=ms(latency), detail=detail)
        entry.update(extra)
        self.checks[name] = entry
        if not ok:
            self.failures.append("%s: %s" % (name, detail))
        return entry

    def skip(self, name, why):
        self.checks[name] = dict(ok=False, skipped=True, latency_ms=None, detail="skipped: %s" % why)

    def guarded(self, name, func, *args):
        """Run one check; a broker error or an unexpected bug becomes that check's failure, never a traceback."""
        try:
            return func(*args)
        except CapitalComError as exc:
            self.record(name, False, exc.reason, kind=exc.kind)
        except Exception as exc:  # a bug in a check must not hide the other checks
            self.record(name, False, "unexpected error in the %s check: %s: %s" % (name, type(exc).__name__, exc))
            self.module.debug(traceback.format_exc())
        return None

    # -- checks ---------------------------------------------------------------------------------
    def check_time(self):
        t0 = time.time()
        resp = self.client.server_time()
        t1 = time.time()
        server = resp.data.get("serverTime") if isinstance(resp.data, dict) else None
        if not isinstance(server, (int, float)) or isinstance(server, bool):
            self.record("time", False, "GET /time: the answer has no numeric serverTime", resp.elapsed)
            self.skip("clock_skew", "no server time")
            return
        self.record("time", True, "server time %d ms" % server, resp.elapsed, server_time_ms=server)
        self.skew_s = server / 1000.0 - (t0 + t1) / 2.0
        limit = float(self.params["max_clock_skew_ms"])
        skew_ms = self.skew_s * 1000.0
        ok = least_skew_ms(skew_ms, (t1 - t0) * 1000.0) <= limit
        detail = "broker clock %s host clock by %.1f ms (round trip %.1f ms, max_clock_skew_ms %g)" % (
            "ahead of" if skew_ms >= 0 else "behind",
            abs(skew_ms),
            (t1 - t0) * 1000.0,
            limit,
        )
        if not ok:
            detail = "clock skew too large: " + detail + "; check chrony/timesyncd on this host"
        self.record("clock_skew", ok, detail, None, skew_ms=round(skew_ms, 3))

    def check_login(self):
        resp = self.client.login()
        account = self.client.account or {}
        self.record("login", True, "logged in to account %s" % account.get("currentAccountId", "?"), resp.elapsed)
        return True

    def check_ping(self):
        resp = self.client.ping()
        status = resp.data.get("status") if isinstance(resp.data, dict) else None
        if status != "OK":
            self.record("ping", False, "GET /ping answered status %r, expected 'OK'" % (status,), resp.elapsed)
        else:
            self.record("ping", True, "status OK", resp.elapsed)

    def check_account(self):
        resp = self.client.accounts()
        accounts = resp.data.get("accounts") if isinstance(resp.data, dict) else None
        if not isinstance(accounts, list):
            self.record("account", False, "GET /accounts: the answer has no accounts list", resp.elapsed)
            return
        wanted = self.params["account_id"] or (self.client.account or {}).get("currentAccountId")
        account = None
        for item in accounts:
            if isinstance(item, dict) and (item.get("accountId") == wanted or (not wanted and item.get("preferred"))):
                account = item
                break
        if account is None:
            self.record(
                "account",
                False,
                "account %s not found among %d account(s) of this login" % (wanted or "(preferred)", len(accounts)),
                resp.elapsed,
            )
            return
        status = account.get("status")
        balance = account.get("balance") if isinstance(account.get("balance"), dict) else {}
        available = balance.get("available")
        extra = dict(account_id=account.get("accountId"), status=status, available=available)
        problems = []
        if status != "ENABLED":
            problems.append("account %s is %s, expected ENABLED" % (account.get("accountId"), status))
        minimum = self.params["min_available_balance"]
        if minimum is not None:
            if not isinstance(available, (int, float)):
                problems.append("account %s reports no available balance" % account.get("accountId"))
            elif available < minimum:
                problems.append(
                    "available balance %s %s is below min_available_balance %s"
                    % (available, account.get("currency", ""), minimum)
                )
        if problems:
            self.record("account", False, "; ".join(problems), resp.elapsed, **extra)
        else:
            self.record(
                "account",
                True,
                "account %s ENABLED, available %s %s"
                % (account.get("accountId"), available, account.get("currency", "")),
                resp.elapsed,
                **extra,
            )

    def check_market(self, epic):
        name = "market:%s" % epic
        required = epic in self.params["require_tradeable"]
        resp = self.client.market(epic)
        snap = resp.data.get("snapshot") if isinstance(resp.data, dict) else None
        if not isinstance(snap, dict):
            self.record(
                name, False, "GET /markets/%s: the answer has no snapshot" % epic, resp.elapsed, required=required
            )
            return
        status = snap.get("marketStatus")
        bid, offer = snap.get("bid"), snap.get("offer")
        tradeable = status == "TRADEABLE"
        broker_now = time.time() + (self.skew_s or 0.0)
        age, basis = quote_age(snap, broker_now)
        extra = dict(
            market_status=status,
            tradeable=tradeable,
            required=required,
            bid=bid,
            offer=offer,
            quote_age_s=None if age is None else round(age, 3),
            quote_time_basis=basis,
        )
        problems = []
        try:  # the broker's own hours say whether "not TRADEABLE" is the weekend or an outage
            extra.update(_market_hours.market_hours(resp.data.get("instrument"), _utc(broker_now), epic))
        except _market_hours.HoursError as exc:
            problems.append(str(exc))
        should_be_open = extra.get("should_be_open")
        if not status:
            problems.append("no marketStatus in the snapshot")
        if not isinstance(bid, (int, float)) or not isinstance(offer, (int, float)):
            problems.append("no bid/offer in the snapshot (bid=%r, offer=%r)" % (bid, offer))
        elif bid > offer:
            problems.append("crossed quote: bid %s above offer %s" % (bid, offer))
        max_age = float(self.params["max_quote_age"])
        if tradeable and age is not None and age > max_age:
            problems.append("quote is stale: last update %.0f s ago (max_quote_age %g s)" % (age, max_age))
        if required and status and not tradeable:
            problems.append("market is %s but must be TRADEABLE (require_tradeable)" % status)
        elif should_be_open and status and not tradeable:
            problems.append("market is %s but its opening hours say it should be open: %s" % (status, extra["hours"]))
        if problems:
            self.record(name, False, "%s: %s" % (epic, "; ".join(problems)), resp.elapsed, **extra)
        elif tradeable:
            self.record(
                name,
                True,
                "TRADEABLE, bid %s offer %s, quote %s old" % (bid, offer, "?" if age is None else "%.1f s" % age),
                resp.elapsed,
                **extra,
            )
        elif should_be_open is False:
            opens = extra["next_open"] or "not within a week"
            self.record(
                name, True, "%s: closed by its opening hours, opens %s" % (status, opens), resp.elapsed, **extra
            )
        else:
            self.record(
                name, True, "%s (not required to be TRADEABLE: reported, not an outage)" % status, resp.elapsed, **extra
            )

    def check_latency(self):
        count = self.params["latency_samples"]
        slo = float(self.params["latency_slo_ms"])
        quantile = self.params["latency_quantile"]
        samples = []
        self.latency = dict(endpoint="GET /ping", samples_ms=samples, slo_ms=slo, quantile=quantile, ok=False)
        try:
            for _sample in range(count):
                samples.append(ms(self.client.ping().elapsed))
        finally:
            stats = dict(
                p50_ms=percentile(samples, 0.5),
                p95_ms=percentile(samples, 0.95),
                max_ms=max(samples) if samples else None,
            )
            self.latency.update({k: (None if v is None else round(v, 3)) for k, v in stats.items()})
        value = self.latency["%s_ms" % quantile]
        ok = value is not None and value <= slo
        self.latency["ok"] = ok
        detail = "%s %.1f ms over %d samples of GET /ping (p50 %.1f, p95 %.1f, max %.1f; slo %g ms)" % (
            quantile,
            value,
            len(samples),
            self.latency["p50_ms"],
            self.latency["p95_ms"],
            self.latency["max_ms"],
            slo,
        )
        if not ok:
            detail = "latency above the SLO: " + detail
        self.record("latency", ok, detail, None, p50_ms=self.latency["p50_ms"], p95_ms=self.latency["p95_ms"])

    # -- the whole run --------------------------------------------------------------------------
    def run(self):
        p = self.params
        base_url, _live = live_guard(p, p["allow_live"])
        unknown = [e for e in p["require_tradeable"] if e not in p["epics"]]
        if unknown:
            raise CapitalComError(
                "require_tradeable lists %s, which %s not in epics %s: add them to epics or remove them"
                % (", ".join(unknown), "is" if len(unknown) == 1 else "are", p["epics"]),
                "config",
            )
        if not 1 <= p["latency_samples"] <= 100:
            raise CapitalComError("latency_samples must be between 1 and 100, got %d" % p["latency_samples"], "config")
        for option in ("max_quote_age", "max_clock_skew_ms", "latency_slo_ms", "min_available_balance"):
            if p[option] is not None and p[option] < 0:
                raise CapitalComError(
                    "%s must be zero or more, got %s: a negative threshold fails every check" % (option, p[option]),
                    "config",
                )
        if p["timeout"] <= 0:
            raise CapitalComError("timeout must be a positive number of seconds, got %s" % p["timeout"], "config")
        self.client = client_from_params(base_url, p)
        logged_out = False
        try:
            self.guarded("time", self.check_time)
            unreachable = self.checks.get("time", {}).get("kind") in ("connection", "tls")
            if "clock_skew" not in self.checks:
                self.skip("clock_skew", "no server time")
            logged_in = False
            if unreachable:
                self.skip("login", "the broker is unreachable (see time)")
            else:
                logged_in = bool(self.guarded("login", self.check_login))
            dependent = ["ping", "account"] + ["market:%s" % e for e in p["epics"]] + ["latency"]
            if not logged_in:
                for name in dependent:
                    self.skip(name, "login failed")
            else:
                self.guarded("ping", self.check_ping)
                self.guarded("account", self.check_account)
                for epic in p["epics"]:
                    self.guarded("market:%s" % epic, self.check_market, epic)
                self.guarded("latency", self.check_latency)
        finally:
            try:
                logged_out = self.client.logout()
            except CapitalComError as exc:
                self.module.warn("logout failed (the session expires by itself after 10 minutes): %s" % exc.reason)
            except Exception as exc:
                self.module.warn("logout failed: %s" % type(exc).__name__)
        healthy = not self.failures and all(c["ok"] for c in self.checks.values())
        if not self.latency:
            self.latency = dict(
                endpoint="GET /ping",
                samples_ms=[],
                p50_ms=None,
                p95_ms=None,
                max_ms=None,
                slo_ms=float(p["latency_slo_ms"]),
                quantile=p["latency_quantile"],
                ok=False,
            )
        result = dict(
            changed=False,
            healthy=healthy,
            environment=p["environment"],
            base_url=base_url,
            checks=self.checks,
            failures=self.failures,
            latency=self.latency,
            requests=dict(self.client.stats),
            logged_out=logged_out,
            duration_s=round(time.time() - self.started, 3),
            metrics_file=None,
        )
        result["metrics_file"] = self.write_metrics(result)
        return result

    # -- Prometheus textfile -------------------------------------------------------------------
    def metrics_path(self):
        p = self.params
        if p["metrics_file"]:
            return p["metrics_file"]
        if p["stack"]:
            return _textfile.path(p["state_root"], p["stack"], _textfile.CAPITAL_COM)
        return None

    def write_metrics(self, result):
        path = self.metrics_path()
        if not path or self.module.check_mode:
            return None
        previous = _textfile.counters(path)
        rate_limited = self.client.stats["rate_limited"] if self.client else 0
        samples = []  # (name, value, labels)
        samples.append(("capital_com_up", result["healthy"], None))
        for name, check in sorted(self.checks.items()):
            samples.append(("capital_com_check_ok", check["ok"], {"check": name}))
        lat = result["latency"]
        for label, key in (("0.5", "p50_ms"), ("0.95", "p95_ms"), ("1", "max_ms")):
            value = lat.get(key)
            samples.append(
                ("capital_com_latency_seconds", None if value is None else value / 1000.0, {"quantile": label})
            )
        samples.append(("capital_com_latency_slo_seconds", float(self.params["latency_slo_ms"]) / 1000.0, None))
        for epic in self.params["epics"]:
            check = self.checks.get("market:%s" % epic, {})
            samples.append(("capital_com_market_tradeable", bool(check.get("tradeable")), {"epic": epic}))
            samples.append(("capital_com_market_should_be_open", check.get("should_be_open"), {"epic": epic}))
            samples.append(("capital_com_market_quote_age_seconds", check.get("quote_age_s"), {"epic": epic}))
        samples.append(("capital_com_clock_skew_seconds", None if self.skew_s is None else round(self.skew_s, 6), None))
        samples.append(("capital_com_rate_limited_responses", rate_limited, None))
        samples.append(
            ("capital_com_rate_limited_total", previous.get("capital_com_rate_limited_total", 0) + rate_limited, None)
        )
        samples.append(("capital_com_check_duration_seconds", round(time.time() - self.started, 6), None))
        samples.append(("capital_com_last_check_timestamp_seconds", round(time.time(), 3), None))
        samples = [
            (name, round(value, 6) if isinstance(value, float) and not math.isnan(value) else value, labels)
            for name, value, labels in samples
        ]
        try:
            if not self.params["metrics_file"]:
                state = StackState(self.params["stack"], self.params["state_root"])
                return _textfile.write_for_stack(state, _textfile.CAPITAL_COM, samples)
            directory = os.path.dirname(path) or "."
            if not os.path.isdir(directory):
                raise CapitalComError(
                    "cannot write metrics_file %s: directory %s does not exist (create it, e.g. with the monitoring "
                    "role, or choose another path)" % (path, directory),
                    "config",
                )
            _textfile.write(path, samples)
        except (OSError, StateError) as exc:
            raise CapitalComError("cannot write metrics_file %s: %s" % (path, exc), "config")
        return path


def main():
    argument_spec = dict(
        allow_live=dict(type="bool", default=False),
        epics=dict(type="list", elements="str", default=["BTCUSD", "OIL_CRUDE"]),
        require_tradeable=dict(type="list", elements="str", default=[]),
        max_quote_age=dict(type="float", default=120),
        account_id=dict(type="str"),
        min_available_balance=dict(type="float"),
        max_clock_skew_ms=dict(type="float", default=500),
        latency_samples=dict(type="int", default=5),
        latency_slo_ms=dict(type="float", default=100),
        latency_quantile=dict(type="str", default="p95", choices=["p50", "p95", "max"]),
        fail_on_unhealthy=dict(type="bool", default=True),
        metrics_file=dict(type="path"),
        stack=dict(type="str"),
        state_root=dict(type="path", default=DEFAULT_STATE_ROOT),
    )
    argument_spec.update(CAPITAL_COM_ARG_SPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    # base_url, failures, checks and every message: no credential, in any encoding, and no URL user info
    guard(module, Redactor((name, module.params[name]) for name in ("api_key", "identifier", "password")))
    if not HAS_REQUESTS:
        module.fail_json(msg=missing_required_lib("requests"), exception=str(REQUESTS_IMPORT_ERROR))
    if module.params["encrypted_password"] and not HAS_CRYPTOGRAPHY:
        module.fail_json(
            msg=missing_required_lib("cryptography", reason="for encrypted_password"),
            exception=str(CRYPTOGRAPHY_IMPORT_ERROR),
        )
    check = HealthCheck(module)
    try:
        result = check.run()
    except CapitalComError as exc:
        module.fail_json(
            msg=exc.reason,
            healthy=False,
            environment=module.params["environment"],
            checks=check.checks,
            failures=check.failures or [exc.reason],
        )
    except Exception as exc:  # never a traceback as the message
        reason = "capital_com_health failed unexpectedly: %s: %s" % (type(exc).__name__, exc)
        if check.client is not None:
            reason = check.client.redact(reason)
        module.fail_json(msg=reason, healthy=False, checks=check.checks, failures=check.failures or [reason])
    if not result["healthy"] and module.params["fail_on_unhealthy"]:
        module.fail_json(
            msg="Capital.com at %s is unhealthy (%d failed check(s)): %s"
            % (result["base_url"], len(result["failures"]), "; ".join(result["failures"])),
            **result,
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
