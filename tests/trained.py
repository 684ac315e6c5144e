"""Tiny trained checkpoints for the inference tests, trained once per test process."""

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch
from conftest import compose_cfg
from omegaconf import DictConfig

#: The four nets, small enough to train in a second or two; the MLP keeps its default width so
#: that int8 Linear layers make a visibly smaller file.
NETS = {
    "mlp": ["model=mlp"],
    "cnn": ["model=cnn", "model.net.channels=[8,16]"],
    "rnn": ["model=rnn", "model.net.hidden_size=16"],
    "transformer": ["model=transformer", "model.net.d_model=16", "model.net.n_heads=2", "model.net.d_ff=32"],
}
_cache: dict[str, Path] = {}


def checkpoint(net: str, root: Path) -> Path:
    """The best checkpoint of a short digits run of ``net`` (``debug=limit``)."""
    from litlab.train import train

    if net not in _cache:
        run_dir = root / net
        overrides = ["print_config=false", f"paths.root_dir={root}", "debug=limit", "logger=none", *NETS[net]]
        train(compose_cfg(overrides, run_dir))
        _cache[net] = next((run_dir / "checkpoints").glob("epoch_*.ckpt"))
    return _cache[net]


class Checkpoints:
    """``ckpts[net]``: trained on first use (once per process), so a selection of tests trains only what it needs."""

    def __init__(self, root):
        self.root = root

    def __getitem__(self, net):
        return checkpoint(net, self.root)


def config(name: str, run_dir: Path, *overrides: str) -> DictConfig:
    """The composed ``conf/<name>.yaml`` with ``run_dir`` as the Hydra run directory."""
    return compose_cfg([f"paths.root_dir={run_dir.parent}", *overrides], run_dir, config_name=name)


_on_gpu = {"active": False}
# Tags storages as CUDA while active, exactly as torch.save does for tensors on a GPU (otherwise
# returns None: the default taggers decide). A CPU-only test machine can then write a file that,
# like a GPU-trained checkpoint, cannot be loaded without map_location.
torch.serialization.register_package(-1, lambda s: "cuda:0" if _on_gpu["active"] else None, lambda s, loc: None)


@contextlib.contextmanager
def saving_as_if_on_gpu() -> Iterator[None]:
    _on_gpu["active"] = True
    try:
        yield
    finally:
        _on_gpu["active"] = False
