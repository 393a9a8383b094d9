# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The safety rules of the collection, each with exactly one home.

Private to the collection, standard library only. Modules import it on the
managed host; the filter plugin ``tradeops.stack.stack`` imports it on the
controller, so the stack validation, the secrets role and the modules give
the same answer to the same question:

- is this broker URL paper or live (an allow-list: ``broker_url_kind``), and
  does a free-form value mention a live broker host (``live_broker_mentions``);
- is this a valid stack, service or block name (``check_name``, whole-string
  matches, so a trailing newline is never a name);
- how many seconds is ``72h`` / ``1h30m`` / ``500ms`` / ``259200``
  (``parse_duration``), and a timing in milliseconds (``ms``);
- is a paper block active, given the content of ``blocks/active.json``
  (``active_block``);
- does a variable name look like it holds a secret (``looks_secret``).

Every rule raises ``RuleError`` whose message names the option or variable
that was checked and what was expected. A message never quotes a value that
may be a secret unless the caller says it may (``quote``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import calendar
import ipaddress
import re
import time

try:  # Python 3
    from urllib.parse import urlsplit
except ImportError:  # pragma: no cover - Python 2 is not supported, this keeps sanity's compile test quiet
    from urlparse import urlsplit


class RuleError(ValueError):
    """A value breaks one of the rules; the message names the option and what was expected."""


# -- the broker: paper or live ---------------------------------------------------------------
# The only hosts that are paper without the inventory saying so. Capital.com serves one
# streaming host to demo and live sessions alike: which account a stream belongs to is
# decided by the session tokens, which only the demo REST host hands out to a paper stack.
DEMO_REST_HOST = "demo-api-capital.backend-capital.com"
STREAMING_HOST = "api-streaming-capital.backend-capital.com"
PAPER_BROKER_HOSTS = frozenset([DEMO_REST_HOST, STREAMING_HOST])
LIVE_REST_HOST = "api-capital.backend-capital.com"
# The broker's own domains: a host under one of them that is not a paper host is live.
BROKER_DOMAINS = ("backend-capital.com", "capital.com")
BROKER_SCHEMES = ("http", "https", "ws", "wss")

# A host name under the broker's domains anywhere in free text (case-insensitive,
# an optional trailing dot, not part of a longer name).
_BROKER_HOST_IN_TEXT = re.compile(
    r"(?<![a-z0-9-])((?:[a-z0-9-]+\.)*(?:%s))\.?(?![a-z0-9-])" % "|".join(re.escape(d) for d in BROKER_DOMAINS),
    re.IGNORECASE,
)


def normalise_host(host):
    """Lower case, no trailing dot, an IP literal in its canonical form."""
    host = (host or "").strip().lower().rstrip(".")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def broker_url_host(url, option="base_url"):
    """The normalised host of a broker URL, or RuleError naming ``option``.

    Strict on purpose: a URL that a person might read one way and a client
    another (user info, surrounding white space, an unknown scheme, no host,
    a port that is not a number) is refused rather than guessed at.
    """
    if not isinstance(url, str) or not url:
        raise RuleError("%s must be a URL such as https://%s/api/v1, got %r" % (option, DEMO_REST_HOST, url))
    if url != url.strip() or any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise RuleError("%s must not contain white space or control characters (got %r)" % (option, url))
    parts = urlsplit(url)
    if parts.scheme.lower() not in BROKER_SCHEMES:
        raise RuleError(
            "%s must be an http(s) or ws(s) URL, got scheme %r in %r" % (option, parts.scheme or "(none)", url)
        )
    if "@" in parts.netloc:
        raise RuleError(
            "%s must not carry user info before the host ('...@host'), which hides the host a client really "
            "connects to: %r" % (option, url)
        )
    if not parts.hostname:
        raise RuleError("%s has no host: %r" % (option, url))
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise RuleError("%s has an invalid port: %r" % (option, url))
    return normalise_host(parts.hostname)


def broker_url_kind(url, emulator_hosts=(), option="base_url"):
    """``paper`` or ``live`` for a broker URL (an allow-list; RuleError when the URL is malformed).

    A host is paper when it is Capital.com's demo host (or its shared streaming
    host), or one the inventory names as a broker emulator in ``emulator_hosts``.
    Every other host is live, IP literals included.
    """
    host = broker_url_host(url, option)
    paper = PAPER_BROKER_HOSTS | frozenset(normalise_host(h) for h in (emulator_hosts or ()))
    return "paper" if host in paper else "live"


def refuse_live_broker(url, emulator_hosts=(), allow_live=False, option="base_url"):
    """The kind of ``url`` (``paper``/``live``); RuleError for a live URL unless ``allow_live``."""
    kind = broker_url_kind(url, emulator_hosts, option)
    if kind == "live" and not allow_live:
        raise RuleError(
            "%s %r is not a paper broker host: a paper stack talks only to Capital.com's demo host (%s) or to a "
            "broker emulator the inventory names (tradeops_broker_emulator_hosts); every other host counts as the "
            "LIVE broker. Live trading needs the explicit approval (tradeops_live_trading_approved)"
            % (option, url, DEMO_REST_HOST)
        )
    return kind


# What marks a value as a broker endpoint that the allow-list must decide, wherever it is in
# a service's description: an env name about the broker, or a URL with the shape of
# Capital.com's API: the REST base (/api/v1) or one of its resources, or the streaming
# endpoint (ws(s)://.../connect). Other URLs (a webhook, Prometheus's /api/v1/query) are not.
_BROKER_KEY = re.compile(r"BROKER|CAPITAL", re.IGNORECASE)
_BROKER_KEY_ENDPOINT = re.compile(r"URL|HOST|ENDPOINT|API|STREAM", re.IGNORECASE)
_BROKER_REST_PATH = re.compile(
    r"/api/v1/?(?:(?:session|ping|time|accounts|markets|marketnavigation|positions|workingorders|confirms|prices|"
    r"history|watchlists|clientsentiment)(?:/.*)?)?",
    re.IGNORECASE,
)
_BROKER_STREAM_PATH = re.compile(r"/connect/?")
_URL_START = re.compile(r"\s*(%s)://" % "|".join(BROKER_SCHEMES), re.IGNORECASE)


def is_broker_endpoint(value, key=None):
    """Whether ``value`` (an env value under ``key``, or any field value) names a broker endpoint."""
    if not isinstance(value, str) or not value.strip():
        return False
    key = None if key is None else str(key)
    if key is not None and _BROKER_KEY.search(key) and _BROKER_KEY_ENDPOINT.search(key) and not looks_secret(key):
        return True  # CAPITAL_API_KEY is a secret (refused in env on its own), not an endpoint
    if not _URL_START.match(value):
        return False
    try:
        parts = urlsplit(value.strip())
    except ValueError:
        return True  # a malformed URL that looks like one: let the strict parser say why
    if parts.scheme.lower() in ("ws", "wss"):
        return bool(_BROKER_STREAM_PATH.fullmatch(parts.path))
    return bool(_BROKER_REST_PATH.fullmatch(parts.path))


def live_broker_mentions(value):
    """The live broker hosts named anywhere in a free-form value (env values, command lines, secrets).

    Finds every host name under the broker's domains whatever surrounds it (a URL with
    user info or a query, upper case, a trailing dot) and keeps those that are not paper.
    """
    if value is None or isinstance(value, bool):
        return []
    found = []
    for match in _BROKER_HOST_IN_TEXT.finditer(str(value)):
        host = normalise_host(match.group(1))
        if host not in PAPER_BROKER_HOSTS and host not in found:
            found.append(host)
    return found


# -- names ----------------------------------------------------------------------------------
# Whole-string patterns, applied with re.fullmatch: "$" would match before a trailing
# newline and let "cdb\n" become a second, unfrozen state directory.
_NAME_REGEXES = {
    "stack": r"[a-z][a-z0-9_-]{0,39}",
    # no '-': a service's containers are named <stack>-<service with '_' as '-'>, so
    # "a-b" and "a_b" would share their containers
    "service": r"[a-z][a-z0-9_]{0,39}",
    "flag": r"[a-z][a-z0-9_]{0,62}",
    "block": r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}",
    # a file name under the secrets directory and /run/secrets/<name>
    "secret": r"[a-z][a-z0-9_]{0,63}",
}
_NAME_EXPECTED = {  # what a message says a name must be
    "stack": "1-40 characters, lower-case letters, digits, '-' or '_', starting with a letter",
    "service": "1-40 lower-case letters, digits or '_', starting with a letter",
    "flag": "1-63 lower-case letters, digits or '_', starting with a letter",
    "block": "1-64 characters, letters, digits, '.', '_' or '-', starting with a letter or digit",
    "secret": "1-64 lower-case letters, digits or '_', starting with a letter",
}
# kind -> (compiled whole-string pattern, what it expects)
NAME_PATTERNS = {kind: (re.compile(regex), _NAME_EXPECTED[kind]) for kind, regex in _NAME_REGEXES.items()}
RESERVED_BLOCK_IDS = ("active",)


