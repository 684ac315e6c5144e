"""The confusion-matrix and misclassified-samples images, read back from TensorBoard's events."""

import io

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from litlab.callbacks import confusion_matrix, misclassified
from litlab.callbacks.confusion_matrix import draw_confusion_matrix


@pytest.fixture
def drawn(monkeypatch) -> dict[str, list]:
    """Record what the callbacks hand to their drawing functions, then draw as usual."""
    seen: dict[str, list] = {"cm": [], "labels": []}
    draw_cm, draw_grid = confusion_matrix.draw_confusion_matrix, misclassified.draw_grid

    def record_cm(cm, *args, **kwargs):
        seen["cm"].append(cm.copy())
        return draw_cm(cm, *args, **kwargs)

    def record_grid(images, labels, *args, **kwargs):
        seen["labels"].append(list(labels))
        return draw_grid(images, labels, *args, **kwargs)

    monkeypatch.setattr(confusion_matrix, "draw_confusion_matrix", record_cm)
    monkeypatch.setattr(misclassified, "draw_grid", record_grid)
    return seen


def test_images_in_tensorboard_match_the_run(train_in_process, drawn):
    metrics, run_dir = train_in_process("debug=limit", "callbacks.early_stopping=null")
    acc = EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    cms = acc.Images("val/confusion_matrix")
    assert len(cms) == 2 == len(drawn["cm"]), "one per validation epoch, none for the sanity check"
    image = Image.open(io.BytesIO(cms[-1].encoded_image_string))
    assert image.size == (40 + 10 * 28 + 4,) * 2
    # The matrix drawn is the epoch's full matrix, read before the module reset it:
    # 2 val batches of 32, and its diagonal gives the logged val/acc of that epoch.
    val_acc = [e.value for e in acc.Scalars("val/acc")]
    for cm, logged in zip(drawn["cm"], val_acc, strict=True):
        assert cm.sum() == 64 and np.trace(cm) / cm.sum() == pytest.approx(logged)

    (grid,) = acc.Images("test/misclassified")
    (labels,) = drawn["labels"]
    wrong = round((1 - metrics["test/acc"]) * 64)  # 2 test batches of 32
    assert len(labels) == min(32, wrong)
    assert all(t != p for t, p in (label.split("->") for label in labels))
    assert Image.open(io.BytesIO(grid.encoded_image_string)).size[0] == 8 * 64


def test_confusion_matrix_shades_each_row_by_its_share():
    cm = np.array([[8.0, 2.0], [0.0, 1.0]])
    pixels = draw_confusion_matrix(cm, cell=20)
    centre = [[pixels[40 + 20 * i + 3, 40 + 20 * j + 3] for j in range(2)] for i in range(2)]
    assert tuple(centre[1][1]) == (0, 0, 255) and tuple(centre[1][0]) == (255, 255, 255)
    assert centre[0][0][0] < centre[0][1][0] < 255  # 80% darker than 20%
