"""Run rcvlab on a Dask cluster: a loopback LocalCluster here, or an existing one."""

from rcvlab.distributed.client import (
    MISSING_DASK,
    check_dask,
    check_engine,
    check_scheduler,
    has_gpu_workers,
    open_client,
    parse_cluster,
)

__all__ = [
    "MISSING_DASK",
    "check_dask",
    "check_engine",
    "check_scheduler",
    "has_gpu_workers",
    "open_client",
    "parse_cluster",
]