def name_problem(kind, value):
    """Why ``value`` is not a valid ``kind`` name (stack, service, flag, block, secret), or None."""
    pattern, expected = NAME_PATTERNS[kind]
    if not isinstance(value, str) or not pattern.fullmatch(value):
        return "expected %s" % expected
    if kind == "block" and value in RESERVED_BLOCK_IDS:
        return "'%s' is a reserved word" % value
    return None


def check_name(kind, value, option=None):
    """``value`` when it is a valid ``kind`` name, else RuleError naming ``option``."""
    problem = name_problem(kind, value)
    if problem:
        raise RuleError("%s %r is invalid: %s" % (option or "%s name" % kind, value, problem))
    return value


# -- durations ------------------------------------------------------------------------------
_UNIT_SECONDS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|ns|d|h|m|s)")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def parse_duration(value, option="duration", minimum=None, maximum=None):
    """Seconds (float) from ``72h``, ``3d``, ``1h30m``, ``500ms``, ``259200`` or a number.

    Units: d, h, m, s, ms, us, ns, largest first, each at most once; a bare
    number is seconds. ``minimum``/``maximum`` (seconds) bound the result.
    """
    if isinstance(value, bool):
        seconds = None
    elif isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = value.strip().lower() if isinstance(value, str) else ""
        seconds = None
        if _NUMBER.fullmatch(text):
            seconds = float(text)
        elif text:
            parts = _DURATION_PART.findall(text)
            units = [unit for _number, unit in parts]
            ordered = sorted(units, key=lambda u: -_UNIT_SECONDS[u])
            if "".join(n + u for n, u in parts) == text and units == ordered and len(set(units)) == len(units):
                seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if seconds is None or seconds < 0:
        raise RuleError(
            "%s %r is not a duration: expected seconds (259200) or units d/h/m/s/ms such as 72h, 3d, 1h30m, 20s, "
            "500ms" % (option, value)
        )
    if (minimum is not None and seconds < minimum) or (maximum is not None and seconds > maximum):
        raise RuleError(
            "%s %r is out of range: expected between %s and %s"
            % (option, value, human_seconds(minimum or 0), human_seconds(maximum) if maximum is not None else "any")
        )
    return seconds


