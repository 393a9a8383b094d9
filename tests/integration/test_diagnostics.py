"""tradeops.stack.diagnostics against a real container that leaks canaries everywhere it can, and the
diagnose playbook against a small real stack deployed by the deploy playbook."""

import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import tarfile
import time
import urllib.request
import uuid
from pathlib import Path

import docker
import pytest
from ansible_collections.tradeops.stack.plugins.module_utils._state import LABEL_SERVICE, LABEL_STACK
from conftest import ROOT, run_playbook

CANARY_FILE = f"canary-file-{uuid.uuid4().hex}"
CANARY_VALUE = f"canary-value-{uuid.uuid4().hex}"
CANARY_TOKEN = f"canarytoken{uuid.uuid4().hex}"


@pytest.fixture
def leaky_stack(tmp_path):
    """A stack of one container whose logs and env carry the secrets, as a careless service would."""
    client = docker.from_env()
    stack = f"t-diag-{uuid.uuid4().hex[:6]}"
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    (secrets / "capital_com_password").write_text(CANARY_FILE + "\n")
    script = f"echo login with {CANARY_FILE}; echo 'webhook {CANARY_VALUE}'; echo 'CST: {CANARY_TOKEN}'; sleep 600"
    container = client.containers.run(
        "tradeops/busybox:1.35",
        ["sh", "-c", script],
        name=stack + "-svc",
        detach=True,
        environment={"BROKER_TOKEN": CANARY_TOKEN, "MODE": "paper"},
        labels={LABEL_STACK: stack, LABEL_SERVICE: "svc"},
    )
    try:
        yield stack, secrets
    finally:
        container.remove(force=True)


def bundle_text(path):
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read().decode() for m in tar.getmembers()}


def test_bundle_has_logs_inspect_state_and_no_secret(module, leaky_stack, tmp_path):
    stack, secrets = leaky_stack
    state_root = tmp_path / "state"
    (state_root / stack).mkdir(parents=True)
    (state_root / stack / "audit.log").write_text('{"action": "rollout", "result": "ok"}\n')
    res = module(
        "tradeops.stack.diagnostics",
        {
            "stack": stack,
            "state_root": str(state_root),
            "since": "1h",
            "redact_dirs": [str(secrets)],
            "redact_values": [CANARY_VALUE],
            "extra": {"alerts.json": {"firing": [], "note": f"seen {CANARY_VALUE}"}},
        },
    )
    assert res["changed"] and not res.get("failed"), res
    files = bundle_text(res["path"])
    name = f"{stack}-svc"
    assert {f"containers/{name}/logs.txt", f"containers/{name}/inspect.json", "state/audit.log"} <= set(files)
    assert {"host/facts.json", "host/docker_info.json", "extra/alerts.json", "MANIFEST.json"} <= set(files)
    assert "login with <redacted:capital_com_password>" in files[f"containers/{name}/logs.txt"]
    assert "BROKER_TOKEN=<redacted:env>" in files[f"containers/{name}/inspect.json"]
    everything = "\n".join(files.values()) + repr(res)
    counts = {c: everything.count(c) for c in (CANARY_FILE, CANARY_VALUE, CANARY_TOKEN)}
    print("canary occurrences in bundle + module result:", counts)
    assert counts == dict.fromkeys(counts, 0)
    assert res["redactions"] >= 4
    assert oct(os.stat(res["path"]).st_mode & 0o777) == "0o600"


def test_check_mode_writes_nothing_and_bad_since_is_named(module, leaky_stack, tmp_path):
    stack, _ = leaky_stack
    state_root = tmp_path / "state"
    res = module("tradeops.stack.diagnostics", {"stack": stack, "state_root": str(state_root)}, check=True)
    assert not res["changed"] and not os.path.exists(res["path"])
    assert [c["service"] for c in res["containers"]] == ["svc"]
    res = module("tradeops.stack.diagnostics", {"stack": stack, "state_root": str(state_root), "since": "yesterday"})
    assert res["failed"] and "since 'yesterday' is not a duration" in res["msg"]
    res = module(
        "tradeops.stack.diagnostics", {"stack": stack, "state_root": str(state_root), "since": "99999999999999d"}
    )
    assert res["failed"] and "since '99999999999999d' is out of range" in res["msg"]
    assert not state_root.exists()


def test_tar_is_readable_in_memory():
    # guards the helper itself: a bundle with no entries still opens
    buf = io.BytesIO()
    tarfile.open(fileobj=buf, mode="w:gz").close()
    assert tarfile.open(fileobj=io.BytesIO(buf.getvalue())).getnames() == []


# -- the diagnose playbook against a small real stack ------------------------------------------
# Two busybox services deployed by the deploy playbook (its own stack name, state root and
# network), one of which prints its secret files to its log as a careless service would; a
# broker emulator and a Prometheus with one always-firing rule next to it (test containers,
# not stack members). The playbook runs at -vvv; every file of the fetched bundle and the
# output are searched for the canaries.

