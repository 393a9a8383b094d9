"""_rules.py: the one home of the broker, name, duration, block and secret-name rules."""

import pytest
from ansible_collections.tradeops.stack.plugins.module_utils import _rules
from ansible_collections.tradeops.stack.plugins.module_utils._rules import RuleError

DEMO = "https://demo-api-capital.backend-capital.com/api/v1"
LIVE = "https://api-capital.backend-capital.com/api/v1"


@pytest.mark.parametrize(
    "url",
    [
        DEMO,
        "https://DEMO-API-CAPITAL.backend-capital.com/api/v1",
        "https://demo-api-capital.backend-capital.com./api/v1",
        "https://demo-api-capital.backend-capital.com:443/api/v1",
        "wss://api-streaming-capital.backend-capital.com/connect",
    ],
)
def test_demo_hosts_are_paper(url):
    assert _rules.broker_url_kind(url) == "paper"


@pytest.mark.parametrize(
    "url",
    [
        LIVE,
        "https://API-CAPITAL.backend-capital.com/api/v1",
        "https://api-capital.backend-capital.com./api/v1",  # trailing dot
        "https://api-capital.backend-capital.com/api/v1?demo-",  # demo- in the query
        "https://api-capital.backend-capital.com/demo-api-capital.backend-capital.com",
        "https://other.backend-capital.com/api/v1",
        "https://example.com/api/v1",  # not on the allow-list: live
        "http://127.0.0.1:8080/api/v1",  # IP literal not named as an emulator
        "http://[::1]:8080/api/v1",
        "http://10.0.0.7/api/v1",
    ],
)
def test_every_other_host_is_live(url):
    assert _rules.broker_url_kind(url) == "live"


@pytest.mark.parametrize(
    "url, fragment",
    [
        ("https://demo-x@api-capital.backend-capital.com/api/v1", "user info"),
        ("https://u:p@demo-api-capital.backend-capital.com/api/v1", "user info"),
        (" " + LIVE, "white space"),
        (DEMO + "\n", "white space"),
        ("ftp://demo-api-capital.backend-capital.com/", "scheme"),
        ("demo-api-capital.backend-capital.com/api/v1", "scheme"),
        ("https:///api/v1", "no host"),
        ("https://demo-api-capital.backend-capital.com:44x/api", "port"),
        ("", "must be a URL"),
        (None, "must be a URL"),
    ],
)
def test_ambiguous_urls_are_refused_naming_the_option(url, fragment):
    with pytest.raises(RuleError, match="broker_urls") as err:
        _rules.broker_url_kind(url, option="broker_urls")
    assert fragment in str(err.value)


def test_emulator_hosts_named_by_the_inventory_are_paper_after_normalisation():
    hosts = ["127.0.0.1", "Capital-Emulator.", "::1"]
    assert _rules.broker_url_kind("http://127.0.0.1:18090/api/v1", hosts) == "paper"
    assert _rules.broker_url_kind("http://capital-emulator:8080/api/v1", hosts) == "paper"
    assert _rules.broker_url_kind("http://[0:0::1]:8080/api/v1", hosts) == "paper"
    assert _rules.broker_url_kind("http://127.0.0.2:8080/api/v1", hosts) == "live"
    # an emulator name cannot whitelist a host by prefix or suffix
    assert _rules.broker_url_kind("http://capital-emulator.evil.example/api/v1", hosts) == "live"


def test_refuse_live_broker_names_the_option_and_the_approval():
    with pytest.raises(RuleError, match=r"base_url .*not a paper broker host.*tradeops_live_trading_approved"):
        _rules.refuse_live_broker(LIVE)
    assert _rules.refuse_live_broker(LIVE, allow_live=True) == "live"
    assert _rules.refuse_live_broker(DEMO) == "paper"


@pytest.mark.parametrize(
    "value, hosts",
    [
        (LIVE, ["api-capital.backend-capital.com"]),
        ("HTTPS://API-CAPITAL.BACKEND-CAPITAL.COM/api/v1", ["api-capital.backend-capital.com"]),
        ("https://demo-x@api-capital.backend-capital.com/api/v1", ["api-capital.backend-capital.com"]),
        ("https://api-capital.backend-capital.com./x?demo-", ["api-capital.backend-capital.com"]),
        ("a=%s,b=%s" % (DEMO, LIVE), ["api-capital.backend-capital.com"]),
        ("api-capital.backend-capital.com", ["api-capital.backend-capital.com"]),
        ("https://capital.com/trade", ["capital.com"]),
        (DEMO, []),
        ("wss://api-streaming-capital.backend-capital.com/connect", []),
        ("http://capital-emulator:8080/api/v1", []),
        ("https://notbackend-capital.com/", []),
        (None, []),
        (True, []),
    ],
)
def test_live_broker_mentions_in_free_text(value, hosts):
    assert _rules.live_broker_mentions(value) == hosts


