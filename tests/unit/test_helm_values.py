"""deploy/helm/values.yaml (official Apache Airflow Helm chart), checked as a file: there is no Kubernetes here.

Valid YAML (strictly: a repeated key is an error), the keys that make it this project's deployment (executor, the
``ledger_writes`` pool, connections from Secrets, the code in the image and the shared data volume, the auth
manager, the deadline setting), and no secret written in it — with the check itself shown to catch one.
"""

from __future__ import annotations

import copy
import importlib
import re
from pathlib import Path
from typing import Any

import pytest

from writeoffs import strict_yaml
from writeoffs_airflow.pools import LEDGER_WRITES, POOLS

ROOT = Path(__file__).resolve().parents[2]
VALUES = ROOT / "deploy" / "helm" / "values.yaml"
DOCKERFILE = ROOT / "deploy" / "helm" / "Dockerfile"

#: A key whose value would be a secret if it were written here (the chart's fernetKey, apiSecretKey, jwtSecret,
#: webserverSecretKey, data.metadataConnection.pass, ...). Keys naming a Kubernetes Secret or a key inside one
#: (``...SecretName``, ``secretName``, ``secretKey`` of a ``secret:`` entry) are references, not secrets.
_SECRETISH = re.compile(r"(pass|password|passwd|secret|token|key)$", re.I)
_REFERENCE = re.compile(r"(secretname|secretkey|claimname|existingclaim)$", re.I)
_URL_CREDENTIALS = re.compile(r"://[^:/@\s]+:[^@\s]+@")


def load() -> dict[str, Any]:
    return strict_yaml.load(VALUES.read_text(encoding="utf-8"), str(VALUES))


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    return load()


def secrets_written(node: Any, path: str = "") -> list[str]:
    """Every place a secret value is written: a secret-like key with a value, a URL with a password, an
    ``AIRFLOW_CONN_*`` / secret-like environment variable with a literal value."""
    found: list[str] = []
    if isinstance(node, dict):
        if "name" in node and "value" in node and isinstance(node.get("name"), str):  # an env entry
            name, value = node["name"], node["value"]
            if value not in (None, "") and (
                name.startswith("AIRFLOW_CONN_") or _SECRETISH.search(name.replace("_", ""))
            ):
                found.append(f"{path}: env {name} has a literal value")
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            compact = str(key).replace("_", "").replace("-", "")
            if (
                _SECRETISH.search(compact)
                and not _REFERENCE.search(compact)
                and value not in (None, "", {}, [])
                and not isinstance(value, (dict, list))
            ):
                found.append(f"{where}: a secret is written here")
            found += secrets_written(value, where)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            found += secrets_written(item, f"{path}[{i}]")
    elif isinstance(node, str) and _URL_CREDENTIALS.search(node):
        found.append(f"{path}: a URL with a password")
    return found


def env_of(values: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in values.get("env") or []}


def test_yaml_is_valid_and_strict() -> None:
    assert isinstance(load(), dict)
    from writeoffs.errors import ConfigError

    with pytest.raises(ConfigError, match="line"):  # the loader the test relies on refuses a repeated key
        strict_yaml.load("executor: A\nexecutor: B\n", "x.yaml")


def test_executor_and_airflow_version(values: dict[str, Any]) -> None:
    pins = dict(line.split("==", 1) for line in (ROOT / "requirements.txt").read_text().splitlines() if "==" in line)
    assert values["executor"] in ("KubernetesExecutor", "CeleryExecutor")
    assert values["airflowVersion"] == pins["apache-airflow"]
    assert values["images"]["airflow"]["tag"] == pins["apache-airflow"]
    assert values["dagProcessor"]["enabled"] is True and values["triggerer"]["enabled"] is True  # HITL defers


def test_the_default_executor_runs_the_deadline_callback(values: dict[str, Any]) -> None:
    """The deadline alert is a SyncCallback sent to the default executor (the first of ``executor``); one without
    callback support makes the scheduler loop raise on every missed deadline."""
    from importlib import import_module

    from airflow.executors.executor_loader import ExecutorLoader

    default = values["executor"].split(",")[0].strip()
    module, name = ExecutorLoader.executors[default].rsplit(".", 1)
    assert getattr(import_module(module), name).supports_callbacks is True
    assert values["data"]["brokerUrlSecretName"] and values["workers"]["replicas"] >= 2


