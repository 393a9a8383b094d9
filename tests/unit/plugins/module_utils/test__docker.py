"""_docker: the failure tails a rollout reports are redacted before they are cut, so a secret that the cut
at 300 characters would split is still found whole (and no prefix of it is left)."""

from __future__ import annotations

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
