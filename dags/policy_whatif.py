"""
### Policy what-if: backtest a draft write-off policy on a past date (read-only)

Trigger manually with either `policy_yaml` (the draft's YAML text) or `policy_path` (a file the workers can read),
and `as_of`. The draft runs through the production selection query in point-in-time mode inside a read-only
transaction that is rolled back: nothing is written. The log shows count and amount selected by reason and
aging bucket, the decisions by rule, and how that compares with what was actually written off (posted) and
later recovered. The same report: `python -m writeoffs whatif --policy draft.yaml --as-of YYYY-MM-DD`.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag, task

from writeoffs_airflow.defaults import START_DATE, default_args
from writeoffs_airflow.failfast import fail_fast


@task
@fail_fast
def run_whatif(**context) -> dict:
    import logging
    from datetime import date

    from writeoffs.errors import ConfigError
    from writeoffs.policy.schema import load_policy, parse_policy
    from writeoffs.policy.whatif import whatif
    from writeoffs_airflow.ledger import ledger_engine

    params = context["params"]
    if params.get("policy_yaml"):
        draft = parse_policy(params["policy_yaml"], source="param policy_yaml")
    elif params.get("policy_path"):
        draft = load_policy(params["policy_path"])
    else:
        raise ConfigError("give the draft policy as policy_yaml (text) or policy_path")
    report = whatif(ledger_engine(), draft, date.fromisoformat(params["as_of"]))
    logging.getLogger(__name__).info("\n%s", report.render())
    return report.to_dict()


@dag(
    dag_id="policy_whatif",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    dagrun_timeout=timedelta(hours=1),
    default_args=default_args(),
    tags=["writeoffs", "policy", "what-if"],
    doc_md=__doc__,
    params={
        "as_of": Param(type="string", format="date", description="past business date to evaluate"),
        "policy_yaml": Param("", type="string", description="draft policy YAML text (takes precedence)"),
        "policy_path": Param("", type="string", description="or a path to the draft policy file"),
    },
)
def policy_whatif() -> None:
    run_whatif()


policy_whatif()
