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
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, run_playbook

STACK = "t-sec"
VAULT = str(ROOT / ".venv" / "bin" / "ansible-vault")
AM_PORT = 19293
CONTAINERS = ["t-sec-alertmanager", "t-sec-svc"]
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
    for name in CONTAINERS:
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
            out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
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
                        "secrets": ["capital_com_api_key", "capital_com_password", "postgres_password"],
                    }
                ],
                "secrets_root": str(work / "secrets"),
                "secrets_definitions": {
                    "capital_com_api_key": {"env": "T_SEC_CAPITAL_COM_API_KEY", "kind": "broker_key"},
                    "capital_com_password": {"env": "T_SEC_CAPITAL_COM_PASSWORD"},
                    "postgres_password": {},
                },
                "monitoring_config_dir": str(work / "monitoring"),
                "monitoring_state_root": str(work / "state"),
                "monitoring_prometheus_enabled": False,
                "monitoring_node_exporter_enabled": False,
                "monitoring_cadvisor_enabled": False,
                "monitoring_grafana_container": False,
                "monitoring_alertmanager_port": AM_PORT,
                "monitoring_alertmanager_webhook_url": "http://t-sec-nohook:8080/hook",
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
                        "labels": {
                            "tradeops.secrets": "{{ secrets_mounts.svc.fingerprints | to_json | hash('sha256') }}"
                        },
                        "read_only": True,
                        "cap_drop": ["ALL"],
                        "memory": "16m",
                        "recreate": False,
                    },
                },
                {"name": "Show the mounts fact", "ansible.builtin.debug": {"var": "secrets_mounts"}},
            ],
        }
    ]
    path = work / "canary.yml"
    path.write_text(json.dumps(play))
    return path


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
                if path in allowed or not path.is_file() or path.is_symlink():
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
    outputs: dict[str, str] = {}
    try:
        for mode, kwargs in MODES.items():
            token = lambda label: f"canary{label}{secrets.token_hex(8)}"  # noqa: E731
            values = {
                "postgres_password": token("pg"),
                "capital_com_password": token("pw"),
                "webhook_token": token("hook"),
            }
            env_key, env_pw = token("envkey"), token("envpw")
            canaries += [*values.values(), env_key, env_pw]
            write_vault(
                work,
                {
                    "secrets_values": {
                        "postgres_password": values["postgres_password"],
                        # the vault wins over the environment for this one: the env canary must not leak either
                        "capital_com_password": values["capital_com_password"],
                    },
                    "monitoring_alertmanager_webhook_token": values["webhook_token"],
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
    counts["docker logs (path 10)"] = count(logs, canaries)
    counts["Alertmanager /api/v2/status"] = count(am_status, canaries)
    counts["ps -eo args during the runs (path 9)"] = count("\n".join(sampler.lines), canaries)
    allowed = set(secret_dir.iterdir()) | {am_file, token_file}
    roots = [work, Path("/tmp"), Path.home() / ".ansible", ROOT / ".cache"]
    file_hits = scan_files(roots, allowed, canaries)
    counts["files outside the secret files"] = sum(file_hits.values())

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
