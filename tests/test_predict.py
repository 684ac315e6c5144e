"""litlab-predict: a split, a folder of images, an array file; CSV and .npy outputs; GPU checkpoints on CPU."""

import csv
import re

import numpy as np
import pytest
import torch
from conftest import cli, cli_each
from omegaconf import OmegaConf
from PIL import Image
from trained import Checkpoints, config, saving_as_if_on_gpu

from litlab.checkpoint_data import load_datamodule
from litlab.predict import predict
from litlab.tasks import load_task


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    return Checkpoints(tmp_path_factory.mktemp("ckpts"))


@pytest.fixture(scope="module")
def digits(ckpts):
    return load_datamodule(OmegaConf.create(torch.load(ckpts["mlp"], weights_only=True)["config"]["data"]))


def read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def run_predict(tmp_path, *overrides):
    run_dir = tmp_path / "predict"
    csv_path = predict(config("predict", run_dir, *overrides))
    return (*read_csv(csv_path), np.load(run_dir / "predictions.npy"))


def test_predict_a_split_writes_csv_and_npy(ckpts, digits, tmp_path):
    header, rows, table = run_predict(tmp_path, f"ckpt_path={ckpts['mlp']}", "split=val")
    x, y = digits.splits["val"].tensors
    n = len(y)
    assert header == ["index", "class", "label", *(f"prob_{i}" for i in range(10)), "target"]
    assert len(rows) == n and [int(r[0]) for r in rows] == list(range(n))
    assert (
        table.shape == (n,)
        and table["probs"].shape == (n, 10)
        and table.dtype.names == ("index", "class", "probs", "target")
    )
    np.testing.assert_allclose(table["probs"].sum(1), 1.0, atol=1e-5)
    assert (table["class"] == table["probs"].argmax(1)).all()
    assert [int(r[1]) for r in rows] == table["class"].tolist() and [int(r[-1]) for r in rows] == y.tolist()
    np.testing.assert_allclose(np.array([r[3:13] for r in rows], dtype=np.float32), table["probs"], rtol=1e-5)
    with torch.inference_mode():
        expected = load_task(ckpts["mlp"]).eval()(x).softmax(-1).numpy()
    np.testing.assert_allclose(table["probs"], expected, atol=1e-6)
    assert (table["class"] == table["target"]).mean() > 0.5, "a trained model, not noise"


def test_predict_the_train_split_keeps_its_stored_order(ckpts, digits, tmp_path):
    _, _, table = run_predict(tmp_path, f"ckpt_path={ckpts['cnn']}", "split=train", "batch_size=100")
    assert table["index"].tolist() == list(range(len(digits.splits["train"])))
    assert table["target"].tolist() == digits.splits["train"].tensors[1].tolist()


def test_predict_an_array_file_and_a_folder_of_images(ckpts, digits, tmp_path, caplog):
    """Both hold inputs scaled to [0, 1]; predict normalizes them as the training data was."""
    x = digits.splits["test"].tensors[0][:20]
    mean, std = digits.normalize.mean[0], digits.normalize.std[0]
    x01 = (x * std + mean).clamp(0, 1)
    np.save(tmp_path / "inputs.npy", x01.numpy())
    (tmp_path / "images" / "sub").mkdir(parents=True)
    for i, image in enumerate(x01[:, 0]):
        folder = tmp_path / "images" / ("sub" if i % 2 else "")
        Image.fromarray((image.numpy() * 255).round().astype(np.uint8), mode="L").save(folder / f"digit_{i:02d}.png")
    ckpt = f"ckpt_path={ckpts['cnn']}"
    _, _, split = run_predict(tmp_path / "a", ckpt, "split=test")

    header, rows, table = run_predict(tmp_path / "b", ckpt, f"input={tmp_path / 'inputs.npy'}")
    assert header[:3] == ["index", "class", "label"] and "target" not in header and len(rows) == 20
    np.testing.assert_allclose(table["probs"], split["probs"][:20], atol=1e-5)
    assert "values span" not in caplog.text
    # Raw pixel values (the digits' 0-16) are predicted on, with a warning that names them (accepted silently).
    np.save(tmp_path / "raw.npy", (x01 * 16).numpy())
    run_predict(tmp_path / "raw", ckpt, f"input={tmp_path / 'raw.npy'}")
    assert f"input={tmp_path / 'raw.npy'}: values span [0, 16], but the training data's normalization" in caplog.text

    header, rows, table = run_predict(tmp_path / "c", ckpt, f"input={tmp_path / 'images'}")
    assert header[0] == "file" and [r[0] for r in rows] == sorted(r[0] for r in rows)
    assert {r[0] for r in rows} == {f"digit_{i:02d}.png" if i % 2 == 0 else f"sub/digit_{i:02d}.png" for i in range(20)}
    assert table["file"].tolist() == [r[0] for r in rows]
    order = [int(name[-6:-4]) for name in table["file"]]
    # 8-bit pixels: rounding moves an input by at most 1/510 of its range.
    np.testing.assert_allclose(table["probs"], split["probs"][order], atol=0.02)