@pytest.mark.parametrize(
    "kind, good, bad",
    [
        ("stack", ["cdb", "c-d_b", "a" * 40], ["cdb\n", "Cdb", "1cdb", "a" * 41, "", "c db", None, "cdb/.."]),
        ("service", ["db_writer", "a1"], ["db-writer", "db_writer\n", "Db", "_a", ""]),
        ("block", ["2026-12-01.btc", "B1_x"], ["nl\n", ".hidden", "active", "a" * 65, "a/b", ""]),
        ("secret", ["postgres_password", "k1"], ["db_pass\n", "Db", "../x", "a-b", "", "a" * 65]),
    ],
)
def test_names_match_the_whole_string(kind, good, bad):
    for value in good:
        assert _rules.check_name(kind, value) == value
    for value in bad:
        with pytest.raises(RuleError, match="is invalid"):
            _rules.check_name(kind, value, option="id")


@pytest.mark.parametrize(
    "value, seconds",
    [
        ("72h", 259200),
        ("3d", 259200),
        ("1h30m", 5400),
        ("20s", 20),
        ("500ms", 0.5),
        ("1m30s", 90),
        ("259200", 259200),
        (" 2D ", 172800),
        (45, 45),
        (1.5, 1.5),
        ("0", 0),
    ],
)
def test_durations(value, seconds):
    assert _rules.parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["", "h", "3x", "1h1h", "30m1h", "-5", "1 h", None, True, [], "5s\n5s"])
def test_bad_durations_name_the_option(value):
    with pytest.raises(RuleError, match="zai_window .* is not a duration"):
        _rules.parse_duration(value, "zai_window")


def test_duration_bounds():
    assert _rules.parse_duration("30d", "duration", 1, 30 * 86400) == 30 * 86400
    with pytest.raises(RuleError, match=r"duration '31d' is out of range: expected between 1s and 30d"):
        _rules.parse_duration("31d", "duration", 1, 30 * 86400)
    with pytest.raises(RuleError, match="out of range"):
        _rules.parse_duration("0", "duration", 1, 30 * 86400)


def test_human_seconds():
    assert [_rules.human_seconds(s) for s in (259200, 5400, 20, 0.5, 0)] == ["3d", "1h30m", "20s", "500ms", "0ms"]


def block(**extra):
    record = {"id": "b1", "status": "active", "started_at": 1764600000.0, "operator": "alice", "reason": "r"}
    record.update(extra)
    return record


def test_active_block_reads_only_well_formed_records():
    assert _rules.active_block(None, present=False) is None
    assert _rules.active_block(block())["id"] == "b1"
    assert _rules.active_block(block(status="completed")) is None


@pytest.mark.parametrize(
    "record, fragment",
    [
        ({}, "field 'id'"),
        ([1], "holds list"),
        ("active", "holds str"),
        (1, "holds int"),
        (block(status="weird"), "status 'weird'"),
        (block(started_at="yesterday"), "field 'started_at'"),
        (block(started_at=True), "field 'started_at'"),
        (block(id="nl\n"), "invalid block id"),
    ],
)
def test_malformed_active_block_is_an_error_naming_the_file(record, fragment):
    with pytest.raises(RuleError, match="/var/lib/tradeops/cdb/blocks/active.json") as err:
        _rules.active_block(record, "/var/lib/tradeops/cdb/blocks/active.json")
    assert fragment in str(err.value)
    assert "inspect it" in str(err.value)
    assert "close the block with tradeops.stack.paper_block state=aborted" in str(err.value)  # the repair hint


def test_a_file_holding_null_is_not_no_block():
    with pytest.raises(RuleError, match="active.json holds null"):
        _rules.active_block(None, "active.json")


