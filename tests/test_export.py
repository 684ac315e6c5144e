"""litlab-export: every format for every net, the parity check, the sidecar, quantization, bad requests."""

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import BIN, cli
from trained import NETS, Checkpoints, config, saving_as_if_on_gpu

from litlab.checkpoint_data import load_datamodule
from litlab.export import export
from litlab.export.checks import ParityError, check_parity
from litlab.export.formats import FORMATS, MissingExtraError
from litlab.inputs import split_batches
from litlab.models import build_net
from litlab.tasks import Classifier, load_task

FORMAT_NAMES = ["torchscript", "onnx", "pt2", "state_dict"]
SLOW = pytest.mark.slow


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    return Checkpoints(tmp_path_factory.mktemp("ckpts"))


@pytest.fixture(scope="module")
def digits(ckpts):
    """The digits data as the checkpoints saw it (their stored data config)."""
    from omegaconf import OmegaConf

    stored = torch.load(ckpts["mlp"], weights_only=True)["config"]["data"]
    return load_datamodule(OmegaConf.create(stored))


def load_as_user(path, meta):
    """Load an exported file the way model.json's ``load`` says, without litlab.export."""
    if meta["format"] == "torchscript":
        with pytest.warns(DeprecationWarning, match=r"torch\.jit\.load. is deprecated"):  # docs/export.md: why still
            return torch.jit.load(str(path))
    if meta["format"] == "pt2":
        return torch.export.load(str(path)).module()
    if meta["format"] == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        return lambda *a: torch.from_numpy(session.run(None, dict(zip(names, (t.numpy() for t in a), strict=True)))[0])
    net = build_net(**meta["net"]).eval()
    net.load_state_dict(torch.load(path, weights_only=True))
    return net


# The image Transformer runs in the slow suite; the default one covers the Transformer through
# the token model below, whose mask input makes it the harder case.
GRID = [(n, f) if n != "transformer" else pytest.param(n, f, marks=SLOW) for n in NETS for f in FORMAT_NAMES]


@pytest.mark.parametrize("net,fmt", GRID)
def test_each_format_of_each_net_matches_the_checkpoint(ckpts, digits, tmp_path, net, fmt):
    run_dir = tmp_path / "export"
    meta = export(config("export", run_dir, f"ckpt_path={ckpts[net]}", f"format={fmt}"))

    assert sorted(p.name for p in run_dir.iterdir()) == sorted([FORMATS[fmt].file, "model.json"])
    assert json.loads((run_dir / "model.json").read_text()) == json.loads(json.dumps(meta))
    assert meta["inputs"] == [{"name": "x", "shape": ["batch", 1, 8, 8], "dtype": "float32"}]
    assert meta["normalization"]["mean"] == digits.input_normalization()["mean"]
    assert meta["classes"] == [str(i) for i in range(10)] and meta["output"]["shape"] == ["batch", 10]
    assert meta["parity"]["max_abs_diff"] <= 1e-4 and meta["parity"]["inputs"][0] == "64 real inputs"

    # Test rows the parity check did not see, at yet another batch size, through the user's loader.
    batch = next(b for i, b in enumerate(split_batches(digits, "test", 50)) if i == 2)
    model = load_as_user(run_dir / meta["file"], meta)
    reference = load_task(ckpts[net]).eval()
    with torch.inference_mode():
        torch.testing.assert_close(torch.as_tensor(model(batch.x)), reference(batch.x), atol=1e-4, rtol=1e-4)


TOKEN_NETS = {
    "transformer": {"arch": "transformer", "d_model": 16, "n_heads": 2, "d_ff": 32, "n_layers": 2},
    "rnn": {"arch": "rnn", "hidden_size": 16, "n_layers": 2, "bidirectional": True},
}


def token_checkpoint(path, arch="transformer"):
    """A token-sequence net built through the Task classes (no sequence data config needed)."""
    torch.manual_seed(0)
    net = TOKEN_NETS[arch]
    task = Classifier([12], 3, net, {"name": "adamw", "lr": 1e-3}, vocab_size=20)
    with torch.no_grad():  # weights large enough that outputs depend clearly on every real token
        for p in task.net.parameters():
            p.normal_(0, 0.3)
    hp = {k: v for k, v in task.hparams.items()}
    torch.save({"task": "classification", "hyper_parameters": hp, "state_dict": task.state_dict(), "config": {}}, path)
    return task.eval()


