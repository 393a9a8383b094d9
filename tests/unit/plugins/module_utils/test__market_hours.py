"""Opening hours as Capital.com sends them: open now, next open and close, zones, overnight, empty days."""

from __future__ import annotations

import datetime as dt

import pytest
from ansible_collections.tradeops.stack.plugins.module_utils import _market_hours as H

UTC = dt.UTC

# the hours of a market as Capital.com's recorded GET /markets/{epic} answer gives them (its Postman
# collection): a daily break 22:00-23:05, closed from Friday 22:00 to Sunday 23:05
OIL = {
    **{day: ["00:00 - 22:00", "23:05 - 00:00"] for day in ("mon", "tue", "wed", "thu")},
    "fri": ["00:00 - 22:00"],
    "sat": [],
    "sun": ["23:05 - 00:00"],
    "zone": "UTC",
}
AROUND_THE_CLOCK = {**{day: ["00:00 - 00:00"] for day in H.DAYS}, "zone": "UTC"}


def at(text):
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_open_inside_hours_closes_at_the_break_and_reopens_after_it():
    # 2026-12-09 is a Wednesday
    s = H.schedule(OIL, at("2026-12-09T12:00:00"))
    assert s == {
        "should_be_open": True,
        "next_close": at("2026-12-09T22:00:00"),
        "next_open": at("2026-12-09T23:05:00"),
    }


def test_the_daily_break_is_closed_and_the_night_session_runs_into_the_next_day():
    s = H.schedule(OIL, at("2026-12-09T22:30:00"))
    assert s["should_be_open"] is False and s["next_open"] == at("2026-12-09T23:05:00")
    night = H.schedule(OIL, at("2026-12-09T23:30:00"))
    # 23:05 - 00:00 and Thursday's 00:00 - 22:00 are one session: no close at midnight
    assert night["should_be_open"] is True and night["next_close"] == at("2026-12-10T22:00:00")


def test_the_weekend_is_closed_until_sunday_evening():
    s = H.schedule(OIL, at("2026-12-12T12:00:00"))  # Saturday
    assert s == {"should_be_open": False, "next_close": None, "next_open": at("2026-12-13T23:05:00")}
    assert H.schedule(OIL, at("2026-12-11T21:59:00"))["next_close"] == at("2026-12-11T22:00:00")  # Friday


def test_a_market_open_around_the_clock_never_closes():
    s = H.schedule(AROUND_THE_CLOCK, at("2026-12-12T03:00:00"))
    assert s == {"should_be_open": True, "next_close": None, "next_open": None}


def test_a_market_without_hours_never_opens():
    closed = {**{day: [] for day in H.DAYS}, "zone": "UTC"}
    assert H.schedule(closed, at("2026-12-09T12:00:00")) == {
        "should_be_open": False,
        "next_close": None,
        "next_open": None,
    }


def test_an_overnight_range_runs_past_midnight():
    hours = {"tue": ["22:00 - 02:00"], "zone": "UTC"}
    s = H.schedule(hours, at("2026-12-09T01:00:00"))  # Wednesday 01:00, inside Tuesday's range
    assert s["should_be_open"] is True and s["next_close"] == at("2026-12-09T02:00:00")
    assert H.schedule(hours, at("2026-12-09T02:00:00"))["should_be_open"] is False


def test_hours_in_another_zone_follow_its_daylight_saving_time():
    nyse = {day: ["09:30 - 16:00"] for day in ("mon", "tue", "wed", "thu", "fri")}
    nyse["zone"] = "America/New_York"
    summer = H.schedule(nyse, at("2026-07-06T14:00:00"))  # Monday 10:00 EDT (UTC-4)
    assert summer["should_be_open"] is True and summer["next_close"] == at("2026-07-06T20:00:00")
    winter = H.schedule(nyse, at("2026-12-07T14:00:00"))  # Monday 09:00 EST (UTC-5): not yet
    assert winter["should_be_open"] is False and winter["next_open"] == at("2026-12-07T14:30:00")


@pytest.mark.parametrize(
    "hours, named",
    [
        ({"mon": ["25:00 - 26:00"]}, "openingHours.mon: '25:00 - 26:00' is not a time range"),
        ({"mon": ["9 to 5"]}, "openingHours.mon: '9 to 5' is not a time range"),
        ({"mon": "00:00 - 22:00"}, "openingHours.mon must be a list"),
        ({"zone": "Mars/Olympus"}, "openingHours.zone 'Mars/Olympus' is not a known time zone"),
        ([], "openingHours must be a mapping"),
    ],
)
def test_unreadable_hours_are_refused_naming_the_epic_and_the_field(hours, named):
    with pytest.raises(H.HoursError, match="OIL_CRUDE: " + named.replace("(", r"\(")):
        H.schedule(hours, at("2026-12-09T12:00:00"), epic="OIL_CRUDE")


def test_what_a_health_check_reports():
    report = H.market_hours({"openingHours": OIL}, at("2026-12-12T12:00:00"), "OIL_CRUDE")
    assert report["should_be_open"] is False
    assert (report["next_open"], report["next_close"]) == ("2026-12-13T23:05:00Z", None)
    assert report["hours"].startswith("mon 00:00 - 22:00, 23:05 - 00:00; ") and "sat closed" in report["hours"]
    assert report["hours"].endswith("(UTC)")
    assert H.market_hours({"epic": "X"}, at("2026-12-12T12:00:00")) == {}
