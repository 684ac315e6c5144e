"""Lazy files (class-per-subfolder), transforms from config, on-device data."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from datafiles import write_tree

from litlab.data import FolderDataModule, SyntheticDataModule
from litlab.data.folder import INDEX_FILE
from litlab.data.transforms import build_transform, compose

NO_OUTPUT = ("logger=none", "callbacks=none", "trainer.enable_checkpointing=false")


def folder(root, **kwargs) -> FolderDataModule:
    dm = FolderDataModule(root=str(root), **{"input_shape": [1, 8, 8], "num_classes": 2, **kwargs})
    dm.setup("fit")
    return dm


@pytest.mark.parametrize("fmt", ["npy", "pt", "png", "jpg"])
def test_each_file_format_reads_lazily(tmp_path, fmt):
    write_tree(tmp_path, fmt)
    dm = folder(tmp_path, val_split=2, test_split=2)
    assert [len(dm.splits[s]) for s in ("train", "val", "test")] == [8, 2, 2]
    x, y = dm.splits["train"][0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and float(x.min()) >= 0 and float(x.max()) <= 1
    assert dm.classes == ["cat", "dog"] and y.dtype == torch.int64


def test_folder_labels_are_listed_without_reading_files(tmp_path):
    """class_weights=balanced counts them (litlab.data.base.dataset_labels)."""
    from litlab.data.base import dataset_labels

    write_tree(tmp_path, "npy")
    train = folder(tmp_path, transforms=[{"name": "hflip", "p": 0.5}]).splits["train"]
    assert dataset_labels(train).tolist() == [int(y) for _, y in train]


def test_rgb_images_and_given_split_folders(tmp_path):
    for split in ("train", "val", "test"):
        write_tree(tmp_path / split, "png", per_class=3, shape=(3, 8, 8))
    dm = folder(tmp_path, input_shape=[3, 8, 8])
    assert [len(dm.splits[s]) for s in ("train", "val", "test")] == [6, 6, 6]
    assert dm.splits["val"][0][0].shape == (3, 8, 8)


def test_index_is_built_once_and_rebuilt_when_files_change(tmp_path, monkeypatch):
    write_tree(tmp_path, "npy")
    folder(tmp_path)
    cached = json.loads((tmp_path / INDEX_FILE).read_text())
    assert len(cached["splits"]["train"]) + len(cached["splits"]["val"]) + len(cached["splits"]["test"]) == 12
    # A second setup reads the cache: no scan, no verification.
    monkeypatch.setattr(FolderDataModule, "build", lambda self: pytest.fail("index rebuilt"))
    folder(tmp_path)
    monkeypatch.undo()
    np.save(tmp_path / "dog" / "new.npy", np.zeros((1, 8, 8), np.float32))
    dm = folder(tmp_path)
    assert sum(len(d) for d in dm.splits.values()) == 13


@pytest.mark.parametrize("cache", ["[]", '{"key": ', "null"])
def test_an_index_cache_that_is_not_one_is_rebuilt(tmp_path, cache):
    write_tree(tmp_path, "npy")
    (tmp_path / INDEX_FILE).write_text(cache)
    dm = folder(tmp_path)
    assert sum(len(d) for d in dm.splits.values()) == 12
    assert isinstance(json.loads((tmp_path / INDEX_FILE).read_text()), dict)


def test_verified_index_sees_a_file_rewritten_in_place(tmp_path):
    """Rewriting a file keeps its folder's mtime; the verified index must still notice the file."""
    write_tree(tmp_path, "npy")
    folder(tmp_path)
    bad = tmp_path / "dog" / "3.npy"
    with open(bad, "r+b") as f:  # in place: the same inode, no directory entry changes
        f.truncate(bad.stat().st_size // 2)
    with pytest.raises(ValueError, match=r"dog/3\.npy is not a readable \.npy file"):
        folder(tmp_path)


def test_workers_read_the_files(train_in_process, tmp_path):
    write_tree(tmp_path / "images", "png", per_class=20)
    metrics, _ = train_in_process(
        "data=folder", f"data.root={tmp_path / 'images'}", "data.input_shape=[1,8,8]", "data.num_classes=2",
        "data.num_workers=2", "data.batch_size=8", "trainer.max_epochs=2", *NO_OUTPUT,
    )  # fmt: skip
    assert metrics["test/acc"] >= 0.9


# Bad input.


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere does not exist"):
        folder(tmp_path / "nothere")
    (tmp_path / "a.npz").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"a\.npz is a file: give the folder holding <class>/<file>"):
        folder(tmp_path / "a.npz")
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.png").touch()
    with pytest.raises(ValueError, match="has no class folders"):
        folder(tmp_path / "flat")
    write_tree(tmp_path / "t", "npy")
    (tmp_path / "t" / "bird").mkdir()
    (tmp_path / "t" / "bird" / "notes.txt").write_text("not a sample")
    with pytest.raises(ValueError, match=r"class folder .*bird is empty"):
        folder(tmp_path / "t", num_classes=3)


