"""_docker: the failure tails a rollout reports are redacted before they are cut, so a secret that the cut
at 300 characters would split is still found whole (and no prefix of it is left)."""

from __future__ import annotations

import pytest
from ansible_collections.tradeops.stack.plugins.module_utils import _docker
from ansible_collections.tradeops.stack.plugins.module_utils._redact import Redactor

SECRET = "s3cr3t-broker-password-4242"  # noqa: S105 - a canary, not a credential


class LoggingContainer:
    """Just the logs() call of a docker SDK container (pure-logic test)."""

    def __init__(self, text):
        self.text = text

    def logs(self, tail):
        return self.text.encode()


def straddling(prefix_len=290):
    return "x" * prefix_len + SECRET + " and more"


def test_a_secret_across_the_cut_of_a_log_line_is_redacted_whole():
    clean = Redactor([("broker_password", SECRET)]).text
    (line,) = _docker.logs_tail(LoggingContainer(straddling() + "\n"), clean=clean)
    assert SECRET[:8] not in line and len(line) <= 300
    assert line.endswith("<redacted:broker_password>"[: 300 - 290])
    # without the redaction first, the cut would have left the secret's first 10 characters
    assert _docker.logs_tail(LoggingContainer(straddling() + "\n"))[0].endswith(SECRET[:10])


def test_a_secret_across_the_cut_of_a_health_log_entry_is_redacted_whole():
    clean = Redactor([("broker_password", SECRET)]).text
    attrs = {"State": {"Health": {"Log": [{"ExitCode": 1, "Output": straddling()}]}}}
    (entry,) = _docker.health_log_tail(attrs, clean=clean)
    assert entry.startswith("exit 1: ") and SECRET[:8] not in entry
    details = _docker.failure_details(LoggingContainer(straddling()), attrs, clean)
    assert SECRET[:8] not in repr(details)


def test_fingerprint_is_keyed():
    assert _docker.fingerprint(b"k1", b"secret") != _docker.fingerprint(b"k2", b"secret")
    assert _docker.fingerprint(b"k1", b"secret") == _docker.fingerprint(b"k1", b"secret")


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("8000", ("8000/tcp", ("127.0.0.1", None))),
        ("18080:8000", ("8000/tcp", ("127.0.0.1", 18080))),
        ("0.0.0.0:53:53/udp", ("53/udp", ("0.0.0.0", 53))),  # noqa: S104 - explicit opt-in is kept
    ],
)
def test_parse_port(item, expected):
    assert _docker.parse_port(item, "127.0.0.1") == expected


def test_parse_port_rejects_garbage():
    with pytest.raises(ValueError, match="ports must be numbers"):
        _docker.parse_port("http:8000", "127.0.0.1")


def test_durations_and_health_budget():
    assert _docker.duration_ns("1m30s") == 90 * 10**9
    assert _docker.duration_ns("250ms") == 250 * 10**6
    assert _docker.duration_ns(3) == 3 * 10**9
    with pytest.raises(ValueError, match="healthcheck.interval '5 parsecs' is not a duration"):
        _docker.duration_ns("5 parsecs", "healthcheck.interval")
    hc = {"Test": ["CMD", "x"], "Interval": 2 * 10**9, "Retries": 3, "StartPeriod": 10 * 10**9}
    assert _docker.health_budget(hc) == 16
    assert _docker.health_budget({"Test": ["NONE"]}) is None
    assert _docker.health_budget(None) is None


class _Network:
    def __init__(self, name):
        self.name = name


class _Networks:
    """The engine's name filter as it behaves: a substring match (``t-sec`` finds ``t-sec-metrics``)."""

    def __init__(self, names):
        self.names = names
        self.created = []

    def list(self, names=None):
        return [_Network(n) for n in self.names if any(want in n for want in names or [])]

    def create(self, name, **kw):
        self.created.append((name, kw))


class _Client:
    def __init__(self, names):
        self.networks = _Networks(names)


def test_a_network_whose_name_only_starts_like_the_wanted_one_does_not_count():
    client = _Client(["t-sec-metrics", "t-sec-postgres"])
    assert _docker.network_exists(client, "t-sec") is False
    assert _docker.ensure_network(client, "t-sec", "t-sec", internal=False) is True
    assert client.networks.created == [
        (
            "t-sec",
            {"driver": "bridge", "internal": False, "labels": {"tradeops.stack": "t-sec"}, "check_duplicate": True},
        )
    ]
    assert _docker.network_exists(_Client(["t-sec"]), "t-sec") is True
