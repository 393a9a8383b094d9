"""The reference bot's paper_execution role (Redis execution lease) rolled out with the exclusive strategy:
upgrade 1.0.0 -> 1.0.1, automatic rollback from 1.1.0 (health check fails) and 1.2.0 (crashes at start),
while a watcher polls the engine every 50 ms. Never two instances, and the bot's own
tradeops_lease_conflicts_total stays 0."""

from __future__ import annotations

import json
import re
import secrets

import pytest
from rollout_support import Watcher, docker, http_get, rollout

pytestmark = pytest.mark.slow

BOT_IMAGES = ["tradeops/bot:1.0.0", "tradeops/bot:1.0.1", "tradeops/bot:1.1.0", "tradeops/bot:1.2.0"]
DEPS = ["tradeops/postgres:15-bookworm", "tradeops/redis:7-bookworm"]


def have_images():
    return all(docker("image", "inspect", image, check=False) for image in BOT_IMAGES + DEPS)


@pytest.mark.skipif(not have_images(), reason="reference images not built (make images)")
def test_exclusive_bot_never_runs_twice(stack):
    password = secrets.token_hex(12)
    pw = stack.secrets / "postgres_password"
    pw.write_text(password)
    pw.chmod(0o444)  # read by postgres (uid 999) and the bot (uid 10001) in this test
    redis_pw = stack.secrets / "redis_password"
    redis_pw.write_text(secrets.token_hex(12))
    redis_pw.chmod(0o444)  # read by Redis (uid 999) and the bot
    volume = f"{stack.name}-pgdata"
    common = {"networks": [{"name": stack.name, "aliases": []}], "health": {"timeout": 180}}
    try:
        pg = rollout(
            stack.args(
                "postgres",
                image=DEPS[0],
                strategy="exclusive",
                secrets=["postgres_password"],
                env={
                    "POSTGRES_PASSWORD_FILE": "/run/secrets/postgres_password",
                    "POSTGRES_USER": "tradeops",
                    "POSTGRES_DB": "tradeops",
                },
                volumes=[f"{volume}:/var/lib/postgresql/data"],
                tmpfs=["/tmp", "/var/run/postgresql"],
                resources={"memory": "256m", "cpus": 1.0, "pids": 128},
                networks=[{"name": stack.name, "aliases": ["postgres"]}],
                health={"timeout": 180},
                # generous on a loaded 2-core CI machine: initdb + pg_isready can take > 2 s
                healthcheck={
                    "test": ["CMD", "pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"],
                    "interval": "2s",
                    "timeout": "15s",
                    "retries": 10,
                    "start_period": "60s",
                },
            )
        )
        assert not pg.get("failed"), pg.get("msg")
        redis = rollout(
            stack.args(
                "redis",
                image=DEPS[1],
                strategy="exclusive",
                secrets=["redis_password"],
                resources={"memory": "64m", "cpus": 0.5, "pids": 64},
                networks=[{"name": stack.name, "aliases": ["redis"]}],
                health={"timeout": 120},
                healthcheck={
                    "test": ["CMD", "redis-health"],
                    "interval": "2s",
                    "timeout": "15s",
                    "retries": 10,
                    "start_period": "30s",
                },
            )
        )
        assert not redis.get("failed"), redis.get("msg")

        def bot(image, **kw):
            return rollout(
                stack.args(
                    "paper_execution",
                    image=image,
                    strategy="exclusive",
                    env={"BOT_ROLE": "paper_execution", "LEASE_TTL_MS": "3000"},
                    secrets=["postgres_password", "redis_password"],
                    resources={"memory": "128m", "cpus": 0.5, "pids": 64},
                    stop_timeout=10,
                    # the image's own check (curl --max-time 2, timeout 2 s) with room for a loaded CI machine
                    healthcheck={
                        "test": [
                            "CMD",
                            "curl",
                            "-sS",
                            "--fail-with-body",
                            "--max-time",
                            "10",
                            "http://127.0.0.1:8000/health",
                        ],
                        "interval": "2s",
                        "timeout": "12s",
                        "retries": 4,
                        "start_period": "20s",
                    },
                    **{**common, **kw},
                )
            )

        first = bot(BOT_IMAGES[0])
        assert not first.get("failed"), first.get("msg")
        with Watcher(stack.name, "paper_execution") as watcher:
            up = bot(BOT_IMAGES[1])
            unhealthy = bot(BOT_IMAGES[2])
            crash = bot(BOT_IMAGES[3])
        assert not up.get("failed"), up.get("msg")
        assert unhealthy["rolled_back"] and unhealthy["restored_release"] == up["release"]
        assert crash["rolled_back"] and crash["restored_release"] == up["release"]
        # 1.2.0 crashes at start; on a loaded machine its health checks may time out first: either way a reason
        assert crash["gate"]["passed"] is False and crash["reason"].startswith(
            f"container {stack.name}-paper-execution"
        )
        assert watcher.samples > 20 and watcher.overlaps == [] and watcher.max_running == 1

        name = f"{stack.name}-paper-execution"
        ip = next(iter(json.loads(docker("inspect", name))[0]["NetworkSettings"]["Networks"].values()))["IPAddress"]
        status, body = http_get(f"http://{ip}:8000/metrics")
        assert status == 200
        conflicts = re.findall(r"^tradeops_lease_conflicts_total(?:\{[^}]*\})? ([0-9.e+]+)$", body, re.M)
        assert conflicts, body[:500]
        assert all(float(v) == 0 for v in conflicts)
        assert password not in json.dumps([first, up, unhealthy, crash]) + (stack.dir / "audit.log").read_text()
    finally:
        stack.cleanup()
        docker("volume", "rm", "-f", volume, check=False)
