"""Canary leak test for the secrets and monitoring roles (RELIABILITY.md, secret-leak paths).

Each run gets unique canary values: vaulted values loaded by include_vars, environment
variables (what an AWX credential injects), the Alertmanager webhook URL. The roles run at
default verbosity, -vvv, --diff and --check (each with new canaries, so every run changes the
secret files and the diff/check paths really see a change). Then the canaries are counted in:
the playbook output, `docker inspect` (env and the whole document), `docker logs` (Alertmanager
is made to fail a delivery to the canary URL), `ps -eo args` sampled during the runs, and every
file under the scanned roots except the secret files themselves. Every count must be 0.
Positive controls prove the counting works: the secret files hold the canaries, and a service
container reads them at /run/secrets/<name>.

The redaction paths (issue 18): a "leaky" container of the stack writes the canaries to its log in
every shape (Authorization Bearer and Basic headers, URL credentials, JSON fields password/apiKey/
securityToken, the JSON-escaped, URL-encoded and base64 forms of a known secret, the webhook URL) and
carries them in its Args/Cmd and healthcheck; the diagnose entry point bundles it (and a broker
URL with user info, which capital_com_health refuses); a rollout of a service that prints its
secret files and fails returns its log tail; capital_com_health is called with that URL unguarded.
The leaky container is a source, not a sink: its own logs and inspect must hold the canaries (a
positive control), the diagnostics bundles and the playbook output must not.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shlex
import subprocess
import sys
import tarfile
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest
from conftest import ROOT, run_playbook

STACK = "t-sec"
VAULT = str(ROOT / ".venv" / "bin" / "ansible-vault")
AM_PORT = 19293
CONTAINERS = ["t-sec-alertmanager", "t-sec-svc"]
LEAKY = "t-sec-leaky"
MODES = {"default": {}, "-vvv": {"verbosity": 3}, "--diff": {"diff": True}, "--check": {"check": True, "diff": True}}


def have_image(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


pytestmark = pytest.mark.skipif(
    not (have_image("tradeops/alertmanager:0.25-bookworm") and have_image("tradeops/busybox:1.35")),
    reason="run `make images` first",
)


def docker(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


def cleanup(work: Path | None = None) -> None:
    for name in [*CONTAINERS, LEAKY, "t-sec-failing"]:
        docker("rm", "-f", name)
    docker("volume", "rm", "t-sec-alertmanager-data")
    docker("network", "rm", STACK)


class PsSampler(threading.Thread):
    """Samples `ps -eo args` while the playbooks run (leak path 9)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.lines: set[str] = set()
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            # ww: without a terminal ps cuts each line at 80 columns, which hides both a leak past
            # column 80 and the markers that tell the leaky container's own command apart
            out = subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True, text=True).stdout
            self.lines.update(out.splitlines())
            time.sleep(0.1)


