# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The one home of redaction: what a module shows never carries a secret.

Pure functions, standard library only:

- ``mask_url_userinfo``: ``scheme://user:pass@host`` -> ``scheme://***@host``, anywhere in a text;
- ``Redactor``: replaces known secret values (raw, JSON-escaped, URL-encoded and base64 forms),
  whole ``Authorization``/token header values, URL user info and secret-named JSON or
  ``key=value`` fields in text, and secret-named keys in data (``scrub``);
- ``read_secret_files``: the known values, from directories of one-secret-per-file;
- ``guard``: makes every result, message and warning of a module pass through a Redactor.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import json
import os
import re

try:
    from urllib.parse import quote, quote_plus
except ImportError:  # pragma: no cover - Python 2 controller-side sanity only
    from urllib import quote, quote_plus

MASK = "***"
MIN_LENGTH = 4

# scheme://userinfo@ : the user info is everything up to the last '@' before the host part ends
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@\"']*@")
# A header or field that carries a credential, its whole value up to the end of the line or the quote.
_HEADER = re.compile(
    r"(?i)((?<![\w-])(?:authorization|proxy-authorization|cst|x-security-token|x-cap-api-key|cookie|set-cookie)"
    r"\\?[\"']?\s*[:=]\s*)(\"(?:[^\"\\\n]|\\.)*\"|'[^'\n]*'|[^\n\",}]+)"
)
# Names of fields whose value is a secret, in JSON ("password": "...") or key=value / key: value text.
_FIELD_PATTERN = (
    r"[\w.-]*(?:pass(?:word|wd|phrase)|pwd|secret|token|api[_-]?key|private[_-]?key|credential|identifier)[\w.-]*"
)
_FIELD_NAME = re.compile(r"(?i)^%s$" % _FIELD_PATTERN)
_JSON_FIELD = re.compile(
    r"(?i)(\\?\"%s\\?\"\s*:\s*)(?!\\?\"(?:/|<redacted:))(\\?\"(?:[^\"\\]|\\[^\"])*\\?\"|[^\s,}\]\[{]+)" % _FIELD_PATTERN
)
_KV_FIELD = re.compile(r"(?i)(?<![\w.-])(%s\s*=\s*)(?!/|<redacted:)([^\s&\"',;]+)" % _FIELD_PATTERN)


def mask_url_userinfo(text):
    """``text`` with the user info of every URL in it replaced by ``***`` (``https://***@host/...``)."""
    if not isinstance(text, str):
        return text
    return _URL_USERINFO.sub(lambda m: m.group(1) + MASK + "@", text)


def secret_key(name):
    """Whether a field of this name holds a secret value (``password``, ``apiKey``, ``securityToken``...)."""
    return bool(_FIELD_NAME.match(str(name or "")))


def _base64_cores(value):
    """The parts of base64(… + value + …) that do not depend on what surrounds ``value``, at each alignment."""
    raw = value.encode("utf-8")
    out = []
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode("ascii").rstrip("=")
        start = 4 if shift else 0
        end = len(encoded) - ((len(raw) + shift) % 3 and 4)
        core = encoded[start:end]
        if len(core) >= 8:
            out.append(core)
    return out


def encoded_forms(value):
    """``value`` and its JSON-escaped, URL-encoded and base64 forms (the ones long enough to match)."""
    forms = [value, json.dumps(value)[1:-1], quote(value, safe=""), quote_plus(value, safe=""), quote(value)]
    forms += _base64_cores(value)
    forms += [f.replace("+", "-").replace("/", "_") for f in _base64_cores(value)]  # the URL-safe alphabet
    seen, out = set(), []
    for form in forms:
        if form and len(form) >= MIN_LENGTH and form not in seen:
            seen.add(form)
            out.append(form)
    return out


