"""Run folders: refuse, resume, complete; atomic writes that fail in one line, leaving nothing."""

from __future__ import annotations

import errno
import json
import os

import pytest

from rcvlab.errors import DataError, OutputError, OutputExistsError
from rcvlab.runio import (
    RUN_FILE,
    check_complete,
    check_writable_file,
    finish_run,
    prepare_out,
    read_run,
    write_figure,
    write_text,
)


def test_new_folder_is_marked_running_then_complete(tmp_path):
    out = prepare_out(tmp_path / "run", command="rcvlab probe --x 1")
    assert read_run(out) == {**read_run(out), "status": "running", "command": "rcvlab probe --x 1"}
    write_text(out / "a.txt", "a")
    finish_run(out, note="done")
    run = json.loads((out / RUN_FILE).read_text())
    assert run["status"] == "complete" and run["files"] == ["a.txt"] and run["note"] == "done"


def test_interrupted_run_resumes_with_the_same_command_only(tmp_path):
    out = prepare_out(tmp_path / "run", command="rcvlab probe --x 1")
    write_text(out / "half.txt", "h")  # interrupted here: status stays running
    assert prepare_out(out, command="rcvlab probe --x 1") == out  # the resume hint is true
    with pytest.raises(OutputExistsError, match="interrupted run of another command"):
        prepare_out(out, command="rcvlab probe --x 2")
    finish_run(out)
    with pytest.raises(OutputExistsError, match=r"finished run.*--force"):
        prepare_out(out, command="rcvlab probe --x 1")
    assert prepare_out(out, force=True, command="rcvlab probe --x 2") == out
    assert read_run(out)["status"] == "running"


def test_foreign_files_need_force(tmp_path):
    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(OutputExistsError, match="already exists"):
        prepare_out(tmp_path)
    with pytest.raises(OutputExistsError, match="not a folder"):
        prepare_out(tmp_path / "mine.txt")


def test_unwritable_places_are_one_line(tmp_path):
    a_file = tmp_path / "f"
    a_file.write_text("x")
    with pytest.raises(OutputError, match="Cannot create output folder"):
        prepare_out(a_file / "run")
    with pytest.raises(OutputError, match="Cannot create folder"):
        check_writable_file(a_file / "p.pt")


@pytest.mark.parametrize("code", [errno.EROFS, errno.ENOSPC])
def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch, code):
    target = tmp_path / "x.txt"
    target.write_text("old")

    def refuse(src, dst):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OutputError, match=os.strerror(code)) as e:
        write_text(target, "new")
    assert str(e.value).count("\n") == 0
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.txt"]


def test_interrupted_figure_leaves_the_old_one(tmp_path):
    class Boom:
        def savefig(self, path, **kw):
            with open(path, "wb") as f:
                f.write(b"\x89PNG half")
            raise KeyboardInterrupt

    target = tmp_path / "p.png"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        write_figure(target, Boom())
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["p.png"]


def test_check_complete_refuses_half_runs(tmp_path):
    out = prepare_out(tmp_path / "run", command="c")
    write_text(out / "profile.json", "{}")
    with pytest.raises(DataError, match="did not finish"):
        check_complete(out / "profile.json")
    finish_run(out)
    check_complete(out / "profile.json")
    loose = tmp_path / "loose.json"
    loose.write_text("{}")
    check_complete(loose)  # outside a run folder: accepted as it is


def test_writable_file_is_checked_and_its_folder_made(tmp_path):
    p = check_writable_file(tmp_path / "new" / "deeper" / "p.pt")
    assert p.parent.is_dir() and not p.exists() and list(p.parent.iterdir()) == []
    p.write_text("x")
    with pytest.raises(OutputExistsError, match="--force"):
        check_writable_file(p)
    assert check_writable_file(p, force=True) == p