def padded_tokens(n=10, T=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, T + 1, (n,), generator=g)
    mask = torch.arange(T) < lengths[:, None]
    x = torch.randint(1, 20, (n, T), generator=g).masked_fill(~mask, 0)
    return x, mask


@pytest.mark.parametrize(
    "arch,fmt",
    [
        *(("transformer", f) for f in ("torchscript", "onnx", "state_dict")),
        pytest.param("transformer", "pt2", marks=SLOW),
        *(("rnn", f) for f in ("torchscript", "onnx", "pt2", "state_dict")),
    ],
)
def test_token_nets_export_with_their_padding_mask(tmp_path, arch, fmt):
    task = token_checkpoint(tmp_path / "tokens.ckpt", arch)
    x, mask = padded_tokens()
    np.savez(tmp_path / "tokens.npz", x=x.numpy(), mask=mask.numpy())
    run_dir = tmp_path / "export"
    ckpt = tmp_path / "tokens.ckpt"
    meta = export(config("export", run_dir, f"ckpt_path={ckpt}", f"format={fmt}", "input=tokens.npz"))

    # torch.export unrolls an RNN over the traced steps: such a file takes exactly input_shape's 12 tokens.
    fixed = arch == "rnn" and FORMATS[fmt].unrolls_time
    assert [i["name"] for i in meta["inputs"]] == ["x", "mask"]
    assert meta["inputs"][0]["shape"] == ["batch", 12 if fixed else "seq"]
    assert meta["max_seq"] == (12 if arch == "transformer" or fixed else None)  # else an RNN takes any length
    assert meta["normalization"] is None
    checked = " / ".join(meta["parity"]["inputs"])
    assert "re-padded to random lengths" in checked and ("cut to 6 of 12 tokens" in checked) != fixed
    model = load_as_user(run_dir / meta["file"], meta)
    with torch.inference_mode():
        out = torch.as_tensor(model(x, mask))
        torch.testing.assert_close(out, task(x, mask), atol=1e-4, rtol=1e-4)
        # The mask is a real input: what sits under padding is ignored, what the mask says is not.
        noise = torch.randint(1, 20, x.shape).masked_fill(mask, 0)
        torch.testing.assert_close(torch.as_tensor(model(x + noise, mask)), out, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(torch.as_tensor(model(x, torch.ones_like(mask))), out, atol=1e-3)
        # A shorter sequence than at export time: as it is where the length is dynamic, else right-padded.
        short_x, short_mask = x[:, :5], mask[:, :5] | (torch.arange(5) == 0)
        expected = task(short_x, short_mask)
        if fixed:
            short_x, short_mask = F.pad(short_x, (0, 7)), F.pad(short_mask, (0, 7))
        short = torch.as_tensor(model(short_x, short_mask))
        torch.testing.assert_close(short, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("arch, fmt", [("rnn", "pt2"), ("rnn", "torchscript"), ("transformer", "torchscript")])
def test_token_nets_export_from_unmasked_inputs_too(tmp_path, arch, fmt):
    """Inputs without a mask are all real tokens (a token RNN's are padded to the export's length with a mask).

    Every format but a token RNN's pt2/onnx failed: the exported signature takes a mask, the example had none.
    """
    token_checkpoint(tmp_path / "tokens.ckpt", arch)
    x, _ = padded_tokens(T=9)
    np.save(tmp_path / "tokens.npy", x.clamp(min=1).numpy())  # every token real: no padding id 0
    ckpt = tmp_path / "tokens.ckpt"
    meta = export(config("export", tmp_path / "export", f"ckpt_path={ckpt}", f"format={fmt}", "input=tokens.npy"))
    assert meta["parity"]["max_abs_diff"] <= 1e-4
    if fmt == "pt2":
        assert meta["max_seq"] == 12


def test_a_token_rnn_export_refuses_longer_inputs_than_its_length(tmp_path):
    token_checkpoint(tmp_path / "tokens.ckpt", "rnn")
    x, mask = padded_tokens(T=16)
    np.savez(tmp_path / "tokens.npz", x=x.numpy(), mask=mask.numpy())
    ckpt = tmp_path / "tokens.ckpt"
    cfg = config("export", tmp_path / "export", f"ckpt_path={ckpt}", "format=pt2", "input=tokens.npz")
    with pytest.raises(ValueError, match=r"have 16 tokens, but the net's input_shape is \[12\]"):
        export(cfg)
    assert not (tmp_path / "export" / "model.pt2").exists()


@pytest.mark.parametrize("net", ["mlp", pytest.param("transformer", marks=SLOW)])
def test_dynamic_quantization_shrinks_linear_layers_and_reports_accuracy(ckpts, tmp_path, net, capsys):
    run_dir = tmp_path / "export"
    meta = export(config("export", run_dir, f"ckpt_path={ckpts[net]}", "format=torchscript", "quantize=dynamic"))
    q = meta["quantization"]
    assert q["bytes"]["int8_linear"] == (run_dir / "model.pt").stat().st_size
    assert set(q["test"]) == {"acc", "f1"}
    acc = q["test"]["acc"]
    assert acc["change"] == pytest.approx(acc["int8_linear"] - acc["float32"])
    assert abs(acc["change"]) < 0.05
    if net == "mlp":  # 50k Linear weights: int8 is about a quarter of float32; and a trained model
        assert q["size_reduction"] > 2.5 and acc["float32"] > 0.5
    out = capsys.readouterr().out
    assert "quantized:" in out and f"test/acc: {acc['float32']:.4f} -> {acc['int8_linear']:.4f}" in out
    model = load_as_user(run_dir / "model.pt", meta)
    assert "quantized::linear_dynamic" in str(model.inlined_graph)
    # Checked on given inputs, quantization still scores the test split.
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32))
    again = [f"ckpt_path={ckpts[net]}", "format=torchscript", "quantize=dynamic", f"input={tmp_path / 'x.npy'}"]
    assert export(config("export", tmp_path / "again", *again))["quantization"]["test"] == q["test"]


