# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Paired with CAPITAL_COM_ARG_SPEC in plugins/module_utils/_capital_com.py.
    DOCUMENTATION = r"""
options:
  base_url:
    description:
      - Base URL of the Capital.com REST API, including C(/api/v1).
      - If not set, the URL of O(environment) is used
        (V(https://demo-api-capital.backend-capital.com/api/v1) for V(demo),
        V(https://api-capital.backend-capital.com/api/v1) for V(live)).
      - Set it to reach the broker emulator, for example V(http://127.0.0.1:8080/api/v1), and name the
        emulator's host in O(emulator_hosts).
      - A URL with user info (V(https://x@host)), surrounding white space or a scheme other than
        C(http)/C(https) is refused before any connection.
    type: str
  emulator_hosts:
    description:
      - Hosts that run a broker emulator and count as paper, as the inventory names them
        (C(tradeops_broker_emulator_hosts)), for example V(127.0.0.1) or V(capital-emulator).
      - Apart from these, only Capital.com's demo host is paper. Every other host of O(base_url) is
        the LIVE broker, IP literals included (compared in lower case, without a trailing dot).
    type: list
    elements: str
    default: []
  environment:
    description:
      - Which Capital.com environment the credentials belong to. Demo and live are different
        hosts with different API keys.
      - V(live) (or a live O(base_url)) is refused unless the module is explicitly allowed to
        talk to the live host; a paper-trading stack never is.
    type: str
    choices: [demo, live]
    default: demo
  api_key:
    description:
      - The Capital.com API key, sent as the C(X-CAP-API-KEY) header.
      - If not set, the value of the E(CAPITAL_COM_API_KEY) environment variable is used
        (an AWX credential type injects it).
      - Never logged, never returned.
    type: str
  identifier:
    description:
      - The login (e-mail address) of the Capital.com account.
      - If not set, the value of the E(CAPITAL_COM_IDENTIFIER) environment variable is used.
      - Treated as a secret (C(no_log)) because it is one half of the login.
    type: str
  password:
    description:
      - The custom password of the API key (not the account's web password).
      - If not set, the value of the E(CAPITAL_COM_PASSWORD) environment variable is used.
      - Never logged, never returned.
    type: str
  encrypted_password:
    description:
      - Send the password encrypted with the broker's RSA key (C(GET /session/encryptionKey),
        PKCS#1 v1.5) instead of in clear inside TLS. Needs the Python library C(cryptography).
    type: bool
    default: false
  timeout:
    description:
      - Seconds to wait for the broker on every request, for connecting and for reading the
        answer. Idempotent requests that time out are retried twice with jittered backoff.
    type: float
    default: 10.0
  validate_certs:
    description:
      - Verify the broker's TLS certificate. Only disable it for a test broker.
    type: bool
    default: true
requirements:
  - requests >= 2.28.1
  - cryptography >= 42 (only with O(encrypted_password=true))
"""
