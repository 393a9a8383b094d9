"""_capital_com: the client a module's options describe (the rest of the client: test__capital_com_client.py)."""

from __future__ import annotations

from ansible_collections.tradeops.stack.plugins.module_utils import _capital_com


def test_client_from_params_takes_the_login_and_timeouts_of_the_options():
    params = {
        "api_key": "k",
        "identifier": "i",
        "password": "p",
        "encrypted_password": True,
        "timeout": 3,
        "validate_certs": False,
        "environment": "demo",  # not a client keyword
    }
    client = _capital_com.client_from_params("https://demo-api-capital.backend-capital.com/api/v1/", params)
    assert client.base_url == "https://demo-api-capital.backend-capital.com/api/v1"
    assert (client._api_key, client._identifier, client._password) == ("k", "i", "p")
    assert client.encrypted_password is True and client.timeout == 3.0 and client.validate_certs is False


def test_every_client_option_is_a_module_option():
    assert set(_capital_com.CLIENT_OPTIONS) <= set(_capital_com.CAPITAL_COM_ARG_SPEC)
