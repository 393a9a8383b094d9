#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: kubernetes_manifests
short_description: Write the stack description as Kubernetes manifests for Argo CD or kubernetes.core.k8s
version_added: 0.3.0
description:
  - Renders the same service list the Docker target deploys (C(tradeops_stack_services)) into one YAML file per
    service in O(dest), plus C(_policies.yaml) (a default-deny ingress policy for the stack's pods) and a
    C(kustomization.yaml) listing them, so that an Argo CD Application, C(kubectl apply -k) or
    M(kubernetes.core.k8s) applies the directory as it is.
  - C(exclusive) becomes a Deployment with C(Recreate) and one replica, C(start_first) a Deployment with
    C(RollingUpdate) (surge 1, unavailable 0), C(blue_green) an Argo Rollouts C(Rollout) with C(blueGreen), an
    active and a preview Service and, from the service's C(analysis), an C(AnalysisTemplate) run before
    promotion; a C(stateful) service a StatefulSet whose named volumes are volume claim templates.
  - Every container has requests equal to its limits, startup, readiness and liveness probes from C(health.http)
    or C(healthcheck), C(runAsNonRoot), C(readOnlyRootFilesystem), C(allowPrivilegeEscalation=false), every
    capability dropped and a RuntimeDefault seccomp profile; images must be pinned (a version tag or a digest,
    never C(latest)).
  - Secrets are mounted as files at C(/run/secrets/<name>) from Secrets named C(<stack>-<name>) (key C(value)),
    which the cluster provides (External Secrets, Sealed Secrets, a vault operator); no Secret object and no
    secret value is ever written. Feature flags become a ConfigMap holding exactly the service's flags.
  - Each service gets a Service named after it (C(market_data) becomes C(market-data); C(postgres) and C(redis)
    keep the host names the services use on Docker), a NetworkPolicy admitting only the services that depend on
    it and Prometheus (pods C(app.kubernetes.io/name=prometheus) in O(monitoring_namespace)) on the metrics port,
    a PodDisruptionBudget, and the C(prometheus.io/*) scrape annotations when it has C(metrics).
  - Files it wrote before and no longer renders (a service removed or disabled) are removed; any other file in
    O(dest) is left alone. Bad input fails before any file changes, naming the service and the field.
attributes:
  check_mode:
    support: full
    description: Renders and reports the files it would write or remove; writes nothing.
  diff_mode:
    support: full
    description: The before and after of each file.
  idempotent:
    support: full
    description: The same description writes the same bytes; a second run changes nothing.
author:
  - tradeops.stack contributors (@tradeops-stack)
options:
  stack:
    description: Stack name; the C(app.kubernetes.io/part-of) label and the prefix of Secret names.
    type: str
    required: true
  services:
    description: The stack description, C(tradeops_stack_services) (see the P(tradeops.stack.stack#role) role).
    type: list
    elements: dict
    required: true
  dest:
    description: Directory the manifests are written to (created); for example a path in the Argo CD repository.
    type: path
    required: true
  namespace:
    description: Namespace of every object; default the stack name with C(_) as C(-).
    type: str
  feature_flags:
    description: The stack's feature flags and values (C(tradeops_feature_flags)), for the flags ConfigMaps.
    type: dict
    default: {}
  volume_size:
    description: Storage requested by each volume claim.
    type: str
    default: 10Gi
  monitoring_namespace:
    description: Namespace of the Prometheus allowed to scrape the services.
    type: str
    default: monitoring
seealso:
  - module: kubernetes.core.k8s
  - name: Argo Rollouts BlueGreen
    description: The strategy blue_green services map to.
    link: https://argo-rollouts.readthedocs.io/en/stable/features/bluegreen/
notes:
  - The C(pids) limit has no per-pod equivalent (the kubelet sets it per node) and is not rendered.
  - C(published_ports) become Service ports; exposing them outside the cluster (Ingress, LoadBalancer) is the
    cluster's choice and is not rendered.
"""

EXAMPLES = r"""
- name: Manifests of the paper stack for the Argo CD repository
  tradeops.stack.kubernetes_manifests:
    stack: "{{ tradeops_stack_name }}"
    services: "{{ tradeops_stack_services }}"
    feature_flags: "{{ tradeops_feature_flags }}"
    dest: "{{ argocd_repo }}/stacks/{{ tradeops_stack_name }}"
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
files:
  description: The manifest files of the stack, relative to O(dest).
  returned: always
  type: list
  elements: str
  sample: [_policies.yaml, kustomization.yaml, market-data.yaml, postgres.yaml]
written:
  description: The files written (or, in check mode, that would be), because they are new or differ.
  returned: always
  type: list
  elements: str
removed:
  description: Files this module wrote before and no longer renders.
  returned: always
  type: list
  elements: str
objects:
  description: How many objects of each kind were rendered.
  returned: always
  type: dict
  sample: {Deployment: 5, Rollout: 1, StatefulSet: 1, Service: 8}
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.tradeops.stack.plugins.module_utils._kubernetes import (
    HEADER,
    ManifestError,
    dump_files,
    render,
)
from ansible_collections.tradeops.stack.plugins.module_utils._state import atomic_write_text


def read_text(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError):
        return ""


def main():
    module = AnsibleModule(
        argument_spec=dict(
            stack=dict(type="str", required=True),
            services=dict(type="list", elements="dict", required=True),
            dest=dict(type="path", required=True),
            namespace=dict(type="str"),
            feature_flags=dict(type="dict", default={}),
            volume_size=dict(type="str", default="10Gi"),
            monitoring_namespace=dict(type="str", default="monitoring"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        objects = render(
            p["services"], p["stack"], p["namespace"], p["feature_flags"], p["volume_size"], p["monitoring_namespace"]
        )
    except (ManifestError, ValueError) as exc:
        module.fail_json(msg="services: %s" % exc)
    wanted = dump_files(objects)
    dest = p["dest"]
    names = sorted(os.listdir(dest)) if os.path.isdir(dest) else []
    current = {f: read_text(os.path.join(dest, f)) for f in names if f.endswith(".yaml")}  # each file read once
    written, diffs = [], []
    for name, text in sorted(wanted.items()):
        path = os.path.join(dest, name)
        before = current.get(name, "")
        if before != text:
            written.append(name)
            diffs.append({"before_header": path, "after_header": path, "before": before, "after": text})
    removed = [f for f, text in sorted(current.items()) if f not in wanted and text.startswith(HEADER)]
    for name in removed:
        path = os.path.join(dest, name)
        diffs.append({"before_header": path, "after_header": "(removed)", "before": current[name], "after": ""})
    if not module.check_mode:
        try:
            os.makedirs(dest, mode=0o755, exist_ok=True)
            for name in written:
                atomic_write_text(os.path.join(dest, name), wanted[name], mode=0o644)
            for name in removed:
                os.unlink(os.path.join(dest, name))
        except OSError as exc:
            module.fail_json(msg="cannot write the manifests in %s: %s" % (dest, exc.strerror or exc))
    kinds = {}
    for docs in objects.values():
        for obj in docs:
            kinds[obj["kind"]] = kinds.get(obj["kind"], 0) + 1
    result = dict(changed=bool(written or removed), files=sorted(wanted), written=written, removed=removed)
    result["objects"] = kinds
    if module._diff:
        result["diff"] = diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
