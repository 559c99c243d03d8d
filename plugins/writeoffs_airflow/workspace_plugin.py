"""The write-off workspace as an Airflow plugin: a FastAPI app under ``/writeoffs`` and a "Write-offs" nav entry.

Airflow's plugins manager imports this file in every component (scheduler, workers, dag-processor, api-server), so
it only defines things: the FastAPI app, with the ledger and Airflow's security imports, is built on the first
request the api-server routes to it (:class:`LazyApp`). The pages live in :mod:`writeoffs_airflow.workspace`.
"""

from __future__ import annotations

import threading
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from writeoffs_airflow.answer_gate import AnswerGate  # imports nothing heavy

URL_PREFIX = "/writeoffs"  # the same as writeoffs_airflow.workspace.links.URL_PREFIX (not imported: keep this cheap)


class LazyApp:
    """An ASGI app that builds the workspace app on first use (thread-safe) and hands every request to it."""

    def __init__(self) -> None:
        self._app: Any = None
        self._lock = threading.Lock()

    def get(self) -> Any:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    from writeoffs_airflow.workspace.app import create_app

                    self._app = create_app()
        return self._app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.get()(scope, receive, send)


workspace_app = LazyApp()


class WriteoffsWorkspacePlugin(AirflowPlugin):
    name = "writeoffs_workspace"
    fastapi_apps = [  # noqa: RUF012 (AirflowPlugin's declared shape)
        {"app": workspace_app, "url_prefix": URL_PREFIX, "name": "Write-off workspace"},
    ]
    # Refuses, before Airflow takes it, an answer the ledger would refuse, and says why in the request's text.
    fastapi_root_middlewares = [  # noqa: RUF012
        {"middleware": AnswerGate, "args": [], "kwargs": {}, "name": "Write-off answer gate"},
    ]
    external_views = [  # noqa: RUF012
        {
            "name": "Write-offs",
            "href": f"{URL_PREFIX}/queue",
            "url_route": "writeoffs",
            "destination": "nav",
        },
    ]
