"""The workspace's routes, one FastAPI router per area; ``create_app`` (:mod:`..app`) includes them.

Modules: :mod:`.common` (security headers, limits, the app's :class:`~.common.Workspace` and the access checks every
route uses), :mod:`.batches` (my queue, a batch's items, answering, the candidates CSV), :mod:`.reports` (trail,
reconciliation, report files, validation Data Docs) and :mod:`.ledger` (sub-ledger and KPIs). A route reads the
app's :class:`~.common.Workspace` through the dependency :func:`~.common.workspace_of`.
"""
