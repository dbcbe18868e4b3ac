"""The feature cache under faults: damaged files, concurrent processes, unwritable folders."""

import errno
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from rcvlab import RcvlabError, extract_features, load_model
from rcvlab.features import cache as cache_mod
from rcvlab.features.cache import CacheError, CacheMiss, FeatureCache, check_cache_dir

TESTS = str(Path(__file__).resolve().parents[1])


@pytest.fixture
def setup(tiny, rng):
    imgs = rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    return load_model(tiny, input_size=32, layers=["conv", "fc"]), imgs


def key_dir(root: Path) -> Path:
    (d,) = [p for p in root.iterdir() if p.is_dir()]
    return d


def truncate(path: Path) -> str:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return ""


def empty(path: Path) -> str:
    path.write_bytes(b"")
    return ""


def garbage(path: Path) -> str:
    path.write_bytes(np.random.default_rng(1).bytes(path.stat().st_size))
    return ""


def flip(path: Path) -> str:
    """Flip bytes inside the stored features of layer fc: the zip member fails its CRC."""
    with np.load(path) as z:
        raw = z["layer:fc"].tobytes()
    data = bytearray(path.read_bytes())
    at = bytes(data).index(raw) + len(raw) // 2
    data[at : at + 2] = bytes(b ^ 0xFF for b in data[at : at + 2])
    path.write_bytes(bytes(data))
    return "CRC"


DAMAGES = [truncate, empty, garbage, flip]


