"""The deployment examples in ops/ (Kubernetes, KEDA, systemd, CI) agree with the settings they deploy."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleet import config
from fleet.celeryconf import GENERATE_QUEUE

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "ops" / "k8s"
CI = ROOT / "ops" / "ci"
SYSTEMD = ROOT / "ops" / "systemd"
YAML_FILES = sorted(K8S.glob("*.yaml")) + sorted(CI.glob("*.yml"))
SANDBOX_CAPS = {"SYS_ADMIN", "SETUID", "SETGID", "CHOWN", "KILL", "DAC_OVERRIDE"}


@pytest.fixture(scope="module")
def production() -> config.Settings:
    return config.load({"FLEET_CONFIG": str(ROOT / "config" / "production.toml"),
                        "FLEET_REDIS_URL": "redis://:pw@127.0.0.1:6379/0"})


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    return [doc for path in sorted(K8S.glob("*.yaml")) for doc in _documents(path)]


def _of_kind(manifests: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in manifests if doc["kind"] == kind}


def _argv(container: dict[str, Any]) -> list[str]:
    return [str(a) for a in container.get("command", []) + container.get("args", [])]


def _deployments_running(manifests: list[dict[str, Any]], subcommand: str) -> dict[str, dict[str, Any]]:
    """Deployments with a container that runs ``fleet <subcommand>``."""
    return {name: d for name, d in _of_kind(manifests, "Deployment").items()
            if any(subcommand in _argv(c) for c in d["spec"]["template"]["spec"]["containers"])}


def _directives(text: str) -> list[str]:
    """A redis.conf's directives: comments and blank lines dropped, whitespace normalised."""
    return [" ".join(line.split()) for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit file as section -> key -> every value (keys like Environment= repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path.name}: {line!r} before any section"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not a key=value line: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _seconds(value: str) -> float:
    """A systemd time span (``2760``, ``46min``, ``1h 5min 30s``) in seconds."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value)
    assert parts and "".join(n + u for n, u in parts) == value.replace(" ", ""), f"unparsed time span {value!r}"
    return sum(float(n) * units[u] for n, u in parts)


def _submit_commands(script: str) -> list[list[str]]:
    """The ``fleet submit`` command lines of a shell script (backslash continuations joined)."""
    joined = re.sub(r"\\\n\s*", " ", script)
    return [shlex.split(line.strip()) for line in joined.splitlines() if line.strip().startswith("fleet submit")]


def _option(argv: list[str], name: str) -> str:
    assert name in argv, f"{name} missing from {' '.join(argv)}"
    return argv[argv.index(name) + 1]


# --- every file parses ------------------------------------------------------------------------


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_ops_yaml_file_parses(path: Path) -> None:
    docs = _documents(path)
    assert docs, f"{path} holds no YAML document"
    if path.parent == K8S:
        for doc in docs:
            assert {"apiVersion", "kind", "metadata"} <= doc.keys(), f"{path.name}: not a Kubernetes object"
            assert doc["metadata"].get("name"), f"{path.name}: a {doc['kind']} without a name"


def test_the_yaml_files_are_there() -> None:
    assert {p.name for p in YAML_FILES} >= {"agents.yaml", "beat.yaml", "redis.yaml", "keda.yaml",
                                            "github-actions.yml", "gitlab-ci.yml"}


# --- Kubernetes and KEDA ----------------------------------------------------------------------


def test_keda_scales_the_agent_deployment_on_the_generate_tests_list(manifests) -> None:
    scaled = list(_of_kind(manifests, "ScaledObject").values())
    assert len(scaled) == 1
    spec = scaled[0]["spec"]
    target = spec["scaleTargetRef"]
    assert target.get("kind", "Deployment") == "Deployment"
    assert target["name"] in _deployments_running(manifests, "run-agent"), "ScaledObject does not target the agents"
    triggers = [t for t in spec["triggers"] if t["type"] == "redis"]
    assert len(triggers) == 1
    meta = triggers[0]["metadata"]
    assert meta["listName"] == GENERATE_QUEUE == "generate-tests"
    assert int(meta["listLength"]) >= 1
    assert meta["address"].split(".")[0].split(":")[0] in _of_kind(manifests, "Service"), "trigger address is no Service"
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    auth = triggers[0]["authenticationRef"]["name"]
    assert auth in _of_kind(manifests, "TriggerAuthentication")


def test_keda_scale_down_waits_for_the_longest_job(manifests, production) -> None:
    spec = next(iter(_of_kind(manifests, "ScaledObject").values()))["spec"]
    down = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert down["stabilizationWindowSeconds"] >= production["celery"]["hard_time_limit"]


def test_agent_grace_period_covers_the_soft_shutdown_not_the_job(manifests, production) -> None:
    agents = _deployments_running(manifests, "run-agent")
    assert agents, "no Deployment runs `fleet run-agent`"
    cel = production["celery"]
    for name, deployment in agents.items():
        pod = deployment["spec"]["template"]["spec"]
        grace = pod["terminationGracePeriodSeconds"]
        assert grace >= cel["soft_shutdown_timeout"], f"{name}: SIGKILL before the soft shutdown requeues the job"
        assert grace < cel["hard_time_limit"], f"{name}: the grace period need not cover a whole job"
        for container in pod["containers"]:
            if "run-agent" in _argv(container):
                env = {e["name"]: e.get("value") for e in container.get("env", [])}
                assert env.get("REMAP_SIGTERM") == "SIGQUIT"
                assert env.get("FLEET_CONFIG", "").endswith("config/production.toml")


def test_agent_containers_can_make_the_sandbox_namespace(manifests) -> None:
    for name, deployment in _deployments_running(manifests, "run-agent").items():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            if "run-agent" not in _argv(container):
                continue
            sc = container["securityContext"]
            assert sc["runAsUser"] == 0, f"{name}: unshare and setpriv need root"
            assert set(sc["capabilities"]["add"]) >= SANDBOX_CAPS
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert sc.get("allowPrivilegeEscalation") is not False, "the API refuses it with CAP_SYS_ADMIN"


def test_fleet_pods_get_no_service_link_variables(manifests) -> None:
    # A Service named fleet-flower injects FLEET_FLOWER_PORT=tcp://..., which config.load refuses.
    with pytest.raises(config.ConfigError):
        config.load({"FLEET_FLOWER_PORT": "tcp://10.0.0.1:5555"})
    fleet_pods = {name: d for name, d in _of_kind(manifests, "Deployment").items()
                  if any(any(a.endswith("/fleet") or a == "fleet" for a in _argv(c))
                         for c in d["spec"]["template"]["spec"]["containers"])}
    assert len(fleet_pods) >= 3
    for name, deployment in fleet_pods.items():
        assert deployment["spec"]["template"]["spec"].get("enableServiceLinks") is False, name


def test_beat_runs_exactly_once(manifests) -> None:
    beats = _deployments_running(manifests, "run-beat")
    assert len(beats) == 1
    spec = next(iter(beats.values()))["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"]["type"] == "Recreate", "a rolling update would run two beats at once"


def test_redis_configmap_is_the_shipped_redis_conf(manifests) -> None:
    shipped = _directives((ROOT / "config" / "redis.conf").read_text(encoding="utf-8"))
    assert "appendonly yes" in shipped and "maxmemory-policy noeviction" in shipped
    maps = [m for m in _of_kind(manifests, "ConfigMap").values() if "redis.conf" in m.get("data", {})]
    assert len(maps) == 1
    deployed = _directives(maps[0]["data"]["redis.conf"])
    assert "appendonly yes" in deployed
    assert "maxmemory-policy noeviction" in deployed
    assert deployed == shipped, "ops/k8s redis.conf drifted from config/redis.conf"
    redis = [d for d in _of_kind(manifests, "Deployment").values()
             if any(c.get("command", [None])[0] == "redis-server" for c in d["spec"]["template"]["spec"]["containers"])]
    assert len(redis) == 1
    pod = redis[0]["spec"]["template"]["spec"]
    volumes = pod["volumes"]
    assert {"name": "conf", "configMap": {"name": maps[0]["metadata"]["name"]}} in volumes
    claims = {v["persistentVolumeClaim"]["claimName"] for v in volumes if "persistentVolumeClaim" in v}
    assert claims and claims <= set(_of_kind(manifests, "PersistentVolumeClaim")), "AOF needs a persistent volume"
    args = _argv(pod["containers"][0])
    assert "/etc/redis/redis.conf" in args and "--requirepass" in args and "--maxmemory" in args


def test_secret_template_holds_no_secret(manifests) -> None:
    for secret in _of_kind(manifests, "Secret").values():
        for key, value in secret.get("stringData", {}).items():
            assert "CHANGE-ME" in value, f"{key} looks like a real secret"
        assert "data" not in secret


# --- systemd ----------------------------------------------------------------------------------


def test_agent_unit_outlasts_the_longest_job_and_shuts_down_softly(production) -> None:
    unit = _unit(SYSTEMD / "fleet-agent@.service")
    service = unit["Service"]
    assert service["ExecStart"] == ["/opt/fleet/.venv/bin/fleet run-agent --id %i"]
    assert _seconds(service["TimeoutStopSec"][-1]) >= production["celery"]["hard_time_limit"]
    assert service["KillSignal"] == ["SIGTERM"]
    assert service["KillMode"] == ["mixed"]
    assert "REMAP_SIGTERM=SIGQUIT" in " ".join(service.get("Environment", [])).split()
    assert service["Restart"] == ["on-failure"]
    assert "/etc/fleet/fleet.env" in service["EnvironmentFile"]
    assert set(service["CapabilityBoundingSet"][-1].split()) == {f"CAP_{c}" for c in SANDBOX_CAPS}
    assert service.get("User", ["root"]) == ["root"], "the sandbox needs root for unshare and setpriv"
    for breaks_the_sandbox in ("PrivateUsers", "RestrictNamespaces", "DynamicUser", "UMask", "AmbientCapabilities"):
        assert breaks_the_sandbox not in service, breaks_the_sandbox
    assert not any("privileged" in f or "setuid" in f for f in service.get("SystemCallFilter", []))


@pytest.mark.parametrize("name, command", [("fleet-beat.service", "run-beat"), ("fleet-flower.service", "run-flower")])
def test_beat_and_flower_units_run_as_the_dedicated_user(name: str, command: str) -> None:
    service = _unit(SYSTEMD / name)["Service"]
    assert service["ExecStart"] == [f"/opt/fleet/.venv/bin/fleet {command}"]
    assert service["User"] == ["fleet"]
    assert service["Restart"] == ["on-failure"]
    assert "/etc/fleet/fleet.env" in service["EnvironmentFile"]
    assert service["CapabilityBoundingSet"] == [""]


# --- CI examples ------------------------------------------------------------------------------


def test_github_actions_example_submits_changed_modules_and_publishes_junit() -> None:
    workflow = _documents(CI / "github-actions.yml")[0]
    steps = [s for job in workflow["jobs"].values() for s in job["steps"]]
    commands = [argv for s in steps for argv in _submit_commands(s.get("run", ""))]
    assert len(commands) == 1
    argv = commands[0]
    assert "--changed-since" in argv
    junit = _option(argv, "--junit")
    assert _option(argv, "--json-dir") and _option(argv, "--out")
    publish = [s for s in steps if s.get("uses", "").startswith(("mikepenz/action-junit-report@", "dorny/test-reporter@"))]
    assert len(publish) == 1
    assert publish[0]["if"] == "always()", "the report must be published when fleet exits non-zero"
    with_ = publish[0]["with"]
    assert with_.get("report_paths", with_.get("path")) == junit
    assert any("secrets.FLEET_REDIS_URL" in str(job.get("env", {}).get("FLEET_REDIS_URL", ""))
               for job in workflow["jobs"].values())


def test_gitlab_example_submits_changed_modules_and_publishes_junit() -> None:
    jobs = {k: v for k, v in _documents(CI / "gitlab-ci.yml")[0].items() if isinstance(v, dict) and "script" in v}
    commands = [(job, argv) for job in jobs.values() for line in job["script"] for argv in _submit_commands(line)]
    assert len(commands) == 1
    job, argv = commands[0]
    assert "--changed-since" in argv
    junit = _option(argv, "--junit")
    artifacts = job["artifacts"]
    assert artifacts["reports"]["junit"] == junit
    assert artifacts["when"] == "always", "the report must be kept when fleet exits non-zero"
    assert job["allow_failure"]["exit_codes"] == [1]
