# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An order round trip on a demo account: open the smallest position, confirm, close, confirm (private).

``OrderRoundTrip(client, epic, ...).run()`` measures what the team's order target is about: the time from
sending ``POST /positions`` to the broker's ``ACCEPTED`` confirmation (``open_ms``), and the same for the
close (``close_ms``). Its promises:

- never on the live broker: the caller refuses before logging in (``capital_com_health``), and ``run``
  refuses again on a client whose base URL is not a demo or emulator URL;
- each trade request is sent exactly once (the client never retries them); an answer lost after the
  ``POST`` is resolved by reading ``GET /positions`` and closing what appeared since, and the result
  says what was found;
- never two at once on one account: an exclusive ``flock`` on a small file in the state directory, which
  also keeps the timestamps of the last hour's trade requests, so that a schedule cannot spend the demo
  account's 1000 trade requests an hour (``trades_per_hour`` is this probe's share);
- never a position left open that it knows of: the close is retried (after checking the position still
  exists) and the result names a position it could not close.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import time
from contextlib import contextmanager

from ansible_collections.tradeops.stack.plugins.module_utils import _rules
from ansible_collections.tradeops.stack.plugins.module_utils._capital_com import CapitalComError
from ansible_collections.tradeops.stack.plugins.module_utils._state import lock_file

TRADES_PER_ROUND_TRIP = 2  # the open and the close
CLOSE_ATTEMPTS = 3


class RoundTripBusy(Exception):
    """Another round trip holds the account's lock, or the hourly budget is spent."""


class AccountLock(object):
    """``<directory>/order-roundtrip-<account>.lock``: an exclusive flock, and the trade requests of the last
    hour as JSON inside it (read and written only while locked)."""

    def __init__(self, directory, account, budget, wait=10.0, clock=time.monotonic, sleep=time.sleep, now=time.time):
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", str(account or "unknown"))
        self.path = os.path.join(directory, "order-roundtrip-%s.lock" % safe)
        self.budget = int(budget)
        self.wait, self.clock, self.sleep, self.now = wait, clock, sleep, now
        self.trades = []

    @contextmanager
    def held(self):
        os.makedirs(os.path.dirname(self.path), mode=0o750, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            if not lock_file(fd, self.wait, self.clock, self.sleep):
                raise RoundTripBusy(
                    "another order round trip is running on this account (%s held for more than %g s)"
                    % (self.path, self.wait)
                )
            self.trades = self._read(fd)
            try:
                yield self
            finally:
                self._write(fd)
        finally:
            os.close(fd)  # releases the flock, also when the process dies

    def _read(self, fd):
        raw = os.pread(fd, 1 << 20, 0)
        try:
            trades = json.loads(raw.decode("utf-8") or "{}").get("trade_requests") or []
        except (ValueError, AttributeError):
            trades = []  # a torn or foreign file: start counting again rather than refuse forever
        horizon = self.now() - 3600
        return [t for t in trades if isinstance(t, (int, float)) and t > horizon]

    def _write(self, fd):
        data = json.dumps({"trade_requests": [round(t, 3) for t in self.trades]}).encode("utf-8")
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)

    def reserve(self, count):
        """Refuse (before anything is sent) when ``count`` more trade requests would overspend the hour."""
        if len(self.trades) + count > self.budget:
            raise RoundTripBusy(
                "the hourly budget of trade requests is spent: %d in the last hour (order_trades_per_hour %d); "
                "schedule the round trip less often" % (len(self.trades), self.budget)
            )

    def record(self):
        """Count one trade request sent (a close always is: it is never refused)."""
        self.trades.append(self.now())


def _positions(client):
    """{dealId: (epic, direction, size)} of the open positions."""
    data = client.positions().data
    out = {}
    for item in (data or {}).get("positions") or []:
        pos, market = item.get("position") or {}, item.get("market") or {}
        if pos.get("dealId"):
            out[pos["dealId"]] = (market.get("epic") or item.get("epic"), pos.get("direction"), pos.get("size"))
    return out