PLAYBOOKS = ROOT / "playbooks"
PROBE_ALERT = "DiagnoseProbeAlert"


def docker_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def have_images(*tags: str) -> bool:
    return all(docker_cli("image", "inspect", tag).returncode == 0 for tag in tags)


class SmallStack:
    def __init__(self) -> None:
        self.name = "t-dg" + secrets.token_hex(3)
        self.root = Path("/tmp") / self.name
        self.state = self.root / "state"
        self.broker_port, self.prom_port = free_port(), free_port()
        token = lambda label: f"canary{label}{secrets.token_hex(8)}"  # noqa: E731
        self.secrets = {
            "postgres_password": token("pg"),
            "capital_com_api_key": token("key"),
            "capital_com_identifier": token("id"),
            "capital_com_password": token("pw"),
        }
        self.helpers = [f"{self.name}-broker", f"{self.name}-prom"]
        leak = (
            "echo login with $(cat /run/secrets/postgres_password); "
            "echo X-SECURITY-TOKEN: $(cat /run/secrets/capital_com_password); exec sleep 3600"
        )
        common = {
            "image": "tradeops/busybox:1.35",
            "user": "10001:10001",
            "resources": {"memory": "32m", "cpus": 0.25, "pids": 32},
            "healthcheck": {"test": ["CMD", "true"], "interval": "1s", "timeout": "3s", "retries": 3},
            "health": {"timeout": 60},
        }
        self.vars = {
            "tradeops_stack_name": self.name,
            "tradeops_state_root": str(self.state),
            "tradeops_monitoring_enabled": False,
            "tradeops_broker_emulator": False,
            "tradeops_prometheus_url": "",
            "tradeops_feature_flags": {},
            "secrets_values": self.secrets,
            "tradeops_stack_services": [
                {
                    **common,
                    "name": "leaky",
                    "strategy": "exclusive",
                    "secrets": ["postgres_password", "capital_com_password"],
                    "command": ["sh", "-c", leak],
                },
                {**common, "name": "worker", "depends_on": ["leaky"], "command": ["sleep", "3600"]},
            ],
        }

    def cleanup(self) -> None:
        ids = docker_cli("ps", "-aq", "--filter", f"label=tradeops.stack={self.name}").stdout.split()
        ids += docker_cli("ps", "-aq", "--filter", f"name=^{self.name}-").stdout.split()
        if ids:
            docker_cli("rm", "-f", *sorted(set(ids)))
        if docker_cli("network", "ls", "-q", "--filter", f"name=^{self.name}$").stdout.strip():
            docker_cli("network", "rm", self.name)
        shutil.rmtree(self.root, ignore_errors=True)

    def start_helpers(self) -> None:
        """The broker emulator (accepting only the canary credentials) and a Prometheus with a firing rule."""
        docker_cli(
            "run", "-d", "--name", f"{self.name}-broker", "-p", f"127.0.0.1:{self.broker_port}:8080",
            "-e", f"CAPITAL_EMULATOR_API_KEY={self.secrets['capital_com_api_key']}",
            "-e", f"CAPITAL_EMULATOR_IDENTIFIER={self.secrets['capital_com_identifier']}",
            "-e", f"CAPITAL_EMULATOR_PASSWORD={self.secrets['capital_com_password']}",
            "tradeops/capital-emulator:1.0",
        )  # fmt: skip
        prom = self.root / "prometheus"
        prom.mkdir(parents=True)
        (prom / "prometheus.yml").write_text(
            "global: {evaluation_interval: 1s, scrape_interval: 5s}\nrule_files: [/etc/prometheus/rules.yml]\n"
        )
        (prom / "rules.yml").write_text(
            json.dumps(
                {
                    "groups": [
                        {
                            "name": "probe",
                            "rules": [
                                {
                                    "alert": PROBE_ALERT,
                                    "expr": "vector(1)",
                                    "labels": {"severity": "warning"},
                                    "annotations": {"summary": "always firing (diagnose test)"},
                                }
                            ],
                        }
                    ]
                }
            )
        )
        for path in (self.root, prom, prom / "prometheus.yml", prom / "rules.yml"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        docker_cli(
            "run", "-d", "--name", f"{self.name}-prom", "-p", f"127.0.0.1:{self.prom_port}:9090",
            "-v", f"{prom}:/etc/prometheus:ro", "--tmpfs", "/prometheus:uid=10090,gid=10090",
            "tradeops/prometheus:2.42-bookworm",
        )  # fmt: skip
        url = f"http://127.0.0.1:{self.prom_port}/api/v1/alerts"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url, timeout=3) as resp:
                    if PROBE_ALERT in resp.read().decode():
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, docker_cli("logs", f"{self.name}-prom").stderr[-2000:]
            time.sleep(1)

    def play(self, name: str, verbosity: int = 0, **extra):
        return run_playbook(PLAYBOOKS / f"{name}.yml", extra_vars={**self.vars, **extra}, verbosity=verbosity)


