"""Each rank's loaders see a distinct shard: the fast path, DataLoader workers, and streams alike.

Ranks are given explicitly (a trainer stand-in with ``global_rank``/``world_size``); real DDP
runs are tested with the trainer configs.
"""

from types import SimpleNamespace

import pytest
import torch
from datafiles import write_tree

from litlab.data import FolderDataModule, SyntheticDataModule

WORLD = 3
CPU = SimpleNamespace(root_device=torch.device("cpu"))  # the strategy's only attribute the loaders read


def rank_loaders(make, split: str) -> list[list[torch.Tensor]]:
    """The batches of ``split`` that each of ``WORLD`` ranks reads."""
    out = []
    for rank in range(WORLD):
        dm = make()
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=WORLD, strategy=CPU, overfit_batches=0)
        dm.setup("fit")
        out.append(list(getattr(dm, f"{split}_dataloader")()))
    return out


def ids(batches: list) -> list[float]:
    """A sample's identity: the sum of its input (distinct for random inputs)."""
    return [round(float(v), 4) for b in batches for v in b[0].flatten(1).sum(1)]


@pytest.mark.parametrize("kind", ["memory", "stream", "files"])
def test_ranks_split_eval_exactly_and_train_evenly(kind, tmp_path):
    if kind == "files":
        write_tree(tmp_path, "npy", per_class=11)

        def make():
            return FolderDataModule(
                root=str(tmp_path), input_shape=[1, 8, 8], num_classes=2, val_split=7, test_split=1, batch_size=2,
                num_workers=2,
            )  # fmt: skip
    else:

        def make():
            return SyntheticDataModule(
                input_shape=[1, 4, 4], num_classes=2, num_train=50, num_val=20, num_test=5, batch_size=4,
                streaming=kind == "stream", shuffle=kind != "stream", num_workers=2 if kind == "stream" else 0,
            )  # fmt: skip

    full = make()
    full.setup("fit")
    all_val = sorted(ids(list(full.val_dataloader())))
    all_train = sorted(ids(list(full.train_dataloader())))

    val = rank_loaders(make, "val")
    assert sorted(i for batches in val for i in ids(batches)) == all_val, "each val sample on exactly one rank"

    train = rank_loaders(make, "train")
    steps = [len(batches) for batches in train]
    assert len(set(steps)) == 1, f"every rank takes the same number of steps, got {steps}"
    seen = [i for batches in train for i in ids(batches)]
    assert set(seen) == set(all_train), "every training sample is on some rank"
    assert len(seen) - len(all_train) < WORLD * 4, "only padding repeats"


@pytest.mark.parametrize("overfit", [0, 3])
def test_overfitting_reads_the_same_batches_every_epoch(overfit):
    """trainer.overfit_batches: unshuffled training batches (Lightning cannot unshuffle the fast path)."""
    dm = SyntheticDataModule(input_shape=[4], num_classes=2, num_train=40, batch_size=8)
    dm.trainer = SimpleNamespace(global_rank=0, world_size=1, strategy=CPU, overfit_batches=overfit)
    dm.setup("fit")
    loader = dm.train_dataloader()
    epochs = []
    for epoch in range(2):
        loader.sampler.set_epoch(epoch)
        epochs.append(ids(list(loader)))
    assert (epochs[0] == epochs[1]) == bool(overfit)


def test_seeds_of_a_sweep_never_share_an_epochs_order():
    """With seed + epoch, seed 1's second epoch was seed 2's first, batch for batch."""
    from litlab.data.loader import ShardSampler

    orders = set()
    for seed in range(4):
        sampler = ShardSampler(100, shuffle=True, seed=seed)
        for epoch in range(4):
            sampler.set_epoch(epoch)
            orders.add(tuple(sampler))
    assert len(orders) == 16
