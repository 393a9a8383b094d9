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
  - "With O(order_roundtrip=true), also an order round trip on the demo account (check C(order_roundtrip)):
    the smallest position the market's C(dealingRules) allow is opened (C(POST /positions), sent exactly once),
    confirmed (C(GET /confirms/{dealReference}) until C(ACCEPTED) or C(REJECTED)), closed and its close
    confirmed. C(open_ms), from sending the order to its acceptance, is judged against O(order_latency_slo_ms).
    Refused on the live broker in every case, O(allow_live) included, before any request."
  - "The round trip never leaves a position open that it knows of: a close that fails is retried while the
    position is still listed; an answer lost after the order was sent is resolved by reading C(GET /positions)
    and closing what this probe opened. One round trip at a time per account (a lock file under
    O(state_root)), within O(order_trades_per_hour)."
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
      - The order round trip (O(order_roundtrip=true)) opens and closes a position on the demo account; it leaves
        no position behind (the spread is paid) and is not sent in check mode.
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
  stream:
    description:
      - Also check the WebSocket price stream (check C(stream)). Connects to the C(streamingHost) the login returned
        (C(<streamingHost>/connect)), subscribes to O(epics) (C(marketData.subscribe)), times the first C(quote) of
        each, pings as the protocol asks, unsubscribes and closes.
      - No quote within O(stream_timeout) for a market that is C(TRADEABLE) or should be open by its hours is
        unhealthy (a stream that goes silent while REST answers); a market closed by its hours streams nothing
        and is not expected to.
      - Needs websocket-client on the host (Debian's C(python3-websocket); the C(docker_host) role installs it).
    type: bool
    default: false
  stream_timeout:
    description:
      - Seconds to wait, from subscribing, for the first quote of each market.
    type: float
    default: 10
  order_roundtrip:
    description:
      - Also run an order round trip on the demo account (see the description). Meant for its own, less frequent
        schedule (the reference AWX schedule runs it every 30 minutes, 4 of the broker's 1000 demo trade requests
        an hour at most); never on the live broker.
    type: bool
    default: false
  order_roundtrip_epic:
    description:
      - The market the round trip trades; one of O(epics). Default the first of O(epics).
      - A market closed by its opening hours is not traded (reported, healthy); one that should be open and is
        not C(TRADEABLE) fails its market check and the round trip is not sent.
    type: str
  order_latency_slo_ms:
    description:
      - Budget of C(open_ms), in milliseconds (the team's order execution target).
    type: float
    default: 100
  order_confirm_timeout:
    description:
      - Seconds to wait for a deal confirmation, and, when the answer to the order was lost, for the position it
        may have opened to be listed.
    type: float
    default: 10
  order_trades_per_hour:
    description:
      - This probe's share of the account's trade requests per hour (the broker allows 1000 on demo). A round
        trip that would overspend it is not sent (the check fails naming the budget); closes are always sent.
      - Counted in the account's lock file under O(state_root), across every run on this host.
    type: int
    default: 100
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

- name: Time an order round trip on the demo account (its own schedule; refused on live)
  tradeops.stack.capital_com_health:
    epics: [BTCUSD]
    order_roundtrip: true
    order_latency_slo_ms: 100
    stack: cdb
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
    - One entry per check (C(time), C(clock_skew), C(login), C(ping), C(account), C(market:<EPIC>), C(latency),
      and C(stream) and C(order_roundtrip) when asked for).
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
stream:
  description:
    - The price stream check (O(stream=true)), null when not asked for or not reached.
    - C(url), C(connected), C(connect_ms), C(ping_ms), C(dropped) (the server closed the connection), C(error),
      C(subscriptions) (what each subscription answered) and per epic C(first_quote_ms) (from subscribing),
      C(quotes), the last C(bid)/C(ofr)/C(timestamp) and C(last_quote_age_s).
  returned: always
  type: dict
  sample:
    url: wss://api-streaming-capital.backend-capital.com/connect
    connected: true
    connect_ms: 48.2
    ping_ms: 21.5
    dropped: false
    error: null
    subscriptions: {BTCUSD: PROCESSED, OIL_CRUDE: PROCESSED}
    epics:
      BTCUSD:
        first_quote_ms: 61.3
        quotes: 38
        bid: 97012.5
        ofr: 97043.5
        timestamp: 1796666923135
        last_quote_age_s: 0.2
order_roundtrip:
  description:
    - The order round trip (O(order_roundtrip=true)), null when not asked for.
    - C(ok) (accepted, closed, C(open_ms) within C(slo_ms)), C(sent) (an order was sent), C(epic), C(direction),
      C(size), C(open_ms) and C(close_ms) (from sending the trade request to its confirmation), C(deal_reference),
      C(deal_id) (the position), C(deal_status) and C(reason) (the broker's), C(closed) (false when the position
      could not be closed), C(found) (positions found and closed after a lost answer) and C(detail).
  returned: always
  type: dict
  sample:
    ok: true
    sent: true
    epic: BTCUSD
    direction: BUY
    size: 0.001
    open_ms: 41.2
    close_ms: 38.7
    slo_ms: 100.0
    deal_reference: o_3f2a9c1e-7b2d-4e55
    deal_id: 00007a1c3f9e2b4d
    deal_status: ACCEPTED
    reason: SUCCESS
    closed: true
    found: []
    detail: "opened and closed BUY 0.001 BTCUSD: open 41.2 ms, close 38.7 ms (order_latency_slo_ms 100)"
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
    - With O(stream=true) also C(capital_com_stream_first_quote_seconds{epic}), C(capital_com_stream_quotes{epic})
      and C(capital_com_stream_last_quote_age_seconds{epic}).
    - The order round trip writes its own file beside it, C(capital_com_order.prom), only when it sent an order,
      with C(capital_com_order_roundtrip_ok{epic}), C(capital_com_order_open_seconds{epic}),
      C(capital_com_order_close_seconds{epic}), C(capital_com_order_latency_slo_seconds),
      C(capital_com_order_position_left_open{epic}) and C(capital_com_order_roundtrip_timestamp_seconds).
  returned: always
  type: str
  sample: /var/lib/tradeops/cdb/metrics/capital_com.prom
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.tradeops.stack.plugins.module_utils._broker_health import HealthCheck
from ansible_collections.tradeops.stack.plugins.module_utils._capital_com import (
    CAPITAL_COM_ARG_SPEC,
    CRYPTOGRAPHY_IMPORT_ERROR,
    HAS_CRYPTOGRAPHY,
    HAS_REQUESTS,
    REQUESTS_IMPORT_ERROR,
    CapitalComError,
)
from ansible_collections.tradeops.stack.plugins.module_utils._price_stream import HAS_WEBSOCKET, WEBSOCKET_IMPORT_ERROR
from ansible_collections.tradeops.stack.plugins.module_utils._redact import Redactor, guard
from ansible_collections.tradeops.stack.plugins.module_utils._state import DEFAULT_STATE_ROOT


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
        stream=dict(type="bool", default=False),
        stream_timeout=dict(type="float", default=10),
        order_roundtrip=dict(type="bool", default=False),
        order_roundtrip_epic=dict(type="str"),
        order_latency_slo_ms=dict(type="float", default=100),
        order_confirm_timeout=dict(type="float", default=10),
        order_trades_per_hour=dict(type="int", default=100),
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
    if module.params["stream"] and not HAS_WEBSOCKET:
        module.fail_json(
            msg=missing_required_lib("websocket-client", reason="for stream"), exception=str(WEBSOCKET_IMPORT_ERROR)
        )
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