@pytest.fixture(scope="module")
def small_stack():
    if not have_images("tradeops/busybox:1.35", "tradeops/capital-emulator:1.0", "tradeops/prometheus:2.42-bookworm"):
        pytest.skip("run `make images` first")
    stack = SmallStack()
    stack.cleanup()
    stack.root.mkdir(parents=True)
    try:
        stack.start_helpers()
        run = stack.play("deploy", tradeops_deploy_reason="diagnose test")
        assert run.rc == 0, run.output[-4000:]
        stack.deploy_output = run.output
        yield stack
    finally:
        stack.cleanup()


def extract(archive: Path, into: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return {str(p.relative_to(into)): p.read_bytes() for p in into.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_diagnose_playbook_fetches_a_redacted_bundle(small_stack, tmp_path):
    stack = small_stack
    canaries = list(stack.secrets.values())
    leaky = f"{stack.name}-leaky"
    # positive control: the service really put the secrets in its log and the secrets role wrote them
    raw_log = docker_cli("logs", leaky)
    assert stack.secrets["postgres_password"] in raw_log.stdout + raw_log.stderr
    assert (stack.state / stack.name / "secrets" / "leaky" / "postgres_password").is_file()
    containers = docker_cli("ps", "-a", "--filter", f"label=tradeops.stack={stack.name}", "--format", "{{.Names}}")
    names = sorted(containers.stdout.split())
    assert len(names) == 2, names

    dest = tmp_path / "incident"
    t0 = time.monotonic()
    run = stack.play(
        "diagnose",
        verbosity=3,
        tradeops_diagnose_since="1h",
        tradeops_diagnose_dest=str(dest),
        tradeops_prometheus_url=f"http://127.0.0.1:{stack.prom_port}",
        tradeops_broker_health_url=f"http://127.0.0.1:{stack.broker_port}/api/v1",
    )
    elapsed = time.monotonic() - t0
    assert run.rc == 0, run.output[-5000:]
    assert "DIAGNOSE OK" in run.output
    (archive,) = dest.glob(f"{stack.name}-*/localhost.tar.gz")
    assert f"bundle: {archive}" in run.output
    # the host copy is removed once fetched
    assert not list((stack.state / stack.name / "reports").glob("diagnostics-*.tar.gz"))

    files = extract(archive, tmp_path / "x")
    for name in names:
        assert f"containers/{name}/logs.txt" in files and f"containers/{name}/inspect.json" in files, sorted(files)
        assert json.loads(files[f"containers/{name}/inspect.json"])["Name"] == f"/{name}"
    assert b"<redacted:postgres_password>" in files[f"containers/{leaky}/logs.txt"]
    audit = files["state/audit.log"].decode()
    assert "diagnose test" in audit and "rollout" in audit
    for name in ("host/facts.json", "host/docker_info.json", "containers.json", "MANIFEST.json"):
        assert name in files, sorted(files)
    alerts = json.loads(files["extra/alerts.json"])
    assert PROBE_ALERT in [a["labels"]["alertname"] for a in alerts["firing"]], alerts
    broker = json.loads(files["extra/broker_health.json"])
    assert broker["healthy"] is True, broker  # the emulator accepted the canary credentials: they were used

    counts = {f"bundle {name}": sum(data.count(c.encode()) for c in canaries) for name, data in files.items()}
    counts["diagnose output -vvv"] = sum(run.output.count(c) for c in canaries)
    counts["deploy output"] = sum(stack.deploy_output.count(c) for c in canaries)
    leaks = {k: v for k, v in counts.items() if v}
    print(
        f"\ndiagnose: {elapsed:.1f} s, {len(files)} files in the bundle, {len(canaries)} canaries,",
        f"occurrences: {sum(counts.values())} (bundle {sum(v for k, v in counts.items() if k.startswith('bundle'))},",
        f"-vvv output {counts['diagnose output -vvv']}, deploy output {counts['deploy output']})",
    )
    assert not leaks, leaks


def test_diagnose_rejects_a_bad_since_naming_it(small_stack, tmp_path):
    run = small_stack.play("diagnose", tradeops_diagnose_since="yesterday", tradeops_diagnose_dest=str(tmp_path / "d"))
    assert run.rc != 0
    assert "tradeops_diagnose_since (stack_diagnose_since) 'yesterday' is not a duration like 30m" in run.output
    assert not (tmp_path / "d").exists()
    run = small_stack.play(
        "diagnose", tradeops_diagnose_since="99999999999999d", tradeops_diagnose_dest=str(tmp_path / "d")
    )
    assert run.rc != 0 and "'99999999999999d' is out of range" in run.output
    assert not (tmp_path / "d").exists()
