"""Multi-label classification: sigmoid per label, its metrics, its data, predictions and export."""

import csv

import numpy as np
import pytest
import torch
from conftest import FAST, compose_cfg
from omegaconf import OmegaConf
from trained import config

from litlab.checkpoint_data import load_datamodule
from litlab.command_line import check_command_line
from litlab.export import export
from litlab.predict import predict
from litlab.rules import ConfigError
from litlab.tasks import MultiLabelClassifier, load_task
from litlab.tasks.metrics import MultiLabelMetrics


def test_metrics_by_hand():
    m = MultiLabelMetrics(3)
    logits = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 1.0, -0.2], [1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]])
    target = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    m.update(logits[:2], target[:2])
    m.update(logits[2:], target[2:])
    got = m.compute()
    # 12 cells, wrong: (1, 1) and (2, 2); rows 0 and 3 exact. Label F1: 1, 2/3 (tp 1, fp 1), 2/3 (tp 1, fp 1).
    assert got["acc"].item() == pytest.approx(10 / 12)
    assert got["exact"].item() == pytest.approx(2 / 4)
    assert got["f1"].item() == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from litlab.train import train

    root = tmp_path_factory.mktemp("multilabel")
    run = root / "run"
    overrides = [*FAST, f"paths.root_dir={root}", "data=synthetic_multilabel", "trainer.max_epochs=5", "logger=none"]
    return train(compose_cfg(overrides, run)), run


def test_pos_weight_weighs_the_positives():
    net = {"arch": "mlp", "hidden_sizes": [4]}
    plain = MultiLabelClassifier([3], 2, net, {"name": "adamw", "lr": 1e-3})
    weighted = MultiLabelClassifier([3], 2, net, {"name": "adamw", "lr": 1e-3}, pos_weight=3.0)
    logits = torch.tensor([[-2.0, 1.0]])
    positives, negatives = torch.ones(1, 2), torch.zeros(1, 2)
    assert weighted.loss(logits, positives) == pytest.approx(3 * plain.loss(logits, positives).item())
    assert weighted.loss(logits, negatives) == pytest.approx(plain.loss(logits, negatives).item())


def test_synthetic_multilabel_learns(trained):
    metrics, _ = trained
    assert metrics["test/f1"] > 0.85 and metrics["test/acc"] > 0.85
    assert metrics["test/exact"] > 0.4  # all 5 labels right; chance is 1/32


def test_predictions_name_the_labels_on(trained, tmp_path):
    _, run = trained
    csv_path = predict(config("predict", tmp_path / "predict", f"ckpt_path={run}", "split=test"))
    with open(csv_path, newline="") as f:
        header, *rows = list(csv.reader(f))
    table = np.load(tmp_path / "predict" / "predictions.npy")
    assert header == ["index", "labels", *(f"prob_{i}" for i in range(5)), *(f"target_{i}" for i in range(5))]
    assert table.dtype.names == ("index", "labels", "probs", "target") and table["labels"].shape == (500, 5)
    checkpoint = run / "checkpoints" / "last.ckpt"  # what ckpt_path=<run dir> reads
    task = load_task(checkpoint).eval()
    assert task.name == "multilabel"
    data = OmegaConf.create(torch.load(checkpoint, weights_only=True)["config"]["data"])
    x, _ = load_datamodule(data).splits["test"].tensors
    with torch.inference_mode():
        probs = task.readout(task(x)).numpy()
    np.testing.assert_allclose(table["probs"], probs, atol=1e-6)
    assert (table["labels"] == (probs >= 0.5)).all() and table["labels"].any(1).mean() > 0.5
    assert [r[1] for r in rows[:20]] == [";".join(str(i) for i in np.flatnonzero(on)) for on in table["labels"][:20]]
    assert ((table["probs"] > 0) & (table["probs"] < 1)).all()  # sigmoids, not a softmax over the labels
    assert not np.allclose(table["probs"].sum(1), 1.0)


def test_export_says_what_the_outputs_are(trained, tmp_path):
    _, run = trained
    meta = export(config("export", tmp_path / "export", f"ckpt_path={run}", "format=state_dict"))
    assert meta["task"] == "multilabel" and meta["classes"] == [str(i) for i in range(5)]
    assert meta["output"] == {
        "name": "logits",
        "shape": ["batch", 5],
        "meaning": "label logits: a sigmoid gives each label's probability",
    }


def test_array_labels_are_checked(tmp_path, train_in_process):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 6)).astype(np.float32)
    y = (rng.random((60, 3)) < 0.3).astype(np.float32)
    args = ["data=arrays", "data.task=multilabel", "data.input_shape=[6]", "data.num_labels=3"]
    np.savez(tmp_path / "good.npz", x=x, y=y)
    metrics, _ = train_in_process(*args, f"data.path={tmp_path / 'good.npz'}", "debug=fast_dev_run")
    assert {"test/acc", "test/exact", "test/f1"} <= set(metrics)
    for name, bad, message in [
        ("two", y * 2, r"y holds values in \[0, 2\]; labels lie in \[0, 1\]"),
        ("wide", np.hstack([y, y]), r"y must be one 0/1 entry per label and sample \(shape \[N, 3\]"),
        ("flat", y[:, 0], r"y must be one 0/1 entry per label and sample"),
    ]:
        np.savez(tmp_path / f"{name}.npz", x=x, y=bad)
        with pytest.raises(ValueError, match=message):
            train_in_process(*args, f"data.path={tmp_path / f'{name}.npz'}", "debug=fast_dev_run")


def test_multilabel_without_a_label_count_is_refused():
    with pytest.raises(ConfigError) as e:
        check_command_line(["data=synthetic", "data.task=multilabel"])
    assert str(e.value) == "data.task=multilabel: needs data.num_labels; give it as data.num_labels=..."
    with pytest.raises(
        ConfigError, match=r"^data\.task=multilabel: DigitsDataModule has targets for classification only"
    ):
        check_command_line(["data=digits", "data.task=multilabel"])
