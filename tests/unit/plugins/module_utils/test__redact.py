"""_redact.py: the one home of redaction, one test per shape a secret takes in text or data."""

import base64
import json
from urllib.parse import quote, quote_plus

import pytest
from ansible_collections.tradeops.stack.plugins.module_utils import _redact
from ansible_collections.tradeops.stack.plugins.module_utils._redact import Redactor

SECRET = 'S3cr3t/p@ss+wörd "quoted" \\ end'  # noqa: S105 - a test value
EMAIL = "trader@example.com"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://user:pass@host/api", "https://***@host/api"),
        ("postgresql://app:pw%40x@db:5432/app", "postgresql://***@db:5432/app"),
        ("refused: 'http://u:p@10.0.0.1/api/v1' (user info)", "refused: 'http://***@10.0.0.1/api/v1' (user info)"),
        ("http://token@host", "http://***@host"),
        ("https://host/path?mail=a@b.c", "https://host/path?mail=a@b.c"),  # '@' after the host is no user info
        ("mail a@b.c, no url", "mail a@b.c, no url"),
    ],
)
def test_mask_url_userinfo(text, expected):
    assert _redact.mask_url_userinfo(text) == expected


@pytest.mark.parametrize(
    "line",
    [
        "Authorization: Bearer eyJhbGciOi.eyJzdWIiOi.SflKxwRJSM",
        "authorization: Basic dXNlcjpwYXNzd29yZA==",
        "Proxy-Authorization: Basic dXNlcjpwYXNzd29yZA==",
        "X-SECURITY-TOKEN: 0123456789abcdefXYZ",
        "CST=0123456789abcdefXYZ",
        "Cookie: session=0123456789abcdefXYZ; other=1",
    ],
)
def test_header_values_are_redacted_whole(line):
    value = line.split(":", 1)[-1] if ":" in line else line.split("=", 1)[-1]
    out = Redactor().text("GET /x\n%s\nHost: h" % line)
    for word in value.split():
        assert word not in out
    assert "<redacted:header>" in out and out.endswith("\nHost: h")


def test_header_inside_json_and_python_repr():
    out = Redactor().text('{"Authorization": "Bearer abc.def.ghi", "x": 1} {\'CST\': \'tok12345\'}')
    assert "abc.def.ghi" not in out and "tok12345" not in out
    assert out.startswith('{"Authorization": "<redacted:header>", "x": 1}')


@pytest.mark.parametrize("key", ["password", "apiKey", "securityToken", "identifier", "client_secret", "PGPASSWORD"])
def test_secret_named_json_fields(key):
    text = json.dumps({key: "v4lue-that-is-secret", "user": "kept"})
    out = Redactor().text(text)
    assert "v4lue-that-is-secret" not in out and '"user": "kept"' in out
    escaped = json.dumps({"body": text})  # a JSON document logged inside another: the escaped form
    assert "v4lue-that-is-secret" not in Redactor().text(escaped)


def test_key_value_fields_keep_paths_and_other_fields():
    out = Redactor().text("login password=hunter2xy user=bob POSTGRES_PASSWORD_FILE=/run/secrets/pg")
    assert "hunter2xy" not in out and "user=bob" in out and "POSTGRES_PASSWORD_FILE=/run/secrets/pg" in out


@pytest.mark.parametrize(
    "form",
    [
        SECRET,
        json.dumps(SECRET)[1:-1],
        quote(SECRET, safe=""),
        quote_plus(SECRET),
        quote(SECRET),
        base64.b64encode(SECRET.encode()).decode(),
        base64.urlsafe_b64encode(SECRET.encode()).decode(),
        base64.b64encode(("x:" + SECRET).encode()).decode(),  # embedded, at another alignment
        base64.b64encode(("xy:" + SECRET + ":z").encode()).decode(),
    ],
)
def test_encoded_forms_of_a_known_value(form):
    red = Redactor([("capital_com_password", SECRET)])
    out = red.text("before %s after" % form)
    assert out.startswith("before ") and out.endswith(" after")
    assert "<redacted:capital_com_password>" in out and red.count >= 1
    # no long run of the encoded form survives
    assert form[4:-4] not in out


def test_known_values_longest_first_and_short_ignored():
    red = Redactor([("a", "abcd"), ("b", "abcdefgh"), ("c", "xyz")])
    assert red.text("abcdefgh abcd xyz") == "<redacted:b> <redacted:a> xyz"


def test_scrub_masks_secret_keys_and_every_string():
    red = Redactor([("pw", SECRET)])
    data = {
        "password": "plain-text-pw",
        "password_file": "/run/secrets/pw",
        "msg": "failed with %s at https://u:p@h/" % SECRET,
        "nested": [{"apiKey": "k3y-k3y-k3y"}, ("tuple", EMAIL)],
        "count": 3,
    }
    out = red.scrub(data)
    dumped = json.dumps(out)
    for leak in ("plain-text-pw", SECRET, "u:p@", "k3y-k3y-k3y"):
        assert leak not in dumped
    assert out["password_file"] == "/run/secrets/pw" and out["count"] == 3  # noqa: S105 - a path
    assert out["nested"][1] == ["tuple", EMAIL]


def test_read_secret_files(tmp_path):
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "postgres_password").write_text("pg-value-1\n")
    assert _redact.read_secret_files([str(tmp_path), str(tmp_path / "missing")]) == [
        ("postgres_password", "pg-value-1")
    ]


class FakeModule:
    """Records what a module would print; the guard must pass everything through the redactor."""

    def __init__(self, params=None):
        self.out = []
        self.params = params or {}
        self.no_log_values = set()

    def exit_json(self, **kwargs):
        self.out.append(("exit", kwargs))

    def fail_json(self, msg, **kwargs):
        self.out.append(("fail", dict(kwargs, msg=msg)))

    def warn(self, warning):
        self.out.append(("warn", warning))


def test_guard_redacts_results_messages_and_warnings():
    module = FakeModule()
    _redact.guard(module, Redactor([("pw", SECRET)]))
    module.fail_json(msg="base_url must not carry user info: 'http://me:%s@h/'" % SECRET, failures=["x " + SECRET])
    module.exit_json(base_url="http://a:b@h/api", logs=["Authorization: Bearer zzz.yyy"])
    module.warn("logout at https://u:p@h failed")
    dumped = json.dumps(module.out)
    for leak in (SECRET, "me:", "a:b@", "zzz.yyy", "u:p@"):
        assert leak not in dumped
    assert module.out[1][1]["base_url"] == "http://***@h/api"


def test_guard_hides_url_userinfo_of_the_arguments():
    module = FakeModule({"base_url": "http://trader:pw-1234@h/api", "nested": {"urls": ["https://tok@h2/"]}, "n": 1})
    _redact.guard(module)
    assert module.no_log_values == {"trader:pw-1234", "pw-1234", "tok"}


def test_a_value_known_by_name_and_as_a_bare_value_is_masked_with_its_name():
    """Set order follows string hashing, which differs per process: check under several hash seeds."""
    import os
    import subprocess
    import sys

    code = (
        "from ansible_collections.tradeops.stack.plugins.module_utils._redact import Redactor\n"
        "r = Redactor([('value', 'canarypg0123abcd'), ('postgres_password', 'canarypg0123abcd')])\n"
        "print(r('login with canarypg0123abcd'))\n"
    )
    for seed in range(8):
        env = dict(os.environ, PYTHONHASHSEED=str(seed), PYTHONPATH=os.pathsep.join(sys.path))
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
        assert out.strip() == "login with <redacted:postgres_password>", (seed, out)
