"""deploy_lock and the controller lookup decide "is the owner process gone" by machine identity (boot id and
pid namespace), never by host name; the TTL is capped. Through ansible, on the local host."""

from __future__ import annotations

import socket
import subprocess
import sys

from ansible_collections.tradeops.stack.plugins.module_utils._state import machine_identity
from rollout_support import run_task

OTHER = "00000000-0000-0000-0000-000000000000/pid:[4026531836]"


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_the_lookup_returns_this_machine():
    res, _ = run_task("ansible.builtin.debug", {"msg": "{{ lookup('tradeops.stack.controller', 'machine') }}"})
    assert res["msg"] == machine_identity() and res["msg"].count("/pid:[") == 1, res


def test_a_dead_owner_is_stale_only_on_its_own_machine(tmp_path):
    base = {"stack": "tident", "state_root": str(tmp_path)}
    lock = lambda **kw: run_task("tradeops.stack.deploy_lock", {**base, **kw})[0]  # noqa: E731
    # same host name, another machine (a bastion named like this host): live until its TTL
    held = lock(holder="bastion run", owner_pid=dead_pid(), owner_host=socket.gethostname(), owner_machine=OTHER)
    assert held["changed"] and held["lock"]["owner_machine"] == OTHER and held["lock"]["stale"] is False, held
    busy = lock(holder="next run", take_over_stale=True)
    assert busy.get("failed") and "held by 'bastion run'" in busy["msg"] and "STALE" not in busy["msg"], busy
    assert lock(holder="bastion run", state="released")["changed"]
    # this machine, as the role passes it: the dead owner makes it stale, and the refusal says what to set
    machine = "{{ lookup('tradeops.stack.controller', 'machine') }}"
    assert lock(holder="killed run", owner_pid=dead_pid(), owner_machine=machine)["lock"]["owner_machine"]
    stale = lock(holder="next run")
    assert stale.get("failed") and "is gone" in stale["msg"], stale
    assert "-e tradeops_lock_take_over_stale=true" in stale["msg"] and "take_over_stale: true" in stale["msg"]
    taken = lock(holder="next run", take_over_stale=True)
    assert taken["changed"] and taken["taken_over"]["holder"] == "killed run", taken


def test_ttl_above_the_maximum_is_refused_naming_the_option(tmp_path):
    base = {"stack": "tident", "state_root": str(tmp_path), "holder": "a"}
    for check in (False, True):
        res, _ = run_task("tradeops.stack.deploy_lock", {**base, "ttl": 86400}, check=check)
        assert res.get("failed") and res["msg"].startswith("ttl must be a number of seconds between 1 and 21600")
    args = {"stack": "tident", "state_root": str(tmp_path), "service": "x", "image": "none", "lock": {"ttl": 86400}}
    res, _ = run_task("tradeops.stack.rollout", args)
    assert res.get("failed") and res["msg"].startswith("lock.ttl must be"), res
    assert not (tmp_path / "tident" / "lock.json").exists()
