"""Smoke test of the reference stack on the real Docker engine (plain Docker SDK calls).

Starts PostgreSQL, Redis and every bot role (tradeops/bot:1.0.0) on a uniquely
named network, hardened the way the collection deploys them (cap_drop ALL,
read-only rootfs with tmpfs, non-root, memory/CPU/pids limits, secrets as files
under /run/secrets), then checks that ticks, signals and paper trades flow, that
the pause flag stops new orders, that a second paper_execution instance is
detected through the Redis lease without duplicate trades, that a graceful stop
hands the lease over, and that no secret reaches the environment or the logs.
Everything it creates is named t-smoke-<random> and removed at the end.

Needs the locally built images: run `make images` first.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

docker = pytest.importorskip("docker")

BOT_IMAGE = "tradeops/bot:1.0.0"
POSTGRES_IMAGE = "tradeops/postgres:15-bookworm"
REDIS_IMAGE = "tradeops/redis:7-bookworm"
ROLES = ("market_data", "signal_engine", "risk_manager", "paper_execution", "db_writer")
BOT_UID = 10001
DB_UID = 999
RUN_LABEL = "tradeops.test.run"
EMULATOR_DIR = Path(__file__).resolve().parents[1] / "emulators" / "capital_com"

pytestmark = pytest.mark.slow
# Upper bounds for waits, never expectations: about 45 s pass on an idle 2-core machine, but the
# suite runs beside other engineers' containers (load averages of 20 were seen), so be patient.
WAIT = 90.0


# --------------------------------------------------------------------------- helpers
def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    """Poll ``predicate`` until it returns a truthy value; fail naming ``what`` and the last value seen."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}; last value: {last!r}")