def test_parity_check_fails_with_the_measured_difference():
    reference = torch.nn.Linear(4, 3)
    cases = [("4 real inputs", (torch.randn(4, 4),))]
    assert check_parity(reference, reference, cases, 0.0, 0.0) == 0.0
    with pytest.raises(ParityError, match=r"on 4 real inputs: .* by up to 0\.00[12]\d* \(allowed: atol=0\.0001"):
        check_parity(lambda x: reference(x) + 1.5e-3, reference, cases, 1e-4, 0.0)
    with pytest.raises(ParityError, match="output shape"):
        check_parity(lambda x: reference(x)[:, :2], reference, cases, 1e-4, 0.0)


def test_failed_parity_keeps_no_model_file(ckpts, tmp_path, monkeypatch):
    ts = FORMATS["torchscript"]

    def off_by_a_bit(path, meta):
        model = ts.load(path, meta)
        return lambda x: model(x) + 1e-2

    monkeypatch.setitem(FORMATS, "torchscript", replace(ts, load=off_by_a_bit))
    run_dir = tmp_path / "export"
    with pytest.raises(ParityError, match=r"by up to 0\.01"):
        export(config("export", run_dir, f"ckpt_path={ckpts['mlp']}", "format=torchscript"))
    assert list(run_dir.iterdir()) == []


@pytest.mark.parametrize("fmt", ["torchscript", "state_dict"])
def test_an_export_that_does_not_fit_on_disk_is_named(ckpts, tmp_path, fmt):
    """A full disk (here a file size limit, as `ulimit -f` sets): TorchScript's C++ writer aborted the process."""
    import resource

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))  # the digits MLP's files are ~60 kB

    proc = subprocess.run(
        [str(BIN / "litlab-export"), f"ckpt_path={ckpts['mlp']}", f"format={fmt}", "hydra.run.dir=out"],
        cwd=tmp_path,
        preexec_fn=small_files,
        capture_output=True,
        text=True,
        timeout=240,
    )
    file = FORMATS[fmt].file
    assert proc.returncode == 1 and f"could not write {tmp_path / 'out' / file}: File too large" in proc.stderr
    assert not [p.name for p in (tmp_path / "out").iterdir() if file in p.name], "no file, whole or part"


