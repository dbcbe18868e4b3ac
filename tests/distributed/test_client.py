import os
import socket
import sys

import psutil
import pytest
import torch

from rcvlab.distributed import check_dask, check_scheduler, open_client, parse_cluster
from rcvlab.distributed.client import MISSING_DASK, visible_devices
from rcvlab.errors import RcvlabError

LOOPBACK = {"127.0.0.1"}


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize(("spec", "n"), [("local:1", 1), ("local:4", 4), (" local:12 ", 12)])
def test_parse_cluster(spec, n):
    assert parse_cluster(spec) == n


@pytest.mark.parametrize("spec", ["local", "local:", "local:x", "local:-1", "remote:2", "4", ""])
def test_bad_cluster_spec_is_one_line(spec):
    with pytest.raises(RcvlabError, match="local:N") as e:
        parse_cluster(spec)
    assert repr(spec) in one_line(e)


def test_cluster_without_workers_is_one_line():
    with pytest.raises(RcvlabError, match="N >= 1") as e:
        parse_cluster("local:0")
    one_line(e)


@pytest.mark.parametrize(
    "address", ["tcp://10.0.0.5:8786", "tcp://node-1.cluster:8786", "tcp://[::1]:8786"]
)
def test_scheduler_address_shape(address):
    assert check_scheduler(f" {address}") == address


@pytest.mark.parametrize(
    "address",
    ["10.0.0.5:8786", "tcp://10.0.0.5", "tcp://10.0.0.5:0", "tcp://10.0.0.5:70000", "http://h:1"],
)
def test_bad_scheduler_address_is_one_line(address):
    with pytest.raises(RcvlabError, match="tcp://HOST:PORT") as e:
        check_scheduler(address)
    assert repr(address) in one_line(e)


def test_cluster_and_scheduler_together_is_one_line():
    with pytest.raises(RcvlabError, match="not both") as e:
        with open_client("local:2", "tcp://127.0.0.1:8786"):
            pass
    one_line(e)


def test_neither_gives_no_client():
    with open_client() as c:
        assert c is None


def test_missing_dask_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(RcvlabError) as e:
        check_dask()
    assert one_line(e) == MISSING_DASK
    assert "pip install 'rcvlab[dask]'" in MISSING_DASK
    with pytest.raises(RcvlabError, match=r"rcvlab\[dask\]"):
        with open_client("local:2"):
            pass


def test_unreachable_scheduler_is_one_line_with_the_address():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    with pytest.raises(RcvlabError, match="Cannot reach the Dask scheduler") as e:
        with open_client(scheduler=address, timeout=1):
            pass
    assert address in one_line(e)


def test_local_cluster_gives_back_the_environment(monkeypatch):
    """Nannies set OMP_NUM_THREADS=1 ... (those not set) in the starting process: undone
    on close."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "3")
    with open_client("local:1", gpus=False):
        assert os.environ.get("OMP_NUM_THREADS") == "1"  # what distributed does meanwhile
    assert "OMP_NUM_THREADS" not in os.environ
    assert os.environ["MKL_NUM_THREADS"] == "3"


def test_gpus_without_cuda_is_one_line():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    assert visible_devices() == []
    with pytest.raises(RcvlabError, match="CUDA is not available") as e:
        with open_client("local:1", gpus=True):
            pass
    one_line(e)


def inet_addresses(pid: int) -> set[str]:
    """Local and remote IPs of every TCP/UDP socket of a process."""
    out = set()
    for c in psutil.Process(pid).net_connections(kind="inet"):
        out.add(c.laddr.ip)
        if c.raddr:
            out.add(c.raddr.ip)
    return out


def test_cluster_stays_on_loopback(client):
    """Scheduler, nannies and workers listen and talk on 127.0.0.1 only (dask#8559)."""
    import distributed.utils

    info = client.scheduler_info(n_workers=-1)
    assert client.scheduler.address.startswith("tcp://127.0.0.1:")
    assert info["address"].startswith("tcp://127.0.0.1:")
    assert len(info["workers"]) == 2
    for address, w in info["workers"].items():
        assert address.startswith("tcp://127.0.0.1:")
        assert w["nanny"].startswith("tcp://127.0.0.1:")
    # no dashboard; the scheduler's health/metrics HTTP server is on loopback too
    assert client.cluster.scheduler.http_server.address == "127.0.0.1"

    worker_pids = list(client.run(os.getpid).values())
    nanny_pids = list(client.run(os.getpid, nanny=True).values())
    for pid in [*worker_pids, *nanny_pids]:
        assert inet_addresses(pid) <= LOOPBACK, pid
    # the scheduler runs in this process
    assert inet_addresses(os.getpid()) <= LOOPBACK

    # distributed finds "its" address by a UDP connect to the scheduler's host, or to
    # 8.8.8.8 with an empty host (#8559): only loopback was ever looked up
    def looked_up() -> set[str]:
        cells = [c.cell_contents for c in distributed.utils._get_ip.__closure__ or ()]
        caches = [c for c in cells if isinstance(c, dict)]
        assert caches, "distributed.utils._get_ip is no longer memoized: update this check"
        return {args[0] for args in caches[0]}

    # (with host "127.0.0.1" nothing is looked up at all; with "" every worker would have
    # looked up 8.8.8.8 to listen on a concrete address)
    for hosts in [
        *client.run(looked_up).values(),
        *client.run(looked_up, nanny=True).values(),
        looked_up(),
    ]:
        assert hosts <= LOOPBACK


def test_workers_pin_torch_threads(client):
    assert set(client.run(torch.get_num_threads).values()) == {1}
    assert all(w["nthreads"] == 1 for w in client.scheduler_info()["workers"].values())


@pytest.mark.gpu
def test_local_gpu_workers_see_one_device_each():
    n = min(torch.cuda.device_count(), 2)
    with open_client(f"local:{n}") as c:
        seen = c.run(lambda: (os.environ["CUDA_VISIBLE_DEVICES"], torch.cuda.device_count()))
        assert sorted(v[0] for v in seen.values()) == visible_devices()[:n]
        assert {v[1] for v in seen.values()} == {1}
        workers = c.scheduler_info(n_workers=-1)["workers"].values()
        assert all(w["resources"] == {"GPU": 1} for w in workers)


def test_every_client_parameter_refuses_what_is_not_a_client_before_any_work():
    import numpy as np

    from rcvlab.analyses.noise import noise_size
    from rcvlab.distributed.tasks import Call, run_calls
    from rcvlab.probe import probe_layers

    rng = np.random.default_rng(0)
    with pytest.raises(RcvlabError, match=r"client must be a distributed\.Client, got str"):
        probe_layers({"a": rng.standard_normal((30, 4))}, rng.standard_normal(30), client="x")
    with pytest.raises(RcvlabError, match=r"got str"):
        run_calls("x", [Call(print)], {})
    with pytest.raises(RcvlabError, match=r"got int"):
        noise_size("mobilenet_v2", weights="random", client=3)