class OrderRoundTrip(object):
    """One round trip on ``epic``; ``run()`` returns the result dict (see capital_com_health's RETURN)."""

    DIRECTION = "BUY"

    def __init__(
        self,
        client,
        epic,
        lock_dir,
        emulator_hosts=(),
        slo_ms=100.0,
        confirm_timeout=10.0,
        trades_per_hour=100,
        lock_wait=10.0,
        clock=time.perf_counter,
        sleep=time.sleep,
    ):
        self.client, self.epic, self.lock_dir = client, epic, lock_dir
        self.emulator_hosts = emulator_hosts or ()
        self.slo_ms = float(slo_ms)
        self.confirm_timeout = float(confirm_timeout)
        self.trades_per_hour = int(trades_per_hour)
        self.lock_wait = float(lock_wait)
        self.clock, self.sleep = clock, sleep
        self.result = dict(
            ok=False,
            sent=False,
            epic=epic,
            direction=self.DIRECTION,
            size=None,
            open_ms=None,
            close_ms=None,
            slo_ms=self.slo_ms,
            deal_reference=None,
            deal_id=None,
            deal_status=None,
            reason=None,
            closed=None,
            found=[],
            detail="",
        )

    # -- the run --------------------------------------------------------------------------------
    def run(self, account):
        """The round trip on ``account`` (the login's account id, which names the lock)."""
        res = self.result
        if _rules.broker_url_kind(self.client.base_url, self.emulator_hosts) != "paper":
            raise CapitalComError(
                "the order round trip is refused on the live broker %s (allow_live does not lift it): it runs on "
                "the demo account only" % self.client.base_url,
                "config",
            )
        market = self.client.market(self.epic).data or {}
        status = (market.get("snapshot") or {}).get("marketStatus")
        size = ((market.get("dealingRules") or {}).get("minDealSize") or {}).get("value")
        if status != "TRADEABLE":
            res["detail"] = "not sent: %s is %s" % (self.epic, status)
            return res
        if not isinstance(size, (int, float)) or size <= 0:
            res["detail"] = "not sent: GET /markets/%s has no dealingRules.minDealSize" % self.epic
            return res
        res["size"] = size
        lock = AccountLock(self.lock_dir, account, self.trades_per_hour, wait=self.lock_wait)
        try:
            with lock.held():
                self._round_trip(lock, size)
        except RoundTripBusy as exc:
            res["detail"] = "not sent: %s" % exc
        return res

    def _round_trip(self, lock, size):
        res = self.result
        before = set(_positions(self.client))
        lock.reserve(TRADES_PER_ROUND_TRIP)  # the close must fit too
        self._clear_to_send()
        lock.record()
        start = self.clock()
        try:
            ref = self.client.open_position(self.epic, self.DIRECTION, size).data.get("dealReference")
        except CapitalComError as exc:
            res["sent"] = True
            if exc.kind != "order_outcome_unknown":
                res["detail"] = "POST /positions refused: %s" % exc.reason
                return
            self._resolve_unknown(lock, before, size, "POST /positions: %s" % exc.reason)
            return
        res.update(sent=True, deal_reference=ref)
        confirm = self._confirmation(ref)
        if confirm is None:
            self._resolve_unknown(lock, before, size, "no confirmation of %s within %g s" % (ref, self.confirm_timeout))
            return
        open_ms = res["open_ms"] = _rules.ms(self.clock() - start)
        res.update(deal_status=confirm.get("dealStatus"), reason=confirm.get("reason"))
        if confirm.get("dealStatus") != "ACCEPTED":
            res["detail"] = "%s REJECTED the order (%s, %s, size %s): %s" % (
                self.epic,
                confirm.get("dealStatus"),
                self.DIRECTION,
                size,
                confirm.get("reason"),
            )
            return
        res["deal_id"] = self._position_id(confirm)
        res["close_ms"] = self._close(lock, res["deal_id"])
        res["closed"] = True
        res["ok"] = open_ms <= self.slo_ms
        res["detail"] = "opened and closed %s %s %s: open %.1f ms, close %s (order_latency_slo_ms %g)%s" % (
            self.DIRECTION,
            size,
            self.epic,
            open_ms,
            "untimed (an earlier attempt closed it)" if res["close_ms"] is None else "%.1f ms" % res["close_ms"],
            self.slo_ms,
            "" if res["ok"] else ": the order was SLOWER than its budget",
        )

    # -- steps --------------------------------------------------------------------------------------
    def _clear_to_send(self):
        """Wait out the client's rate limits first: the trade request and its first confirmations must not
        wait on them, or the time measured would be ours, not the broker's."""
        self.client.trade_limiter.headroom(1)
        self.client.limiter.headroom(4)

    def _confirmation(self, ref):
        """GET /confirms/{ref} until it is decided (404 while the broker processes it); None at the timeout."""
        deadline = self.clock() + self.confirm_timeout
        pause = 0.01
        while True:
            try:
                confirm = self.client.confirm(ref).data or {}
                if confirm.get("dealStatus") in ("ACCEPTED", "REJECTED"):
                    return confirm
            except CapitalComError as exc:
                if exc.kind != "not_found":
                    raise
            if self.clock() >= deadline:
                return None
            self.sleep(pause)
            pause = min(pause * 2, 0.25)

    @staticmethod
    def _position_id(confirm):
        """The position's dealId: the OPENED entry of affectedDeals (the confirmation's own dealId is the order's)."""
        for deal in confirm.get("affectedDeals") or []:
            if deal.get("status") == "OPENED" and deal.get("dealId"):
                return deal["dealId"]
        return confirm.get("dealId")

    def _close(self, lock, deal_id):
        """Close ``deal_id``; the close's ms. A failed or unanswered close is retried only while the position
        is still listed; raises CapitalComError naming the position when it stays open."""
        last = None
        for attempt in range(1, CLOSE_ATTEMPTS + 1):
            if attempt > 1:
                self.sleep(0.5 * attempt)
                if deal_id not in _positions(self.client):
                    return None  # an earlier attempt closed it; its time is unknown
            self._clear_to_send()
            lock.record()
            start = self.clock()
            try:
                ref = self.client.close_position(deal_id).data.get("dealReference")
            except CapitalComError as exc:
                if exc.kind == "not_found":
                    return None  # already closed
                last = exc.reason
                continue
            confirm = self._confirmation(ref)
            if confirm is not None and confirm.get("dealStatus") == "ACCEPTED":
                return _rules.ms(self.clock() - start)
            last = "close of %s not confirmed: %s" % (deal_id, (confirm or {}).get("reason") or "no confirmation")
        self.result["closed"] = False
        raise CapitalComError(
            "POSITION LEFT OPEN: %s %s on %s (dealId %s) could not be closed after %d attempts (%s); close it by hand"
            % (self.DIRECTION, self.result["size"], self.epic, deal_id, CLOSE_ATTEMPTS, last),
            "position_left_open",
        )

    def _resolve_unknown(self, lock, before, size, why):
        """The POST's outcome is unknown: find what this probe opened (a new position on the epic, same
        direction and size) within the confirmation timeout, and close it."""
        res = self.result
        deadline = self.clock() + self.confirm_timeout
        while True:
            now = _positions(self.client)
            found = [
                deal
                for deal, (epic, direction, dsize) in now.items()
                if deal not in before and epic == self.epic and direction == self.DIRECTION and dsize == size
            ]
            if found or self.clock() >= deadline:
                break
            self.sleep(0.5)
        for deal in found:
            self._close(lock, deal)
        res.update(found=found, closed=True if found else None)
        if found:
            res["detail"] = "%s; the order WAS placed: found and closed position %s" % (why, ", ".join(found))
        else:
            res["detail"] = "%s; no position opened by this probe appeared within %g s" % (why, self.confirm_timeout)