@pytest.mark.parametrize(
    "name, secret",
    [
        ("POSTGRES_PASSWORD", True),
        ("API_KEY", True),
        ("apiKey", True),
        ("BROKER_TOKEN", True),
        ("CLIENT_SECRET", True),
        ("PRIVATE_KEY", True),
        ("POSTGRES_PASSWORD_FILE", False),
        ("TRADING_MODE", False),
        ("ANSIBLE_HOST_KEY_CHECKING", False),
        ("REDIS_HOST", False),
    ],
)
def test_looks_secret(name, secret):
    assert _rules.looks_secret(name) is secret


def test_masking_is_wider_than_validation():
    assert _rules.may_hold_secret("SESSION_KEY") and not _rules.looks_secret("SESSION_KEY")
    assert not _rules.may_hold_secret("TRADING_MODE")


def test_no_new_privileges_is_always_merged():
    assert _rules.merged_security_opt(None) == ["no-new-privileges:true"]
    assert _rules.merged_security_opt(["apparmor=tradeops"]) == ["apparmor=tradeops", "no-new-privileges:true"]
    assert _rules.merged_security_opt(["no-new-privileges"]) == ["no-new-privileges"]


def test_hardening_findings_of_the_default_profile_are_empty():
    service = {"name": "w", "resources": {"memory": "256m", "cpus": 0.5, "pids": 64}, "read_only": True}
    assert _rules.hardening_findings(service) == []
    assert _rules.hardening_findings(dict(service, resources={"memory": "1.5g", "cpus": 2, "pids": 1})) == []
    assert [f[0] for f in _rules.hardening_findings(dict(service, resources={"memory": "lots"}))] == ["unlimited"]


def test_since_is_a_bounded_duration_or_an_iso_time():
    now = 2_000_000_000.0
    assert _rules.parse_since("30m", now) == now - 1800
    assert _rules.parse_since(" 2d ", now) == now - 172800
    assert _rules.parse_since("2026-11-23T08:00:00Z", now) == 1795420800.0
    with pytest.raises(RuleError, match="since '99999999999999d' is out of range"):
        _rules.parse_since("99999999999999d", now)
    with pytest.raises(RuleError, match="since 'yesterday' is not a duration like 30m"):
        _rules.parse_since("yesterday", now)


def test_lock_records_are_checked_by_type_naming_the_field():
    good = {"holder": "deploy a", "acquired_at": 1.0, "expires_at": None, "owner_pid": 12}
    assert _rules.check_record(good, "lock.json", _rules.LOCK_FIELDS, "deploy lock record") is good
    for record, fragment in [
        ([1], "holds list"),
        (dict(good, expires_at="soon"), "field 'expires_at' is str 'soon'"),
        (dict(good, owner_pid=True), "field 'owner_pid' is bool"),
        ({"acquired_at": 1.0}, "field 'holder' is missing"),
    ]:
        with pytest.raises(RuleError, match="lock.json") as err:
            _rules.check_record(record, "lock.json", _rules.LOCK_FIELDS, "deploy lock record")
        assert fragment in str(err.value)


def test_flag_names():
    assert _rules.check_name("flag", "pause_new_orders") == "pause_new_orders"
    for bad in ("Pause", "pause\n", "1x", "a" * 64, "pause-new"):
        with pytest.raises(RuleError, match="flag .* is invalid"):
            _rules.check_name("flag", bad, option="flag")


@pytest.mark.parametrize(
    "value, key, expected",
    [
        ("http://10.0.0.5/api/v1", "CAPITAL_API", True),  # a broker name in the key
        ("capital-emulator", "BROKER_HOST", True),
        ("wss://10.0.0.5/connect", None, True),  # Capital.com's streaming path in any field
        ("https://10.0.0.5/api/v1/markets", "FEED", True),  # its REST path
        ("http://10.0.0.5:8080/api/v1", "UPSTREAM", True),  # the REST base
        ("http://prometheus:9090/api/v1/query", "PROMETHEUS_URL", False),  # Prometheus's API, not the broker's
        ("http://alertmanager:9093/-/ready", "WEBHOOK_URL", False),
        ("s3cr3t", "CAPITAL_API_KEY", False),  # a secret, refused in env by its own rule
        ("", "BROKER_BASE_URL", False),
        (None, "BROKER_BASE_URL", False),
    ],
)
def test_is_broker_endpoint(value, key, expected):
    assert _rules.is_broker_endpoint(value, key) is expected
