"""DAG integrity: every file in dags/ imports cleanly, fast, and follows the house rules.

Airflow runs in a subprocess with its own AIRFLOW_HOME, so this test neither writes ~/airflow nor leaves Airflow
configuration behind in the pytest process for other tests. The subprocess first times each file the way the DAG
processor parses it (a fork of a process that already imported Airflow and the file's ``airflow.*`` imports,
see ``[dag_processor] parsing_pre_import_modules``), then loads the DagBag and reports every DAG's attributes.

With no DAG files the parametrized tests are simply not generated; the DagBag test still runs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from writeoffs_airflow.pools import LEDGER_WRITERS, LEDGER_WRITES

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "dags"
DAG_FILES = sorted(p for p in DAGS.glob("*.py") if not p.name.startswith("_"))
#: Parse budget per file (CPU seconds), beyond Airflow itself: the processor re-parses every file every few minutes.
PARSE_BUDGET_S = 1.0

_PROBE = r"""
import json, os, runpy, sys, time
from pathlib import Path

import airflow  # noqa: F401 - the processor has Airflow loaded before it forks for a file
import airflow.sdk  # noqa: F401
from airflow.utils.file import iter_airflow_imports

files = json.loads(sys.argv[1])
parse_seconds = {}
for path in files:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: like the DAG processor, pre-import the file's airflow.* modules, then time the file
        os.close(r)
        try:
            import importlib
            for mod in iter_airflow_imports(path):
                try:
                    importlib.import_module(mod)
                except Exception:
                    pass
            # CPU time of this process: what the file costs the processor, not how busy the machine is meanwhile.
            start = time.process_time()
            runpy.run_path(path, run_name="dag_integrity_probe")
            out = str(time.process_time() - start)
        except BaseException as exc:
            out = "error: " + repr(exc)
        os.write(w, out.encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as fh:
        parse_seconds[Path(path).name] = fh.read()
    os.waitpid(pid, 0)

from airflow.dag_processing.dagbag import DagBag

bag = DagBag(dag_folder=sys.argv[2])
try:
    from airflow.providers.standard.operators.hitl import HITLOperator
except ImportError:  # the checks' own fixtures need no provider
    HITLOperator = ()


def waits_for_people(t) -> bool:
    cls = getattr(t, "operator_class", type(t))
    return isinstance(cls, type) and bool(HITLOperator) and issubclass(cls, HITLOperator)


from airflow.serialization.decoders import decode_deadline_alert
from airflow.serialization.encoders import encode_deadline_alert
from airflow.serialization.enums import DagAttributeTypes, Encoding


def deadlines_of(dag) -> list:  # the DAG's deadline alerts as the scheduler reads them back (serialized form)
    out = []
    for alert in dag.deadline or []:
        back = decode_deadline_alert({Encoding.TYPE: DagAttributeTypes.DEADLINE_ALERT,
                                      Encoding.VAR: encode_deadline_alert(alert)})
        out.append({
            "reference": back.reference.reference_name,
            "interval_s": back.interval.total_seconds(),
            "callback": type(back.callback).__name__,
            "path": back.callback.path,
        })
    return out


dags = {}
for dag_id, dag in bag.dags.items():
    default_args = dict(dag.default_args or {})
    dags[dag_id] = {
        "file": Path(dag.fileloc).name,
        "default_owner": default_args.get("owner"),
        "task_owners": sorted({t.owner for t in dag.tasks}),
        "retries": default_args.get("retries"),
        "tags": sorted(dag.tags or []),
        "catchup": dag.catchup,
        "doc_md": (dag.doc_md or "").strip(),
        "max_active_runs": dag.max_active_runs,
        "n_tasks": len(dag.tasks),
        "dagrun_timeout": dag.dagrun_timeout.total_seconds() if dag.dagrun_timeout else None,
        "human_tasks": sorted(t.task_id for t in dag.tasks if waits_for_people(t)),
        "untimed_tasks": sorted(
            t.task_id for t in dag.tasks if not waits_for_people(t) and getattr(t, "execution_timeout", None) is None
        ),
        "params": sorted({*dag.params.keys(), *(k for t in dag.tasks for k in (t.params or {}).keys())}),
        # The fields each request form shows (what HITLOperator stores with the request, as parsed in a DAG).
        "human_forms": {
            t.task_id: sorted(t.serialized_params) for t in dag.tasks if waits_for_people(t)
        },
        "pools": {t.task_id: t.pool for t in dag.tasks},
        "deadlines": deadlines_of(dag),
    }
print(json.dumps({
    "import_errors": {str(k): v for k, v in bag.import_errors.items()},
    "dags": dags,
    "parse_seconds": parse_seconds,
    "dagbag_seconds": {s.file: s.duration.total_seconds() for s in bag.dagbag_stats},
}))
"""


def run_probe(dags: Path, files: list[Path], home: Path) -> dict:
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(ROOT / "plugins"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__UNIT_TEST_MODE="True",
        PYTHONPATH=os.pathsep.join([str(ROOT / "include"), str(ROOT / "plugins"), env.get("PYTHONPATH", "")]),
        # DAG files must not need the ledger (or anything else) to parse: point it somewhere harmless.
        WRITEOFFS_DATA_DIR=str(home / "data"),
    )
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps([str(p) for p in files]), str(dags)],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"DagBag probe failed:\n{proc.stderr[-5000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


#: A run param whose name says it carries a person: identity comes from authentication (the run's triggering user,
#: the HITL responder), never from input, so no DAG may take one (issue 13: ``requested_by``, ``prepared_by``).
PERSON_PARAM = re.compile(
    r"(^|_)(by|user|users|username|approver|approvers|requester|preparer|confirmer|reviewer|actor|person|responder|"
    r"owner|who)($|_)",
    re.IGNORECASE,
)


def house_rule_problems(dag_id: str, dag: dict, path: Path) -> list[str]:
    """Every rule a DAG breaks (all of them, not just the first)."""
    problems = []
    if dag_id != path.stem:
        problems.append(f"dag_id {dag_id!r} != file name {path.stem!r}")
    owners = {dag["default_owner"], *dag["task_owners"]}
    if not dag["default_owner"] or "airflow" in owners:
        problems.append(f"owner must be set in default_args and not 'airflow' (owners: {sorted(map(str, owners))})")
    if not dag["tags"]:
        problems.append("no tags")
    if not isinstance(dag["retries"], int) or dag["retries"] < 1:
        problems.append(f"default_args retries must be >= 1 (got {dag['retries']!r})")
    if dag["catchup"] is not False:
        problems.append("catchup must be False")
    if not dag["doc_md"]:
        problems.append("doc_md missing (use doc_md=__doc__)")
    if dag["n_tasks"] == 0:
        problems.append("no tasks")
    # A hung call must not hold a worker slot forever: every task has an execution_timeout, every run a
    # dagrun_timeout — except where people answer (HITL tasks are bounded by their response timeout instead).
    if dag.get("untimed_tasks"):
        problems.append(f"tasks without execution_timeout: {dag['untimed_tasks']}")
    if not dag.get("human_tasks") and not dag.get("dagrun_timeout"):
        problems.append("no dagrun_timeout")
    people = [k for k in dag.get("params", []) if PERSON_PARAM.search(k)]
    if people:
        problems.append(f"params {people} name a person: identity must come from authentication, not input")
    # Posting twice in parallel is how entries get double-booked: one run at a time, the database does the rest.
    if ("posting" in dag_id or "reversal" in dag_id) and dag["max_active_runs"] != 1:
        problems.append(f"posting DAG must have max_active_runs=1 (got {dag['max_active_runs']})")
    return problems


def pool_problems(dags: dict, writers: frozenset[str] = LEDGER_WRITERS) -> list[str]:
    """Ledger writers (``writeoffs_airflow.pools.LEDGER_WRITERS``, the one list) outside the ``ledger_writes`` pool,
    tasks in the pool that are not listed, and listed tasks that do not exist (a renamed task would fall out)."""
    problems = []
    tasks = {f"{dag_id}.{task_id}": pool for dag_id, dag in dags.items() for task_id, pool in dag["pools"].items()}
    for name in sorted(writers):
        if name not in tasks:
            if name.split(".", 1)[0] in dags:
                problems.append(f"{name} is listed as a ledger writer but no such task exists")
        elif tasks[name] != LEDGER_WRITES:
            problems.append(f"{name} writes the ledger but runs in pool {tasks[name]!r}, not {LEDGER_WRITES!r}")
    for name, pool in sorted(tasks.items()):
        if pool == LEDGER_WRITES and name not in writers:
            problems.append(f"{name} is in pool {LEDGER_WRITES!r} but not listed in LEDGER_WRITERS")
    return problems


def parse_problem(report: dict, path: Path) -> str | None:
    raw = report["parse_seconds"][path.name]
    if raw.startswith("error"):
        return f"{path.name} failed to import on its own: {raw}"
    if float(raw) >= PARSE_BUDGET_S:
        return f"{path.name} takes {float(raw):.2f}s to import: move heavy imports and work into the tasks"
    return None


def dag_of(report: dict, path: Path) -> tuple[str, dict]:
    found = [(dag_id, d) for dag_id, d in report["dags"].items() if d["file"] == path.name]
    assert len(found) == 1, f"{path.name}: expected exactly one DAG, found {[i for i, _ in found]}"
    return found[0]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    return run_probe(DAGS, DAG_FILES, tmp_path_factory.mktemp("airflow_home"))


def test_dagbag_loads_without_import_errors(report):
    assert report["import_errors"] == {}, "\n\n".join(f"{f}:\n{e}" for f, e in report["import_errors"].items())
    # every DAG comes from a file we know about, and every file yields exactly one DAG (one DAG per file)
    assert sorted(d["file"] for d in report["dags"].values()) == sorted(p.name for p in DAG_FILES)


@pytest.mark.parametrize("path", DAG_FILES, ids=[p.stem for p in DAG_FILES])
def test_dag_follows_house_rules(report, path: Path):
    dag_id, dag = dag_of(report, path)
    problems = house_rule_problems(dag_id, dag, path)
    assert not problems, f"{path.name}: " + "; ".join(problems)


@pytest.mark.parametrize("path", DAG_FILES, ids=[p.stem for p in DAG_FILES])
def test_dag_file_parses_fast(report, path: Path):
    problem = parse_problem(report, path)
    assert problem is None, problem
    print(f"\n{path.name}: parsed in {float(report['parse_seconds'][path.name]) * 1000:.0f} ms beyond Airflow itself")


_GOOD = '''"""A tidy DAG."""
from datetime import timedelta

import pendulum
from airflow.sdk import dag, task


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["t"], doc_md=__doc__,
     default_args={"owner": "finance-ops", "retries": 1, "execution_timeout": timedelta(minutes=5)},
     dagrun_timeout=timedelta(hours=1){extra})
def {name}():
    @task
    def noop() -> None:
        return None

    noop()


{name}()
'''

_BAD = """import time

import pendulum
from airflow.sdk import dag, task

_t = time.process_time()
while time.process_time() - _t < 1.2:  # heavy top-level work
    pass


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=True,
     params={"requested_by": "cfo"})