MAX_LOOKBACK = 3650 * 86400.0  # ten years: further back than any log kept


def parse_since(value, now, option="since"):
    """Epoch seconds for a duration back from ``now`` (``30m``, ``6h``, ``2d``) or an ISO 8601 UTC time."""
    text = value.strip() if isinstance(value, str) else value
    try:
        return now - parse_duration(text, option, minimum=0, maximum=MAX_LOOKBACK)
    except RuleError as exc:
        if "out of range" in str(exc):
            raise
    when = from_iso(text)
    if when is None:
        raise RuleError(
            "%s %r is not a duration like 30m, 6h or 2d (at most %s), nor an ISO 8601 UTC time like "
            "2026-11-23T08:00:00Z" % (option, value, human_seconds(MAX_LOOKBACK))
        )
    return when


def from_iso(text):
    """Epoch seconds of an ISO 8601 UTC time like ``2026-11-23T08:00:00Z`` (what ``_state.iso`` writes, the audit
    log's ``ts``), or None when ``text`` is not one."""
    try:
        return float(calendar.timegm(time.strptime(str(text).rstrip("Z"), "%Y-%m-%dT%H:%M:%S")))
    except ValueError:
        return None


def ms(seconds):
    """A measured time in seconds as milliseconds, to the microsecond (None stays None): the unit of timings
    in results (``open_ms``, ``first_quote_ms``)."""
    return None if seconds is None else round(seconds * 1000.0, 3)


def seconds_from_ms(millis):
    """The reverse, for Prometheus, whose unit is the second (None stays None)."""
    return None if millis is None else millis / 1000.0