@pytest.mark.parametrize("fmt", ["png", "npy", "pt"])
def test_corrupt_file_is_named_before_training(tmp_path, fmt):
    write_tree(tmp_path, fmt)
    bad = tmp_path / "dog" / f"3.{fmt}"
    bad.write_bytes(bad.read_bytes()[: len(bad.read_bytes()) // 2])
    with pytest.raises(ValueError, match=rf"dog/3\.{fmt} is not a readable"):
        folder(tmp_path)


def test_a_npy_file_of_objects_or_of_another_format_is_named_so(tmp_path):
    """numpy's own messages suggest allow_pickle=True; litlab never unpickles a data file."""
    write_tree(tmp_path, "npy")
    bad = tmp_path / "dog" / "3.npy"
    np.save(bad, np.array(["a", 1], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"dog/3\.npy is not a readable \.npy file: it holds Python objects"):
        folder(tmp_path)
    bad.write_text("1,2,3\n")
    with pytest.raises(ValueError, match=r"dog/3\.npy is not a readable \.npy file: not written by numpy"):
        folder(tmp_path)


def test_wrong_shape_and_class_count(tmp_path):
    write_tree(tmp_path, "npy")
    folder(tmp_path)  # a cached index of the right shape: another input_shape must not reuse it
    with pytest.raises(ValueError, match=r"has shape \[1, 8, 8\] but data.input_shape=\[1, 4, 4\]"):
        folder(tmp_path, input_shape=[1, 4, 4])
    with pytest.raises(ValueError, match=r"2 class folders \['cat', 'dog'\] but data.num_classes=3"):
        folder(tmp_path, num_classes=3)
    with pytest.raises(ValueError, match=r"data.classes=\['dog', 'cat'\]: a folder's classes are its class folders"):
        folder(tmp_path, classes=["dog", "cat"])
    with pytest.raises(ValueError, match="leaves no training samples"):
        folder(tmp_path, val_split=0.5, test_split=0.5)


# Transforms.


def test_batch_friendly_transforms():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    torch.manual_seed(0)
    crop = build_transform({"name": "random_crop", "padding": 1})(x)
    assert crop.shape == x.shape
    # Each output is a shifted window of the zero-padded input.
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    for b in range(2):
        windows = [padded[b, :, i : i + 4, j : j + 4] for i in range(3) for j in range(3)]
        assert any(torch.equal(crop[b], w) for w in windows)
    flipped = build_transform({"name": "hflip", "p": 1.0})(x)
    assert torch.equal(flipped, x.flip(-1))
    norm = build_transform({"name": "normalize", "mean": [1.0], "std": [2.0]})(x)
    assert torch.allclose(norm, (x - 1) / 2)
    rgb = build_transform({"name": "normalize", "mean": [0.0, 1.0, 2.0], "std": 1.0})(torch.zeros(1, 3, 2, 2))
    assert rgb[0, :, 0, 0].tolist() == [0.0, -1.0, -2.0]
    noisy = build_transform({"name": "gaussian_noise", "std": 0.5})(x)
    assert 0.3 < float((noisy - x).std()) < 0.7


def test_random_transforms_are_for_training_only():
    chain = compose([{"name": "scale", "factor": 2.0}, {"name": "hflip", "p": 1.0}])
    x = torch.ones(1, 1, 2, 2)
    x[..., 0] = 0
    assert torch.equal(chain.select(train=True)(x), (2 * x).flip(-1))
    assert torch.equal(chain.select(train=False)(x), 2 * x)
    assert compose([{"name": "hflip"}]).select(train=False) is None


def test_bad_transform_specs():
    with pytest.raises(ValueError, match="name='rotate' is unknown; choose one of"):
        compose([{"name": "rotate"}])
    with pytest.raises(ValueError, match="transform 'hflip' got bad arguments"):
        compose([{"name": "hflip", "angle": 3}])
    with pytest.raises(ValueError, match=r"std=\[0.5, 0\]: every std must be > 0"):
        compose([{"name": "normalize", "mean": [0, 0], "std": [0.5, 0]}])
    noise = [{"name": "gaussian_noise"}]
    with pytest.raises(ValueError, match="act on features and images, not token ids"):
        SyntheticDataModule(input_shape=[8], vocab_size=4, batch_transforms=noise)


def test_per_sample_transforms_leave_the_fast_path_and_batch_ones_run_on_transfer():
    kw = {"input_shape": [1, 4, 4], "num_classes": 2, "num_train": 40, "num_val": 8, "num_test": 8, "batch_size": 8}
    plain = SyntheticDataModule(**kw)
    plain.setup("fit")
    per_sample = SyntheticDataModule(**kw, transforms=[{"name": "hflip", "p": 1.0}])
    per_sample.setup("fit")
    assert type(plain.train_dataloader()).__name__ == "TensorLoader"
    assert type(per_sample.train_dataloader()).__name__ == "ResumableDataLoader"
    assert type(per_sample.val_dataloader()).__name__ == "TensorLoader", "random transforms skip eval splits"
    assert torch.equal(per_sample.splits["train"][0][0], plain.splits["train"][0][0].flip(-1))

    batched = SyntheticDataModule(**kw, batch_transforms=[{"name": "hflip", "p": 1.0}, {"name": "scale", "factor": 3}])
    batch = (torch.ones(2, 1, 4, 4), torch.zeros(2))
    batched.trainer = SimpleNamespace(training=True)
    x, _ = batched.on_after_batch_transfer(batch, 0)
    assert torch.equal(x, torch.full((2, 1, 4, 4), 3.0))
    batched.trainer = SimpleNamespace(training=False)
    assert torch.equal(batched.on_after_batch_transfer(batch, 0)[0], torch.full((2, 1, 4, 4), 3.0))


def test_transforms_from_the_command_line(train_in_process):
    metrics, _ = train_in_process(
        "data=synthetic", "data.transforms=[{name: gaussian_noise, std: 0.1}]",
        "data.batch_transforms=[{name: hflip}, {name: normalize, mean: 0.0, std: 1.0}]",
        "trainer.max_epochs=1", *NO_OUTPUT,
    )  # fmt: skip
    assert "test/acc" in metrics


def test_on_device_moves_tensors_once_to_the_trainers_device():
    dm = SyntheticDataModule(input_shape=[1, 4, 4], num_classes=2, num_train=40, on_device=True, batch_size=8)
    meta = SimpleNamespace(root_device=torch.device("meta"))
    dm.trainer = SimpleNamespace(strategy=meta, global_rank=0, world_size=1, overfit_batches=0)
    dm.setup("fit")
    assert all(t.device.type == "meta" for t in dm.splits["train"].tensors)
    x, _ = next(iter(dm.train_dataloader()))
    assert x.device.type == "meta" and x.shape == (8, 1, 4, 4)


def test_16_bit_grayscale_images_keep_their_values(tmp_path):
    """Pillow's convert("L") clipped every value above 255: a 16-bit PNG came out black and white."""
    from PIL import Image

    from litlab.data.files import read_image

    values = np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000
    Image.fromarray(values).save(tmp_path / "wide.png")
    x = read_image(tmp_path / "wide.png", 1)
    np.testing.assert_allclose(x[0].numpy(), values / 65535, rtol=1e-6)
    assert read_image(tmp_path / "wide.png", 3).shape == (3, 8, 8)
    assert read_image(tmp_path / "wide.png", 1, (4, 4)).shape == (1, 4, 4)