def wrong_name_posting():
    @task
    def noop() -> None:
        return None

    noop()


wrong_name_posting()
"""


def test_the_checks_catch_violations(tmp_path):
    """The rules above can fail: a folder with one good DAG, one bad one, one broken file and an empty folder."""
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "tidy_posting.py").write_text(
        _GOOD.replace("{name}", "tidy_posting").replace("{extra}", ", max_active_runs=1")
    )
    (dags / "sloppy_posting.py").write_text(_BAD)
    (dags / "broken.py").write_text("from airflow.sdk import dag\nimport no_such_module_xyz\n")
    files = sorted(dags.glob("*.py"))
    rep = run_probe(dags, files, tmp_path / "home")

    assert list(rep["import_errors"]) and "no_such_module_xyz" in next(iter(rep["import_errors"].values()))
    assert "error" in rep["parse_seconds"]["broken.py"]

    tidy = dags / "tidy_posting.py"
    assert house_rule_problems(*dag_of(rep, tidy), tidy) == []
    assert parse_problem(rep, tidy) is None

    sloppy = dags / "sloppy_posting.py"
    problems = " | ".join(house_rule_problems(*dag_of(rep, sloppy), sloppy))
    for expected in (
        "!= file name",
        "owner",
        "no tags",
        "retries",
        "catchup",
        "doc_md",
        "max_active_runs",
        "person",
        "tasks without execution_timeout: ['noop']",
        "no dagrun_timeout",
    ):
        assert expected in problems
    assert "takes" in (parse_problem(rep, sloppy) or "")

    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_probe(empty, [], tmp_path / "home2") == {
        "import_errors": {},
        "dags": {},
        "parse_seconds": {},
        "dagbag_seconds": {},
    }


def test_approval_forms_have_their_fields(report):
    """The approval request asks for exclusions and a comment, the confirmation for a comment, as parsed in the DAG.

    Inside a DAG, Airflow passes the DAG's params to an operator before its ``__init__`` runs and HITLOperator keeps
    only task-sourced ones: a form built with ``setdefault`` came out empty and the UI showed no field at all.
    """
    forms = report["dags"]["writeoff_approval"]["human_forms"]
    assert forms, "no human-in-the-loop tasks found in writeoff_approval"
    for task_id, fields in forms.items():
        expected = ["comment"] if task_id.endswith("confirm") else ["comment", "exclude_invoice_refs"]
        assert fields == expected, f"{task_id}: form fields {fields}, expected {expected}"


def test_every_ledger_writer_is_in_the_ledger_writes_pool(report):
    """Issue 17: tasks that write the ledger queue for one ``ledger_writes`` slot, whichever DAG they belong to."""
    assert pool_problems(report["dags"]) == []
    listed_dags = {name.split(".", 1)[0] for name in LEDGER_WRITERS}
    assert listed_dags <= set(report["dags"]), listed_dags - set(report["dags"])


_POOLED = _GOOD.replace(
    """    @task
    def noop() -> None:
        return None

    noop()""",
    """    @task
    def post() -> None:
        return None

    @task(pool="ledger_writes")
    def tidy() -> None:
        return None

    post() >> tidy()""",
)


def test_the_pool_check_catches_a_ledger_writer_outside_the_pool(tmp_path):
    """A task listed as a ledger writer that runs in the default pool fails the check; so does a pool member that is
    not listed, and a listed task that was renamed away."""
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "pooled.py").write_text(_POOLED.replace("{name}", "pooled").replace("{extra}", ""))
    rep = run_probe(dags, sorted(dags.glob("*.py")), tmp_path / "home")
    problems = pool_problems(rep["dags"], frozenset({"pooled.post", "pooled.gone"}))
    assert problems == [
        "pooled.gone is listed as a ledger writer but no such task exists",
        "pooled.post writes the ledger but runs in pool 'default_pool', not 'ledger_writes'",
        "pooled.tidy is in pool 'ledger_writes' but not listed in LEDGER_WRITERS",
    ]
    assert pool_problems(rep["dags"], frozenset({"pooled.tidy"})) == []


def test_the_daily_ingest_carries_its_deadline_alert(report):
    """Issue 17: the daily ingest alerts when a run has not succeeded two hours (default) after it was queued; the
    callback is the project's notifier entry point, run by the executor (SyncCallback: no triggerer needed)."""
    import importlib

    from writeoffs_airflow import alerts

    assert report["dags"]["ar_aging_ingest"]["deadlines"] == [
        {
            "reference": "DagRunQueuedAtDeadline",
            "interval_s": 7200.0,
            "callback": "SyncCallback",
            "path": "writeoffs_airflow.alerts.deadline_missed",
        }
    ]
    module, name = report["dags"]["ar_aging_ingest"]["deadlines"][0]["path"].rsplit(".", 1)
    assert getattr(importlib.import_module(module), name) is alerts.deadline_missed