def test_predict_token_sequences_with_padding(tmp_path):
    from test_export import padded_tokens, token_checkpoint

    task = token_checkpoint(tmp_path / "tokens.ckpt")
    x, mask = padded_tokens(n=7)
    np.savez(tmp_path / "tokens.npz", x=x.numpy(), mask=mask.numpy())
    _, rows, table = run_predict(tmp_path, f"ckpt_path={tmp_path / 'tokens.ckpt'}", "input=tokens.npz")
    assert len(rows) == 7 and table["probs"].shape == (7, 3)
    with torch.inference_mode():
        np.testing.assert_allclose(table["probs"], task(x, mask).softmax(-1).numpy(), atol=1e-6)


def test_ckpt_path_last_finds_an_experiment_s_run(ckpts, tmp_path):
    """`last` looked under task_name=train only: an experiment's run (task_name=digits_cnn) was not found."""
    import shutil

    (tmp_path / "logs" / "digits_cnn" / "runs" / "r" / "checkpoints").mkdir(parents=True)
    shutil.copy(ckpts["mlp"], tmp_path / "logs" / "digits_cnn" / "runs" / "r" / "checkpoints" / "last.ckpt")
    _, _, table = run_predict(tmp_path, "ckpt_path=last", "split=val")
    _, _, reference = run_predict(tmp_path / "ref", f"ckpt_path={ckpts['mlp']}", "split=val")
    np.testing.assert_array_equal(table, reference)


def test_gpu_checkpoint_predicts_on_cpu(ckpts, tmp_path):
    gpu_ckpt = tmp_path / "gpu.ckpt"
    checkpoint = torch.load(ckpts["mlp"], weights_only=True)  # (trains it on first use: not while saving as on a GPU)
    with saving_as_if_on_gpu():
        torch.save(checkpoint, gpu_ckpt)
    with pytest.raises(RuntimeError, match="CUDA"):
        torch.load(gpu_ckpt, weights_only=True)  # no map_location: what litlab-predict must not do
    _, _, table = run_predict(tmp_path, f"ckpt_path={gpu_ckpt}")
    _, _, reference = run_predict(tmp_path / "cpu", f"ckpt_path={ckpts['mlp']}")
    np.testing.assert_array_equal(table, reference)


@pytest.mark.slow
def test_cli_predicts_from_a_gpu_checkpoint(ckpts, tmp_path):
    """The console script, in its own process, as the README shows it."""
    gpu_ckpt = tmp_path / "gpu.ckpt"
    checkpoint = torch.load(ckpts["cnn"], weights_only=True)  # (trains it on first use: not while saving as on a GPU)
    with saving_as_if_on_gpu():
        torch.save(checkpoint, gpu_ckpt)
    proc = cli("litlab-predict", f"ckpt_path={gpu_ckpt}", cwd=tmp_path)
    (run_dir,) = (tmp_path / "logs" / "predict" / "runs").iterdir()
    assert f"359 predictions for split=test: {run_dir / 'predictions.csv'}" in proc.stdout
    assert "Warning" not in proc.stdout + proc.stderr
    assert np.load(run_dir / "predictions.npy")["probs"].shape == (359, 10)


def test_cli_help_lists_the_predict_options(help_texts):
    out = help_texts["litlab-predict"]
    assert "litlab-predict" in out and "split: test" in out and "device: cpu" in out


PNG_BYTES = bytes.fromhex("89504e470d0a1a0a0000000d49484452") + bytes(64)  # a PNG's signature and header start


