# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The zero-activity incident (ZAI) of a paper block: pure functions, no I/O.

Private to the collection, standard library only. A ZAI is declared when a block has run for at
least the ZAI window and Prometheus shows neither a signal nor a paper trade in that window. No data
for a counter never counts as activity. ``paper_block`` reads the counters (``increase_query``) and
asks ``verdict`` (status) or ``episodes`` (the report, over the whole block).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# The activity counters: key in results and reports -> the paper_block option naming the metric.
COUNTERS = (("ticks", "ticks_metric"), ("signals", "signals_metric"), ("trades", "trades_metric"))


def increase_query(metric, seconds):
    """PromQL for how much ``metric`` (a name or selector) grew over the last ``seconds`` (whole seconds)."""
    return "sum(increase(%s[%ds]))" % (metric, seconds)


def show(value):
    """A count for a message: ``no data`` for None."""
    return "no data" if value is None else ("%g" % value)


def active(signals, trades):
    """Whether a signal or a paper trade happened (None, no data, is not activity)."""
    return (signals or 0) > 0 or (trades or 0) > 0


def verdict(elapsed, window, zai_window):
    """``(declared, reason)`` for a block that has run ``elapsed`` seconds.

    ``window`` is the activity of the last ``zai_window`` seconds: ``seconds``, ``signals``, ``trades``
    (None for no data).
    """
    signals, trades = window["signals"], window["trades"]
    counts = "(signals: %s, trades: %s)" % (show(signals), show(trades))
    human = "%ds" % window["seconds"]
    if active(signals, trades):
        return False, "activity in the last %s %s" % (human, counts)
    if elapsed < zai_window:
        return False, "no activity yet, but the block has run %ds, less than zai_window %s %s" % (
            elapsed,
            human,
            counts,
        )
    return True, "no signal and no paper trade in the last %s %s" % (human, counts)


def episodes(first, end, step, window, signals, trades):
    """Runs of evaluation steps with neither signals nor trades in the window before them.

    ``signals``/``trades`` map timestamp -> increase over the window; a missing timestamp is no data (not activity).
    Each episode starts ``window`` seconds before its first silent step (when the silence began).
    """
    found = []
    current = None
    ts = first
    while ts <= end + 1e-6:
        silent = not active(_nearest(signals, ts), _nearest(trades, ts))
        if silent and current is None:
            current = {"start": ts - window, "first_silent_step": ts, "end": None}
        elif not silent and current is not None:
            current["end"] = ts
            found.append(current)
            current = None
        ts += step
    if current is not None:
        current["end"] = None  # still silent when the block ended
        found.append(current)
    for episode in found:
        episode["seconds"] = round((episode["end"] if episode["end"] is not None else end) - episode["start"], 3)
    return found


def _nearest(mapping, ts):
    for key in mapping:
        if abs(key - ts) < 0.5:
            return mapping[key]
    return None
