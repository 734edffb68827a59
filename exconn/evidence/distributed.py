"""`exconn evidence --scheduler ADDRESS`: the per-file reduction on a Dask cluster (exconn[dask]).

Each worker reduces whole files (where the logs lie, if the cluster shares their storage) and
ships back only the small aggregates, which merge by addition here: the result equals the
single-machine run.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any

from exconn.errors import UsageError
from exconn.evidence.model import Evidence

Reducer = Callable[[str, str | None], Evidence]


def dask_mapper(address: str) -> Callable[[Reducer, list[str], str | None], Iterator[Evidence]]:
    try:
        # Through importlib: typed as Any whether or not dask (untyped) is installed for mypy.
        client_type: Any = importlib.import_module("dask.distributed").Client
    except ImportError:
        raise UsageError("--scheduler needs the optional extra: pip install 'exconn[dask]'") from None

    def mapper(reduce: Reducer, files: list[str], since: str | None) -> Iterator[Evidence]:
        try:
            client: Any = client_type(address, timeout=30)
        except (OSError, TimeoutError) as exc:
            raise UsageError(f"--scheduler {address}: cannot connect ({exc})") from None
        with client:
            futures = client.map(reduce, files, [since] * len(files), pure=False)
            parts: list[Evidence] = client.gather(futures)
        yield from parts

    return mapper