class Redactor(object):
    """Replaces known secret values (every encoded form) and credential-shaped text; counts the replacements."""

    def __init__(self, named_values=()):
        pairs = []
        for name, value in named_values:
            if isinstance(value, str) and len(value.strip()) >= MIN_LENGTH:
                for form in encoded_forms(value.strip()):
                    pairs.append((form, name))
        # longest first, so a secret containing another is replaced whole; a value known by its
        # name (a secret file) and also passed as a bare value is masked with its name, every run
        self.values = sorted(set(pairs), key=lambda x: (-len(x[0]), x[0], x[1] == "value", x[1]))
        self.count = 0

    def text(self, text):
        """``text`` redacted: known values first, then headers, JSON and key=value fields, URL user info."""
        if not isinstance(text, str) or not text:
            return text
        for value, name in self.values:
            hits = text.count(value)
            if hits:
                self.count += hits
                text = text.replace(value, "<redacted:%s>" % name)
        text, hits = _HEADER.subn(lambda m: m.group(1) + _quoted_mask(m.group(2), "header"), text)
        self.count += hits
        text, hits = _JSON_FIELD.subn(lambda m: m.group(1) + _quoted_mask(m.group(2), "field"), text)
        self.count += hits
        text, hits = _KV_FIELD.subn(lambda m: m.group(1) + "<redacted:field>", text)
        self.count += hits
        text, hits = _URL_USERINFO.subn(lambda m: m.group(1) + MASK + "@", text)
        self.count += hits
        return text

    __call__ = text

    def scrub(self, data):
        """``data`` (results, documents) with every string redacted and the value of every secret-named key masked."""
        if isinstance(data, dict):
            out = {}
            for key, value in data.items():
                if secret_key(key) and isinstance(value, str) and value and not _harmless(value):
                    out[key] = "<redacted:field>"
                    self.count += 1
                else:
                    out[self.text(key) if isinstance(key, str) else key] = self.scrub(value)
            return out
        if isinstance(data, (list, tuple)):
            return [self.scrub(item) for item in data]
        return self.text(data)


def _harmless(value):
    """A value under a secret-looking name that is not a secret (a path, a flag, already masked)."""
    return value.startswith(("/", "<redacted:", MASK)) or value.lower() in ("true", "false", "none", "null")


def _quoted_mask(value, kind):
    mask = "<redacted:%s>" % kind
    for quote_ in ('\\"', '"', "'"):
        if len(value) >= 2 * len(quote_) and value.startswith(quote_) and value.endswith(quote_):
            return quote_ + mask + quote_
    return mask


def read_secret_files(dirs):
    """(file name, value) of every regular file under ``dirs`` (one secret per file); unreadable files skipped."""
    values = []
    for directory in dirs or []:
        for root, _dirs, files in os.walk(directory):
            for name in sorted(files):
                try:
                    with open(os.path.join(root, name), "rb") as handle:
                        values.append((name, handle.read().decode("utf-8", "replace").strip()))
                except (IOError, OSError):
                    continue
    return values


def userinfo_in(data):
    """Every URL user info (``user:pass``) in the strings of ``data``."""
    if isinstance(data, dict):
        return [info for value in data.values() for info in userinfo_in(value)]
    if isinstance(data, (list, tuple)):
        return [info for value in data for info in userinfo_in(value)]
    if isinstance(data, str):
        return [m.group(0).split("://", 1)[1][:-1] for m in _URL_USERINFO.finditer(data)]
    return []


def guard(module, redactor=None):
    """Make every ``exit_json``/``fail_json`` result and every warning of ``module`` pass through ``redactor``.

    Without a redactor only the credential shapes are redacted (URL user info, headers, secret fields).
    Returns the redactor, so a module can add known values later (``redactor.values``).
    """
    redactor = redactor or Redactor()
    # the module's own echo of its arguments (``invocation``, shown at -vvv) drops URL user info as well
    for info in userinfo_in(module.params):
        module.no_log_values.update((info, info.partition(":")[2]) if ":" in info else (info,))
    module.no_log_values.discard("")
    exit_json, fail_json, warn = module.exit_json, module.fail_json, module.warn

    def safe_exit_json(**kwargs):
        exit_json(**redactor.scrub(kwargs))

    def safe_fail_json(msg=None, **kwargs):
        kwargs = redactor.scrub(kwargs)
        fail_json(msg=redactor.text(msg if msg is not None else "failed"), **kwargs)

    def safe_warn(warning):
        warn(redactor.text(warning))

    module.exit_json, module.fail_json, module.warn = safe_exit_json, safe_fail_json, safe_warn
    return redactor
