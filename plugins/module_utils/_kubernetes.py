# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The stack description as Kubernetes manifests (private, pure).

``render(services, stack, ...)`` turns the same service list the Docker target deploys
(``tradeops_stack_services``) into Kubernetes objects, one group per service, without a second source of
truth. How each part of the description maps:

- ``strategy``: ``exclusive`` is a Deployment with ``Recreate`` (never two pods), ``start_first`` a
  Deployment with ``RollingUpdate`` (surge 1, unavailable 0), ``blue_green`` an Argo Rollouts ``Rollout``
  (``blueGreen`` with an active and a preview Service; ``analysis`` becomes an ``AnalysisTemplate`` run
  before promotion); ``stateful`` a StatefulSet whose named volumes are volume claim templates;
- ``resources``: requests equal to limits (Guaranteed QoS: a trading service is not the one to throttle);
- ``health.http`` or ``healthcheck``: startup, readiness and liveness probes (a service without either is
  refused: every container has probes);
- the hardening profile: ``runAsNonRoot``, ``readOnlyRootFilesystem`` (``read_only``),
  ``allowPrivilegeEscalation: false``, every capability dropped (``cap_add`` given back), RuntimeDefault
  seccomp, ``tmpfs`` as memory ``emptyDir``;
- ``secrets``: files under ``/run/secrets/<name>`` from Secrets ``<stack>-<name>`` (key ``value``), by
  reference only: no Secret object and no value is ever written; ``flags``: a ConfigMap with exactly the
  service's flags at ``/run/config/flags.json``;
- ``ports`` (plus the health, metrics and proxy ports): a Service named after the service, so the host
  names of the Docker target (``postgres``, ``redis``) resolve the same; a NetworkPolicy per service admits
  only the services that depend on it and Prometheus on the metrics port, behind a default deny;
