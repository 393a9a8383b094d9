"""capital_com_health's clock-skew verdict: a skew counts only beyond the round trip's uncertainty."""

import pytest
from ansible_collections.tradeops.stack.plugins.module_utils._broker_health import least_skew_ms


@pytest.mark.parametrize(
    ("skew", "round_trip", "least"),
    [
        (511.0, 1041.0, 0.0),  # CI under load: a slow answer, not a wrong clock
        (900.0, 100.0, 850.0),  # a clock really off by ~0.9 s
        (-900.0, 100.0, 850.0),  # behind counts the same as ahead
        (20.0, 2.0, 19.0),
        (5.0, -1.0, 5.0),  # a clock step during the call gives no negative interval
    ],
)
def test_least_skew_is_the_estimate_less_half_the_round_trip(skew, round_trip, least):
    assert least_skew_ms(skew, round_trip) == pytest.approx(least)