def parse_metrics(text: str) -> dict[tuple[str, frozenset], float]:
    """Prometheus text format -> {(name, frozenset(labels)): value} (enough for our own exporter)."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        name, _, labels = series.partition("{")
        pairs = []
        for part in labels.rstrip("}").split(",") if labels else []:
            key, _, val = part.partition("=")
            pairs.append((key, val.strip('"')))
        out[(name, frozenset(pairs))] = float(value)
    return out


def metric(samples: dict, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, lbls), v in samples.items() if n == name and want <= lbls)


class Stack:
    def __init__(self, client, prefix: str, workdir: Path):
        self.client = client
        self.prefix = prefix
        self.workdir = workdir
        self.containers: dict[str, object] = {}
        self.volumes: list = []
        self.network = None
        self.password = "pw-canary-" + secrets.token_hex(12)
        self.redis_password = "redispw-canary-" + secrets.token_hex(12)
        self.broker_credentials = {
            "capital_com_api_key": "key-canary-" + secrets.token_hex(8),
            "capital_com_identifier": f"id-canary-{secrets.token_hex(4)}@example.com",
            "capital_com_password": "brokerpw-canary-" + secrets.token_hex(8),
        }
        self.token_prefix = "tok-canary-" + secrets.token_hex(4)
        self.bot_secrets = workdir / "bot-secrets"
        self.db_secrets = workdir / "db-secrets"
        self.flags_dir = workdir / "flags"

    # -- files -----------------------------------------------------------
    def write_secrets(self, directory: Path, uid: int, values: dict[str, str]) -> None:
        directory.mkdir(mode=0o700)
        root = os.geteuid() == 0
        if root:  # production layout: owned by the container's uid, 0400 in a 0700 directory
            os.chown(directory, uid, uid)
        else:  # a developer without root: readable, still never in the environment
            directory.chmod(0o755)
        for name, value in values.items():
            path = directory / name
            path.write_text(value)
            if root:
                os.chown(path, uid, uid)
            path.chmod(0o400 if root else 0o444)

    @property
    def canaries(self) -> list[str]:
        return [self.password, self.redis_password, self.token_prefix, *self.broker_credentials.values()]

    def write_flags(self, flags: dict) -> None:
        tmp = self.flags_dir / ".flags.json.tmp"
        tmp.write_text(json.dumps(flags))
        tmp.chmod(0o644)
        os.replace(tmp, self.flags_dir / "flags.json")  # atomic: the bot never reads half a file

    # -- containers ------------------------------------------------------
    def run(self, name: str, image: str, **kw):
        hardened = {
            "cap_drop": ["ALL"],
            "read_only": True,
            "security_opt": ["no-new-privileges:true"],
            "mem_limit": "256m",
            "nano_cpus": 500_000_000,
            "pids_limit": 128,
            "restart_policy": {"Name": "no"},
            "log_config": {"type": "json-file", "config": {"max-size": "5m", "max-file": "2"}},
            "labels": {RUN_LABEL: self.prefix},
            "network": self.network.name,
            "detach": True,
        }
        hardened.update(kw)
        container = self.client.containers.run(image, name=f"{self.prefix}-{name}", **hardened)
        self.containers[name] = container
        return container

    def run_bot(self, name: str, role: str, **env: str):
        return self.run(
            name,
            BOT_IMAGE,
            user=f"{BOT_UID}:{BOT_UID}",
            tmpfs={"/tmp": "rw,noexec,nosuid,size=16m"},
            environment={
                "BOT_ROLE": role,
                "REDIS_HOST": f"{self.prefix}-redis",
                "POSTGRES_HOST": f"{self.prefix}-postgres",
                "POSTGRES_DB": "tradeops",
                "POSTGRES_USER": "tradeops",
                "TRADING_MODE": "paper",
                "EPICS": "BTCUSD,OIL_CRUDE",
                **env,
            },
            volumes={
                str(self.bot_secrets): {"bind": "/run/secrets", "mode": "ro"},
                str(self.flags_dir): {"bind": "/run/config", "mode": "ro"},
            },
            ports={"8000/tcp": ("127.0.0.1", None)},
        )

    def start(self) -> None:
        self.network = self.client.networks.create(
            f"{self.prefix}-net", driver="bridge", labels={RUN_LABEL: self.prefix}
        )
        self.write_secrets(
            self.db_secrets, DB_UID, {"postgres_password": self.password, "redis_password": self.redis_password}
        )
        self.write_secrets(
            self.bot_secrets,
            BOT_UID,
            {"postgres_password": self.password, "redis_password": self.redis_password, **self.broker_credentials},
        )
        self.flags_dir.mkdir()
        self.flags_dir.chmod(0o755)
        for name in ("pgdata", "redisdata"):
            self.volumes.append(
                self.client.volumes.create(name=f"{self.prefix}-{name}", labels={RUN_LABEL: self.prefix})
            )
        self.run(
            "postgres",
            POSTGRES_IMAGE,
            user=f"{DB_UID}:{DB_UID}",
            tmpfs={"/tmp": "rw,size=16m", "/var/run/postgresql": f"rw,size=1m,uid={DB_UID},gid={DB_UID}"},
            environment={
                "POSTGRES_USER": "tradeops",
                "POSTGRES_DB": "tradeops",
                "POSTGRES_PASSWORD_FILE": "/run/secrets/postgres_password",
            },
            volumes={
                f"{self.prefix}-pgdata": {"bind": "/var/lib/postgresql/data", "mode": "rw"},
                str(self.db_secrets / "postgres_password"): {"bind": "/run/secrets/postgres_password", "mode": "ro"},
            },
        )
        self.run(
            "redis",
            REDIS_IMAGE,
            user=f"{DB_UID}:{DB_UID}",
            volumes={
                f"{self.prefix}-redisdata": {"bind": "/data", "mode": "rw"},
                str(self.db_secrets / "redis_password"): {"bind": "/run/secrets/redis_password", "mode": "ro"},
            },
        )
        for role in ROLES:
            self.run_bot(role, role)

    def remove(self) -> None:
        """Remove what this run created (and only that: everything carries the run label)."""
        for container in self.client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={self.prefix}"}):
            container.remove(force=True, v=True)
        for volume in self.client.volumes.list(filters={"label": f"{RUN_LABEL}={self.prefix}"}):
            volume.remove(force=True)
        for network in self.client.networks.list(filters={"label": f"{RUN_LABEL}={self.prefix}"}):
            network.remove()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- probes ------------------------------------------------------------
    def health_status(self, name: str) -> str:
        container = self.containers[name]
        container.reload()
        state = container.attrs["State"]
        if state["Status"] in ("exited", "dead"):
            logs = container.logs(tail=20).decode(errors="replace")
            pytest.fail(f"{container.name} exited with {state['ExitCode']}; last logs:\n{logs}")
        return (state.get("Health") or {}).get("Status", "none")

    def wait_healthy(self, names, timeout: float = 60) -> None:
        def all_healthy():
            status = {n: self.health_status(n) for n in names}
            return status if all(s == "healthy" for s in status.values()) else None

        wait_for(all_healthy, timeout, f"health of {', '.join(names)}")

    def http(self, name: str, path: str, port: int = 8000, body: dict | None = None) -> tuple[int, str]:
        container = self.containers[name]
        if not container.attrs["NetworkSettings"]["Ports"]:
            container.reload()
        host_port = container.attrs["NetworkSettings"]["Ports"][f"{port}/tcp"][0]["HostPort"]
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{host_port}{path}", data=data, method="POST" if data else "GET")
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def metrics(self, name: str) -> dict:
        status, body = self.http(name, "/metrics")
        assert status == 200, f"{name} /metrics answered {status}"
        return parse_metrics(body)

    def sql(self, query: str) -> str:
        """Run SQL in the postgres container over its local socket (trust auth, no password needed)."""
        res = self.containers["postgres"].exec_run(
            ["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-U", "tradeops", "-d", "tradeops", "-c", query],
            user=f"{DB_UID}:{DB_UID}",
        )
        output = res.output.decode(errors="replace").strip()
        assert res.exit_code == 0, f"psql failed ({res.exit_code}) for {query!r}: {output}"
        return output

    def count(self, query: str) -> int:
        return int(self.sql(query) or 0)


@pytest.fixture(scope="module")
def stack():
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:
        pytest.fail(f"no Docker engine answers ({exc}); run `make bootstrap` (it starts one)")
    missing = []
    for image in (BOT_IMAGE, POSTGRES_IMAGE, REDIS_IMAGE):
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            missing.append(image)
    if missing:
        pytest.fail(f"image(s) {', '.join(missing)} not found: run `make images` first")
    prefix = f"t-smoke-{secrets.token_hex(4)}"
    st = Stack(client, prefix, Path(tempfile.mkdtemp(prefix=f"{prefix}-")))
    st.workdir.chmod(0o755)
    try:
        st.start()
        st.wait_healthy(["postgres", "redis", *ROLES], timeout=2 * WAIT)
        yield st
    finally:
        st.remove()
        client.close()


# --------------------------------------------------------------------------- tests
def test_every_container_is_hardened_and_reports_health(stack):
    for name, container in stack.containers.items():
        container.reload()
        cfg, host = container.attrs["Config"], container.attrs["HostConfig"]
        assert cfg["User"] and not cfg["User"].startswith(("0", "root")), f"{name} runs as root"
        assert host["CapDrop"] == ["ALL"] and not host["CapAdd"], f"{name} capabilities: {host['CapAdd']}"
        assert host["ReadonlyRootfs"] is True, name
        assert host["Privileged"] is False, name
        assert host["Memory"] > 0 and host["NanoCpus"] > 0 and host["PidsLimit"] > 0, name
        assert cfg.get("Healthcheck", {}).get("Test"), f"{name} has no healthcheck"
    for role in ROLES:
        status, body = stack.http(role, "/health")
        health = json.loads(body)
        assert status == 200, f"{role}: {body}"
        assert health["role"] == role and health["version"] == "1.0.0" and health["status"] == "ok"
        assert health["dependencies"]["redis"]["ok"] is True
        if role in ("paper_execution", "db_writer"):
            assert health["dependencies"]["postgres"]["ok"] is True
        info = stack.metrics(role)
        assert metric(info, "tradeops_bot_info", role=role, version="1.0.0") == 1


def test_ticks_signals_and_paper_trades_flow(stack):
    def trades():  # the bot creates the table when it first connects: until then there is nothing to count
        return stack.sql("SELECT to_regclass('paper_trades')") and stack.count("SELECT count(*) FROM paper_trades")

    wait_for(lambda: (trades() or 0) >= 3, WAIT, "3 rows in paper_trades")
    md = stack.metrics("market_data")
    for epic in ("BTCUSD", "OIL_CRUDE"):
        assert metric(md, "tradeops_ticks_total", epic=epic) > 0, epic
        assert metric(md, "tradeops_last_tick_timestamp_seconds", epic=epic) > 1.7e9, epic
    assert metric(md, "tradeops_dependency_up", dependency="redis") == 1
    assert metric(stack.metrics("signal_engine"), "tradeops_signals_total") > 0
    assert metric(stack.metrics("risk_manager"), "tradeops_risk_decisions_total", decision="approved") > 0
    pe = stack.metrics("paper_execution")
    assert metric(pe, "tradeops_paper_trades_total") > 0
    assert metric(pe, "tradeops_db_rows_written_total", table="paper_trades") > 0
    assert metric(pe, "tradeops_orders_paused") == 0
    assert metric(pe, "tradeops_dependency_up", dependency="postgres") == 1
    wait_for(
        lambda: metric(stack.metrics("db_writer"), "tradeops_db_rows_written_total", table="signals") > 0,
        WAIT,
        "db_writer to persist signals",
    )
    assert stack.count("SELECT count(*) FROM tick_bars") > 0
    assert stack.count("SELECT count(*) FROM signals") > 0
    assert stack.count("SELECT count(*) FROM paper_trades WHERE side NOT IN ('buy', 'sell') OR size <= 0") == 0


def test_pause_flag_stops_new_orders_and_resume_restarts_them(stack):
    def skipped():
        return metric(stack.metrics("paper_execution"), "tradeops_orders_skipped_total", reason="paused")

    stack.write_flags({"pause_new_orders": True})
    wait_for(lambda: metric(stack.metrics("paper_execution"), "tradeops_orders_paused") == 1, WAIT, "orders_paused 1")
    # once one order has been skipped, every order before it is committed: the table must freeze now
    first = wait_for(skipped, WAIT, "an order skipped while paused")
    rows = stack.count("SELECT count(*) FROM paper_trades")
    wait_for(lambda: skipped() >= first + 3, WAIT, "3 more approved orders skipped while paused")
    assert stack.count("SELECT count(*) FROM paper_trades") == rows, "a paper trade was placed while paused"
    _, body = stack.http("paper_execution", "/health")
    assert json.loads(body)["orders_paused"] is True

    (stack.flags_dir / "flags.json").unlink()  # a missing file means all flags off
    wait_for(lambda: metric(stack.metrics("paper_execution"), "tradeops_orders_paused") == 0, WAIT, "orders_paused 0")
    wait_for(lambda: stack.count("SELECT count(*) FROM paper_trades") > rows, WAIT, "trading to resume")


def test_second_paper_execution_is_detected_and_places_no_trade(stack):
    started = stack.sql("SELECT now()")
    stack.run_bot("paper_execution-2", "paper_execution")
    stack.run_bot("db_writer-2", "db_writer")  # as during a blue/green switch of db_writer
    stack.wait_healthy(["paper_execution-2", "db_writer-2"], timeout=WAIT)
    wait_for(
        lambda: metric(stack.metrics("paper_execution-2"), "tradeops_lease_conflicts_total") > 0,
        WAIT,
        "the second instance to count a lease conflict",
    )
    before = stack.count("SELECT count(*) FROM paper_trades")
    wait_for(lambda: stack.count("SELECT count(*) FROM paper_trades") >= before + 3, WAIT, "3 more paper trades")

    second = stack.metrics("paper_execution-2")
    assert metric(second, "tradeops_lease_held") == 0
    assert metric(second, "tradeops_paper_trades_total") == 0
    assert metric(stack.metrics("paper_execution"), "tradeops_lease_held") == 1
    since = f"SELECT DISTINCT instance FROM paper_trades WHERE created_at >= '{started}'"  # noqa: S608 (our own now())
    instances = stack.sql(since).splitlines()
    assert len(instances) == 1, f"trades from several instances while both ran: {instances}"
    total, deals, signals = stack.sql(
        "SELECT count(*), count(DISTINCT deal_id), count(DISTINCT signal_id) FROM paper_trades"
    ).split("|")
    assert total == deals == signals, f"duplicate paper trades: {total} rows, {deals} deals, {signals} signals"
    logs = stack.containers["paper_execution-2"].logs().decode(errors="replace")
    assert '"event": "lease_conflict"' in logs

    standby = stack.metrics("db_writer-2")  # a second db_writer waits instead of writing beside the first
    assert metric(standby, "tradeops_lease_held") == 0
    assert metric(standby, "tradeops_db_rows_written_total") == 0
    assert metric(standby, "tradeops_lease_conflicts_total") == 0, "a db_writer standby is not an incident"
    assert metric(stack.metrics("db_writer"), "tradeops_lease_held") == 1


def test_graceful_stop_releases_the_lease_to_the_standby(stack):
    first = stack.containers["paper_execution"]
    first.stop(timeout=10)  # exit code 0 below means it stopped by itself, before any SIGKILL
    first.reload()
    assert first.attrs["State"]["ExitCode"] == 0, first.logs(tail=10).decode(errors="replace")
    logs = first.logs().decode(errors="replace")
    assert '"event": "lease_released"' in logs and '"event": "stopped"' in logs
    wait_for(
        lambda: metric(stack.metrics("paper_execution-2"), "tradeops_paper_trades_total") > 0,
        WAIT,
        "the standby to take the lease over and place paper trades",
    )
    total, deals = stack.sql("SELECT count(*), count(DISTINCT deal_id) FROM paper_trades").split("|")
    assert total == deals


def test_postgres_and_redis_restarts_lose_no_paper_trade(stack):
    executor = "paper_execution-2"  # the lease holder since the previous test
    for dependency in ("postgres", "redis"):
        before = stack.count("SELECT count(*) FROM paper_trades")
        stack.containers[dependency].restart(timeout=10)
        stack.wait_healthy([dependency, "signal_engine", "risk_manager", executor, "db_writer"], timeout=WAIT)
        wait_for(
            lambda before=before: stack.count("SELECT count(*) FROM paper_trades") >= before + 3,
            WAIT,
            f"paper trades to flow again after the {dependency} restart",
        )
    reconnects = metric(stack.metrics(executor), "tradeops_errors_total")
    assert reconnects > 0, "the executor never saw the outages it should have reconnected from"

    # Every approved order the executor group has consumed and acknowledged is either a row in
    # paper_trades or was skipped on purpose while paused (read with the bot image's own redis client).
    script = (
        "import json, os, redis\n"
        "pw = open('/run/secrets/redis_password').read().strip()\n"
        "r = redis.Redis(host=os.environ['REDIS_HOST'], password=pw, decode_responses=True)\n"
        "group = [g for g in r.xinfo_groups('tradeops:orders') if g['name'] == 'paper_execution'][0]\n"
        "pending = {p['message_id'] for p in r.xpending_range('tradeops:orders', 'paper_execution', '-', '+', 10000)}\n"
        "entries = r.xrange('tradeops:orders', '-', group['last-delivered-id'])\n"
        "print(json.dumps([f['deal_id'] for i, f in entries if i not in pending]))\n"
    )
    res = stack.containers[executor].exec_run(["python3", "-c", script])
    assert res.exit_code == 0, res.output.decode(errors="replace")
    consumed = set(json.loads(res.output))
    skipped = set()
    for container in (stack.containers["paper_execution"], stack.containers[executor]):
        for line in container.logs().decode(errors="replace").splitlines():
            if '"event": "order_skipped"' in line:
                skipped.add(json.loads(line)["deal_id"])
    recorded = set(stack.sql("SELECT deal_id FROM paper_trades").split())
    assert len(consumed) > 10
    lost = consumed - recorded - skipped
    assert not lost, f"{len(lost)} consumed orders are neither in paper_trades nor skipped: {sorted(lost)[:5]}"


def test_market_data_from_the_broker_emulator(stack):
    """market_data in broker mode: login with credentials from secret files, quotes over the WebSocket price
    stream, and the REST poll for an epic whose stream goes quiet (reported in the metrics)."""
    stack.run(
        "broker",
        BOT_IMAGE,  # any image with python3 runs the stdlib emulator
        user=f"{BOT_UID}:{BOT_UID}",
        entrypoint=["python3", "/emulator/server.py", "--host", "0.0.0.0", "--port", "8080"],  # noqa: S104 (in a container)
        tmpfs={"/tmp": "rw,size=16m"},
        volumes={str(EMULATOR_DIR): {"bind": "/emulator", "mode": "ro"}},
        ports={"8080/tcp": ("127.0.0.1", None)},
        healthcheck={
            "test": [
                "CMD",
                "python3",
                "-c",
                "import urllib.request as u; u.urlopen('http://127.0.0.1:8080/__emulator/health')",
            ],
            "interval": 1_000_000_000,
            "timeout": 2_000_000_000,
            "retries": 5,
        },
    )
    stack.wait_healthy(["broker"], timeout=WAIT)
    creds = stack.broker_credentials
    status, _ = stack.http(
        "broker",
        "/__emulator/control",
        port=8080,
        body={  # through the control endpoint: never in the emulator's environment or arguments
            "credentials": {
                "api_key": creds["capital_com_api_key"],
                "identifier": creds["capital_com_identifier"],
                "password": creds["capital_com_password"],
            },
            "token_prefix": stack.token_prefix,  # canary session tokens
        },
    )
    assert status == 200
    stack.containers["market_data"].stop(timeout=5)  # swap the synthetic source for the broker
    stack.run_bot("market_data-broker", "market_data", BROKER_BASE_URL=f"http://{stack.prefix}-broker:8080/api/v1")
    stack.wait_healthy(["market_data-broker"], timeout=WAIT)
    wait_for(
        lambda: metric(stack.metrics("market_data-broker"), "tradeops_ticks_total", epic="BTCUSD") >= 3,
        WAIT,
        "3 BTCUSD ticks from the emulator",
    )
    md = stack.metrics("market_data-broker")
    assert metric(md, "tradeops_dependency_up", dependency="broker") == 1
    assert metric(md, "tradeops_market_tradeable", epic="BTCUSD") == 1
    assert metric(md, "tradeops_stream_up") == 1, "the image has websocket-client and reached ws://<broker>/connect"
    assert metric(md, "tradeops_stream_last_quote_timestamp_seconds", epic="BTCUSD") > time.time() - 30
    assert metric(md, "tradeops_market_data_rest_fallback", epic="BTCUSD") == 0
    _, state = stack.http("broker", "/__emulator/state", port=8080)
    counters = json.loads(state)["counters"]
    assert counters["logins"] == 1, "one session for REST and the stream, not one login per poll"
    assert counters["stream_connections"] == 1, counters
    logs = stack.containers["market_data-broker"].logs().decode(errors="replace")
    assert '"event": "broker_session_opened"' in logs and '"event": "stream_connected"' in logs

    # the stream goes quiet for BTCUSD while REST answers: the REST poll carries it, and says so
    status, _ = stack.http("broker", "/__emulator/control", port=8080, body={"stream": {"silent": ["BTCUSD"]}})
    assert status == 200
    wait_for(
        lambda: metric(stack.metrics("market_data-broker"), "tradeops_market_data_rest_fallback", epic="BTCUSD") == 1,
        WAIT,
        "market_data polls REST for BTCUSD",
    )
    ticks = metric(stack.metrics("market_data-broker"), "tradeops_ticks_total", epic="BTCUSD")
    wait_for(
        lambda: metric(stack.metrics("market_data-broker"), "tradeops_ticks_total", epic="BTCUSD") >= ticks + 3,
        WAIT,
        "BTCUSD ticks keep flowing from the REST fallback",
    )
    logs = stack.containers["market_data-broker"].logs().decode(errors="replace")
    assert '"event": "market_data_fallback"' in logs and '"reason": "stream quiet"' in logs


def test_no_secret_in_environment_or_logs(stack):
    for name, container in stack.containers.items():
        container.reload()
        env = "\n".join(container.attrs["Config"]["Env"] or [])
        assert "PASSWORD=" not in env, f"{name}: a *PASSWORD variable is set"
        logs = container.logs().decode(errors="replace")
        for canary in stack.canaries:
            assert canary not in env, f"{name}: a secret ({canary[:8]}...) is in .Config.Env"
            assert canary not in logs, f"{name}: a secret or session token ({canary[:8]}...) is in docker logs"
    postgres_env = stack.containers["postgres"].attrs["Config"]["Env"]
    assert "POSTGRES_PASSWORD_FILE=/run/secrets/postgres_password" in postgres_env