- ``metrics``: the ``prometheus.io/*`` scrape annotations; a PodDisruptionBudget per service.

Every refusal is a ``ManifestError`` naming the service and the field.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import math
import re

from ansible_collections.tradeops.stack.plugins.module_utils import _rules
from ansible_collections.tradeops.stack.plugins.module_utils._docker import parse_port
from ansible_collections.tradeops.stack.plugins.module_utils._networks import dashed
from ansible_collections.tradeops.stack.plugins.module_utils._optional import optional_import

yaml, _YAML_IMPORT_ERROR = optional_import("yaml")

MANAGED_BY = "tradeops.stack"
SECRETS_DIR = "/run/secrets"
FLAGS_DIR = "/run/config"
DEFAULT_TMPFS = ["/tmp"]
DEFAULT_PERIOD = 5
_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)([bkmg]?)$", re.IGNORECASE)
_MEMORY_UNITS = {"": "", "b": "", "k": "Ki", "m": "Mi", "g": "Gi"}


class ManifestError(ValueError):
    """The description cannot become manifests; the message names the service and the field."""


def k8s_name(name):
    """``market_data`` -> ``market-data``, as in container names; lower case too (a Docker volume name may have
    capitals, a DNS-1123 label may not)."""
    return dashed(str(name)).lower()


def _fail(svc, field, message):
    raise ManifestError("service %s: %s %s" % (svc.get("name"), field, message))


# -- pieces of a container ------------------------------------------------------------------------
def pinned_image(svc):
    """The image, refused when it is not pinned (no tag, or ``latest``)."""
    image = str(svc.get("image") or "")
    if not image:
        _fail(svc, "image", "is empty")
    if "@sha256:" in image:
        return image
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    if not tag or tag == "latest":
        _fail(svc, "image", "%r is not pinned: give a version tag or a digest, never latest" % image)
    return image


def memory_quantity(svc, value):
    """Docker's ``512m`` / ``1g`` (binary units) as ``512Mi`` / ``1Gi``."""
    match = _MEMORY.match(str(value).strip())
    if not match:
        _fail(svc, "resources.memory", "%r is not a size such as 512m or 1g" % value)
    number, unit = match.groups()
    if "." in number:
        _fail(svc, "resources.memory", "%r: give a whole number of the unit" % value)
    return number + _MEMORY_UNITS[unit.lower()]


def cpu_quantity(cpus):
    millis = round(float(cpus) * 1000)
    return str(millis // 1000) if millis % 1000 == 0 else "%dm" % millis


def resources(svc):
    limits = svc.get("resources")
    if not limits:
        _fail(svc, "resources", "is required: every container has requests and limits")
    out = {"memory": memory_quantity(svc, limits["memory"]), "cpu": cpu_quantity(limits["cpus"])}
    return {"requests": dict(out), "limits": dict(out)}


def _seconds(svc, field, value, default):
    if value in (None, ""):
        return default
    try:
        return max(1, math.ceil(_rules.parse_duration(value, option=field)))
    except _rules.RuleError as exc:
        _fail(svc, field, str(exc))


def probes(svc):
    """``(startup, readiness, liveness)`` from ``health.http`` or else ``healthcheck``."""
    health = svc.get("health") or {}
    check = svc.get("healthcheck") or {}
    period = _seconds(svc, "healthcheck.interval", check.get("interval"), DEFAULT_PERIOD)
    timeout = _seconds(svc, "healthcheck.timeout", check.get("timeout"), 3)
    retries = int(check.get("retries") or 3)
    if health.get("http"):
        http = health["http"]
        handler = {"httpGet": {"path": http.get("path") or "/", "port": int(http["port"])}}
    elif check.get("test"):
        test = check["test"]
        if isinstance(test, str):
            command = ["sh", "-c", test]
        elif test and test[0] == "CMD-SHELL":
            command = ["sh", "-c", " ".join(test[1:])]
        elif test and test[0] == "CMD":
            command = list(test[1:])
        else:
            _fail(svc, "healthcheck.test", "must be [CMD, ...], [CMD-SHELL, ...] or a shell string")
        handler = {"exec": {"command": [str(c) for c in command]}}
    else:
        _fail(svc, "health", "has neither http nor a healthcheck test: Kubernetes needs probes")
    # the start-up budget: the rollout gate's timeout, else the image's start period plus its retries
    budget = health.get("timeout") or (_seconds(svc, "healthcheck.start_period", check.get("start_period"), 0))
    startup_failures = max(retries, math.ceil(float(budget) / period) + retries) if budget else retries * 4
    base = dict(handler, periodSeconds=period, timeoutSeconds=timeout)
    startup = dict(base, failureThreshold=startup_failures)
    readiness = dict(base, failureThreshold=retries, successThreshold=1)
    liveness = dict(base, failureThreshold=retries)
    return startup, readiness, liveness


def security_context(svc):
    ctx = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": bool(svc.get("read_only", True)),
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    cap_add = [str(c).upper().replace("CAP_", "", 1) for c in svc.get("cap_add") or []]
    if cap_add:
        ctx["capabilities"]["add"] = cap_add
    user = str(svc.get("user") or "")
    if user:
        uid, _sep, gid = user.partition(":")
        if not uid.isdigit() or (gid and not gid.isdigit()):
            _fail(svc, "user", "%r must be numeric uid[:gid] (runAsNonRoot checks the number)" % user)
        if int(uid) == 0:
            _fail(svc, "user", "is root: Kubernetes runs it with runAsNonRoot")
        ctx["runAsUser"] = int(uid)
        if gid:
            ctx["runAsGroup"] = int(gid)
    return ctx


def named_volumes(svc):
    """``[(volume, path, read_only)]`` of the named volumes; a host path is refused (it does not travel)."""
    out = []
    for entry in svc.get("volumes") or []:
        parts = str(entry).split(":")
        if len(parts) < 2 or not parts[0] or not parts[1].startswith("/"):
            _fail(svc, "volumes", "entry %r is not name:/path[:ro]" % entry)
        if parts[0].startswith("/") or parts[0].startswith("."):
            _fail(svc, "volumes", "entry %r is a host path: use a named volume (a claim on Kubernetes)" % entry)
        out.append((k8s_name(parts[0]), parts[1], len(parts) > 2 and parts[2] == "ro"))
    return out


def service_ports(svc):
    """The container ports other pods reach: ``ports``, the health and metrics ports, the proxy's target."""
    ports = [int(p) for p in svc.get("ports") or []]
    for value in (
        ((svc.get("health") or {}).get("http") or {}).get("port"),
        (svc.get("metrics") or {}).get("port") if not (svc.get("metrics") or {}).get("host") else None,
        (svc.get("proxy") or {}).get("port"),
    ):
        if value:
            ports.append(int(value))
    for published in svc.get("published_ports") or []:
        try:
            container_key, _bind = parse_port(published, None)
        except ValueError as exc:
            _fail(svc, "published_ports", str(exc))
        ports.append(int(container_key.split("/", 1)[0]))
    return sorted(set(ports))


# -- the objects of one service -------------------------------------------------------------------
class Renderer(object):
    def __init__(
        self, stack, namespace=None, feature_flags=None, volume_size="10Gi", monitoring_namespace="monitoring"
    ):
        self.stack = str(stack)
        self.namespace = namespace or k8s_name(stack)
        self.flags = dict(feature_flags or {})
        self.volume_size = volume_size
        self.monitoring_namespace = monitoring_namespace

    def meta(self, name, svc=None):
        labels = {"app.kubernetes.io/part-of": k8s_name(self.stack), "app.kubernetes.io/managed-by": MANAGED_BY}
        if svc is not None:
            labels["app.kubernetes.io/name"] = k8s_name(svc["name"])
            labels["tradeops.stack/tier"] = tier(svc)
        return {"name": name, "namespace": self.namespace, "labels": labels}

    def selector(self, svc):
        return {"app.kubernetes.io/part-of": k8s_name(self.stack), "app.kubernetes.io/name": k8s_name(svc["name"])}

    def secret_name(self, name):
        return "%s-%s" % (k8s_name(self.stack), k8s_name(name))

    def pod_template(self, svc):
        startup, readiness, liveness = probes(svc)
        container = {
            "name": k8s_name(svc["name"]),
            "image": pinned_image(svc),
            "imagePullPolicy": "IfNotPresent",
            "resources": resources(svc),
            "securityContext": security_context(svc),
            "startupProbe": startup,
            "readinessProbe": readiness,
            "livenessProbe": liveness,
        }
        if svc.get("entrypoint"):
            container["command"] = [str(c) for c in svc["entrypoint"]]
        if svc.get("command"):
            container["args"] = [str(c) for c in svc["command"]]
        env = svc.get("env") or {}
        if env:
            container["env"] = [{"name": k, "value": str(v)} for k, v in sorted(env.items())]
        ports = service_ports(svc)
        if ports:
            container["ports"] = [{"containerPort": p, "protocol": "TCP"} for p in ports]
        mounts, volumes = [], []
        tmpfs = svc.get("tmpfs") if svc.get("tmpfs") is not None else DEFAULT_TMPFS
        for index, path in enumerate(tmpfs):
            name = "tmpfs-%d" % index
            volumes.append({"name": name, "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}})
            mounts.append({"name": name, "mountPath": str(path).split(":", 1)[0]})
        if svc.get("secrets"):
            sources = [
                {"secret": {"name": self.secret_name(s), "items": [{"key": "value", "path": s, "mode": 0o440}]}}
                for s in svc["secrets"]
            ]
            volumes.append({"name": "secrets", "projected": {"sources": sources, "defaultMode": 0o440}})
            mounts.append({"name": "secrets", "mountPath": SECRETS_DIR, "readOnly": True})
        if svc.get("flags"):
            volumes.append({"name": "flags", "configMap": {"name": self.flags_name(svc)}})
            mounts.append({"name": "flags", "mountPath": FLAGS_DIR, "readOnly": True})
        for volume, path, read_only in named_volumes(svc):
            mounts.append(dict({"name": volume, "mountPath": path}, **({"readOnly": True} if read_only else {})))
            if not svc.get("stateful"):
                volumes.append({"name": volume, "persistentVolumeClaim": {"claimName": volume}})
        if mounts:
            container["volumeMounts"] = mounts
        spec = {
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": int(svc.get("stop_timeout") or 10),
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [container],
        }
        group = container["securityContext"].get("runAsGroup")
        if group is not None:
            spec["securityContext"]["fsGroup"] = group
        if volumes:
            spec["volumes"] = volumes
        annotations = {}
        metrics = svc.get("metrics") or {}
        if metrics.get("port"):
            port = (svc.get("proxy") or {}).get("port") if metrics.get("host") else metrics["port"]
            annotations = {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(port),
                "prometheus.io/path": metrics.get("path") or "/metrics",
            }
        meta = {"labels": self.selector(svc)}
        meta["labels"]["tradeops.stack/tier"] = tier(svc)
        if annotations:
            meta["annotations"] = annotations
        return {"metadata": meta, "spec": spec}

    def flags_name(self, svc):
        return "%s-%s-flags" % (k8s_name(self.stack), k8s_name(svc["name"]))

    def workload(self, svc):
        name = k8s_name(svc["name"])
        template = self.pod_template(svc)
        strategy = svc.get("strategy") or "start_first"
        spec = {"replicas": 1, "selector": {"matchLabels": self.selector(svc)}, "template": template}
        monitor = int((svc.get("health") or {}).get("monitor") or 0)
        if svc.get("stateful"):
            if strategy != "exclusive":
                _fail(svc, "strategy", "must be exclusive for a stateful service")
            spec.update(serviceName=name, podManagementPolicy="OrderedReady")
            spec["updateStrategy"] = {"type": "RollingUpdate"}
            spec["volumeClaimTemplates"] = [
                {
                    "metadata": {"name": volume},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": self.volume_size}},
                    },
                }
                for volume, _path, _ro in named_volumes(svc)
            ]
            return [{"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": self.meta(name, svc), "spec": spec}]
        if monitor:
            spec["minReadySeconds"] = monitor
        if strategy == "blue_green":
            return self.rollout(svc, spec)
        if strategy == "exclusive":
            spec["strategy"] = {"type": "Recreate"}
        else:
            spec["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
        return [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": self.meta(name, svc), "spec": spec}]

    def rollout(self, svc, spec):
        name = k8s_name(svc["name"])
        blue_green = {
            "activeService": name,
            "previewService": name + "-preview",
            "autoPromotionEnabled": True,
            "scaleDownDelaySeconds": int((svc.get("proxy") or {}).get("drain") or 30),
        }
        objects = []
        analysis = svc.get("analysis")
        if analysis:
            template = name + "-analysis"
            blue_green["prePromotionAnalysis"] = {"templates": [{"templateName": template}]}
            objects.append(self.analysis_template(svc, template, analysis))
        spec = dict(spec, strategy={"blueGreen": blue_green})
        rollout = {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Rollout",
            "metadata": self.meta(name, svc),
            "spec": spec,
        }
        return [rollout, *objects]

    def analysis_template(self, svc, name, analysis):
        interval = int(analysis.get("interval") or 5)
        metrics = []
        for check in analysis.get("checks") or []:
            condition = "all(result, {# %s %s})" % (check["condition"], repr(float(check["threshold"])))
            metric = {
                "name": k8s_name(re.sub(r"[^A-Za-z0-9_-]", "-", str(check["name"]))),
                "interval": "%ds" % interval,
                "count": int(analysis.get("min_samples") or 1),
                "failureLimit": int(analysis.get("failure_limit") or 0),
                "successCondition": condition,
                "provider": {"prometheus": {"address": analysis["prometheus_url"], "query": check["query"]}},
            }
            if analysis.get("inconclusive") == "fail":
                metric["inconclusiveLimit"] = 0
            metrics.append(metric)
        if not metrics:
            _fail(svc, "analysis.checks", "is empty")
        return {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "AnalysisTemplate",
            "metadata": self.meta(name, svc),
            "spec": {"metrics": metrics},
        }

    def services(self, svc, dependents):
        name = k8s_name(svc["name"])
        ports = service_ports(svc)
        if not ports:
            if dependents or svc.get("stateful"):
                _fail(
                    svc,
                    "ports",
                    "is empty, and %s: give the ports it serves (its Service)"
                    % (
                        "%s depend on it" % ", ".join(sorted(dependents))
                        if dependents
                        else "a StatefulSet needs a Service"
                    ),
                )
            return []
        port_list = [{"name": "tcp-%d" % p, "port": p, "targetPort": p, "protocol": "TCP"} for p in ports]
        base = {"selector": self.selector(svc), "ports": port_list}
        out = []
        names = [name, name + "-preview"] if svc.get("strategy") == "blue_green" else [name]
        for service_name in names:
            spec = dict(base)
            if svc.get("stateful"):
                spec["clusterIP"] = "None"  # the StatefulSet's governing Service: the pod's own address
            out.append({"apiVersion": "v1", "kind": "Service", "metadata": self.meta(service_name, svc), "spec": spec})
        policy = {
            "podSelector": {"matchLabels": self.selector(svc)},
            "policyTypes": ["Ingress"],
            "ingress": [],
        }
        if dependents:
            policy["ingress"].append(
                {
                    "from": [
                        {
                            "podSelector": {
                                "matchExpressions": [
                                    {
                                        "key": "app.kubernetes.io/name",
                                        "operator": "In",
                                        "values": sorted(k8s_name(d) for d in dependents),
                                    }
                                ],
                                "matchLabels": {"app.kubernetes.io/part-of": k8s_name(self.stack)},
                            }
                        }
                    ],
                    "ports": [{"port": p, "protocol": "TCP"} for p in ports],
                }
            )
        metrics_port = (svc.get("metrics") or {}).get("port")
        if metrics_port and not (svc.get("metrics") or {}).get("host"):
            scrape = {"port": int(metrics_port), "protocol": "TCP"}
        elif (svc.get("metrics") or {}).get("host") and (svc.get("proxy") or {}).get("port"):
            scrape = {"port": int(svc["proxy"]["port"]), "protocol": "TCP"}
        else:
            scrape = None
        if scrape:
            policy["ingress"].append(
                {
                    "from": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": self.monitoring_namespace}
                            },
                            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
                        }
                    ],
                    "ports": [scrape],
                }
            )
        out.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": self.meta("%s-ingress" % name, svc),
                "spec": policy,
            }
        )
        return out

    def service_objects(self, svc, dependents):
        name = k8s_name(svc["name"])
        objects = []
        if svc.get("flags"):
            unknown = [f for f in svc["flags"] if f not in self.flags]
            if unknown:
                _fail(svc, "flags", "names %s, not in the stack's feature flags" % ", ".join(unknown))
            body = json.dumps({f: self.flags[f] for f in svc["flags"]}, sort_keys=True)
            objects.append(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": self.meta(self.flags_name(svc), svc),
                    "data": {"flags.json": body + "\n"},
                }
            )
        if not svc.get("stateful"):
            for volume, _path, _ro in named_volumes(svc):
                objects.append(
                    {
                        "apiVersion": "v1",
                        "kind": "PersistentVolumeClaim",
                        "metadata": self.meta(volume, svc),
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": self.volume_size}},
                        },
                    }
                )
        objects += self.workload(svc)
        objects += self.services(svc, dependents)
        objects.append(
            {
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": self.meta(name, svc),
                # one replica: a budget of one lets a node drain go ahead; it is the rollout, not the
                # budget, that keeps the gap short (a minAvailable of 1 would block every drain)
                "spec": {"maxUnavailable": 1, "selector": {"matchLabels": self.selector(svc)}},
            }
        )
        return objects

    def default_deny(self):
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": self.meta("%s-default-deny" % k8s_name(self.stack)),
            "spec": {
                "podSelector": {"matchLabels": {"app.kubernetes.io/part-of": k8s_name(self.stack)}},
                "policyTypes": ["Ingress"],
            },
        }


def tier(svc):
    return "data" if svc.get("stateful") or svc.get("internal") else "trading"


def render(services, stack, namespace=None, feature_flags=None, volume_size="10Gi", monitoring_namespace="monitoring"):
    """``{file name: [objects]}``: ``<service>.yaml`` per enabled service and ``_policies.yaml``."""
    renderer = Renderer(stack, namespace, feature_flags, volume_size, monitoring_namespace)
    enabled = [s for s in services or [] if s.get("enabled", True)]
    names = {s.get("name") for s in enabled}
    files = {"_policies.yaml": [renderer.default_deny()]}
    for svc in enabled:
        _rules.check_name("service", svc.get("name"), option="services[].name")
        missing = [d for d in svc.get("depends_on") or [] if d not in names]
        if missing:
            _fail(svc, "depends_on", "names %s, not an enabled service" % ", ".join(missing))
        dependents = [s["name"] for s in enabled if svc["name"] in (s.get("depends_on") or [])]
        files["%s.yaml" % k8s_name(svc["name"])] = renderer.service_objects(svc, dependents)
    return files


HEADER = "# Generated by tradeops.stack.kubernetes_manifests from the stack description; edit that, not this.\n"


if yaml is not None:

    class _Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data):
            return True  # a probe shared by three entries is written three times, never as an anchor


def _dump(obj):
    if yaml is None:  # JSON is YAML too: the same objects, less readable
        return json.dumps(obj, indent=2) + "\n"
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)


def dump_files(files):
    """``{file name: text}``: each file's objects as YAML documents after HEADER, and ``kustomization.yaml``."""
    out = {name: HEADER + "".join("---\n" + _dump(obj) for obj in objects) for name, objects in files.items()}
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": sorted(files),
    }
    out["kustomization.yaml"] = HEADER + _dump(kustomization)
    return out
