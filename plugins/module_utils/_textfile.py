# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prometheus textfiles for node-exporter's textfile collector: the one writer, the one parser, the names.

Private to the collection, standard library only. A module that publishes metrics through node-exporter
(paper_block, capital_com_health) writes a whole textfile at a time with ``write``: the samples are
grouped by metric family (the text format wants a family's samples together), each family gets its
HELP and TYPE line from ``FAMILIES``, and the file is replaced atomically (``_state.atomic_write_text``),
world-readable for node-exporter. ``parse`` reads such a file back (a module's own counters, another
module's last outcome).

Where the files live, for a stack: ``<state_root>/<stack>/metrics/<name>.prom`` (``path``), with the
names below. Alert rules and dashboards read the metric names of ``FAMILIES``: they do not change.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import os
import re

from ansible_collections.tradeops.stack.plugins.module_utils._state import atomic_write_text

# -- file names --------------------------------------------------------------------------------------
PAPER_BLOCK = "paper_block"  # tradeops.stack.paper_block
CAPITAL_COM = "capital_com"  # tradeops.stack.capital_com_health
CAPITAL_COM_ORDER = "capital_com_order"  # the order round trip of capital_com_health (its own schedule)
CAPITAL_COM_OLD = "capital_com_health"  # what older versions of capital_com_health wrote; still read
BROKER_HEALTH = (CAPITAL_COM, CAPITAL_COM_OLD)  # where the broker's last health outcome is looked for, in order


def file_name(name):
    return "%s.prom" % name


def path(state_root, stack, name):
    """``<state_root>/<stack>/metrics/<name>.prom``."""
    return os.path.join(state_root, stack, "metrics", file_name(name))


def stack_path(state, name):
    """The same for a ``_state.StackState``."""
    return state.sub("metrics", file_name(name))


# -- metric families ---------------------------------------------------------------------------------
# Two lines a family: its name and type, then its HELP text, indented.
_FAMILY_TABLE = """
capital_com_up gauge
    1 when the last Capital.com health check passed every check, else 0.
capital_com_check_ok gauge
    1 when the named check passed in the last health check, else 0.
capital_com_latency_seconds gauge
    Round-trip time of GET /ping in the last health check, by quantile (1 = max).
capital_com_latency_slo_seconds gauge
    The latency budget the health check compares against.
capital_com_market_tradeable gauge
    1 when the market's marketStatus was TRADEABLE, else 0.
capital_com_market_should_be_open gauge
    1 when the market's own openingHours say it is open now, 0 when closed by them (NaN: no hours).
capital_com_market_quote_age_seconds gauge
    Age of the market's last quote in the last health check.
capital_com_clock_skew_seconds gauge
    Broker serverTime minus host time (NaN when unknown).
capital_com_rate_limited_responses gauge
    HTTP 429 answers received during the last health check.
capital_com_rate_limited_total counter
    HTTP 429 answers received by all health checks writing this file.
capital_com_check_duration_seconds gauge
    Wall time of the last health check.
capital_com_last_check_timestamp_seconds gauge
    When the last health check finished (Unix time).
capital_com_stream_first_quote_seconds gauge
    From subscribing to the first quote over the WebSocket price stream, in the last check (NaN: none).
capital_com_stream_quotes gauge
    Quotes received over the price stream during the last check.
capital_com_stream_last_quote_age_seconds gauge
    Age of the last quote received over the price stream, at the end of the last check (NaN: none).
capital_com_order_roundtrip_ok gauge
    1 when the last order round trip on the demo account was accepted, closed and within its budget, else 0.
capital_com_order_open_seconds gauge
    From sending POST /positions to the ACCEPTED confirmation, in the last order round trip.
capital_com_order_close_seconds gauge
    From sending DELETE /positions/{dealId} to its confirmation, in the last order round trip.
capital_com_order_latency_slo_seconds gauge
    The order latency budget the round trip compares open_seconds against.
capital_com_order_position_left_open gauge
    1 when the last order round trip could not close the position it opened (close it by hand).
capital_com_order_roundtrip_timestamp_seconds gauge
    When the last order round trip ran (Unix time).
tradeops_paper_block_active gauge
    1 while a paper-trading block is active
tradeops_paper_block_elapsed_seconds gauge
    Seconds since the active paper block started (0 when none)
tradeops_paper_block_zai gauge
    1 when the zero-activity incident is declared for the active block
tradeops_paper_block_window_signals gauge
    Signals in the ZAI window at the last status (NaN: no data)
tradeops_paper_block_window_trades gauge
    Paper trades in the ZAI window at the last status (NaN: no data)
tradeops_paper_block_zai_window_seconds gauge
    Length of the ZAI window used by the last status
tradeops_paper_block_last_update_timestamp_seconds gauge
    When paper_block last wrote this file
"""


def _families(table):
    lines = table.strip().splitlines()
    families = {}
    for head, text in zip(lines[::2], lines[1::2], strict=True):
        name, kind = head.split()
        families[name] = (kind, text.strip())
    return families


FAMILIES = _families(_FAMILY_TABLE)  # name -> (type, help)


# -- writing -----------------------------------------------------------------------------------------
def escape(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def sample_value(value):
    """A sample value in the text format: booleans 1/0, None NaN, floats as repr."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if value is None:
        return "NaN"
    return repr(float(value)) if isinstance(value, float) else str(value)


def sample_line(name, value, labels=None):
    """One sample in the Prometheus text exposition format."""
    if labels:
        inner = ",".join('%s="%s"' % (k, escape(v)) for k, v in sorted(labels.items()))
        return "%s{%s} %s" % (name, inner, sample_value(value))
    return "%s %s" % (name, sample_value(value))


def render(samples):
    """The lines of a textfile holding ``samples`` (``(name, value, labels)``, labels a dict or None).

    One group per metric family, in first-seen order, each headed by its HELP and TYPE from ``FAMILIES``.
    """
    families = {}
    for name, value, labels in samples:
        families.setdefault(name, []).append(sample_line(name, value, labels))
    lines = []
    for name, family in families.items():
        kind, text = FAMILIES[name]
        lines.append("# HELP %s %s" % (name, text))
        lines.append("# TYPE %s %s" % (name, kind))
        lines.extend(family)
    return lines


def write(target, samples):
    """Replace the textfile ``target`` with ``samples`` (see ``render``), world-readable; returns ``target``.

    The directory must exist; a failure is a ``StateError`` naming the file.
    """
    atomic_write_text(target, "\n".join(render(samples)) + "\n", mode=0o644)
    return target


def write_for_stack(state, name, samples):
    """Write the stack's ``metrics/<name>.prom`` (the state directory is created when missing)."""
    state.ensure()
    return write(stack_path(state, name), samples)


# -- reading -----------------------------------------------------------------------------------------
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse(target):
    """``{(name, ((label, value), ...)): value}`` of a textfile (labels sorted), or None when it cannot be read.

    Comments, blank lines and lines that are not a sample are skipped.
    """
    try:
        with open(target) as handle:
            text = handle.read()
    except (IOError, OSError):
        return None
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if not match:
            continue
        labels = tuple(sorted(_LABEL.findall(match.group(3) or "")))
        try:
            out[(match.group(1), labels)] = float(match.group(4))
        except ValueError:
            continue
    return out


def counters(target):
    """Unlabelled counter samples (``FAMILIES`` type ``counter``) of a textfile: ``{name: int}``, {} when none.

    What a writer adds to, so that a ``*_total`` keeps counting across runs; a NaN or negative value counts as 0.
    """
    out = {}
    for (name, labels), value in (parse(target) or {}).items():
        if not labels and FAMILIES.get(name, ("",))[0] == "counter" and math.isfinite(value) and value >= 0:
            out[name] = int(value)
    return out
