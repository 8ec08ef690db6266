"""`prefect deploy`, with a fix for a Prefect 3.8.8 client/server mismatch in this environment.

`prefect deploy` (after registering each deployment) asks the server for the pool's online
workers, sending ``"offset": null, "limit": null``; Prefect 3.8.8's server under the pinned
fastapi 0.154 rejects those nulls (422), so `prefect deploy --all` exits 1 after the first
deployment. This wrapper runs the same Prefect CLI with that one client call sending integers.

    python -m flows.deploy --no-prompt deploy --all      # instead of: prefect --no-prompt deploy --all
"""

from __future__ import annotations

import sys
from typing import Any

from prefect.client.orchestration._work_pools.client import WorkPoolAsyncClient

_original = WorkPoolAsyncClient.read_workers_for_work_pool


async def _read_workers(self: WorkPoolAsyncClient, work_pool_name: str, worker_filter: Any = None,
                        offset: int | None = None, limit: int | None = None) -> Any:
    return await _original(self, work_pool_name, worker_filter=worker_filter,
                           offset=offset or 0, limit=limit if limit is not None else 200)


def main() -> int:
    WorkPoolAsyncClient.read_workers_for_work_pool = _read_workers  # type: ignore[method-assign]
    from prefect.cli import app

    sys.argv[0] = "prefect"
    return app()


if __name__ == "__main__":
    sys.exit(main())
