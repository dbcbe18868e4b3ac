"""One 2-worker loopback LocalCluster shared by every test in this folder (starting one
takes seconds; every test that needs a cluster uses the ``client`` fixture).

This folder has no ``__init__.py`` on purpose: ``tests/`` has none, so with pytest's
importlib mode a package here would be imported under the name ``distributed`` and hide
Dask's own ``distributed`` package. Without it, its modules are ``tests.distributed.*``.
"""

import pytest

pytest.importorskip("distributed")


@pytest.fixture(scope="session")
def client():
    """A ``distributed.Client`` on a 2-worker, 1-thread-each LocalCluster on 127.0.0.1.

    Made by :func:`rcvlab.distributed.open_client` (CPU workers even where CUDA is
    present, so CPU results are bit-comparable), closed at the end of the session.
    """
    from rcvlab.distributed import open_client

    with open_client("local:2", gpus=False) as c:
        c.wait_for_workers(2, timeout=60)
        yield c
