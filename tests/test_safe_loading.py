"""Checkpoints load without unpickling code, and a GPU checkpoint loads on a CPU-only machine."""

import os
import re
from pathlib import Path

import pytest
import torch
from conftest import read_metrics
from trained import saving_as_if_on_gpu

from litlab.checkpoint import AtomicCheckpointIO, UnsafeCheckpointError, load_checkpoint
from litlab.rules import ConfigError
from litlab.tasks import load_task

SRC = Path(__file__).parents[1] / "src"


class Payload:
    """What a malicious checkpoint holds: unpickling it would run a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A real litlab checkpoint (one short epoch)."""
    from conftest import FAST, compose_cfg

    from litlab.train import train

    root = tmp_path_factory.mktemp("trained")
    overrides = [*FAST, f"paths.root_dir={root}", "debug=limit", "logger=none", "test=false"]
    train(compose_cfg(overrides, root / "run"))
    return root / "run" / "checkpoints" / "last.ckpt"


def test_no_code_path_unpickles_freely():
    # Loading with weights_only=False may run code; saving a full checkpoint (weights_only=False) is fine.
    loads = re.compile(r"load\w*\([^)]*weights_only=False")
    offenders = [p for p in SRC.rglob("*.py") if loads.search(p.read_text())]
    assert offenders == []
    assert loads.search("torch.load(path, map_location='cpu', weights_only=False)")


def test_checkpoint_with_pickled_code_is_refused_everywhere(tmp_path, trained, train_in_process):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    torch.save({**torch.load(trained, weights_only=True), "extra": Payload(marker)}, evil)

    for load in (load_checkpoint, load_task):
        with pytest.raises(UnsafeCheckpointError, match=r"evil.ckpt holds pickled .*it imports posix.system"):
            load(evil)
    with pytest.raises(UnsafeCheckpointError):  # resuming: Lightning reads through litlab's CheckpointIO
        AtomicCheckpointIO().load_checkpoint(evil)
    with pytest.raises(ConfigError, match=r"^ckpt_path: .*evil.ckpt holds pickled"):  # refused before training
        train_in_process(f"ckpt_path={evil}", "debug=limit", "logger=none")
    assert not marker.exists(), "the payload ran"


def test_files_that_are_no_checkpoint_are_named_as_such(tmp_path):
    """Not "pickled objects" for a text file, not an AttributeError for a saved tensor."""
    from litlab.checkpoint import UnreadableCheckpointError

    (tmp_path / "notes.ckpt").write_text("garbage")
    torch.save(torch.zeros(3), tmp_path / "tensor.ckpt")
    torch.save([1, 2], tmp_path / "list.ckpt")
    cases = {"notes": "not written by torch.save", "tensor": "holds a Tensor, not a checkpoint", "list": "holds a list"}
    for name, message in cases.items():
        for load in (load_checkpoint, load_task):
            with pytest.raises(UnreadableCheckpointError, match=rf"{name}\.ckpt .*{message}"):
                load(tmp_path / f"{name}.ckpt")


def save_as_if_on_gpu(checkpoint: dict, path: Path) -> None:
    """torch.save with every storage tagged ``cuda:0``, byte for byte what a GPU run writes."""
    with saving_as_if_on_gpu():
        torch.save(checkpoint, path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the CPU-only machine")
def test_gpu_checkpoint_loads_on_cpu(tmp_path, trained, train_in_process):
    gpu = tmp_path / "gpu.ckpt"
    save_as_if_on_gpu(torch.load(trained, weights_only=True), gpu)
    with pytest.raises(RuntimeError, match="CUDA"):
        torch.load(gpu, weights_only=True)  # the forgery is real: plain loading needs a GPU

    task = load_task(gpu)
    reference = load_task(trained)
    for (name, a), b in zip(task.state_dict().items(), reference.state_dict().values(), strict=True):
        assert a.device.type == "cpu" and torch.equal(a, b), name
    # Lightning's resume path (Trainer.fit(ckpt_path=...)) reads it through litlab's CheckpointIO.
    _, run_dir = train_in_process(f"ckpt_path={gpu}", "debug=limit", "trainer.max_epochs=3", "logger=none")
    assert read_metrics(run_dir)["steps"] == 15, "went on from the GPU checkpoint's 10 steps"


def test_checkpoint_of_a_compiled_run_loads_uncompiled(tmp_path, trained):
    checkpoint = torch.load(trained, weights_only=True)
    checkpoint["hyper_parameters"]["compile"] = True  # as a model.compile=true run saves it
    torch.save(checkpoint, tmp_path / "compiled.ckpt")
    task = load_task(tmp_path / "compiled.ckpt")
    assert task._forward is task.net, "no torch.compile wrapper: eval and predict need no C compiler"


def test_a_checkpoint_without_read_permission_is_named_so(tmp_path, monkeypatch):
    """zipfile cannot open it either: it was called truncated or not written by torch.save."""
    from litlab.checkpoint import UnreadableCheckpointError, load_checkpoint

    path = tmp_path / "locked.ckpt"
    torch.save({"state_dict": {}}, path)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(torch, "load", denied)
    monkeypatch.setattr("builtins.open", denied)  # as for a file this user may not read (tests run as root)
    with pytest.raises(UnreadableCheckpointError, match=r"locked\.ckpt cannot be read: permission denied"):
        load_checkpoint(path)
