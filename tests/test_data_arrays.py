"""data=arrays: files or arrays in memory, given or seeded splits, checked against the config."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from datafiles import write_mnist

from litlab.data import ArraysDataModule, MNISTDataModule, read_idx, split_sizes

SHAPE = [1, 4, 4]


def blobs(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two separable classes: the sign of the first pixel."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *SHAPE)).astype(np.float32)
    y = (x[:, 0, 0, 0] > 0).astype(np.int64)
    x[:, 0, 0, 0] += np.where(y == 1, 2.0, -2.0)
    return x, y


def module(**kwargs) -> ArraysDataModule:
    kwargs = {"input_shape": SHAPE, "num_classes": 2, **kwargs}
    dm = ArraysDataModule(**kwargs)
    dm.setup("fit")
    return dm


def sizes(dm: ArraysDataModule) -> list[int]:
    return [len(dm.splits[s]) for s in ("train", "val", "test")]


def test_split_by_fractions_and_counts_is_seeded():
    x, y = blobs(200)
    assert sizes(module(arrays={"x": x, "y": y}, val_split=0.1, test_split=0.25)) == [130, 20, 50]
    a, b = (module(arrays={"x": x, "y": y}, val_split=7, test_split=3) for _ in range(2))
    assert sizes(a) == [190, 7, 3]
    assert torch.equal(a.splits["val"].tensors[0], b.splits["val"].tensors[0])
    c = module(arrays={"x": x, "y": y}, val_split=7, test_split=3, split_seed=1)
    assert not torch.equal(a.splits["val"].tensors[0], c.splits["val"].tensors[0])
    # Every sample lands in exactly one split.
    rows = torch.cat([a.splits[s].tensors[0] for s in ("train", "val", "test")]).flatten(1)
    assert torch.equal(rows.sum(0), torch.from_numpy(x).flatten(1).sum(0)) or torch.allclose(
        rows.sum(0), torch.from_numpy(x).flatten(1).sum(0), atol=1e-3
    )


@pytest.mark.parametrize("fmt", ["npz", "pt", "npy_folder"])
def test_given_splits_from_each_file_format(tmp_path, fmt):
    x, y = blobs(100)
    arrays = {
        "x_train": x[:60],
        "y_train": y[:60],
        "x_val": x[60:80],
        "y_val": y[60:80],
        "x_test": x[80:],
        "y_test": y[80:],
    }
    if fmt == "npz":
        path = tmp_path / "d.npz"
        np.savez(path, **arrays)
    elif fmt == "pt":
        path = tmp_path / "d.pt"
        torch.save({k: torch.from_numpy(v) for k, v in arrays.items()}, path)
    else:
        path = tmp_path / "arrays"
        path.mkdir()
        for k, v in arrays.items():
            np.save(path / f"{k}.npy", v)
    dm = module(path=str(path))
    assert sizes(dm) == [60, 20, 20]
    assert torch.equal(dm.splits["test"].tensors[0], torch.from_numpy(x[80:]))
    assert dm.splits["train"].tensors[1].dtype == torch.int64


def test_missing_split_is_carved_from_train(tmp_path):
    x, y = blobs(100)
    np.savez(tmp_path / "d.npz", x_train=x[:80], y_train=y[:80], x_test=x[80:], y_test=y[80:])
    assert sizes(module(path=str(tmp_path / "d.npz"), val_split=10)) == [70, 10, 20]


def test_arrays_train_and_learn(train_in_process, tmp_path):
    x, y = blobs(400)
    np.savez(tmp_path / "blobs.npz", x=x, y=y)
    metrics, _ = train_in_process(
        "data=arrays", f"data.path={tmp_path / 'blobs.npz'}", f"data.input_shape={SHAPE}", "data.num_classes=2",
        "trainer.max_epochs=3", "logger=none", "callbacks=none", "trainer.enable_checkpointing=false",
    )  # fmt: skip
    assert metrics["test/acc"] > 0.9


def test_regression_arrays(tmp_path):
    x = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    dm = module(
        arrays={"x": x, "y": x.sum(1, keepdims=True)},
        task="regression",
        input_shape=[3],
        num_classes=None,
        num_targets=1,
    )
    assert dm.splits["train"].tensors[1].dtype == torch.float32
    with pytest.raises(ValueError, match="num_targets=2"):
        module(arrays={"x": x, "y": x[:, :1]}, task="regression", input_shape=[3], num_classes=None, num_targets=2)


def test_regression_with_targets_of_shape_n_reports_the_loss_it_trains_on(train_in_process, tmp_path):
    """y of shape [N] for one target: the metrics compare [B] targets with [B, 1] predictions row by row."""
    x = np.random.default_rng(0).normal(size=(200, 4)).astype(np.float32)
    np.savez(tmp_path / "reg.npz", x=x, y=x.sum(1))  # [N], not [N, 1]
    metrics, _ = train_in_process(
        "data=arrays", f"data.path={tmp_path / 'reg.npz'}", "data.input_shape=[4]", "data.task=regression",
        "data.num_targets=1", "trainer.max_epochs=2", "logger=none", "callbacks=none",
        "trainer.enable_checkpointing=false",
    )  # fmt: skip
    # Broadcasting [B, 1] - [B] to [B, B] made test/mse some 100x the loss.
    assert metrics["test/mse"] == pytest.approx(metrics["test/loss"], rel=1e-4)


# Bad input: each gives one readable error naming the problem, before training starts.


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope.npz"):
        module(path=str(tmp_path / "nope.npz"))


def test_corrupt_and_truncated_files_are_named(tmp_path):
    x, y = blobs(50)
    good = tmp_path / "good.npz"
    np.savez(good, x=x, y=y)
    (tmp_path / "trunc.npz").write_bytes(good.read_bytes()[:300])
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    (tmp_path / "npys").mkdir()
    np.save(tmp_path / "npys" / "x.npy", x)
    (tmp_path / "npys" / "y.npy").write_bytes((tmp_path / "npys" / "x.npy").read_bytes()[:100])
    for name in ("trunc.npz", "junk.pt", "npys"):
        with pytest.raises(
            ValueError, match=r"(trunc\.npz|junk\.pt|y\.npy).*(corrupt|truncated|not written by torch.save)"
        ):
            module(path=str(tmp_path / name))


def test_files_of_python_objects_are_named_as_such_not_as_corrupt(tmp_path):
    """A .pt of numpy arrays, an .npz of object arrays: readable files that litlab will not unpickle."""
    x, y = blobs(20)
    torch.save({"x": x, "y": y}, tmp_path / "numpy.pt")
    np.savez(tmp_path / "objects.npz", x=x, y=np.array(["cat", "a dog"] * 10, dtype=object))
    with pytest.raises(ValueError, match=r"numpy\.pt holds pickled Python objects.* \(it imports numpy") as e:
        module(path=str(tmp_path / "numpy.pt"))
    assert "\x1b" not in str(e.value) and "corrupt" not in str(e.value)
    with pytest.raises(ValueError, match=r"objects\.npz is not a readable \.npz file: it holds Python objects"):
        module(path=str(tmp_path / "objects.npz"))


def test_length_mismatch():
    x, y = blobs(50)
    with pytest.raises(ValueError, match="x has 50 samples but y has 49"):
        module(arrays={"x": x, "y": y[:49]})


def test_labels_outside_num_classes():
    x, y = blobs(50)
    with pytest.raises(ValueError, match=r"labels span \[0, 1\] but data.num_classes=1"):
        module(arrays={"x": x, "y": y}, num_classes=1)
    with pytest.raises(ValueError, match=r"labels span \[-1"):
        module(arrays={"x": x, "y": y - 1})


def test_shape_mismatch_and_bad_keys():
    x, y = blobs(50)
    with pytest.raises(ValueError, match=r"shape \[1, 4, 4\] but data.input_shape=\[16\]"):
        module(arrays={"x": x, "y": y}, input_shape=[16])
    with pytest.raises(ValueError, match="unknown keys \\['labels'\\]"):
        module(arrays={"x": x, "labels": y})
    with pytest.raises(ValueError, match="'x_val' and 'y_val' must be given together"):
        module(arrays={"x_train": x, "y_train": y, "x_val": x})
    with pytest.raises(ValueError, match=r"needs data.num_classes"):
        ArraysDataModule(arrays={"x": x, "y": y}, input_shape=SHAPE)
    # x_train/y_train beside x/y were silently ignored.
    with pytest.raises(ValueError, match="holds both x/y and x_train/y_train: which is the training data"):
        module(arrays={"x": x, "y": y, "x_train": x, "y_train": y})


def test_token_ids_are_checked_against_the_vocabulary():
    """Ids past the vocabulary failed in the embedding mid-training; float ids were truncated silently."""
    y = np.zeros(20, dtype=np.int64)
    tokens = {"input_shape": [6], "vocab_size": 5}
    ids = np.arange(120).reshape(20, 6) % 5
    assert module(arrays={"x": ids, "y": y}, **tokens).splits["train"].tensors[0].dtype == torch.long
    with pytest.raises(ValueError, match=r"token ids span \[0, 8\], the vocabulary is \[0, 5\)"):
        module(arrays={"x": ids + (ids == 4) * 4, "y": y}, **tokens)
    with pytest.raises(ValueError, match="holds non-integer values: token ids are whole numbers"):
        module(arrays={"x": ids + 0.5, "y": y}, **tokens)


def padded_ids(n: int = 240, length: int = 12, seed: int = 0) -> dict[str, np.ndarray]:
    """Token ids 1..2 of random lengths, 0-padded, with their mask; y: more 1s than 2s among the real tokens."""
    rng = np.random.default_rng(seed)
    mask = np.arange(length)[None] < rng.integers(3, length + 1, n)[:, None]
    x = np.where(mask, rng.integers(1, 3, (n, length)), 0)
    return {"x": x, "y": ((x == 1).sum(1) > (x == 2).sum(1)).astype(np.int64), "mask": mask}


def test_token_arrays_with_a_padding_mask_train_through_the_config(train_in_process, tmp_path):
    """data.vocab_size is a key of data=arrays (it needed +), and a mask rides with the ids into every batch."""
    np.savez(tmp_path / "ids.npz", **padded_ids())
    metrics, _ = train_in_process(
        "data=arrays", f"data.path={tmp_path / 'ids.npz'}", "data.input_shape=[12]", "data.vocab_size=3",
        "data.num_classes=2", "model=transformer", "trainer.max_epochs=3", "logger=none", "callbacks=none",
        "trainer.enable_checkpointing=false",
    )  # fmt: skip
    assert metrics["test/acc"] > 0.9
    # A split given without its mask, beside one with: every token of it is real.
    train, test = padded_ids(), padded_ids(20)
    arrays = {"x": train["x"], "y": train["y"], "x_test": test["x"], "y_test": test["y"], "mask_test": test["mask"]}
    dm = module(arrays=arrays, input_shape=[12], vocab_size=3)
    assert dm.splits["train"].tensors[2].all() and dm.splits["test"].tensors[2].sum() == test["mask"].sum()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"mask": lambda a: a["mask"][:, :5]}, r"mask has shape \[240, 5\], its x \[240, 12\]: they must agree"),
        ({"mask": lambda a: a["mask"] * 2}, r"mask holds values other than 0/1"),
        ({"mask": lambda a: a["mask"] & False}, r"mask: sample 0 has no real token \(240 samples in all\)"),
        ({"mask_val": lambda a: a["mask"]}, "mask_val is the mask of x_val, which it does not hold"),
        ({"mask": lambda a: a["mask"][:, ::-1].copy()}, r"mask: sample 0 has a real token after padding"),
    ],
)
def test_bad_padding_masks_are_named(change, message):
    arrays = padded_ids()
    arrays.update({k: f(arrays) for k, f in change.items()})
    with pytest.raises(ValueError, match=message):
        module(arrays=arrays, input_shape=[12], vocab_size=3)
    with pytest.raises(ValueError, match=r"a padding mask goes with token ids; set data\.vocab_size"):
        module(arrays=padded_ids(), input_shape=[12])


def test_nan_and_non_numbers_are_named_with_their_key(tmp_path):
    x, y = blobs(50)
    bad = x.copy()
    bad[7, 0, 1, 1] = np.nan
    with pytest.raises(ValueError, match=r"arrays: x has NaN or inf values in 1 samples \(the first is sample 7\)"):
        module(arrays={"x": bad, "y": y})
    with pytest.raises(ValueError, match=r"arrays: y holds nan among its class labels; labels are whole numbers"):
        module(arrays={"x": x, "y": np.where(y == 1, np.nan, 0.0)})
    np.savez(tmp_path / "words.npz", x=x, y=np.array(["cat", "dog"] * 25))
    with pytest.raises(ValueError, match=r"words.npz: y holds <U3 values; litlab reads numbers"):
        module(path=str(tmp_path / "words.npz"))


def test_a_split_too_small_to_hold_a_sample_is_refused():
    """3 samples with val_split=0.1: no val metrics and no best checkpoint, silently."""
    x, y = blobs(3)
    with pytest.raises(ValueError, match=r"^data.val_split=0.1 of 3 samples is 0 samples"):
        module(arrays={"x": x, "y": y})


@pytest.mark.parametrize(
    ("split", "message"),
    [
        ((0.5, 0.5), "leaves no training samples"),
        ((60, 0), "takes 60 of 50"),
        ((1.5, 0), "fraction in \\[0, 1\\)"),
        ((-1, 0), ">= 0"),
    ],
)
def test_split_that_does_not_add_up(split, message):
    with pytest.raises(ValueError, match=message):
        split_sizes(50, split)
    x, y = blobs(50)
    with pytest.raises(ValueError, match=message):
        module(arrays={"x": x, "y": y}, val_split=split[0], test_split=split[1])


# MNIST-format files, made here.


@pytest.mark.parametrize(("gz", "layout"), [(True, "flat"), (False, "raw")])
def test_mnist_reads_idx_in_both_layouts(tmp_path, gz, layout):
    folder = tmp_path if layout == "flat" else tmp_path / "MNIST" / "raw"
    write_mnist(folder, n_train=60, n_test=20, gz=gz)
    dm = MNISTDataModule(data_dir=str(tmp_path), val_split=10, download=False, num_classes=10, input_shape=[1, 28, 28])
    dm.setup("fit")
    assert sizes(dm) == [50, 10, 20]
    x = dm.splits["train"].tensors[0]
    assert x.shape == (50, 1, 28, 28) and abs(float(x.mean())) < 0.1
    # Every datamodule's val_split is a count or a fraction.
    dm = MNISTDataModule(data_dir=str(tmp_path), val_split=0.25, download=False, num_classes=10)
    dm.setup("fit")
    assert sizes(dm) == [45, 15, 20]


def test_mnist_missing_files_named(tmp_path):
    dm = MNISTDataModule(data_dir=str(tmp_path), download=False, num_classes=10)
    with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte.*MNIST/raw"):
        dm.setup("fit")


def test_mnist_truncated_and_corrupt_files_named(tmp_path):
    paths = write_mnist(tmp_path, gz=False)
    path = paths["train-images-idx3-ubyte"]
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte is truncated"):
        read_idx(path)
    path.write_bytes(b"GARBAGE!")
    with pytest.raises(ValueError, match="train-images-idx3-ubyte is not an IDX file"):
        read_idx(path)
    gz = write_mnist(tmp_path / "g")["t10k-labels-idx1-ubyte"]
    gz.write_bytes(gz.read_bytes()[:-4])
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte\.gz is corrupt or truncated"):
        read_idx(gz)


def test_mnist_images_and_labels_disagree(tmp_path):
    write_mnist(tmp_path, gz=False)
    write_mnist(tmp_path / "other", n_train=30, gz=False)
    (tmp_path / "other" / "train-labels-idx1-ubyte").replace(tmp_path / "train-labels-idx1-ubyte")
    dm = MNISTDataModule(data_dir=str(tmp_path), download=False, val_split=5, num_classes=10)
    with pytest.raises(ValueError, match=r"60 images but .*train-labels-idx1-ubyte has 30 labels"):
        dm.setup("fit")


def test_mnist_mlp_experiment(train_in_process, tmp_path):
    write_mnist(tmp_path / "mnist", n_train=300, n_test=50)
    metrics, _ = train_in_process(
        "experiment=mnist_mlp", f"data.data_dir={tmp_path / 'mnist'}", "data.download=false", "data.val_split=50",
        "trainer.max_epochs=1", "logger=none", "callbacks=none", "trainer.enable_checkpointing=false",
    )  # fmt: skip
    assert "test/acc" in metrics


def test_bad_data_fails_before_training_and_writes_nothing(train_in_process, tmp_path):
    x, y = blobs(50)
    np.savez(tmp_path / "bad.npz", x=x, y=y + 5)
    with pytest.raises(ValueError, match=r"labels span \[5, 6\] but data.num_classes=2"):
        train_in_process(
            "data=arrays", f"data.path={tmp_path / 'bad.npz'}", f"data.input_shape={SHAPE}", "data.num_classes=2"
        )
    (run_dir,) = tmp_path.glob("run*")
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "metrics.json").exists()


def test_the_finiteness_check_makes_no_full_size_copy():
    """isfinite over MNIST-sized arrays made full-size temporaries: +280 MB of a run's peak memory."""
    code = """
import resource, torch
from litlab.data.arrays import non_finite_samples
x = torch.rand(50_000, 1000)  # 200 MB
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
assert len(non_finite_samples(x)) == 0
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""
    grown_mb = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert grown_mb < 20, f"peak memory grew by {grown_mb} MB"


def test_arrays_given_in_code_may_be_views():
    """A reversed view (x[::-1]) gave torch's 'negative strides' error; strings named no array."""
    x, y = blobs(40)
    dm = module(arrays={"x": x[::-1], "y": y[::-1]}, val_split=0, test_split=0)
    assert torch.equal(dm.splits["train"].tensors[0].sort(0).values, torch.from_numpy(x).sort(0).values)
    with pytest.raises(ValueError, match=r"arrays\['y'\] holds <U1 values; litlab reads numbers"):
        module(arrays={"x": x, "y": np.array(["a"] * 40)})
