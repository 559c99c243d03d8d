"""`make up`'s sources: the generated sample export, and nothing that needs a system `make up` does not start.

1. Generates the sample ERP export (CSV with its control file, as `make demo` does) into ``$WRITEOFFS_SOURCES_DIR``
   when it is not there yet, as of the business date of the ingest DAG's latest scheduled tick: that is the run
   the scheduler starts once the DAG is unpaused, and the export's control file must name the date it loads.
2. Writes ``$WRITEOFFS_DATA_DIR/sources.yaml``: the committed ``include/config/sources.yaml`` with only the
   ``erp_csv`` source. The SQL and HTTP sources need a billing database and API `make up` does not run (the trigger
   form's default, "all sources", would wait on them), and the sample's formats carry the same invoices, so one is
   loaded, as in the demo.

Prints the written config's path (up.sh exports it as ``WRITEOFFS_SOURCES_CONFIG``). Environment:
``WRITEOFFS_SAMPLE_INVOICES`` (default 20,000) sizes a newly generated sample.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import yaml

from writeoffs import strict_yaml
from writeoffs.ingest.config import DEFAULT_PATH, parse

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_SOURCES = ("erp_csv",)


def next_scheduled_business_date() -> date:
    """The business date of the first scheduled ingest run: the latest tick of the DAG's cron (catchup is off)."""
    import pendulum
    from airflow.timetables.base import TimeRestriction
    from airflow.timetables.trigger import CronTriggerTimetable

    spec = importlib.util.spec_from_file_location("_ar_aging_ingest", ROOT / "dags" / "ar_aging_ingest.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # the DAG file is parse-safe: it builds the DAG and runs nothing
    if not module.SCHEDULE:
        return pendulum.now("UTC").date()
    info = CronTriggerTimetable(module.SCHEDULE, timezone="UTC").next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(earliest=pendulum.datetime(2000, 1, 1, tz="UTC"), latest=None, catchup=False),
    )
    return info.data_interval.end.date() if info else pendulum.now("UTC").date()


def ensure_sample(sources_dir: Path) -> str:
    """The sample's business date, generating the export first if there is none."""
    control = sources_dir / "erp_export" / "control.json"
    if not control.is_file():
        as_of = next_scheduled_business_date().isoformat()
        invoices = os.environ.get("WRITEOFFS_SAMPLE_INVOICES", "20000")
        print(f"Sample data: generating {invoices} invoices as of {as_of} into {sources_dir}", flush=True)
        command = ["generate", "--invoices", invoices, "--as-of", as_of, "--out", str(sources_dir)]
        subprocess.run(
            [sys.executable, "-m", "writeoffs", *command, "--formats", "csv", "-q"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return str(json.loads(control.read_text())["as_of"])


def write_config(target: Path) -> None:
    raw = DEFAULT_PATH.read_bytes()
    data = strict_yaml.load(raw, str(DEFAULT_PATH))
    data["sources"] = {name: data["sources"][name] for name in SAMPLE_SOURCES}
    header = (
        f"# Written by `make up` (scripts/sample_sources.py) from {DEFAULT_PATH.relative_to(ROOT)}: only the\n"
        "# generated sample source. Edits are overwritten at the next start; point WRITEOFFS_SOURCES_CONFIG at your\n"
        "# own file instead.\n"
    )
    text = header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    parse(strict_yaml.load(text, str(target)), origin=str(target))  # never write a config the DAGs would refuse
    target.write_text(text)


def main() -> int:
    data_dir = Path(os.environ["WRITEOFFS_DATA_DIR"])
    sources_dir = Path(os.environ["WRITEOFFS_SOURCES_DIR"])
    as_of = ensure_sample(sources_dir)
    target = data_dir / "sources.yaml"
    write_config(target)
    print(f"Sources:     {', '.join(SAMPLE_SOURCES)} (sample as of {as_of} in {sources_dir}; config {target})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