def test_the_ledger_writes_pool_is_created_before_the_scheduler_starts(values: dict[str, Any]) -> None:
    (pool,) = POOLS
    assert pool.name == LEDGER_WRITES and pool.slots == 1
    script = " ".join(values["scheduler"]["args"])
    assert "python -m writeoffs_airflow.pools && exec airflow scheduler" in script


def test_connections_come_from_kubernetes_secrets(values: dict[str, Any]) -> None:
    refs = {s["envName"]: (s["secretName"], s["secretKey"]) for s in values["secret"]}
    for conn in ("WRITEOFF_LEDGER", "WRITEOFF_AUDIT_KEY", "WRITEOFFS_SLACK", "WRITEOFFS_SMTP"):
        assert f"AIRFLOW_CONN_{conn}" in refs, conn
    assert not [k for k in env_of(values) if k.startswith("AIRFLOW_CONN_")]
    for key in ("fernetKeySecretName", "apiSecretKeySecretName", "jwtSecretName"):
        assert values.get(key), key
    assert values["data"]["metadataSecretName"]
    assert "metadataConnection" not in values["data"]  # would carry a password


def test_code_in_the_image_and_data_on_a_shared_volume(values: dict[str, Any]) -> None:
    env = env_of(values)
    assert env["PYTHONPATH"] == "/opt/airflow/include:/opt/airflow/plugins"
    copied = dict(re.findall(r"^COPY\s+(?:--\S+\s+)*(\S+)\s+(\S+)\s*$", DOCKERFILE.read_text(), flags=re.M))
    assert copied == {"dags": "/opt/airflow/dags", "plugins": "/opt/airflow/plugins", "include": "/opt/airflow/include"}
    assert values["dags"]["persistence"]["enabled"] is False and values["dags"]["gitSync"]["enabled"] is False
    mounts = {m["name"]: m["mountPath"] for m in values["volumeMounts"]}
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in values["volumes"]}
    assert mounts["writeoffs-data"] == env["WRITEOFFS_DATA_DIR"] and claims["writeoffs-data"]
    assert values["logs"]["persistence"]["enabled"] is True  # task pods are deleted with their local logs
    assert int(env["WRITEOFFS_INGEST_DEADLINE_SECONDS"]) > 0


def test_production_auth_and_no_chart_defaults_with_passwords(values: dict[str, Any]) -> None:
    # The project's FAB subclass (approvers matched by username: docs/deploy.md), importable from the pinned install.
    assert values["config"]["core"]["auth_manager"] == "writeoffs_airflow.fab_auth.WriteoffsFabAuthManager"
    module, _, name = values["config"]["core"]["auth_manager"].rpartition(".")
    assert getattr(importlib.import_module(module), name).__mro__[1].__name__ == "FabAuthManager"
    assert "simple" not in values["config"]["core"]["auth_manager"].lower()
    assert "SIMPLE_AUTH_MANAGER" not in VALUES.read_text().upper()  # no demo users or passwords file
    assert values["createUserJob"]["enabled"] is False  # else the chart creates admin/admin
    assert values["createUserJob"]["defaultUser"]["enabled"] is False
    assert values["postgresql"]["enabled"] is False  # the bundled PostgreSQL has a default password
    assert values["config"]["api"]["base_url"].startswith("https://")
    # FAB comes with the pinned requirements the base image (deploy/Dockerfile) installs.
    assert re.search(r"^apache-airflow-providers-fab==", (ROOT / "requirements.txt").read_text(), flags=re.M)


def test_no_secret_is_written_in_the_values(values: dict[str, Any]) -> None:
    assert secrets_written(values) == []


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda v: v.__setitem__("fernetKey", "Zm9vYmFy"), "fernetKey"),
        (lambda v: v.__setitem__("jwtSecret", "s3cret"), "jwtSecret"),
        (lambda v: v["data"].__setitem__("metadataConnection", {"user": "airflow", "pass": "airflow"}), "pass"),
        (lambda v: v["env"].append({"name": "AIRFLOW_CONN_WRITEOFF_LEDGER", "value": "sqlite://"}), "AIRFLOW_CONN"),
        (lambda v: v["env"].append({"name": "X_URL", "value": "postgresql://u:pw@db/x"}), "URL with a password"),
        (lambda v: v["env"].append({"name": "SLACK_TOKEN", "value": "xoxb-1"}), "SLACK_TOKEN"),
    ],
)
def test_the_secret_check_catches_a_written_secret(values: dict[str, Any], mutate, expected: str) -> None:
    bad = copy.deepcopy(values)
    mutate(bad)
    problems = secrets_written(bad)
    assert problems and any(expected in p for p in problems), problems
