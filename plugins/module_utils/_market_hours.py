# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""When a market should be open, from the broker's own ``instrument.openingHours``.

Capital.com gives per weekday a list of ``"HH:MM - HH:MM"`` ranges in a time zone::

    {"mon": ["00:00 - 22:00", "23:05 - 00:00"], ..., "sat": [], "sun": ["23:05 - 00:00"], "zone": "UTC"}

An end of ``00:00`` is midnight at the end of that day (``"00:00 - 00:00"`` is the whole day); a range whose
end is before its start runs past midnight into the next day. Ranges that touch (Monday until midnight,
Tuesday from midnight) are one session, so a market open around the clock never "closes" at midnight.
Pure functions: a health check decides with them, unit tests drive them with any clock.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import re

try:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
except ImportError:  # pragma: no cover - Python < 3.9 on a host
    ZoneInfo = None
    ZoneInfoNotFoundError = KeyError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_MINUTES = 24 * 60
_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
UTC = datetime.timezone.utc


class HoursError(ValueError):
    """The opening hours cannot be read; the message names the field and the value."""


def _minutes(hours, minutes, text, where):
    h, m = int(hours), int(minutes)
    if h > 24 or m > 59 or (h == 24 and m):
        raise HoursError("%s: %r is not a time range HH:MM - HH:MM" % (where, text))
    return h * 60 + m


def parse(opening_hours, epic="market"):
    """``(zone, {weekday 0-6: [(start minute, end minute)]})``; an end may pass 1440 (into the next day)."""
    if not isinstance(opening_hours, dict):
        raise HoursError("%s: openingHours must be a mapping of weekdays, got %r" % (epic, opening_hours))
    zone = _zone(opening_hours.get("zone") or "UTC", epic)
    week = {}
    for index, day in enumerate(DAYS):
        ranges = opening_hours.get(day) or []
        if not isinstance(ranges, list):
            raise HoursError("%s: openingHours.%s must be a list of ranges, got %r" % (epic, day, ranges))
        week[index] = []
        for text in ranges:
            where = "%s: openingHours.%s" % (epic, day)
            match = _RANGE.match(str(text))
            if not match:
                raise HoursError("%s: %r is not a time range HH:MM - HH:MM" % (where, text))
            start = _minutes(match.group(1), match.group(2), text, where)
            end = _minutes(match.group(3), match.group(4), text, where)
            if end <= start:
                end += DAY_MINUTES  # "23:05 - 00:00" ends at midnight; "22:00 - 02:00" on the next day
            week[index].append((start, end))
    return zone, week


def _zone(name, epic):
    if str(name).upper() in ("UTC", "Z", "GMT"):
        return UTC
    if ZoneInfo is None:
        raise HoursError("%s: openingHours.zone %r needs Python 3.9's zoneinfo on the host" % (epic, name))
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        raise HoursError("%s: openingHours.zone %r is not a known time zone" % (epic, name))


def sessions(opening_hours, around, epic="market", days=8):
    """The market's sessions ``[(open, close)]`` in UTC from a day before ``around`` to ``days`` after it,
    touching ranges merged into one session."""
    zone, week = parse(opening_hours, epic)
    local_day = around.astimezone(zone).date()
    spans = []
    for offset in range(-1, days + 1):
        day = local_day + datetime.timedelta(days=offset)
        midnight = datetime.datetime(day.year, day.month, day.day)
        for start, end in week[day.weekday()]:
            opens = (midnight + datetime.timedelta(minutes=start)).replace(tzinfo=zone).astimezone(UTC)
            closes = (midnight + datetime.timedelta(minutes=end)).replace(tzinfo=zone).astimezone(UTC)
            spans.append((opens, closes))
    merged = []
    for opens, closes in sorted(spans):
        if merged and opens <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], closes))
        else:
            merged.append((opens, closes))
    return merged


def schedule(opening_hours, now, epic="market"):
    """Should the market be open at ``now`` (aware), and when does that change?

    Returns ``{should_be_open, next_open, next_close}`` with aware UTC datetimes or None: ``next_close`` of the
    session ``now`` is in (None when it does not close within a week: around the clock), ``next_open`` the start
    of the next session (None when none starts within a week: no hours at all).
    """
    if now.tzinfo is None:
        raise HoursError("now must be an aware datetime")
    merged = sessions(opening_hours, now, epic)
    horizon = now + datetime.timedelta(days=7)
    current = next(((o, c) for o, c in merged if o <= now < c), None)
    upcoming = next((o for o, _c in merged if o > now and o <= horizon), None)
    if current:
        close = current[1] if current[1] <= horizon else None
        return {"should_be_open": True, "next_close": close, "next_open": upcoming}
    return {"should_be_open": False, "next_close": None, "next_open": upcoming}


def _iso(moment):
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def describe(opening_hours):
    """The hours in one short line for a message: ``mon 00:00 - 22:00, 23:05 - 00:00; ...; sat closed (UTC)``."""
    if not isinstance(opening_hours, dict):
        return repr(opening_hours)
    days = ["%s %s" % (day, ", ".join(opening_hours.get(day) or []) or "closed") for day in DAYS]
    return "%s (%s)" % ("; ".join(days), opening_hours.get("zone") or "UTC")


def market_hours(instrument, now, epic="market"):
    """What a health check reports of an ``instrument``'s hours at ``now``: ``should_be_open``, ``next_open``
    and ``next_close`` (ISO UTC or None), ``hours`` (one line); empty without ``openingHours``."""
    hours = instrument.get("openingHours") if isinstance(instrument, dict) else None
    if hours is None:
        return {}
    found = schedule(hours, now, epic)
    return {
        "should_be_open": found["should_be_open"],
        "next_open": _iso(found["next_open"]),
        "next_close": _iso(found["next_close"]),
        "hours": describe(hours),
    }