def test_missing_onnx_packages_give_a_clear_message(ckpts, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed: import raises ImportError
    with pytest.raises(MissingExtraError, match=r"format=onnx needs .*onnxruntime.*pip install 'litlab\[export\]'"):
        export(config("export", tmp_path / "export", f"ckpt_path={ckpts['mlp']}", "format=onnx"))


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["format=tflite"], r"format='tflite' is not a format; choose one of \['onnx', 'pt2', 'state_dict', 'torch"),
        (["quantize=static"], r"quantize='static' is not a quantization; choose one of \['dynamic'\]"),
        (["format=onnx", "quantize=dynamic"], "quantize=dynamic works with format=torchscript, not onnx"),
        (["atol=-1"], r"atol=-1(\.0)?: must be a finite number >= 0"),
        (["parity_samples=2"], "parity_samples=2: must be an integer >= 3"),
        (["input=missing.npy"], "input=missing.npy: no such folder or file"),
        (["input=u8.npy"], r"input=u8\.npy: holds uint8 values, whose scale litlab does not guess"),
    ],
)
def test_bad_requests_are_refused(ckpts, tmp_path, overrides, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save("u8.npy", np.full((4, 1, 8, 8), 200, np.uint8))  # the parity inputs go through predict's reader
    run_dir = tmp_path / "export"
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        export(config("export", run_dir, f"ckpt_path={ckpts['mlp']}", *overrides))
    assert not run_dir.exists() or list(run_dir.iterdir()) == []


@SLOW
def test_cli_exports_a_gpu_checkpoint_on_cpu_with_no_unexplained_warning(ckpts, tmp_path):
    """The console script, in its own process (no CUDA there either), on a checkpoint written on a GPU."""
    gpu_ckpt = tmp_path / "gpu.ckpt"
    checkpoint = torch.load(ckpts["cnn"], weights_only=True)  # (trains it on first use: not while saving as on a GPU)
    with saving_as_if_on_gpu():
        torch.save(checkpoint, gpu_ckpt)
    with pytest.raises(RuntimeError, match="CUDA"):
        torch.load(gpu_ckpt, weights_only=True)  # what a GPU checkpoint does without map_location

    proc = cli("litlab-export", f"ckpt_path={gpu_ckpt}", "format=onnx", cwd=tmp_path)
    (run_dir,) = (tmp_path / "logs" / "export" / "runs").iterdir()
    assert f"onnx model: {run_dir / 'model.onnx'}" in proc.stdout
    text = proc.stdout + proc.stderr
    # torch's warnings each become one "expected: ..." line with its reason; nothing else warns.
    assert "Warning" not in text and "[WARNING]" not in text, text[-3000:]
    assert "expected: 'torchvision is not installed" in text


def test_cli_help_lists_the_export_options(help_texts):
    out = help_texts["litlab-export"]
    assert "litlab-export" in out and "format: torchscript" in out and "parity_samples: 64" in out


@pytest.mark.slow
def test_an_export_into_a_directory_holding_an_export_is_refused(ckpts, tmp_path):
    """Of another format its model.json would have described the second file only; of the same format
    (another checkpoint's, say) model.pt and model.json were silently replaced."""
    run_dir = tmp_path / "exported"
    cli("litlab-export", f"ckpt_path={ckpts['mlp']}", "format=torchscript", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    files = {p.name: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    for fmt in ("torchscript", "pt2"):
        args = [f"ckpt_path={ckpts['cnn']}", f"format={fmt}", f"hydra.run.dir={run_dir}"]
        proc = cli("litlab-export", *args, cwd=tmp_path, check=False)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip() == (
            f"litlab: error: hydra.run.dir={run_dir} holds the output of an earlier litlab-export (model.json, "
            "model.pt), which this one would replace: choose another directory"
        )
        assert {p.name: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == files, "nothing written"
