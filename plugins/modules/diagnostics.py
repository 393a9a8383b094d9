#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: diagnostics
short_description: Gather an incident-review bundle of one stack on a Docker host, with secrets redacted
version_added: 0.1.0
description:
  - Collects, into one C(.tar.gz) on the managed host, what an incident review needs from it
    for one stack; the C(tradeops.stack.diagnose) playbook fetches the archive to the controller.
  - "Per container of the stack (label C(tradeops.stack)): logs since O(since), C(docker inspect),
    health status and its last probe outputs, restart count, exit code and OOM flag."
  - "From the stack's state directory: the audit log, the deploy lock, the active paper block,
    release histories and the Prometheus textfiles (broker health, paper block)."
  - "From the host: disk and inode usage of the state root and Docker's root, memory, load,
    uptime and C(docker info)."
  - Everything written to the bundle is redacted first, data before it is serialised. Every secret value found in
    the files of O(redact_dirs) and every value of O(redact_values) is replaced by C(<redacted:NAME>), in its raw,
    JSON-escaped, URL-encoded and base64 forms.
  - "Masked as well: the whole value of C(Authorization) (C(Bearer), C(Basic)), C(Cookie) and broker session headers
    (C(CST), C(X-SECURITY-TOKEN), C(X-CAP-API-KEY)); the user info of every URL (C(https://***@host/));
    secret-named JSON and C(key=value) fields (C(password), C(apiKey), C(securityToken), C(identifier)...);
    environment variables whose name looks secret; and in C(docker inspect) the container's C(Args), C(Cmd),
    C(Entrypoint) and healthcheck command."
  - No message or result of the module carries URL user info.
extends_documentation_fragment:
  - tradeops.stack.state
  - tradeops.stack.docker
attributes:
  check_mode:
    support: full
    description: In check mode nothing is collected or written; the plan (containers and files) is returned.
  diff_mode:
    support: none
    description: Nothing to diff; the bundle is a new file.
  idempotent:
    support: none
    description: Every run writes a new bundle (it is a snapshot of the moment).
author:
  - tradeops.stack contributors (@tradeops-stack)
options:
  since:
    description:
      - How far back to take container logs, as a duration (C(30m), C(6h), C(2d)) or an ISO 8601 UTC time.
    type: str
    default: 24h
  dest:
    description:
      - Path of the archive on the managed host. It is written completely or not at all; a failed write (for
        example a full disk) leaves no partial archive, and an existing file at O(dest) is kept until the new one
        is complete.
      - Defaults to C(<state_root>/<stack>/reports/diagnostics-<UTC time>.tar.gz).
    type: path
  redact_dirs:
    description:
      - Directories whose regular files hold secret values (one secret per file, as the C(tradeops.stack.secrets)
        role writes them). Each file's content is redacted wherever it appears, named after the file.
    type: list
    elements: path
    default: []
  redact_values:
    description:
      - Further secret values to redact (for example a webhook URL). Values shorter than 4 characters are ignored.
    type: list
    elements: str
    default: []
  extra:
    description:
      - Further documents to include, as a mapping of file name to content (a string, or data stored as JSON),
        for example firing alerts or a broker health result gathered by the playbook. Redacted like the rest.
    type: dict
    default: {}
  max_log_bytes:
    description:
      - Keep at most this many bytes of the end of each container's log.
    type: int
    default: 5000000
requirements:
  - docker (Python SDK) >= 5.0.3
"""

EXAMPLES = r"""
- name: Gather the last six hours of the cdb stack
  tradeops.stack.diagnostics:
    stack: cdb
    since: 6h
    redact_dirs: [/etc/tradeops/cdb/secrets]
  register: bundle

- name: Bring it to the controller
  ansible.builtin.fetch:
    src: "{{ bundle.path }}"
    dest: "diagnostics/{{ inventory_hostname }}/"
    flat: true
"""

RETURN = r"""
path:
  description: Path of the archive on the managed host (the planned path in check mode).
  returned: always
  type: str
  sample: /var/lib/tradeops/cdb/reports/diagnostics-20261123T021500Z.tar.gz
size_bytes:
  description: Size of the archive.
  returned: success and not check mode
  type: int
  sample: 48211
files:
  description: Files in the archive.
  returned: always
  type: list
  elements: str
  sample: [containers/cdb-signal_engine/logs.txt, containers/cdb-signal_engine/inspect.json, state/audit.log]
containers:
  description: Summary of each container of the stack (health, restarts, state).
  returned: always
  type: list
  elements: dict
  sample: [{name: cdb-signal_engine, service: signal_engine, health: healthy, restart_count: 0, running: true}]
redactions:
  description: How many secret occurrences were replaced, in total. The values themselves are never returned.
  returned: success and not check mode
  type: int
  sample: 3
"""

import io
import json
import os
import shutil
import tarfile
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tradeops.stack.plugins.module_utils import _rules
from ansible_collections.tradeops.stack.plugins.module_utils._redact import Redactor, guard, read_secret_files
from ansible_collections.tradeops.stack.plugins.module_utils._docker import (
    DOCKER_ARG_SPEC,
    DockerError,
    get_client,
    stack_manifest,
)
from ansible_collections.tradeops.stack.plugins.module_utils._state import (
    STATE_ARG_SPEC,
    StackState,
    StateError,
    atomic_write_bytes,
)

STATE_FILES = ("audit.log", "lock.json", "blocks/active.json")


def parse_since(value, now):
    """Epoch seconds for a duration back from ``now`` or an ISO 8601 UTC time (the collection's rule)."""
    try:
        return _rules.parse_since(value, now)
    except _rules.RuleError as exc:
        raise ValueError(str(exc))


def mask_inspect(redact, attrs):
    """``docker inspect`` with secret-named environment values, the command, its arguments and the
    healthcheck command masked (a command line may carry a password or a credential URL)."""
    config = attrs.get("Config") or {}
    env = config.get("Env") or []
    masked = []
    for item in env:
        key, _sep, value = item.partition("=")
        if _rules.may_hold_secret(key) and value:
            masked.append("%s=<redacted:env>" % key)
            redact.count += 1
        else:
            masked.append(item)
    if env:
        config["Env"] = masked
    for holder, key in ((attrs, "Args"), (config, "Cmd"), (config, "Entrypoint")):
        if holder.get(key):
            holder[key] = "<redacted:command>"
            redact.count += 1
    if (config.get("Healthcheck") or {}).get("Test"):
        config["Healthcheck"]["Test"] = "<redacted:command>"
        redact.count += 1
    return attrs


class Bundle:
    def __init__(self, redact):
        self.redact = redact
        self.buffer = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buffer, mode="w:gz")  # noqa: SIM115 - closed by close()
        self.names = []

    def add(self, name, content):
        if not isinstance(content, str):  # redacted before serialising: no escaped form can slip through
            plain = json.loads(json.dumps(content, default=str))
            content = json.dumps(self.redact.scrub(plain), indent=2, sort_keys=True)
        data = self.redact.text(content).encode("utf-8")
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = int(time.time())
        info.mode = 0o600
        self.tar.addfile(info, io.BytesIO(data))
        self.names.append(name)

    def close(self):
        self.tar.close()
        return self.buffer.getvalue()


def host_facts(state_root):
    facts = {"uptime_seconds": None, "loadavg": os.getloadavg(), "disk": {}}
    with open("/proc/uptime") as handle:
        facts["uptime_seconds"] = float(handle.read().split()[0])
    with open("/proc/meminfo") as handle:
        facts["meminfo_kib"] = {
            line.split(":")[0]: int(line.split()[1])
            for line in handle
            if line.split(":")[0] in ("MemTotal", "MemAvailable", "SwapTotal", "SwapFree")
        }
    for path in (state_root, "/var/lib/docker", "/"):
        if os.path.isdir(path):
            st = os.statvfs(path)
            usage = shutil.disk_usage(path)
            facts["disk"][path] = {
                "total_bytes": usage.total,
                "free_bytes": usage.free,
                "free_percent": round(100.0 * usage.free / usage.total, 2) if usage.total else None,
                "inodes_free_percent": round(100.0 * st.f_favail / st.f_files, 2) if st.f_files else None,
            }
    return facts


def gather(module, client, state, since_ts):
    params = module.params
    redact = Redactor(read_secret_files(params["redact_dirs"]) + [("value", v) for v in params["redact_values"]])
    bundle = Bundle(redact)
    containers = stack_manifest(client, state.stack)
    bundle.add("containers.json", containers)
    for summary in containers:
        container = client.containers.get(summary["id"])
        prefix = "containers/%s/" % summary["name"]
        bundle.add(prefix + "inspect.json", mask_inspect(redact, container.attrs))
        logs = container.logs(since=int(since_ts), timestamps=True)[-params["max_log_bytes"] :]
        bundle.add(prefix + "logs.txt", logs.decode("utf-8", "replace"))
    for name in STATE_FILES:
        path = state.sub(name)
        if os.path.isfile(path):
            with open(path) as handle:
                bundle.add("state/" + name, handle.read())
    for sub in ("metrics", "releases"):
        directory = state.sub(sub)
        if os.path.isdir(directory):
            for name in sorted(os.listdir(directory)):
                path = os.path.join(directory, name)
                if os.path.isfile(path) and not name.startswith("."):
                    with open(path) as handle:
                        bundle.add("state/%s/%s" % (sub, name), handle.read())
    bundle.add("host/facts.json", host_facts(params["state_root"]))
    bundle.add("host/docker_info.json", client.info())
    for name, content in sorted(params["extra"].items()):
        bundle.add("extra/" + os.path.basename(name), content)
    bundle.add(
        "MANIFEST.json",
        {"stack": state.stack, "since": since_ts, "created": time.time(), "files": list(bundle.names)},
    )
    return bundle.close(), bundle.names, containers, redact.count


def main():
    argument_spec = dict(
        since=dict(type="str", default="24h"),
        dest=dict(type="path"),
        redact_dirs=dict(type="list", elements="path", default=[]),
        redact_values=dict(type="list", elements="str", default=[], no_log=True),
        extra=dict(type="dict", default={}),
        max_log_bytes=dict(type="int", default=5000000),
    )
    argument_spec.update(STATE_ARG_SPEC)
    argument_spec.update(DOCKER_ARG_SPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    guard(module)  # no URL user info nor credential in a message or result
    params = module.params
    now = time.time()
    try:
        since_ts = parse_since(params["since"], now)
        state = StackState(params["stack"], params["state_root"], params["operator"])
        client = get_client(params)
    except (ValueError, StateError, DockerError) as exc:
        module.fail_json(msg=str(exc))
    if params["max_log_bytes"] <= 0:
        module.fail_json(msg="max_log_bytes must be a positive number of bytes, got %d" % params["max_log_bytes"])
    dest = params["dest"] or state.sub(
        "reports", "diagnostics-%s.tar.gz" % time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    )
    if module.check_mode:
        containers = stack_manifest(client, state.stack)
        module.exit_json(changed=False, path=dest, containers=containers, files=[c["name"] for c in containers])
    try:
        data, names, containers, redactions = gather(module, client, state, since_ts)
        directory = os.path.dirname(dest)
        if not os.path.isdir(directory):
            os.makedirs(directory, mode=0o750)
        # complete or absent: a failed write (full disk) removes its partial archive, never a half bundle
        atomic_write_bytes(dest, data, mode=0o600)
    except (OSError, StateError) as exc:
        module.fail_json(msg="cannot write the diagnostics bundle %s: %s" % (dest, exc))
    module.exit_json(
        changed=True, path=dest, size_bytes=len(data), files=names, containers=containers, redactions=redactions
    )


if __name__ == "__main__":
    main()