def bad_input(kind, d):
    """A file or folder that predict must refuse, and the message that names it."""
    if kind == "missing":
        return d / "missing", r"input=.*missing: no such folder or file"
    if kind == "wrong shape":
        np.save(d / "a.npy", np.zeros((3, 8, 8), np.float32))
        return d / "a.npy", r"a\.npy: inputs of shape \(3, 8, 8\) do not fit the model, which takes \(N, 1, 8, 8\)"
    if kind == "empty":
        np.save(d / "a.npy", np.zeros((0, 1, 8, 8), np.float32))
        return d / "a.npy", r"a\.npy: holds no samples"
    if kind == "npz without x":
        np.savez(d / "a.npz", y=np.zeros(3))
        return d / "a.npz", r"a\.npz: an \.npz needs an array named 'x'"
    if kind == "unknown suffix":
        (d / "a.txt").write_text("1,2")
        return d / "a.txt", r"a\.txt: an input file must be one of"
    if kind == "uint8":  # 0-255 pixels, taken as they were: saturated probabilities
        np.save(d / "u8.npy", np.full((3, 1, 8, 8), 200, np.uint8))
        return d / "u8.npy", r"input=.*u8\.npy: holds uint8 values, .*divided by 255"
    if kind == "uint8 in a folder":  # stacked with float files, it would pass unscaled
        (d / "mixed").mkdir()
        np.save(d / "mixed" / "a.npy", np.zeros((1, 8, 8), np.float32))
        np.save(d / "mixed" / "b.npy", np.full((1, 8, 8), 200, np.uint8))
        return d / "mixed", r"input=.*mixed/b\.npy: holds uint8 values"
    if kind == "png named .npy":  # numpy took it for a pickle and suggested allow_pickle=True
        (d / "a.npy").write_bytes(PNG_BYTES)
        return d / "a.npy", r"a\.npy is not a readable \.npy file: not written by numpy \(no \.npy/\.npz header\)"
    if kind == "png named .npz":
        (d / "a.npz").write_bytes(PNG_BYTES)
        return d / "a.npz", r"a\.npz is not a readable \.npz file: not written by numpy"
    if kind == "truncated npz":  # was "BadZipFile: File is not a zip file"
        np.savez(d / "full.npz", x=np.zeros((3, 1, 8, 8), np.float32))
        (d / "a.npz").write_bytes((d / "full.npz").read_bytes()[:200])
        return d / "a.npz", r"a\.npz is not a readable \.npz file: corrupt or truncated\? \(File is not a zip file\)"
    if kind == "corrupt compressed npz":  # zlib's own error
        np.savez_compressed(d / "a.npz", x=np.arange(192, dtype=np.float32).reshape(3, 1, 8, 8))
        data = bytearray((d / "a.npz").read_bytes())
        data[55] ^= 0xFF  # the first byte of the deflated member, after its zip headers
        (d / "a.npz").write_bytes(bytes(data))
        return d / "a.npz", r"a\.npz is not a readable \.npz file: corrupt or truncated\?"
    if kind == "strings in npy":  # was torch's TypeError
        np.save(d / "a.npy", np.array([["a", "b"]]))
        return d / "a.npy", r"input=.*a\.npy: the array holds <U1 values; litlab reads numbers"
    if kind == "strings in npz":
        np.savez(d / "a.npz", x=np.array([["a", "b"]]))
        return d / "a.npz", r"input=.*a\.npz: x holds <U1 values; litlab reads numbers"
    if kind == "strings in a folder":
        (d / "words").mkdir()
        np.save(d / "words" / "a.npy", np.array([["a", "b"]]))
        return d / "words", r"input=.*words: .*words/a\.npy holds <U1 values; litlab reads numbers"
    if kind == "empty folder":
        (d / "empty").mkdir()
        return d / "empty", r"empty: no .* files in this folder"
    (d / "bad").mkdir()
    (d / "bad" / "x.png").write_text("not a png")
    return d / "bad", r"bad/x\.png is not a readable image: corrupt or truncated"


@pytest.mark.parametrize(
    "kind",
    [
        "missing",
        "wrong shape",
        "npz without x",
        "unknown suffix",
        "uint8",
        "uint8 in a folder",
        "png named .npy",
        "png named .npz",
        "truncated npz",
        "corrupt compressed npz",
        "strings in npy",
        "strings in npz",
        "strings in a folder",
        "empty folder",
        "corrupt",
    ],
)
def test_bad_inputs_are_refused_by_name(ckpts, tmp_path, kind):
    path, message = bad_input(kind, tmp_path)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        predict(config("predict", tmp_path / "predict", f"ckpt_path={ckpts['mlp']}", f"input={path}"))
    assert not list((tmp_path / "predict").iterdir())


