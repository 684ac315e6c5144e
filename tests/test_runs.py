"""Run-directory helpers: checkpoint lookup and atomic metrics files."""

import json
import os

import pytest

from litlab.runs import find_last_checkpoint, resolve_checkpoint, write_json_atomic


def test_last_finds_the_newest_last_ckpt(tmp_path):
    for i, name in enumerate(["a", "b", "c"]):
        ckpt = tmp_path / "runs" / name / "checkpoints" / "last.ckpt"
        ckpt.parent.mkdir(parents=True)
        ckpt.write_bytes(b"x")
        os.utime(ckpt, (1000 + i, 1000 + [0, 2, 1][i]))
    assert find_last_checkpoint(tmp_path).parent.parent.name == "b"
    assert resolve_checkpoint("last", tmp_path).endswith("b/checkpoints/last.ckpt")
    assert resolve_checkpoint(str(tmp_path / "runs" / "a"), tmp_path).endswith("a/checkpoints/last.ckpt")


def test_missing_checkpoints_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"ckpt_path=last: no checkpoints/last\.ckpt under"):
        resolve_checkpoint("last", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"ckpt_path=nope\.ckpt: no such checkpoint file"):
        resolve_checkpoint("nope.ckpt", tmp_path)


def test_atomic_json_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "metrics.json"
    write_json_atomic(path, {"a": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_atomic_json_has_the_mode_of_a_plain_file(tmp_path):
    write_json_atomic(tmp_path / "a.json", {})
    (tmp_path / "b.json").write_text("{}")
    assert (tmp_path / "a.json").stat().st_mode == (tmp_path / "b.json").stat().st_mode


def test_a_run_directory_means_last_ckpt_to_resume_and_the_best_to_evaluate(tmp_path):
    import json

    from litlab.runs import resolve_checkpoint

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for name in ("epoch_003.ckpt", "last.ckpt"):
        (run / "checkpoints" / name).write_bytes(b"")
    # metrics.json names where the run was written; the file is found by name under this directory.
    (run / "metrics.json").write_text(json.dumps({"best_checkpoint": "/elsewhere/checkpoints/epoch_003.ckpt"}))
    assert resolve_checkpoint(str(run), tmp_path) == str(run / "checkpoints" / "last.ckpt")
    assert resolve_checkpoint(str(run), tmp_path, best=True) == str(run / "checkpoints" / "epoch_003.ckpt")
    (run / "metrics.json").unlink()  # a run that never finished: its last.ckpt
    assert resolve_checkpoint(str(run), tmp_path, best=True) == str(run / "checkpoints" / "last.ckpt")


def test_json_holds_no_nan(tmp_path):
    """A diverged run's NaN loss made metrics.json unreadable to strict JSON readers."""
    write_json_atomic(tmp_path / "m.json", {"metrics": {"loss": float("nan"), "acc": 0.5, "x": [float("inf")]}})
    assert json.loads((tmp_path / "m.json").read_text(), parse_constant=pytest.fail) == {
        "metrics": {"loss": None, "acc": 0.5, "x": [None]}
    }


def test_a_write_that_fails_names_the_file_and_keeps_the_one_before(tmp_path, monkeypatch):
    """A full disk: the OS's "No space left on device" names no file."""
    import errno

    path = tmp_path / "metrics.json"
    write_json_atomic(path, {"old": 1})

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match=r"could not write .*metrics\.json: No space left on device"):
        write_json_atomic(path, {"new": 2})
    assert path.read_text() == '{\n  "old": 1\n}\n' and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
