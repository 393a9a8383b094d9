"""A rollout longer than its lock's TTL keeps the lock (it renews the lease while it waits), and one whose
lock was taken over while it ran fails naming the new holder, on the real engine."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
from ansible_collections.tradeops.stack.plugins.module_utils._state import (
    DeployLock,
    StackState,
    StateError,
    machine_identity,
)
from rollout_support import rollout, wait_for

pytestmark = pytest.mark.slow


class Contender(threading.Thread):
    """While the rollout runs: every 0.2 s, when ``holder`` holds the lock, try to take it over as stale."""

    def __init__(self, lock: DeployLock, holder: str):
        super().__init__(daemon=True)
        self.lock, self.holder = lock, holder
        self.stop_flag = threading.Event()
        self.first_expiry = None
        self.held_after_first_expiry = False
        self.stale_seen = []
        self.taken_over = []
        self.refusals = 0

    def run(self):
        while not self.stop_flag.is_set():
            status = self.lock.status()
            if status["held"] and status["holder"] == self.holder:
                self.first_expiry = self.first_expiry or status["expires_at"]
                self.held_after_first_expiry |= time.time() > self.first_expiry
                if status["stale"]:
                    self.stale_seen.append(status["stale_reason"])
                try:
                    _, _, taken = self.lock.acquire("contender", "take over", ttl=60, take_over_stale=True)
                    if taken:
                        self.taken_over.append(taken)
                    self.lock.release("contender")
                except StateError:
                    self.refusals += 1
            time.sleep(0.2)


@pytest.mark.parametrize("owner", ["rollout", "play"])
def test_a_rollout_longer_than_the_ttl_keeps_its_lock(owner, stack, app_images):
    lock = DeployLock(StackState(stack.name, str(stack.root)))
    holder = f"lease-{owner}"
    # the rollout's own lock: 6 s; the play's (as deploy_lock takes it): 20 s, so that the time ansible takes to
    # start the rollout module on a loaded machine stays well inside it. The rollout outlives either by far.
    ttl, monitor = (6, 16) if owner == "rollout" else (20, 30)
    if owner == "play":
        lock.acquire(holder, "lease test", ttl=ttl, owner_pid=os.getpid(), owner_machine=machine_identity())
    contender = Contender(lock, holder)
    contender.start()
    try:
        res = rollout(
            stack.args(
                "app",
                image=app_images["1"],
                strategy="exclusive",
                health={"timeout": 60, "monitor": monitor},
                lock={"holder": holder, "ttl": ttl},
            )
        )
    finally:
        contender.stop_flag.set()
        contender.join()
    assert not res.get("failed") and res["changed"], res.get("msg")
    assert contender.held_after_first_expiry, "the rollout ended before its first lease ran out: test proves nothing"
    assert contender.stale_seen == [] and contender.taken_over == [], (contender.stale_seen, contender.taken_over)
    assert contender.refusals > 0
    actions = [e["action"] for e in stack.audit()]
    assert "lock_take_over" not in actions
    if owner == "play":
        assert lock.read()["holder"] == holder  # still the play's: the rollout renewed it, did not release it
        lock.release(holder)


def test_a_rollout_whose_lock_is_taken_over_fails_naming_the_new_holder(stack, app_images):
    lock = DeployLock(StackState(stack.name, str(stack.root)))
    first = rollout(stack.args("app", image=app_images["1"], strategy="exclusive"))
    assert not first.get("failed"), first.get("msg")

    def intrude():
        assert wait_for(lambda: (lock.read() or {}).get("holder") == "lease-victim", timeout=120, interval=0.05)
        lock.release("lease-victim", force=True)  # an operator forcing the lock away mid-rollout
        lock.acquire("intruder", "emergency", ttl=600)

    thread = threading.Thread(target=intrude)
    thread.start()
    res = rollout(
        stack.args(
            "app",
            image=app_images["2"],
            strategy="exclusive",
            health={"timeout": 60, "monitor": 20},
            lock={"holder": "lease-victim", "ttl": 3},
        )
    )
    thread.join()
    assert res.get("failed") and res["rolled_back"] is True, res
    assert "lost the deploy lock" in res["msg"] and "held by 'intruder'" in res["msg"], res["msg"]
    assert res["restored_release"] == first["release"]
    assert lock.read()["holder"] == "intruder"  # the rollout never releases the lock it no longer holds
    lock.release("intruder")


def test_a_play_lock_whose_controller_died_stays_live_while_its_rollout_works(stack, app_images):
    """An async rollout job outlives its killed controller: the play's lock is not stale (nobody may take it
    over) until the job has finished; then it is, and the job is no longer recorded as its worker."""
    lock = DeployLock(StackState(stack.name, str(stack.root)))
    assert not rollout(stack.args("app", image=app_images["1"], strategy="exclusive")).get("failed")
    # the controller dies only once the rollout has recorded itself as the lock's worker: killed on a timer
    # instead, a slow start of the module (a loaded machine) would find its owner gone and the lock stale
    controller = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    lock.acquire("play-gone", "worker test", ttl=20, owner_pid=controller.pid, owner_machine=machine_identity())
    seen, stop = [], threading.Event()

    def observe():
        while not stop.is_set():
            status = lock.status()
            if status.get("worker_pid") and controller.poll() is None:
                controller.kill()
                controller.wait()
            seen.append((time.monotonic(), controller.poll() is not None, status.get("worker_pid"), status["stale"]))
            time.sleep(0.2)

    observer = threading.Thread(target=observe, daemon=True)
    observer.start()
    try:
        res = rollout(
            stack.args(
                "app",
                image=app_images["2"],
                strategy="exclusive",
                health={"timeout": 60, "monitor": 15},
                lock={"holder": "play-gone", "ttl": 20},
            )
        )
    finally:
        stop.set()
        observer.join()
        controller.kill()
        controller.wait()
    assert not res.get("failed") and res["changed"], res.get("msg")
    orphaned = [s for s in seen if s[1] and s[2]]  # controller gone, the rollout still working
    assert len(orphaned) > 5, "the controller outlived the rollout: the test proves nothing"
    assert not [s for s in orphaned if s[3]], "the lock looked stale while its rollout worked"
    after = lock.status()
    assert after["holder"] == "play-gone" and after["worker_pid"] is None
    assert after["stale"] and "owner process %d" % controller.pid in after["stale_reason"]
    lock.release("play-gone")