def playbook(work: Path) -> Path:
    play = [
        {
            "name": "secrets and monitoring with canary values",
            "hosts": "localhost",
            "gather_facts": False,
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                "tradeops_stack_name": STACK,
                "tradeops_trading_mode": "paper",
                "tradeops_stack_services": [
                    {
                        "name": "svc",
                        "user": "10001:10001",
                        "secrets": ["capital_com_api_key", "capital_com_password", "postgres_password", "svc_token"],
                    }
                ],
                "secrets_root": str(work / "secrets"),
                "secrets_definitions": {
                    "capital_com_api_key": {"env": "T_SEC_CAPITAL_COM_API_KEY", "kind": "broker_key"},
                    "capital_com_password": {"env": "T_SEC_CAPITAL_COM_PASSWORD"},
                    "postgres_password": {},
                    "svc_token": {},
                },
                "monitoring_config_dir": str(work / "monitoring"),
                "monitoring_state_root": str(work / "state"),
                "monitoring_prometheus_enabled": False,
                "monitoring_node_exporter_enabled": False,
                "monitoring_cadvisor_enabled": False,
                "monitoring_grafana_container": False,
                "monitoring_alertmanager_port": AM_PORT,
                "stack_state_root": str(work / "state"),
                "stack_secrets_root": str(work / "secrets"),
                "stack_diagnose_dest": str(work / "bundles"),
                "stack_diagnose_since": "1h",
                "monitoring_alertmanager_group_wait": "1s",
                "monitoring_alertmanager_group_interval": "1s",
            },
            "vars_files": [str(ROOT / "roles" / "monitoring" / "vars" / "local_images.yml")],
            "pre_tasks": [
                {
                    "name": "Load the vaulted values",
                    "ansible.builtin.include_vars": {"file": str(work / "vault.yml")},
                    "no_log": True,
                }
            ],
            "roles": [{"role": "tradeops.stack.secrets"}, {"role": "tradeops.stack.monitoring"}],
            "post_tasks": [
                {
                    "name": "Start a service with the secret mounts the role returned (what rollout does)",
                    "community.docker.docker_container": {
                        "name": "t-sec-svc",
                        "image": "tradeops/busybox:1.35",
                        "pull": "never",
                        "command": ["sleep", "3600"],
                        "user": "10001:10001",
                        "volumes": "{{ secrets_mounts.svc.mounts }}",
                        "read_only": True,
                        "cap_drop": ["ALL"],
                        "memory": "16m",
                        # a changed secret file is reported by name (no hash of a value is published)
                        "recreate": "{{ secrets_changed | length > 0 }}",
                    },
                },
                {"name": "Show the mounts fact", "ansible.builtin.debug": {"var": "secrets_mounts"}},
                {
                    "name": "Start a container that leaks every shape (the source the redaction must catch)",
                    "community.docker.docker_container": {
                        "name": LEAKY,
                        "image": "tradeops/busybox:1.35",
                        "pull": "never",
                        "command": ["sh", "-c", "{{ leak_script }}"],
                        "healthcheck": {"test": ["CMD-SHELL", "{{ leak_health }}"], "interval": "1s"},
                        "labels": {"tradeops.stack": STACK, "tradeops.service": "leaky"},
                        "user": "10001:10001",
                        "read_only": True,
                        "cap_drop": ["ALL"],
                        "memory": "16m",
                    },
                    "no_log": True,
                },
                {
                    "name": "A broker URL with user info is refused, and the refusal masks it",
                    "tradeops.stack.capital_com_health": {"base_url": "{{ tradeops_broker_health_url }}"},
                    "register": "broker",
                    "ignore_errors": True,
                },
                {"name": "Show the broker result", "ansible.builtin.debug": {"var": "broker"}},
                {
                    "name": "Roll out a service that prints its secret files and fails the gate",
                    "tradeops.stack.rollout": {
                        "stack": STACK,
                        "service": "failing",
                        "state_root": str(work / "state"),
                        "image": "tradeops/busybox:1.35",
                        "pull": "never",
                        "user": "10001:10001",
                        "command": ["sh", "-c", FAILING_SCRIPT],
                        "secrets": ["capital_com_password", "postgres_password", "svc_token"],
                        "secrets_dir": "{{ secrets_mounts.svc.dir }}",
                        "resources": {"memory": "32m", "cpus": 0.2, "pids": 32},
                        "health": {"timeout": 20},
                        "stop_timeout": 1,
                    },
                    "register": "failed_rollout",
                    "failed_when": False,
                },
                {"name": "Show the rollout failure", "ansible.builtin.debug": {"var": "failed_rollout"}},
                {
                    "name": "The rollout failed and its failure output had secrets to redact",
                    "ansible.builtin.assert": {
                        "that": [
                            "ansible_check_mode or failed_rollout.rolled_back",
                            "ansible_check_mode or '<redacted:svc_token>' in (failed_rollout.gate.logs | join)",
                        ]
                    },
                },
                {
                    "name": "Gather the diagnostics bundle the way the diagnose playbook does",
                    "ansible.builtin.include_role": {"name": "tradeops.stack.stack", "tasks_from": "diagnose"},
                },
            ],
        }
    ]
    path = work / "canary.yml"
    path.write_text(json.dumps(play))
    return path


# the secret files are read inside the container: the rollout's own arguments carry no canary
FAILING_SCRIPT = (
    'for f in /run/secrets/*; do echo "$f=$(cat $f)"; done;'
    ' echo "Authorization: Basic $(cat /run/secrets/capital_com_password | base64)"; exit 3'
)


def leak_lines(values: dict, unknown: dict, webhook_url: str) -> list[str]:
    """Every shape a secret takes in a log: known values encoded, unknown ones behind a header, a URL or a key."""
    special = values["svc_token"]
    b64 = lambda text: base64.b64encode(text.encode()).decode()  # noqa: E731
    return [
        f"Authorization: Bearer {unknown['bearer']}",
        f"Authorization: Basic {b64('trader@example.com:' + unknown['basic'])}",
        f"GET https://trader:{unknown['urlpw']}@broker.example/api/v1/session",
        f"connect postgresql://app:{unknown['dsnpw']}@postgres:5432/app",
        json.dumps({"password": unknown["jsonpw"], "apiKey": unknown["jsonkey"], "securityToken": unknown["jsontok"]}),
        json.dumps({"body": json.dumps({"token": special})}),  # a known value, JSON-escaped
        f"url-encoded {quote(special, safe='')}",
        f"base64 {b64(special)}",
        f"notify failed for {webhook_url}",
    ]


def encoded(canaries: list[str]) -> list[str]:
    """The canaries and the encoded forms the leaky container writes of them."""
    forms = []
    for c in canaries:
        forms += [c, json.dumps(c)[1:-1], quote(c, safe=""), base64.b64encode(c.encode()).decode()]
    return sorted(set(forms))


