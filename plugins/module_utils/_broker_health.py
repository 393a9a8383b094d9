# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The checks of ``capital_com_health`` against one broker session, and its result and textfile (private).

``HealthCheck(module).run()`` returns the module's result: each check recorded with its latency and a
readable detail (a broker error or a bug in one check becomes that check's failure, never a traceback),
the latency samples, and the textfile for node-exporter. The order round trip is
``_order_probe.OrderRoundTrip``; the opening hours are ``_market_hours``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import math
import os
import time
import traceback


from ansible_collections.tradeops.stack.plugins.module_utils import (
    _market_hours,
    _order_probe,
    _price_stream,
    _rules,
    _textfile,
)
from ansible_collections.tradeops.stack.plugins.module_utils._capital_com import (
    CapitalComError,
    client_from_params,
    live_guard,
    percentile,
    quote_age,
)
from ansible_collections.tradeops.stack.plugins.module_utils._state import StackState, StateError


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
ORDER_LOCK_DIR = "_broker"  # under state_root: one lock file per broker account (stack names never start with _)


class HealthCheck(object):
    """Runs every check against one broker session and builds the module result."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.checks = {}
        self.failures = []
        self.latency = {}
        self.skew_s = None
        self.order = None  # the order round trip's result, when asked for
        self.stream = None  # the price stream check's result, when asked for
        self.live = False
        self.client = None
        self.started = time.time()

    # -- bookkeeping ---------------------------------------------------------------------------
    def record(self, name, ok, detail, latency=None, **extra):
        entry = dict(ok=bool(ok), skipped=False, latency_ms=_rules.ms(latency), detail=detail)
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
                samples.append(_rules.ms(self.client.ping().elapsed))
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

    def check_stream(self):
        """Quotes over the WebSocket stream for every epic whose market is TRADEABLE (a closed one streams nothing)."""
        p = self.params
        host, cst, token = self.client.stream_login() or (None, None, None)
        if not host:
            self.record("stream", False, "the login returned no streamingHost: the price stream cannot be checked")
            return
        url = _price_stream.stream_url(host)
        try:
            kind = _rules.broker_url_kind(url, p["emulator_hosts"], "streamingHost")
        except _rules.RuleError as exc:
            kind, problem = None, str(exc)
        else:
            problem = None
        if kind == "live" and not self.live:
            problem = "the login's streamingHost %s is not a paper host: not connecting" % host
        if problem:
            self.record("stream", False, problem, url=url)
            return
        self.stream = check = _price_stream.StreamCheck(url, cst, token, p["epics"], p["stream_timeout"]).run()
        broker_now = time.time() + (self.skew_s or 0.0)
        problems, parts = [], []
        if check["error"]:
            problems.append(check["error"])
        for epic, entry in check["epics"].items():
            if isinstance(entry.get("timestamp"), (int, float)):
                entry["last_quote_age_s"] = round(max(0.0, broker_now - entry["timestamp"] / 1000.0), 3)
            market = self.checks.get("market:%s" % epic) or {}
            subscription = check["subscriptions"].get(epic)
            if subscription not in (None, "PROCESSED"):
                problems.append("%s: the subscription answered %s" % (epic, subscription))
            elif entry["first_quote_ms"] is not None:
                parts.append(
                    "%s first quote after %.1f ms (%d quotes)" % (epic, entry["first_quote_ms"], entry["quotes"])
                )
            elif market.get("tradeable") or market.get("should_be_open"):
                problems.append(
                    "no quote for %s within stream_timeout %g s while the market is %s: the stream is silent"
                    % (epic, p["stream_timeout"], market.get("market_status"))
                )
            else:
                parts.append("%s %s (no quote expected)" % (epic, market.get("market_status") or "not tradeable"))
        extra = dict(url=url, connect_ms=check["connect_ms"], ping_ms=check["ping_ms"], dropped=check["dropped"])
        if problems:
            self.record("stream", False, "price stream: %s" % "; ".join(problems), None, **extra)
        else:
            detail = "quotes flowing: %s; ping answered in %s ms" % (", ".join(parts), check["ping_ms"])
            self.record("stream", True, detail, None, **extra)

    def check_order_options(self, live):
        """The round trip's options, refused before any request; never on live, allow_live included."""
        p = self.params
        if live:
            raise CapitalComError(
                "order_roundtrip is refused on the live broker (%s), allow_live included: it opens a position, "
                "which only the demo account may do" % (p["base_url"] or p["environment"]),
                "config",
            )
        epic = p["order_roundtrip_epic"] or (p["epics"] or [None])[0]
        if epic not in p["epics"]:
            raise CapitalComError(
                "order_roundtrip_epic %s is not in epics %s: the round trip trades a market the check reads"
                % (epic, p["epics"]),
                "config",
            )
        if p["order_latency_slo_ms"] < 0 or p["order_confirm_timeout"] <= 0:
            raise CapitalComError(
                "order_latency_slo_ms must be zero or more and order_confirm_timeout positive, got %s and %s"
                % (p["order_latency_slo_ms"], p["order_confirm_timeout"]),
                "config",
            )
        if p["order_trades_per_hour"] < _order_probe.TRADES_PER_ROUND_TRIP:
            raise CapitalComError(
                "order_trades_per_hour must be at least %d (one round trip opens and closes), got %d"
                % (_order_probe.TRADES_PER_ROUND_TRIP, p["order_trades_per_hour"]),
                "config",
            )

    def check_order_roundtrip(self):
        p = self.params
        epic = p["order_roundtrip_epic"] or p["epics"][0]
        market = self.checks.get("market:%s" % epic) or {}
        if self.module.check_mode:
            self.order = dict(sent=False, ok=None, epic=epic, detail="not sent in check mode")
            self.record("order_roundtrip", True, "not sent in check mode", sent=False)
            return
        if not market.get("tradeable"):  # closed by its hours is healthy; an outage is the market check's failure
            why = "not sent: %s is %s (%s)" % (epic, market.get("market_status"), market.get("detail"))
            self.order = dict(sent=False, ok=None, epic=epic, detail=why)
            self.record("order_roundtrip", bool(market.get("ok")), why, sent=False)
            return
        probe = _order_probe.OrderRoundTrip(
            self.client,
            epic,
            os.path.join(p["state_root"], ORDER_LOCK_DIR),
            emulator_hosts=p["emulator_hosts"],
            slo_ms=p["order_latency_slo_ms"],
            confirm_timeout=p["order_confirm_timeout"],
            trades_per_hour=p["order_trades_per_hour"],
        )
        try:
            self.order = probe.run((self.client.account or {}).get("currentAccountId"))
        finally:
            self.order = probe.result  # also when it raised: what it did is reported
        extra = {k: self.order[k] for k in ("sent", "open_ms", "close_ms", "deal_id", "deal_status")}
        self.record("order_roundtrip", self.order["ok"], self.order["detail"], None, **extra)

    # -- the whole run --------------------------------------------------------------------------
    def run(self):
        p = self.params
        base_url, live = live_guard(p, p["allow_live"])
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
        if p["order_roundtrip"]:
            self.check_order_options(live)
        if p["stream_timeout"] <= 0:
            raise CapitalComError(
                "stream_timeout must be a positive number of seconds, got %s" % p["stream_timeout"], "config"
            )
        self.live = live
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
            dependent += ["stream"] if p["stream"] else []
            dependent += ["order_roundtrip"] if p["order_roundtrip"] else []
            if not logged_in:
                for name in dependent:
                    self.skip(name, "login failed")
            else:
                self.guarded("ping", self.check_ping)
                self.guarded("account", self.check_account)
                for epic in p["epics"]:
                    self.guarded("market:%s" % epic, self.check_market, epic)
                self.guarded("latency", self.check_latency)
                if p["stream"]:
                    self.guarded("stream", self.check_stream)
                if p["order_roundtrip"]:
                    self.guarded("order_roundtrip", self.check_order_roundtrip)
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
            order_roundtrip=self.order,
            stream=self.stream,
            metrics_file=None,
        )
        result["metrics_file"] = self.write_metrics(result)
        if self.order is not None and self.order.get("sent"):
            self.write_order_metrics()
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
            samples.append(("capital_com_latency_seconds", _rules.seconds_from_ms(value), {"quantile": label}))
        samples.append(("capital_com_latency_slo_seconds", float(self.params["latency_slo_ms"]) / 1000.0, None))
        for epic in self.params["epics"]:
            check = self.checks.get("market:%s" % epic, {})
            samples.append(("capital_com_market_tradeable", bool(check.get("tradeable")), {"epic": epic}))
            samples.append(("capital_com_market_should_be_open", check.get("should_be_open"), {"epic": epic}))
            samples.append(("capital_com_market_quote_age_seconds", check.get("quote_age_s"), {"epic": epic}))
        for epic, entry in sorted(((self.stream or {}).get("epics") or {}).items()):
            first = entry["first_quote_ms"]
            samples.append(("capital_com_stream_first_quote_seconds", _rules.seconds_from_ms(first), {"epic": epic}))
            samples.append(("capital_com_stream_quotes", entry["quotes"], {"epic": epic}))
            samples.append(("capital_com_stream_last_quote_age_seconds", entry.get("last_quote_age_s"), {"epic": epic}))
        samples.append(("capital_com_clock_skew_seconds", None if self.skew_s is None else round(self.skew_s, 6), None))
        samples.append(("capital_com_rate_limited_responses", rate_limited, None))
        samples.append(
            ("capital_com_rate_limited_total", previous.get("capital_com_rate_limited_total", 0) + rate_limited, None)
        )
        samples.append(("capital_com_check_duration_seconds", round(time.time() - self.started, 6), None))
        samples.append(("capital_com_last_check_timestamp_seconds", round(time.time(), 3), None))
        return self._write(_textfile.CAPITAL_COM, path, samples)

    def write_order_metrics(self):
        """The round trip's own textfile, written only by a run that sent an order: the verify schedule, which
        does not trade, leaves the last round trip's figures in place."""
        path = self.metrics_path()
        if not path or self.module.check_mode:
            return None
        path = os.path.join(os.path.dirname(path), _textfile.file_name(_textfile.CAPITAL_COM_ORDER))
        order, epic = self.order, {"epic": self.order["epic"]}
        samples = [
            ("capital_com_order_roundtrip_ok", bool(order["ok"]), epic),
            ("capital_com_order_open_seconds", _rules.seconds_from_ms(order["open_ms"]), epic),
            ("capital_com_order_close_seconds", _rules.seconds_from_ms(order["close_ms"]), epic),
            ("capital_com_order_latency_slo_seconds", float(self.params["order_latency_slo_ms"]) / 1000.0, None),
            ("capital_com_order_position_left_open", order.get("closed") is False, epic),
            ("capital_com_order_roundtrip_timestamp_seconds", round(time.time(), 3), None),
        ]
        return self._write(_textfile.CAPITAL_COM_ORDER, path, samples)

    def _write(self, name, path, samples):
        samples = [
            (metric, round(value, 6) if isinstance(value, float) and not math.isnan(value) else value, labels)
            for metric, value, labels in samples
        ]
        try:
            if not self.params["metrics_file"]:
                state = StackState(self.params["stack"], self.params["state_root"])
                return _textfile.write_for_stack(state, name, samples)
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
