"""tradeops.stack.diagnostics against a real container that leaks canaries everywhere it can."""

import io
import os
import tarfile
import uuid

import docker
import pytest
from ansible_collections.tradeops.stack.plugins.module_utils._state import LABEL_SERVICE, LABEL_STACK

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
    assert res["failed"] and "since='yesterday' is not a duration" in res["msg"]
    assert not state_root.exists()


def test_tar_is_readable_in_memory():
    # guards the helper itself: a bundle with no entries still opens
    buf = io.BytesIO()
    tarfile.open(fileobj=buf, mode="w:gz").close()
    assert tarfile.open(fileobj=io.BytesIO(buf.getvalue())).getnames() == []
