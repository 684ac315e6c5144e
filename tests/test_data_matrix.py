"""Every model on every data config it fits: composes and runs ``debug=fast_dev_run`` in-process.

Data that needs files gets small ones written here; ``data=digits`` on every model is in
test_training_features.py. Token sequences fit the nets that embed tokens.
"""

import numpy as np
import pytest
from datafiles import write_cifar, write_mnist, write_tree

IMAGE_DATA = [
    "arrays",
    "folder",
    "synthetic",
    "synthetic_regression",
    "synthetic_multilabel",
    "synthetic_stream",
    "mnist",
    "fashion_mnist",
    "cifar10",
]
CASES = [(model, data) for data in IMAGE_DATA for model in ("mlp", "cnn", "rnn", "transformer")] + [
    ("rnn", "sequences"),
    ("transformer", "sequences"),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, list[str]]:
    """Small files in each format, and the overrides that point each data config at them."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    np.savez(root / "arrays.npz", x=rng.normal(size=(40, 1, 8, 8)).astype(np.float32), y=rng.integers(0, 3, 40))
    write_tree(root / "folder", "png", per_class=5, classes=("a", "b", "c"))
    write_mnist(root / "MNIST" / "raw", n_train=40, n_test=10)
    write_mnist(root / "FashionMNIST" / "raw", n_train=40, n_test=10, gz=False)
    write_cifar(root, n_per_batch=8)
    small = ["data.num_train=64", "data.num_val=32", "data.num_test=32"]
    offline = [f"data.data_dir={root}", "data.download=false", "data.val_split=8"]
    return {
        "arrays": [f"data.path={root / 'arrays.npz'}", "data.input_shape=[1,8,8]", "data.num_classes=3"],
        "folder": [
            f"data.root={root / 'folder'}",
            "data.input_shape=[1,8,8]",
            "data.num_classes=3",
            "data.val_split=3",
        ],
        "synthetic": small,
        "synthetic_regression": small,
        "synthetic_multilabel": small,
        "synthetic_stream": small,
        "sequences": small,
        "mnist": offline,
        "fashion_mnist": offline,
        "cifar10": offline,
    }


@pytest.mark.parametrize(("model", "data"), CASES)
def test_model_runs_on_data(train_in_process, files, model, data):
    # Small batches and patches keep the 38 runs cheap; the shapes still go through every layer.
    cheap = ["data.batch_size=16", "data.eval_batch_size=16"]
    if model == "transformer" and data != "sequences":
        cheap.append("model.net.patch_size=4")
    metrics, _ = train_in_process(
        f"model={model}", f"data={data}", "debug=fast_dev_run", "logger=none", *cheap, *files[data]
    )
    assert metrics, f"model={model} data={data} logged no metrics"
    assert all(np.isfinite(v) for v in metrics.values())


def test_a_datamodule_normalize_on_a_split_not_in_memory_says_where_it_goes():
    """It failed with AttributeError: 'Subset' object has no attribute 'tensors'."""
    import torch
    from torch.utils.data import Subset, TensorDataset

    from litlab.data.base import DataModule
    from litlab.data.transforms import Normalize

    class Lazy(DataModule):
        def load(self):
            self.normalize = Normalize(0.5, 0.25)
            data = TensorDataset(torch.rand(8, 1, 2, 2), torch.zeros(8, dtype=torch.long))
            return Subset(data, range(4)), Subset(data, range(4, 6)), Subset(data, range(6, 8))

    with pytest.raises(TypeError, match=r"Lazy.normalize normalizes in-memory splits \(TensorDataset\), not a Subset"):
        Lazy(task="classification", input_shape=[1, 2, 2], num_classes=2).setup("fit")
