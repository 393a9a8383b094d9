"""Shared fixtures and helpers of the rollout tests and benchmarks (no tests here).

Test images are tiny busybox images built once per session from ``tradeops/busybox:1.35``:
``t-ro-app:<tag>`` serving ``/health`` and ``/`` (its version) on port 8000 with a 1 s
HEALTHCHECK. Modes: ``good``, ``unhealthy`` (/health is 404 -> health check fails),
``crash`` (exits 3 at start). Every container, network and state root a test creates is
named ``t-ro-<random>`` and removed by the test that created it.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

APP_SH = r"""
busybox mkdir -p /tmp/www
echo "$APP_VERSION" > /tmp/www/index.html
echo "starting app $APP_VERSION mode $APP_MODE"
case "$APP_MODE" in
  crash) echo "fatal: cannot open /run/secrets/db_password" >&2; exit 3 ;;
  unhealthy) ;;
  *) echo ok > /tmp/www/health ;;
esac
httpd -f -p 8000 -h /tmp/www &
trap 'kill $!; exit 0' TERM INT
wait
"""

DOCKERFILE = """
FROM tradeops/busybox:1.35
ARG VERSION
ARG MODE=good
LABEL t-ro.test-image=1
ENV APP_VERSION=$VERSION APP_MODE=$MODE
COPY app.sh /app.sh
RUN busybox chmod 1777 /tmp
USER 65534:65534
HEALTHCHECK --interval=1s --timeout=5s --retries=3 --start-period=1s \\
  CMD ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8000/health"]
CMD ["sh", "/app.sh"]
"""

IMAGES = {"1": "good", "2": "good", "3": "good", "unhealthy": "unhealthy", "crash": "crash"}


def docker(*args: str, check: bool = True) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout.strip()


def build_test_images() -> dict[str, str]:
    with tempfile.TemporaryDirectory(prefix="t-ro-img-") as ctx:
        Path(ctx, "Dockerfile").write_text(DOCKERFILE)
        Path(ctx, "app.sh").write_text(APP_SH)
        for tag, mode in IMAGES.items():
            docker(
                "build",
                "-q",
                "-t",
                f"t-ro-app:{tag}",
                "--build-arg",
                f"VERSION={tag}",
                "--build-arg",
                f"MODE={mode}",
                ctx,
            )
    return {tag: f"t-ro-app:{tag}" for tag in IMAGES}


@pytest.fixture(scope="session", name="app_images")
def app_images_fixture():
    return build_test_images()


class Stack:
    """A throw-away stack: unique name, state root in a tmp dir, cleanup of what it created."""

    def __init__(self, tmp_path: Path):
        self.name = "t-ro-" + secrets.token_hex(3)
        self.root = tmp_path / "state"
        self.root.mkdir()
        self.secrets = tmp_path / "secrets"
        self.secrets.mkdir()

    @property
    def dir(self) -> Path:
        return self.root / self.name

    def args(self, service: str, **kw) -> dict:
        base = {
            "stack": self.name,
            "state_root": str(self.root),
            "service": service,
            "pull": "never",
            "secrets_dir": str(self.secrets),
            "resources": {"memory": "32m", "cpus": 0.2, "pids": 32},
            "health": {"timeout": 60},
            "stop_timeout": 2,
        }
        base.update(kw)
        return base

    def containers(self, service: str | None = None, all_: bool = True) -> list[dict]:
        flt = ["--filter", f"label=tradeops.stack={self.name}"]
        if service:
            flt += ["--filter", f"label=tradeops.service={service}"]
        ids = docker("ps", "-q", *(["-a"] if all_ else []), *flt).split()
        if not ids:
            return []
        # a container removed between ps and inspect is skipped (inspect still prints the others)
        return json.loads(docker("inspect", *ids, check=False) or "[]")

    def running(self, service: str) -> list[str]:
        return sorted(
            c["Name"].lstrip("/")
            for c in self.containers(service)
            if c["State"]["Running"] and c["Config"]["Labels"].get("tradeops.role") == "service"
        )

    def audit(self) -> list[dict]:
        path = self.dir / "audit.log"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def write_block(self):
        (self.dir / "blocks").mkdir(parents=True, exist_ok=True)
        # the record paper_block writes (epoch seconds): a malformed one stops rollouts with its own error
        started = time.time()
        block = {
            "id": "blk-" + secrets.token_hex(2),
            "operator": "alice",
            "reason": "paper week 47",
            "started_at": started,
            "planned_end": started + 3 * 86400,
            "status": "active",
        }
        (self.dir / "blocks" / "active.json").write_text(json.dumps(block))
        return block

    def cleanup(self):
        ids = docker("ps", "-aq", "--filter", f"label=tradeops.stack={self.name}").split()
        if ids:
            docker("rm", "-f", *ids, check=False)
        for net in docker("network", "ls", "-q", "--filter", f"name={self.name}").split():
            docker("network", "rm", net, check=False)


@pytest.fixture(name="stack")
def stack_fixture(tmp_path):
    s = Stack(tmp_path)
    yield s
    s.cleanup()


def http_get(url: str, timeout: float = 2.0) -> tuple[int | None, str]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode().strip()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError as exc:
        return None, str(exc)


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


LOCAL = {"ANSIBLE_TRANSPORT": "local"}


def run_task(module: str, args: dict, check: bool = False, diff: bool = False, verbosity: int = 0, env=None):
    """Run one task on localhost (local connection) and return (result dict, PlaybookRun)."""
    import sys

    from conftest import run_playbook

    play = [
        {
            "hosts": "localhost",
            "gather_facts": False,
            "connection": "local",
            "tasks": [
                {
                    "name": "under test",
                    module: args,
                    "ignore_errors": True,
                    "vars": {"ansible_python_interpreter": sys.executable},
                }
            ],
        }
    ]
    with tempfile.NamedTemporaryFile("w", suffix=".yml", prefix="t-ro-", delete=False) as handle:
        json.dump(play, handle)
    try:
        run = run_playbook(
            handle.name,
            inventory="localhost,",
            check=check,
            diff=diff,
            verbosity=verbosity,
            json_output=verbosity == 0,
            env={**LOCAL, **(env or {})},
        )
    finally:
        Path(handle.name).unlink()
    if verbosity:
        return None, run
    if not run.results:
        raise AssertionError(f"ansible-playbook produced no result (rc={run.rc}):\n{run.output[-3000:]}")
    return run.task("under test"), run


def rollout(args: dict, **kw) -> dict:
    return run_task("tradeops.stack.rollout", args, **kw)[0]


def docker_events(since: float, until: float, stack: str) -> list[str]:
    out = docker(
        "events",
        "--since",
        f"{since:.3f}",
        "--until",
        f"{until:.3f}",
        "--filter",
        f"label=tradeops.stack={stack}",
        "--format",
        "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}",
    )
    # the engine's own healthcheck execs are not writes of ours; anything else is
    own = (
        "exec_create: wget",
        "exec_start: wget",
        "exec_die",
        "health_status",
        "exec_create: curl",
        "exec_start: curl",
    )
    return [line for line in out.splitlines() if line.strip() and not any(o in line for o in own)]