def assert_same(a, b):
    assert list(a) == list(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    np.testing.assert_array_equal(a.valid, b.valid)


def moved_aside_once(caplog, path: Path, reason: str) -> None:
    lines = [r.getMessage() for r in caplog.records if r.name == "rcvlab.features.cache"]
    assert len(lines) == 1 and "\n" not in lines[0], lines
    assert str(path) in lines[0] and "moved it to" in lines[0] and reason in lines[0]
    assert len(list(path.parent.glob(f"{path.name}.corrupt-*"))) == 1


@pytest.mark.parametrize("damage", DAMAGES, ids=lambda f: f.__name__)
def test_damaged_merged_file_is_moved_aside_and_recomputed(setup, tmp_path, caplog, damage):
    m, imgs = setup
    fresh = extract_features(m, imgs, batch_size=8)
    extract_features(m, imgs, cache_dir=tmp_path, batch_size=8)
    merged = key_dir(tmp_path) / "features.npz"
    reason = damage(merged)
    with caplog.at_level(logging.WARNING, logger="rcvlab.features.cache"):
        again = extract_features(m, imgs, cache_dir=tmp_path, batch_size=8)
    assert again.n_computed == 20
    assert_same(again, fresh)
    moved_aside_once(caplog, merged, reason)
    third = extract_features(m, imgs, cache_dir=tmp_path, batch_size=8)
    assert third.n_computed == 0
    assert_same(third, fresh)


@pytest.mark.parametrize("damage", DAMAGES, ids=lambda f: f.__name__)
def test_damaged_chunk_is_moved_aside_and_only_it_recomputed(setup, tmp_path, caplog, damage):
    m, imgs = setup
    fresh = extract_features(m, imgs, batch_size=8)
    # a shard covering everything leaves the chunks unmerged
    extract_features(m, imgs, cache_dir=tmp_path, batch_size=8, shard=(0, 20))
    chunk = key_dir(tmp_path) / "chunks" / "00000008-00000016.npz"
    reason = damage(chunk)
    with caplog.at_level(logging.WARNING, logger="rcvlab.features.cache"):
        again = extract_features(m, imgs, cache_dir=tmp_path, batch_size=8)
    assert again.n_computed == 8
    assert_same(again, fresh)
    moved_aside_once(caplog, chunk, reason)
    assert (key_dir(tmp_path) / "features.npz").exists()


def test_chunk_with_wrong_rows_is_damaged_too(tmp_path, caplog):
    c = FeatureCache(tmp_path, "k", 4, ["a"])
    c.write_chunk(0, 4, {"a": np.ones((3, 1))}, np.ones(3, bool), {})  # 3 rows for 4 images
    with caplog.at_level(logging.WARNING), pytest.raises(CacheMiss):
        c.read()
    assert "3 rows instead of 4" in caplog.records[0].getMessage()
    assert c.missing() == [(0, 4)]


SHOW_WARNING = textwrap.dedent(
    """
    import sys, numpy as np
    sys.path.insert(0, {tests!r})
    from conftest import Tiny
    from rcvlab import extract_features, load_model
    imgs = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    m = load_model(Tiny().eval(), input_size=32, layers=["conv"])
    f = extract_features(m, imgs, cache_dir={cache!r})
    print(f.n_computed)
    """
)


@pytest.mark.slow
def test_a_damaged_cache_shows_one_line_on_stderr_of_a_plain_process(tmp_path):
    script = SHOW_WARNING.format(tests=TESTS, cache=str(tmp_path))
    subprocess.run([sys.executable, "-c", script], capture_output=True, check=True)
    garbage(key_dir(tmp_path) / "features.npz")
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.split() == ["6"]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "features.npz cannot be read" in lines[0], res.stderr


def test_reader_falls_back_to_merged_file_when_chunks_vanish(setup, tmp_path, monkeypatch):
    """The race of two processes: B lists the chunks, A merges and deletes them, B reads."""
    m, imgs = setup
    ref = extract_features(m, imgs, cache_dir=tmp_path, batch_size=4, shard=(0, 20))
    a = FeatureCache(tmp_path, ref.key, 20, ["conv", "fc"])
    b = FeatureCache(tmp_path, ref.key, 20, ["conv", "fc"])
    listed = b.chunks()

    def list_then_other_merges():
        a.merge()  # writes features.npz and deletes every chunk
        return listed

    monkeypatch.setattr(b, "chunks", list_then_other_merges)
    feats, valid, _ = b.read()
    assert not list(a.chunk_dir.glob("*.npz")) and a.merged_path.exists()
    for k in ref:
        np.testing.assert_array_equal(feats[k], ref[k])
    assert valid.all()


def test_merge_keeps_recent_temporary_files_of_other_writers(tmp_path):
    c = FeatureCache(tmp_path, "k", 2, ["a"])
    c.write_chunk(0, 2, {"a": np.ones((2, 1))}, np.ones(2, bool), {})
    busy = c.chunk_dir / ".00000000-00000002.npz.feed.tmp"  # another process writing now
    stale = c.chunk_dir / ".00000000-00000001.npz.dead.tmp"  # left by a killed process
    busy.write_bytes(b"x")
    stale.write_bytes(b"x")
    old = busy.stat().st_mtime - cache_mod.STALE_TMP_SECONDS - 10
    os.utime(stale, (old, old))
    c.merge()
    assert busy.exists() and not stale.exists()
    assert not list(c.chunk_dir.glob("*.npz")) and c.merged_path.exists()


RACE = textwrap.dedent(
    """
    import os, sys, time, traceback
    import numpy as np, torch
    sys.path.insert(0, {tests!r})
    from conftest import Tiny
    from rcvlab import extract_features, load_model

    torch.set_num_threads(1)
    root, me = {root!r}, sys.argv[1]
    imgs = np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    m = load_model(Tiny().eval(), input_size=32, layers=["conv", "relu", "fc"])
    for r in range({rounds}):
        open(os.path.join(root, f"ready-{{r}}-{{me}}"), "w").close()
        t0 = time.time()
        # both processes start each round together, so they finish it together
        while len([p for p in os.listdir(root) if p.startswith(f"ready-{{r}}-")]) < 2:
            if time.time() - t0 > 60:
                sys.exit("the other process did not come")
            time.sleep(0.001)
        try:
            f = extract_features(m, imgs, cache_dir=os.path.join(root, f"cache{{r}}"), batch_size=2)
            np.save(os.path.join(root, f"{{r}}-{{me}}.npy"), np.hstack([f[k] for k in f]))
        except Exception:
            with open(os.path.join(root, f"{{r}}-{{me}}.err"), "w") as fh:
                fh.write(traceback.format_exc())
    """
)


@pytest.mark.slow
def test_two_processes_finishing_the_same_extraction_at_once(tmp_path):
    # Before the fix, about 1 round in 4 ended in FileNotFoundError in one of the processes.
    rounds = 6
    script = RACE.format(tests=TESTS, root=str(tmp_path), rounds=rounds)
    procs = [
        subprocess.Popen([sys.executable, "-c", script, me], stderr=subprocess.PIPE, text=True)
        for me in "ab"
    ]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errs
    failures = {p.name: p.read_text() for p in tmp_path.glob("*.err")}
    assert not failures, failures
    results = [np.load(p) for p in sorted(tmp_path.glob("*.npy"))]
    assert len(results) == 2 * rounds
    ref = results[0]
    assert ref.shape == (64, 2 + 2 + 3) and np.isfinite(ref).all()
    for x in results[1:]:
        np.testing.assert_array_equal(x, ref)
    for r in range(rounds):
        kd = key_dir(tmp_path / f"cache{r}")
        assert (kd / "features.npz").exists() and not list((kd / "chunks").glob("*.npz"))


def test_check_cache_dir_creates_and_returns_the_folder(tmp_path):
    assert check_cache_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert (tmp_path / "a" / "b").is_dir() and not list((tmp_path / "a" / "b").iterdir())


def test_cache_dir_under_a_file_is_one_line_before_any_work(setup, tmp_path):
    m, imgs = setup
    (tmp_path / "file").write_text("x")
    calls = []
    m.module.register_forward_pre_hook(lambda *a: calls.append(1))
    with pytest.raises(CacheError, match=r"Not a directory \(ENOTDIR\).*--cache-dir") as e:
        extract_features(m, imgs, cache_dir=tmp_path / "file" / "cache")
    assert "\n" not in str(e.value) and calls == []
    with pytest.raises(CacheError, match="is a file, not a folder"):
        check_cache_dir(tmp_path / "file")


def test_read_only_cache_dir_is_one_line(tmp_path, monkeypatch):
    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(cache_mod.tempfile, "mkstemp", read_only)
    with pytest.raises(CacheError, match=r"Read-only file system \(EROFS\); pass a writable"):
        check_cache_dir(tmp_path)


@pytest.mark.parametrize(
    ("code", "hint"),
    [(errno.ENOSPC, "free some space and rerun to resume"), (errno.EROFS, "writable --cache")],
)
def test_failing_cache_write_is_one_line_and_leaves_no_temporary(
    setup, tmp_path, monkeypatch, code, hint
):
    m, imgs = setup
    real_replace = os.replace
    writes = []

    def fail_on_second_chunk(src, dst):
        if str(dst).endswith(".npz"):
            writes.append(dst)
            if len(writes) == 2:
                raise OSError(code, os.strerror(code))
        return real_replace(src, dst)

    monkeypatch.setattr(cache_mod.os, "replace", fail_on_second_chunk)
    with pytest.raises(CacheError, match=hint) as e:
        extract_features(m, imgs, cache_dir=tmp_path, batch_size=8)
    assert "\n" not in str(e.value) and "00000008-00000016.npz" in str(e.value)
    chunks = key_dir(tmp_path) / "chunks"
    assert [p.name for p in chunks.iterdir()] == ["00000000-00000008.npz"]  # no .tmp left
    monkeypatch.setattr(cache_mod.os, "replace", real_replace)
    resumed = extract_features(m, imgs, cache_dir=tmp_path, batch_size=8)
    assert resumed.n_computed == 12
    assert_same(resumed, extract_features(m, imgs, batch_size=8))


def test_device_is_checked_also_when_the_cache_is_complete(setup, tmp_path):
    m, imgs = setup
    extract_features(m, imgs, cache_dir=tmp_path)
    with pytest.raises(RcvlabError, match="Unknown device 'bogus'") as e:
        extract_features(m, imgs, cache_dir=tmp_path, device="bogus")
    assert "\n" not in str(e.value)
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(RcvlabError, match="not available"):
        extract_features(m, imgs, cache_dir=tmp_path, device=f"cuda:{n}")