@pytest.mark.slow
def test_a_predict_into_a_directory_holding_predictions_is_refused(ckpts, tmp_path):
    """They were overwritten; and a failed predict left them beside its own failed metrics.json."""
    run_dir = tmp_path / "predicted"
    cli("litlab-predict", f"ckpt_path={ckpts['mlp']}", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    files = {p.name: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    (tmp_path / "a.npy").write_bytes(PNG_BYTES)
    for again in (["split=val"], ["input=a.npy"]):  # the second would fail
        proc = cli(
            "litlab-predict", f"ckpt_path={ckpts['mlp']}", *again, f"hydra.run.dir={run_dir}", cwd=tmp_path, check=False
        )
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip() == (
            f"litlab: error: hydra.run.dir={run_dir} holds the output of an earlier litlab-predict (predictions.csv, "
            "predictions.npy), which this one would replace: choose another directory"
        )
        assert {p.name: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == files, "nothing written"


def test_an_eval_into_a_directory_holding_an_eval_is_refused(ckpts, tmp_path):
    """Its metrics.json and .hydra/ were replaced by the second evaluation's."""
    from litlab.command_line import check_command_line
    from litlab.rules import ConfigError

    run_dir = tmp_path / "evaluated"
    args = [f"ckpt_path={ckpts['mlp']}", f"hydra.run.dir={run_dir}"]
    check_command_line(args, "eval")
    run_dir.mkdir()
    (run_dir / "metrics.json").write_text('{"status": "failed", "error": "FileNotFoundError: data.path=..."}')
    check_command_line(args, "eval")  # a failed one's record: the mended command line runs again there
    (run_dir / "metrics.json").write_text('{"checkpoint": "x.ckpt", "metrics": {"test/acc": 0.9}}')
    with pytest.raises(ConfigError, match=r"holds the output of an earlier litlab-eval \(metrics.json\)"):
        check_command_line(args, "eval")


def test_bad_split_and_token_ids_are_refused(ckpts, tmp_path):
    with pytest.raises(
        ValueError, match=r"split='dev' is not a split of DigitsDataModule; choose one of \['test', 'train', 'val'\]"
    ):
        predict(config("predict", tmp_path / "p1", f"ckpt_path={ckpts['mlp']}", "split=dev"))
    from test_export import token_checkpoint

    token_checkpoint(tmp_path / "tokens.ckpt")
    np.save(tmp_path / "ids.npy", np.array([[1, 2, 25]]))
    with pytest.raises(ValueError, match=r"ids\.npy: token ids span \[1, 25\], the vocabulary is \[0, 20\)"):
        predict(config("predict", tmp_path / "p2", f"ckpt_path={tmp_path / 'tokens.ckpt'}", "input=ids.npy"))
    # A mask with padding before a real token: the RNN reads the first mask.sum() tokens (it was read wrong).
    np.savez(tmp_path / "left.npz", x=np.array([[0, 1, 2]]), mask=np.array([[False, True, True]]))
    with pytest.raises(ValueError, match=r"left\.npz: mask: sample 0 has a real token after padding"):
        predict(config("predict", tmp_path / "p4", f"ckpt_path={tmp_path / 'tokens.ckpt'}", "input=left.npz"))
    # A folder of sequences, one file of floats among them: refused (it was cut to integers: 1.5 -> 1).
    (tmp_path / "seqs").mkdir()
    np.save(tmp_path / "seqs" / "a.npy", np.array([1, 2, 3]))
    np.save(tmp_path / "seqs" / "b.npy", np.array([1.5, 2.0]))
    with pytest.raises(ValueError, match=r"seqs: token ids must be an integer array \(N, T\), got \(2, 3\) torch"):
        predict(config("predict", tmp_path / "p3", f"ckpt_path={tmp_path / 'tokens.ckpt'}", "input=seqs"))


def test_inputs_of_a_checkpoint_without_data_config_need_normalize_false(ckpts, digits, tmp_path):
    """Without the training data, predict cannot know the normalization: it says so instead of guessing."""
    ckpt = torch.load(ckpts["mlp"], weights_only=True)
    torch.save({**ckpt, "config": {}, "data_info": None}, tmp_path / "bare.ckpt")  # as another tool's
    np.save(tmp_path / "x.npy", digits.splits["test"].tensors[0][:5].numpy())  # already normalized
    with pytest.raises(ValueError, match=r"no data config to take the input normalization from.*normalize=false"):
        predict(config("predict", tmp_path / "p1", f"ckpt_path={tmp_path / 'bare.ckpt'}", "input=x.npy"))
    _, _, table = run_predict(tmp_path / "p2", f"ckpt_path={tmp_path / 'bare.ckpt'}", "input=x.npy", "normalize=false")
    _, _, split = run_predict(tmp_path / "p3", f"ckpt_path={ckpts['mlp']}")
    np.testing.assert_allclose(table["probs"], split["probs"][:5], atol=1e-6)
    # data=... on the command line supplies what the checkpoint lacks.
    _, _, table = run_predict(tmp_path / "p4", f"ckpt_path={tmp_path / 'bare.ckpt'}", "data=digits")
    np.testing.assert_array_equal(table, split)


def test_regression_predictions_and_export(tmp_path):
    from litlab.export import export
    from litlab.tasks import Regressor

    torch.manual_seed(0)
    task = Regressor([4], 2, {"arch": "mlp", "hidden_sizes": [8]}, {"name": "adamw", "lr": 1e-3}).eval()
    hp = dict(task.hparams)
    torch.save({"task": "regression", "hyper_parameters": hp, "state_dict": task.state_dict(), "config": {}}, "r.ckpt")
    x = torch.randn(6, 4)
    np.save(tmp_path / "x.npy", x.numpy())
    header, rows, table = run_predict(tmp_path, "ckpt_path=r.ckpt", "input=x.npy", "normalize=false")
    assert header == ["index", "output_0", "output_1"] and len(rows) == 6
    assert table.dtype.names == ("index", "outputs") and table["outputs"].shape == (6, 2)
    with torch.inference_mode():
        np.testing.assert_allclose(table["outputs"], task(x).numpy(), atol=1e-6)
    meta = export(
        config("export", tmp_path / "export", "ckpt_path=r.ckpt", "format=pt2", "input=x.npy", "normalize=false")
    )
    assert meta["output"] == {"name": "outputs", "shape": ["batch", 2], "meaning": "predicted values"}
    assert meta["classes"] is None and meta["inputs"][0]["shape"] == ["batch", 4]


@pytest.mark.slow
def test_eval_and_predict_refuse_data_the_model_does_not_take(ckpts, tmp_path):
    """A 10-class model tested on 4-class data used to report a meaningless accuracy and exit 0."""
    cases = {
        "data=synthetic": "data.num_classes=4: the checkpoint's model takes num_classes=10",
        "data=synthetic_regression": "data.task=regression: the checkpoint holds a classification model",
    }
    for command in ("litlab-eval", "litlab-predict"):
        for data, message in cases.items():
            proc = cli(command, f"ckpt_path={ckpts['mlp']}", data, cwd=tmp_path, check=False)
            assert proc.returncode == 2, (command, data, proc.stderr[-2000:])
            (line,) = proc.stderr.strip().splitlines()
            assert line.startswith(f"litlab: error: {message}"), line


def test_targets_get_a_column_each(tmp_path):
    from litlab.predict import write_predictions
    from litlab.tasks import Classifier, Regressor

    outputs = np.array([[0.5, 1.5], [2.0, -1.0]], dtype=np.float32)
    targets = np.array([[0.25, 1.0], [2.0, -0.5]], dtype=np.float32)
    write_predictions(tmp_path, [0, 1], *Regressor.prediction_columns(outputs, None), targets)
    header, rows = read_csv(tmp_path / "predictions.csv")
    assert header == ["index", "output_0", "output_1", "target_0", "target_1"]
    assert rows[0] == ["0", "0.5", "1.5", "0.25", "1"]
    write_predictions(tmp_path, [0, 1], *Classifier.prediction_columns(outputs, ["a", "b"]), np.array([1, 0]))
    header, rows = read_csv(tmp_path / "predictions.csv")
    assert header[-1] == "target" and [r[-1] for r in rows] == ["1", "0"]


def test_nan_inputs_are_refused_by_row(ckpts, tmp_path):
    x = np.zeros((4, 1, 8, 8), dtype=np.float32)
    x[2, 0, 3, 3] = np.inf
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(ValueError, match=r"x.npy: NaN or inf in 1 inputs \(the first is row 2\)"):
        predict(config("predict", tmp_path / "predict", f"ckpt_path={ckpts['mlp']}", f"input={tmp_path / 'x.npy'}"))


def test_eval_without_ckpt_path_is_one_line(tmp_path):
    proc = cli("litlab-eval", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "litlab: error: ckpt_path: needs a value (it is ???); give it as ckpt_path=..."
    assert not (tmp_path / "logs").exists(), "refused before Hydra makes a run directory"


@pytest.mark.parametrize(
    "option,message",
    [
        ("batch_size=0", "batch_size=0: must be an integer >= 1"),
        ("normalize=maybe", "normalize=maybe: must be true or false"),
        ("device=gpu", "device=gpu: not a torch device"),
        *([] if torch.cuda.is_available() else [("device=cuda", "device=cuda: torch sees no cuda device here")]),
    ],
)
def test_predict_options_that_cannot_work_are_named(option, message):
    from omegaconf import OmegaConf

    from litlab.predict import check_options
    from litlab.rules import ConfigError

    defaults = OmegaConf.create({"input": None, "split": "test", "batch_size": 256, "normalize": True, "device": "cpu"})
    check_options(defaults)
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}"):
        check_options(OmegaConf.merge(defaults, OmegaConf.from_dotlist([option])))


BAD_COMMAND_LINES = {
    "predict: a misspelled key": (
        ["litlab-predict", "ckpt_path=x.ckpt", "splt=val"],
        "splt: no such key; did you mean split?",
    ),
    "predict: an added key": (
        ["litlab-predict", "ckpt_path=x.ckpt", "+splt=val"],
        "+splt: litlab-predict reads no such key; did you",
    ),
    "eval: a misspelled key": (["litlab-eval", "ckpt=x.ckpt"], "ckpt: no such key; did you mean ckpt_path?"),
    "export: a misspelled option": (
        ["litlab-export", "ckpt_path=x.ckpt", "data=digts"],
        "data=digts: no such option; did you mean digits?",
    ),
    "export: an unknown format": (
        ["litlab-export", "ckpt_path=x.ckpt", "format=tflite"],
        "format='tflite' is not a format; choose one of",
    ),
    "predict: a bad value": (
        ["litlab-predict", "ckpt_path=x.ckpt", "batch_size=0"],
        "batch_size=0: must be an integer >= 1",
    ),
}


@pytest.fixture(scope="module")
def refused(tmp_path_factory):
    """Every command line of BAD_COMMAND_LINES, each in a directory of its own (one process for all)."""
    return cli_each({name: line for name, (line, _) in BAD_COMMAND_LINES.items()}, tmp_path_factory.mktemp("refused"))


@pytest.mark.parametrize("case", BAD_COMMAND_LINES)
def test_bad_keys_options_and_values_are_refused_before_a_run_directory_exists(refused, case):
    proc, cwd = refused[case]
    message = BAD_COMMAND_LINES[case][1]
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"litlab: error: {message}"), line
    assert not (cwd / "logs").exists()


def test_predictions_see_the_batches_the_test_saw(tmp_path):
    """The data's batch transforms apply, its augmentations do not (even on the train split): predictions
    score what the run's test scored, and predicting twice gives the same numbers."""
    from conftest import compose_cfg

    from litlab.train import train

    data = [
        "data=synthetic",
        "data.num_train=400",
        "data.transforms=[{name: gaussian_noise, std: 1.0}]",  # per sample, training only
        "data.batch_transforms=[{name: scale, factor: 50.0}]",  # per batch, every split
    ]
    overrides = ["print_config=false", f"paths.root_dir={tmp_path}", "logger=none", "trainer.max_epochs=2"]
    run_dir = tmp_path / "train"
    metrics = train(compose_cfg([*overrides, *data], run_dir))
    ckpt = f"ckpt_path={run_dir}"
    _, _, test = run_predict(tmp_path / "test", ckpt, "split=test")
    assert (test["class"] == test["target"]).mean() == pytest.approx(metrics["test/acc"], abs=1e-6)
    _, _, once = run_predict(tmp_path / "once", ckpt, "split=train")
    _, _, twice = run_predict(tmp_path / "twice", ckpt, "split=train")
    np.testing.assert_array_equal(once["probs"], twice["probs"])


def test_the_normalization_of_a_normalize_transform_applies_to_input_files(tmp_path):
    """CIFAR-like data normalizes in a batch transform; images given to predict/export get the same."""
    from litlab.data import SyntheticDataModule

    data = SyntheticDataModule(
        batch_transforms=[{"name": "scale", "factor": 0.5}, {"name": "normalize", "mean": [0.5], "std": [0.25]}]
    )
    assert data.input_normalization() == {"mean": [0.5], "std": [0.25]}
    assert SyntheticDataModule().input_normalization() is None


def test_a_folder_of_pt_files_is_read_as_data_folder_reads_it(ckpts, digits, tmp_path):
    """Inference reads the file kinds that training's data=folder reads (.pt was refused: "no ... files")."""
    x = digits.splits["test"].tensors[0][:6]
    mean, std = digits.normalize.mean[0], digits.normalize.std[0]
    (tmp_path / "pt").mkdir()
    for i, sample in enumerate((x * std + mean).clamp(0, 1)):
        torch.save(sample.clone(), tmp_path / "pt" / f"{i}.pt")
    ckpt = f"ckpt_path={ckpts['cnn']}"
    _, _, split = run_predict(tmp_path / "a", ckpt, "split=test")
    _, rows, table = run_predict(tmp_path / "b", ckpt, f"input={tmp_path / 'pt'}")
    assert [r[0] for r in rows] == [f"{i}.pt" for i in range(6)]
    np.testing.assert_allclose(table["probs"], split["probs"][:6], atol=1e-5)


def test_eval_changes_keys_of_the_stored_data_config(tmp_path):
    """The data moved since training: +data.path=<new place> changes that key alone; a misspelled key is named."""
    import shutil

    from conftest import compose_cfg

    from litlab.eval import evaluate
    from litlab.train import train

    x = np.random.default_rng(0).normal(size=(200, 4)).astype(np.float32)
    np.savez(tmp_path / "blobs.npz", x=x, y=(x[:, 0] > 0).astype(np.int64))
    data = ["data=arrays", f"data.path={tmp_path / 'blobs.npz'}", "data.input_shape=[4]", "data.num_classes=2"]
    overrides = ["print_config=false", f"paths.root_dir={tmp_path}", "logger=none", "trainer.max_epochs=2"]
    metrics = train(compose_cfg([*overrides, *data], tmp_path / "train"))
    (tmp_path / "moved").mkdir()
    shutil.move(tmp_path / "blobs.npz", tmp_path / "moved" / "blobs.npz")

    ckpt = f"ckpt_path={tmp_path / 'train'}"
    with pytest.raises(FileNotFoundError, match=r"blobs\.npz: .*if the data moved, give \+data\.path=<where it is"):
        evaluate(config("eval", tmp_path / "eval0", ckpt))
    moved = f"+data.path={tmp_path / 'moved' / 'blobs.npz'}"
    tested = evaluate(config("eval", tmp_path / "eval1", ckpt, moved, "+data.eval_batch_size=7"))
    assert tested["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)
    with pytest.raises(ValueError, match=r"^data.pth: the checkpoint's data config has no such key; did you mean path"):
        evaluate(config("eval", tmp_path / "eval2", ckpt, "+data.pth=x.npz"))


def test_files_are_predicted_without_the_training_data(ckpts, digits, tmp_path):
    """The checkpoint holds the data's normalization and class names: the training data (MNIST: a download)
    need not be there to predict on files."""
    ckpt = torch.load(ckpts["cnn"], weights_only=True)
    assert ckpt["data_info"]["normalization"] == digits.input_normalization()
    gone = {"_target_": "litlab.data.ArraysDataModule", "path": str(tmp_path / "gone.npz"), "input_shape": [1, 8, 8]}
    ckpt["config"]["data"] = {**gone, "num_classes": 10}
    ckpt["data_info"]["classes"] = [f"digit {i}" for i in range(10)]
    torch.save(ckpt, tmp_path / "moved.ckpt")
    mean, std = digits.normalize.mean[0], digits.normalize.std[0]
    np.save(tmp_path / "x.npy", (digits.splits["test"].tensors[0][:5] * std + mean).numpy())
    _, rows, table = run_predict(tmp_path / "p", f"ckpt_path={tmp_path / 'moved.ckpt'}", "input=x.npy")
    _, _, split = run_predict(tmp_path / "s", f"ckpt_path={ckpts['cnn']}")
    np.testing.assert_allclose(table["probs"], split["probs"][:5], atol=1e-5)
    assert [r[2] for r in rows] == [f"digit {c}" for c in table["class"]]


def test_folder_class_names_label_predictions_and_exports(tmp_path):
    """A model trained on class folders says cat/dog, not 0/1 (the names were not passed on)."""
    from conftest import compose_cfg

    from litlab.export import export
    from litlab.train import train

    rng = np.random.default_rng(0)
    for c, name in enumerate(["cat", "dog"]):
        (tmp_path / "imgs" / name).mkdir(parents=True)
        for i in range(12):
            pixels = np.clip(rng.normal(0.3 + 0.4 * c, 0.1, (8, 8)), 0, 1)
            Image.fromarray((pixels * 255).astype(np.uint8), mode="L").save(tmp_path / "imgs" / name / f"{i}.png")
    data = ["data=folder", f"data.root={tmp_path / 'imgs'}", "data.input_shape=[1,8,8]", "data.num_classes=2"]
    loader = ["data.num_workers=0", "data.persistent_workers=false", "data.val_split=4", "data.test_split=4"]
    overrides = ["print_config=false", f"paths.root_dir={tmp_path}", "logger=none", "trainer.max_epochs=1"]
    train(compose_cfg([*overrides, *data, *loader], tmp_path / "train"))
    header, rows, _ = run_predict(tmp_path / "p", f"ckpt_path={tmp_path / 'train'}", f"input={tmp_path / 'imgs'}")
    assert header[3:5] == ["prob_cat", "prob_dog"] and {r[2] for r in rows} <= {"cat", "dog"}
    # A split of the folder: its rows are named by their files too (they had only an index).
    header, rows, _ = run_predict(tmp_path / "s", f"ckpt_path={tmp_path / 'train'}", "split=test")
    assert header[0] == "file" and len(rows) == 4 and all(r[0].endswith(".png") for r in rows)
    assert all(r[0].split("/")[0] == ["cat", "dog"][int(r[-1])] for r in rows), "the file's folder is its target"
    meta = export(config("export", tmp_path / "e", f"ckpt_path={tmp_path / 'train'}", "format=state_dict"))
    assert meta["classes"] == ["cat", "dog"]


def test_data_info_holds_plain_python_values(tmp_path):
    """A user's DataModule with numpy class names made every checkpoint refuse weights_only loading."""
    from types import SimpleNamespace

    from litlab.checkpoint_data import data_info

    user = SimpleNamespace(
        classes=np.array(["a", "b"]), input_normalization=lambda: {"mean": [np.float64(0.5)], "std": [np.float32(2)]}
    )
    torch.save(data_info(user), tmp_path / "info.pt")
    assert torch.load(tmp_path / "info.pt", weights_only=True) == {
        "normalization": {"mean": [0.5], "std": [2.0]},
        "classes": ["a", "b"],
    }


def test_predictions_on_a_stream_split(tmp_path):
    """A stream yields whole batches: predict batched them again and failed stacking batches of unequal size."""
    from conftest import compose_cfg

    from litlab.train import train

    data = ["data=synthetic_stream", "data.num_train=300", "data.num_test=70", "data.transforms=[{name: hflip}]"]
    overrides = ["print_config=false", f"paths.root_dir={tmp_path}", "logger=none", "trainer.max_epochs=1"]
    metrics = train(compose_cfg([*overrides, *data], tmp_path / "train"))
    _, rows, test = run_predict(tmp_path / "test", f"ckpt_path={tmp_path / 'train'}", "split=test", "batch_size=32")
    assert [int(r[0]) for r in rows] == list(range(70))
    assert (test["class"] == test["target"]).mean() == pytest.approx(metrics["test/acc"], abs=1e-6)
    _, _, once = run_predict(tmp_path / "once", f"ckpt_path={tmp_path / 'train'}", "split=train")
    _, _, twice = run_predict(tmp_path / "twice", f"ckpt_path={tmp_path / 'train'}", "split=train")
    np.testing.assert_array_equal(once["probs"], twice["probs"])  # no augmentation (hflip) when predicting
