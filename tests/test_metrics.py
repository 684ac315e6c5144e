"""Epoch metrics accumulated on the device equal scikit-learn's over the same predictions."""

import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score

from litlab.tasks.metrics import ClassificationMetrics, MeanMetric, Meters


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_accuracy_and_macro_f1_match_sklearn_over_batches(dtype):
    torch.manual_seed(0)
    metric, preds, targets = ClassificationMetrics(7), [], []
    for n in (50, 64, 1):  # uneven batches; class 6 never occurs in the targets
        logits, target = torch.randn(n, 7).to(dtype), torch.randint(0, 6, (n,))
        metric.update(logits, target)
        preds.append(logits.argmax(-1))
        targets.append(target)
    y_pred, y_true = torch.cat(preds).numpy(), torch.cat(targets).numpy()
    values = metric.compute()
    assert metric.confusion.sum() == len(y_true)
    assert values["acc"].item() == pytest.approx(accuracy_score(y_true, y_pred))
    assert values["f1"].item() == pytest.approx(f1_score(y_true, y_pred, average="macro"))


def test_mean_is_weighted_by_batch_size():
    mean = MeanMetric()
    mean.update(torch.tensor(1.0), 3)
    mean.update(torch.tensor(5.0), 1)
    assert mean.compute().item() == pytest.approx(2.0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_states_stay_float32_when_the_task_is_cast_to_half(dtype):
    # Lightning's bf16-true and 16-true call module.to(dtype): a bfloat16 count stops at 256.
    meters = Meters({"loss": MeanMetric(), "metrics": ClassificationMetrics(2)}).to(dtype)
    for _ in range(2):  # the reset restores float32 states too
        meters["metrics"].reset()
        for _ in range(3000 // 100):
            meters["loss"].update(torch.tensor(0.1, dtype=dtype), 100)
            meters["metrics"].update(torch.tensor([[1.0, 0.0]], dtype=dtype).expand(100, 2), torch.zeros(100).long())
    assert meters["metrics"].confusion.dtype == meters["loss"].count.dtype == torch.float32
    assert meters["metrics"].confusion[0, 0].item() == 3000
    assert meters["loss"].count.item() == 6000
    assert meters["loss"].compute().item() == pytest.approx(0.1, rel=1e-3)


def test_the_report_knows_which_way_every_logged_metric_improves():
    from litlab.report import direction
    from litlab.tasks import TASKS
    from litlab.train_checks import logged_metrics

    lower_is_better = {"loss", "loss_step", "mse", "mae"}
    for task in TASKS:
        for name in logged_metrics(task):
            want = "min" if name.split("/")[-1] in lower_is_better else "max"
            assert direction(name, {}) == want == direction(f"{name}_best", {}), (task, name)
    # A metric no task logs (a user's own, optimized by a search): the search's direction says which way.
    assert direction("custom/auc", {"metric": "custom/auc", "direction": "maximize"}) == "max"
    assert direction("custom/auc", {}) == "min"