def human_seconds(seconds):
    """``259200`` -> ``3d``, ``5400`` -> ``1h30m``, ``0.5`` -> ``500ms`` (for messages)."""
    if seconds < 1:
        return "%gms" % (seconds * 1000)
    out, rest = "", int(seconds)
    for unit in ("d", "h", "m", "s"):
        step = int(_UNIT_SECONDS[unit])
        if rest >= step:
            out += "%d%s" % (rest // step, unit)
            rest %= step
    return out or "0s"


# -- state records ------------------------------------------------------------------------
_NUMBER_TYPES = (int, float)
# lock.json: field -> (types, required)
LOCK_FIELDS = {
    "holder": (str, True),
    "reason": ((str, type(None)), False),
    "acquired_at": (_NUMBER_TYPES, True),
    "expires_at": ((*_NUMBER_TYPES, type(None)), False),
    "owner_pid": ((int, type(None)), False),
    "owner_host": ((str, type(None)), False),
    "owner_machine": ((str, type(None)), False),
    "worker_pid": ((int, type(None)), False),
    "worker_host": ((str, type(None)), False),
    "worker_machine": ((str, type(None)), False),
}


def check_record(record, path, fields, what, how=None):
    """``record`` when it is a mapping whose ``fields`` have their types, else RuleError naming the file and field.

    ``fields``: field -> (types, required). ``how`` says what to do about a bad file (default: inspect it).
    """
    how = how or "inspect it (cat %s) before repairing or removing it" % path
    if not isinstance(record, dict):
        raise RuleError(
            "%s holds %s, not %s (a mapping): %s"
            % (path, "null" if record is None else type(record).__name__, what, how)
        )
    for key, (types, required) in fields.items():
        if key not in record:
            if required:
                raise RuleError("%s is not a well-formed %s: field %r is missing: %s" % (path, what, key, how))
            continue
        value = record[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
            found = "%s %r" % (type(value).__name__, value)
            raise RuleError("%s is not a well-formed %s: field %r is %s: %s" % (path, what, key, found, how))
    return record


def _as_tuple(types):
    return types if isinstance(types, tuple) else (types,)


# -- paper blocks ---------------------------------------------------------------------------
BLOCK_STATUSES = ("active", "completed", "aborted", "zai")
# blocks/active.json and blocks/<id>.json: what rollout's freeze and paper_block rely on
BLOCK_FIELDS = {
    "id": (str, True),
    "status": (str, True),
    "started_at": (_NUMBER_TYPES, True),
}


def active_block(record, path="blocks/active.json", present=True):
    """The active block recorded in ``active.json``, None when no block is active.

    ``record`` is the parsed file; ``present=False`` says the file does not exist. Anything
    else that is not a well-formed block record is an error, never "no block":
    a freeze that silently lifts because a file is ``{}`` or ``null`` is worse
    than a deploy that stops and asks.
    """
    if not present:
        return None
    how = (
        "inspect it (cat %s; the block's own record is blocks/<id>.json) and repair it, or close the block with "
        "tradeops.stack.paper_block state=aborted" % path
    )
    check_record(record, path, BLOCK_FIELDS, "paper block record", how=how)
    if name_problem("block", record["id"]):
        raise RuleError("%s names an invalid block id %r: %s" % (path, record["id"], how))
    if record["status"] not in BLOCK_STATUSES:
        raise RuleError(
            "%s has status %r, expected one of %s: %s" % (path, record["status"], ", ".join(BLOCK_STATUSES), how)
        )
    return record if record["status"] == "active" else None


# -- secrets --------------------------------------------------------------------------------
# Names of variables that hold a secret. *_FILE names hold a path to one: the safe form.
_SECRET_NAME = re.compile(r"pass(word|wd|phrase)|secret|token|api[_-]?key|private[_-]?key|credential", re.IGNORECASE)
# Wider, for masking what is shown (a diagnostics bundle): a false alarm there costs a masked value.
_MAYBE_SECRET_NAME = re.compile(r"pass|secret|token|key|credential|auth|cookie|session", re.IGNORECASE)


def looks_secret(name):
    """Whether a variable name looks like it holds a secret value; such a variable belongs in a secret file."""
    text = str(name or "")
    return bool(_SECRET_NAME.search(text)) and not text.upper().endswith("_FILE")


def may_hold_secret(name):
    """Whether a value shown under this name should be masked (wider than ``looks_secret``)."""
    return bool(_MAYBE_SECRET_NAME.search(str(name or "")))


# -- hardening ------------------------------------------------------------------------------
# What a service may not undo without a named waiver ({rule, reason} in its `waivers`).
HARDENING_RULES = {
    "docker_socket": "mounts the Docker (or containerd) socket, which is root on the host",
    "host_root": "binds the host's root or a system directory",
    "host_port": "publishes a port on an address other than loopback",
    "cap_add": "adds Linux capabilities back after dropping ALL",
    "unconfined": "turns off seccomp, AppArmor, SELinux labels or no-new-privileges",
    "writable_root": "has a writable root filesystem",
    "unlimited": "has no memory, CPU or pids limit",
}
NO_NEW_PRIVILEGES = "no-new-privileges:true"
_SOCKETS = ("docker.sock", "containerd.sock", "dockershim.sock", "crio.sock", "podman.sock")
_SYSTEM_DIRS = (
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib64",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/var",
    "/var/lib",
    "/var/lib/docker",
    "/var/lib/containerd",
    "/var/run",
)
_UNCONFINED = re.compile(
    r"^(seccomp[=:]unconfined|apparmor[=:]unconfined|label[=:]disable|no-new-privileges[=:]false|systempaths[=:]unconfined)$",
    re.IGNORECASE,
)


def _bind_source(volume):
    """The host path of a bind mount ('/src:/dst[:ro]'), or None for a named volume."""
    source = str(volume).split(":", 1)[0]
    if not source.startswith("/"):
        return None
    normalised = re.sub(r"/+", "/", source)
    return normalised.rstrip("/") or "/"


def _port_address(item, default_address):
    """The host address a published port binds to ('[ip:]host:container[/proto]')."""
    text = str(item).split("/", 1)[0]
    if text.startswith("["):  # [::1]:8080:80
        return text[1 : text.index("]")] if "]" in text else text
    parts = text.split(":")
    return parts[0] if len(parts) == 3 else default_address


def _is_loopback(address):
    if str(address).strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(str(address).strip()).is_loopback
    except ValueError:
        return False


def _memory_bytes(value):
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", str(value), re.IGNORECASE)
    if not match:
        return None
    return float(match.group(1)) * 1024 ** "bkmgt".index((match.group(2) or "b").lower())


def hardening_findings(service, publish_address="127.0.0.1"):
    """What of the hardening profile a service undoes: a list of (rule, field, detail).

    ``service`` is one entry of the stack description (the role's schema); ``publish_address``
    is where a published port without an address binds (stack_publish_address).
    """
    found = []
    for index, volume in enumerate(service.get("volumes") or []):
        source = _bind_source(volume)
        if source is None:
            continue
        field = "volumes[%d]" % index
        if source.rsplit("/", 1)[-1] in _SOCKETS or source in ("/run/docker", "/var/run/docker"):
            found.append(("docker_socket", field, "binds %s" % source))
        elif source in _SYSTEM_DIRS:
            found.append(("host_root", field, "binds %s" % source))
    binds = [
        ("published_ports[%d]" % i, port, _port_address(port, publish_address))
        for i, port in enumerate(service.get("published_ports") or [])
    ]
    proxy = service.get("proxy")
    if isinstance(proxy, dict) and proxy.get("listen") is not None:
        # the edge proxy binds its own address (proxy.bind, loopback by default), not stack_publish_address
        binds.append(("proxy.listen", proxy["listen"], proxy.get("bind") or "127.0.0.1"))
    for field, port, address in binds:
        if not _is_loopback(address):
            found.append(("host_port", field, "%s binds %s" % (port, address or "all interfaces")))
    if service.get("cap_add"):
        found.append(("cap_add", "cap_add", ", ".join(str(c) for c in service["cap_add"])))
    for index, option in enumerate(service.get("security_opt") or []):
        if _UNCONFINED.match(str(option).strip()):
            found.append(("unconfined", "security_opt[%d]" % index, str(option)))
    if service.get("read_only") is False:
        found.append(("writable_root", "read_only", "false"))
    resources = service.get("resources") if isinstance(service.get("resources"), dict) else {}
    memory = _memory_bytes(resources.get("memory")) if "memory" in resources else None
    if "memory" in resources and (memory is None or memory <= 0):
        found.append(("unlimited", "resources.memory", "%r is no limit" % (resources.get("memory"),)))
    for key in ("cpus", "pids"):
        value = resources.get(key)
        if key in resources and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
            found.append(("unlimited", "resources.%s" % key, "%r is no limit" % (value,)))
    return found


def merged_security_opt(options):
    """A service's security options with no-new-privileges always in them (its own list replaces no default)."""
    options = [str(o) for o in (options or [])]
    if not any(o.lower().startswith("no-new-privileges") for o in options):
        options.append(NO_NEW_PRIVILEGES)
    return options


# Engine settings of daemon.json that the docker_host role asserts (CIS Docker Benchmark
# v1.6.0): key -> (required value, CIS item, what it protects).
DAEMON_CIS_SETTINGS = {
    "icc": (False, "2.2", "no traffic between containers on the default bridge"),
    "no-new-privileges": (True, "2.14", "no container process gains privileges"),
    "live-restore": (True, "2.15", "containers keep running while dockerd restarts"),
    "userland-proxy": (False, "2.16", "iptables instead of the docker-proxy process"),
}


def daemon_findings(config):
    """The CIS settings an effective daemon.json turns off: a list of (key, cis item, required, found)."""
    found = []
    for key, (required, item, _why) in sorted(DAEMON_CIS_SETTINGS.items()):
        value = (config or {}).get(key, required)
        if value is not required:
            found.append((key, item, required, value))
    return found