def write_vault(work: Path, values: dict) -> None:
    plain = work / "vault.yml"
    plain.write_text(json.dumps(values))
    subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "ansible-vault"),
            "encrypt",
            "--vault-password-file",
            str(work / "vault-pass"),
            str(plain),
        ],
        check=True,
        capture_output=True,
    )
    assert "$ANSIBLE_VAULT" in plain.read_text()


def scan_files(roots: list[Path], allowed: set[Path], canaries: list[str]) -> dict[str, int]:
    hits: dict[str, int] = {}
    needles = [c.encode() for c in canaries]
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d not in {".venv", ".git", "proc"}]
            for name in filenames:
                path = Path(dirpath) / name
                # runc's transient exec spec of the leaky container's healthcheck holds its command: the source
                if path in allowed or not path.is_file() or path.is_symlink() or name.startswith("runc-process"):
                    continue
                try:
                    if path.stat().st_size > 5_000_000:
                        continue
                    data = path.read_bytes()
                except OSError:
                    continue
                count = sum(data.count(n) for n in needles)
                if count:
                    hits[str(path)] = count
    return hits


def count(text: str, canaries: list[str]) -> int:
    return sum(text.count(c) for c in canaries)


def test_canaries_leak_nowhere(tmp_path):
    work = tmp_path
    work.chmod(0o755)
    (work / "vault-pass").write_text(secrets.token_hex(16))
    cleanup()
    sampler = PsSampler()
    sampler.start()
    canaries: list[str] = []
    leak_sources: list[list[str]] = []
    outputs: dict[str, str] = {}
    try:
        for mode, kwargs in MODES.items():
            token = lambda label: f"canary{label}{secrets.token_hex(8)}"  # noqa: E731
            values = {
                "postgres_password": token("pg"),
                "capital_com_password": token("pw"),
                "webhook_token": token("hook"),
                "svc_token": token('sp"e/c+i a&l\\'),  # its JSON-escaped and URL-encoded forms differ
            }
            env_key, env_pw = token("envkey"), token("envpw")
            unknown = {k: token(k) for k in ("bearer", "basic", "urlpw", "dsnpw", "jsonpw", "jsonkey", "jsontok")}
            webhook_url = f"http://t-sec-nohook:8080/hook/{token('hookurl')}"
            broker_url = f"http://trader:{token('brokerpw')}@127.0.0.1:9/api/v1"
            canaries += [*values.values(), env_key, env_pw, *unknown.values()]
            canaries += [webhook_url.rsplit("/", 1)[1], broker_url.split(":")[2].split("@")[0]]
            lines = leak_lines(values, unknown, webhook_url)
            leak_sources.append(lines)
            if mode != "--check":  # check mode starts no container
                started_lines = lines
            write_vault(
                work,
                {
                    "secrets_values": {
                        "postgres_password": values["postgres_password"],
                        # the vault wins over the environment for this one: the env canary must not leak either
                        "capital_com_password": values["capital_com_password"],
                        "svc_token": values["svc_token"],
                    },
                    "monitoring_alertmanager_webhook_token": values["webhook_token"],
                    "monitoring_alertmanager_webhook_url": webhook_url,
                    "tradeops_broker_health_url": broker_url,
                    "leak_script": "".join("echo %s;" % shlex.quote(line) for line in lines) + " sleep 3600",
                    "leak_health": "test -n %s" % shlex.quote(values["capital_com_password"]),
                },
            )
            run = run_playbook(
                playbook(work),
                inventory="localhost,",
                env={
                    "ANSIBLE_VAULT_PASSWORD_FILE": str(work / "vault-pass"),
                    "T_SEC_CAPITAL_COM_API_KEY": env_key,
                    "T_SEC_CAPITAL_COM_PASSWORD": env_pw,
                },
                **kwargs,
            )
            outputs[mode] = run.output
            assert run.rc == 0, f"{mode}: rc={run.rc}\n{run.output[-4000:]}"
            if mode == "default":
                last_written = {**values, "env_key": env_key}

        # Alertmanager delivers an alert to the canary URL (which fails: the host does not exist)
        body = json.dumps([{"labels": {"alertname": "CanaryProbe", "severity": "critical"}}]).encode()
        deadline = time.monotonic() + 60
        while True:
            try:
                req = urllib.request.Request(
                    f"http://127.0.0.1:{AM_PORT}/api/v2/alerts", data=body, headers={"Content-Type": "application/json"}
                )
                urllib.request.urlopen(req, timeout=3)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        # positive control: Alertmanager really attempted (and failed) the delivery with the token
        while "Notify attempt failed" not in docker("logs", "t-sec-alertmanager").stderr:
            assert time.monotonic() < deadline + 60, "Alertmanager never attempted the webhook delivery"
            time.sleep(1)
        with urllib.request.urlopen(f"http://127.0.0.1:{AM_PORT}/api/v2/status", timeout=5) as resp:
            am_status = resp.read().decode()
    finally:
        sampler.stop.set()
        sampler.join()

    # -- positive controls: the canaries are where they belong -------------------------------------
    secret_dir = work / "secrets" / "svc"
    cat = docker("exec", "t-sec-svc", "cat", "/run/secrets/capital_com_api_key")
    assert cat.returncode == 0 and cat.stdout.startswith("canaryenvkey"), cat.stderr
    assert oct(secret_dir.stat().st_mode & 0o777) == "0o700" and secret_dir.stat().st_uid == 10001
    for f in secret_dir.iterdir():
        assert oct(f.stat().st_mode & 0o777) == "0o400" and f.stat().st_uid == 10001, f
    assert (secret_dir / "postgres_password").read_text().startswith("canarypg")
    assert last_written  # the default run wrote its canaries; later runs replaced them
    am_file = work / "monitoring" / "alertmanager" / "alertmanager.yml"
    token_file = work / "monitoring" / "alertmanager" / "webhook_token"
    assert token_file.read_text().startswith("canaryhook") and oct(token_file.stat().st_mode & 0o777) == "0o400"
    assert "credentials_file" in am_file.read_text()

    # -- the sinks ------------------------------------------------------------------------------------
    counts: dict[str, int] = {}
    for mode, text in outputs.items():
        counts[f"playbook output {mode} (paths 1-7, 11)"] = count(text, canaries)
    inspect = json.loads(docker("inspect", *CONTAINERS, check=True).stdout)
    counts["docker inspect .Config.Env (path 8)"] = count(json.dumps([c["Config"]["Env"] for c in inspect]), canaries)
    counts["docker inspect, whole document"] = count(json.dumps(inspect), canaries)
    logs = "".join(docker("logs", name).stdout + docker("logs", name).stderr for name in CONTAINERS)
    # Alertmanager itself prints its receiver's URL (in a failed delivery, in its status): the webhook URL
    # canary is a source there, and the diagnostics bundle below is where it must not reach
    not_webhook = [c for c in canaries if "hookurl" not in c]
    counts["docker logs (path 10)"] = count(logs, not_webhook)
    counts["Alertmanager /api/v2/status"] = count(am_status, not_webhook)
    # the leaky container's own processes (its command, its healthcheck) are the source, not a leak
    ps_lines = [line for line in sampler.lines if "sleep 3600" not in line and "test -n canary" not in line]
    counts["ps -eo args during the runs (path 9)"] = count("\n".join(ps_lines), canaries)
    for line in ps_lines:
        if count(line, canaries):
            print("  ps:", line[:200])
    allowed = set(secret_dir.iterdir()) | {am_file, token_file}
    roots = [work, Path("/tmp"), Path.home() / ".ansible", ROOT / ".cache"]
    file_hits = scan_files(roots, allowed, canaries)
    counts["files outside the secret files"] = sum(file_hits.values())

    # -- the redaction paths: the leaky container is the source, the bundles are the sink ------------
    leaky = json.loads(docker("inspect", LEAKY, check=True).stdout)[0]
    leaky_logs = docker("logs", LEAKY).stdout
    assert all(line in leaky_logs for line in started_lines), "the leaky container did not write its lines"
    assert count(json.dumps(leaky["Args"]) + json.dumps(leaky["Config"]["Healthcheck"]), canaries) > 0
    bundles = sorted((work / "bundles").rglob("*.tar.gz"))
    assert len(bundles) == len([m for m in MODES if m != "--check"]), bundles  # check mode gathers nothing
    needles = encoded(canaries) + [
        line.split()[-1] for lines in leak_sources for line in lines if line.startswith("Authorization: Basic")
    ]
    bundle_text = ""
    for path in bundles:
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                bundle_text += tar.extractfile(member).read().decode("utf-8", "replace")
    # positive controls: the bundle holds the leaky container, redacted
    assert "containers/t-sec-leaky/logs.txt" in bundle_text and "<redacted:header>" in bundle_text
    assert '"Args": "<redacted:command>"' in bundle_text and "https://***@broker.example" in bundle_text
    counts["diagnostics bundles (headers, URLs, JSON fields, encoded forms, webhook, args)"] = count(
        bundle_text, needles
    )

    print(
        f"\ncanaries: {len(canaries)} values over {len(MODES)} runs ({', '.join(MODES)});",
        f"ps samples: {len(sampler.lines)}",
    )
    for path, n in counts.items():
        print(f"  {n:3d}  {path}")
    if file_hits:
        print("  files:", file_hits)
    cleanup()
    assert all(n == 0 for n in counts.values()), counts


def teardown_module(module):
    cleanup()
