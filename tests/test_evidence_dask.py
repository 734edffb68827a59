"""`exconn evidence --scheduler`: the per-file reduction on a real Dask cluster with worker processes
(a dask.distributed.LocalCluster, as CI runs it) equals the single-machine run."""

from __future__ import annotations

import json

import pytest
from dask.distributed import LocalCluster

from exconn.cli import main
from exconn.evidence import reduce_paths
from exconn.evidence.distributed import dask_mapper
from tests.test_evidence_samples import SAMPLES


@pytest.mark.slow
def test_local_cluster_equals_single_machine(capsys):
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        distributed = reduce_paths([SAMPLES], mapper=dask_mapper(cluster.scheduler_address))
        assert (
            main(["evidence", str(SAMPLES), "--format", "json", "--scheduler", cluster.scheduler_address])
            == 0
        )
    assert distributed == reduce_paths([SAMPLES], workers=1)
    doc = json.loads(capsys.readouterr().out)
    assert sum(t["sessions"] for t in doc["traffic"]) == sum(t.sessions for t in distributed.traffic) > 0
