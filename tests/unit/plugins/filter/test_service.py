"""The hardened filter: the service spec's hardening profile as docker_container options."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.tradeops.stack.plugins.filter.service import hardened
from ansible_collections.tradeops.stack.plugins.module_utils import _spec


def test_the_profile_is_the_service_specs():
    out = hardened({})
    assert out == {
        "read_only": True,
        "tmpfs": ["/tmp"],
        "cap_drop": ["ALL"],
        "security_opts": ["no-new-privileges:true"],
        "log_driver": "json-file",
        "log_options": {"max-size": "10m", "max-file": "3"},
    }
    assert out["tmpfs"] is not _spec.HARDENING["tmpfs"]


def test_options_override_but_never_drop_no_new_privileges():
    out = hardened({"tmpfs": ["/tmp:size=16m"], "security_opts": ["apparmor=x"]})
    assert out["tmpfs"] == ["/tmp:size=16m"]
    assert out["security_opts"] == ["apparmor=x", "no-new-privileges:true"]
    with pytest.raises(AnsibleFilterError):
        hardened(["x"])
