"""Performance: the benchmark's parity check, the hot-path shortcuts, the GPU switches on the CPU."""

import argparse
import importlib.util
import json
import math
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import PYTHON, compose_cfg, cuda
from hydra.utils import instantiate
from lightning.pytorch.profilers import SimpleProfiler
from torch import nn

from litlab.callbacks.host_reads import SYNC_WARNING
from litlab.models import CNN, MLP
from litlab.optim import build_optimizer
from litlab.profiler import NoProfiler
from litlab.tasks import Classifier

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py"
TINY = ["--models", "mlp", "--sizes", "600", "128", "64", "--parity-steps", "6", "--out", ""]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_bench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=600)


# ---------------------------------------------------------------- the benchmark


def test_parity_check_accepts_equal_curves_and_names_the_first_divergence(bench):
    assert bench.check_parity([2.3, 2.2, 2.1], [2.3, 2.2 + 5e-6, 2.1], 3, 1e-5) == pytest.approx(5e-6)
    with pytest.raises(AssertionError, match=r"at step 2 \(raw 2.2000000, litlab 2.2001000\)"):
        bench.check_parity([2.3, 2.2, 2.1], [2.3, 2.2001, 2.1], 3, 1e-5)
    with pytest.raises(AssertionError, match="expected 3 losses"):
        bench.check_parity([2.3, 2.2, 2.1], [2.3, 2.2], 3, 1e-5)
    with pytest.raises(AssertionError, match="differs"):
        bench.check_parity([2.3, math.nan, 2.1], [2.3, math.nan, 2.1], 3, 1e-5)


def test_report_replaces_its_block_and_keeps_the_prose(bench, tmp_path):
    doc = tmp_path / "performance.md"
    bench.write_report(doc, "table one\n")
    doc.write_text("# Performance\n\nprose before\n\n" + doc.read_text().split("\n", 2)[2] + "\nprose after\n")
    bench.write_report(doc, "table two\n")
    text = doc.read_text()
    assert "table two" in text and "table one" not in text
    assert text.index("prose before") < text.index("table two") < text.index("prose after")


def test_steady_step_time_skips_the_first_epoch(bench):
    run = {"epoch_starts": [0.0, 5.0, 7.0], "fit_end": 9.0}
    assert bench.steady_step_time(run, steps_per_epoch=4) == pytest.approx(0.5)


@pytest.mark.slow
def test_benchmark_parity_on_a_tiny_size(tmp_path):
    """litlab-train and the raw loop take the same steps to the bit (epoch boundary included)."""
    proc = run_bench(*TINY, "--parity-only", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "mlp: parity over 6 steps, largest loss difference 0" in proc.stdout


@pytest.mark.slow
def test_benchmark_fails_when_litlab_does_other_work(tmp_path):
    proc = run_bench(*TINY, "--parity-only", "--litlab-extra", "model.optimizer.lr=0.0011", cwd=tmp_path)
    assert proc.returncode == 1
    assert "FAILED parity: litlab's loss differs from the raw loop's" in proc.stderr


@pytest.mark.slow
def test_benchmark_tiny_run_writes_the_table(tmp_path):
    out = tmp_path / "performance.md"
    args = [*TINY[:-2], "--repeats", "1", "--epochs", "2", "--limit", "3", "2", "--out", str(out), "--keep"]
    proc = run_bench(*args, "--litlab-extra", "callbacks.nan_guard=null", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert "| mlp | 3 |" in text and "GPU: none" in text and "torch " in text
    assert "python scripts/benchmark.py --models mlp" in text
    work = Path(re.search(r"work dir (\S+)", proc.stdout).group(1))
    try:
        runs = {p.parts[-5]: p.read_text() for p in work.glob("logs/*/runs/*/.hydra/overrides.yaml")}
        assert {"bench_mlp_parity_lit", "bench_mlp_lit1_r0", "bench_mlp_lit2_r0"} <= set(runs)
        assert all("callbacks.nan_guard=null" in text for text in runs.values()), "--litlab-extra in every litlab run"
    finally:
        shutil.rmtree(work)


@pytest.mark.slow
def test_benchmark_keeps_going_past_a_failed_parity_and_times_variants(tmp_path):
    """One shot on a lent GPU: a failed check is reported in the table and the exit status, not fatal."""
    out = tmp_path / "performance.md"
    args = [*TINY[:-2], "--repeats", "1", "--epochs", "2", "--limit", "3", "2", "--out", str(out), "--keep-going"]
    lr = ["--litlab-extra", "model.optimizer.lr=0.0011"]
    proc = run_bench(*args, *lr, "--variants", "callbacks.nan_guard=null", "+model.no_such_key=1", cwd=tmp_path)
    assert proc.returncode == 1
    assert "FAILED:\nmlp: parity: litlab's loss differs" in proc.stderr
    text = out.read_text()
    assert "over 6 steps for each net but mlp (FAILED)" in text
    assert "- **FAILED** mlp: parity: litlab's loss differs" in text
    assert "- **FAILED** mlp with +model.no_such_key=1:" in text
    assert "| mlp (parity FAILED) | 3 |" in text, "the timing runs went on"
    assert re.search(r"\| mlp \| `callbacks.nan_guard=null` \| \d+ \| [\d.]+x \| [\d.]+x \|", text), text
    assert "| mlp | `+model.no_such_key=1` | FAILED | - | - |" in text
    parity_only = run_bench(*TINY, "--parity-only", "--keep-going", *lr, cwd=tmp_path)
    assert parity_only.returncode == 1 and "FAILED mlp: parity" in parity_only.stdout


def test_gpu_results_get_their_own_block(bench, tmp_path):
    doc = tmp_path / "performance.md"
    bench.write_report(doc, "cpu table\n")
    bench.write_report(doc, "gpu table one\n", "cuda")
    bench.write_report(doc, "gpu table two\n", "cuda")
    text = doc.read_text()
    assert "cpu table" in text and "gpu table two" in text and "gpu table one" not in text
    assert text.index("<!-- benchmark-cuda:begin -->") < text.index("gpu table two")
    key = bench.report_key(bench.parse(["--precision", "bf16-mixed"]))
    assert key == "" and bench.report_key(argparse.Namespace(device="cuda", precision="16-mixed", compile=True)) == (
        "cuda-16-mixed-compile"
    )


def test_flops_per_token_agrees_with_torch_flop_counter(bench):
    """The MFU numerator: 6 FLOPs per weight per token plus attention, against a count of the real ops."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from litlab.models import build_net

    net_cfg = {"arch": "transformer", "d_model": 64, "n_layers": 2, "n_heads": 4, "d_ff": 256}
    spec = {"net": net_cfg, "input_shape": [32], "num_classes": 10, "vocab_size": 50}
    net = build_net(**net_cfg, input_shape=[32], num_outputs=10, vocab_size=50)
    # The math backend runs attention as matmuls, which the counter sees.
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        net(torch.randint(1, 50, (8, 32))).sum().backward()
    counted = counter.get_total_flops() / (8 * 32)
    assert bench.flops_per_token(spec) == pytest.approx(counted, rel=0.05)


def test_throughput_table_gives_tokens_per_second_and_mfu(bench):
    assert bench.peak_flops("NVIDIA H100 80GB HBM3", "bf16-mixed") == 989e12
    assert bench.peak_flops("NVIDIA H100 PCIe", "16-mixed") == 756e12
    assert bench.peak_flops("NVIDIA H100 80GB HBM3", "32-true") is None  # float32 has another peak
    assert bench.peak_flops("Some Future GPU", "bf16-mixed") is None
    net_cfg = {"arch": "transformer", "d_model": 64, "n_layers": 2, "n_heads": 4, "d_ff": 256}
    spec = {"net": net_cfg, "input_shape": [32], "num_classes": 10, "vocab_size": 50, "batch_size": 8}
    flops = bench.flops_per_token(spec)
    # 0.01 s a step: 800 samples/s, 25600 tokens/s; peak chosen so that litlab's MFU is 50%
    results = {"lm": {"raw_step": 0.008, "lit_step": 0.01}}
    text = bench.throughput_table(results, {"lm": spec}, peak=25600 * flops / 0.5)
    row = text.splitlines()[2]
    assert row.startswith("| lm | 8 | 1000 | 800 | 32000 | 25600 |"), row
    assert row.endswith("| 62.5% | 50.0% |"), row


@pytest.mark.slow
def test_benchmark_token_transformer_parity_in_bf16(tmp_path):
    """The GPU workload's code path on the CPU: token data, bf16 autocast on all three sides."""
    args = ["--models", "transformer_lm", "--sizes", "128", "64", "64", "--limit", "2", "1", "--parity-steps", "3"]
    proc = run_bench(*args, "--precision", "bf16-mixed", "--parity-only", "--out", "", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "transformer_lm: parity over 3 steps, largest loss difference 0" in proc.stdout


# ---------------------------------------------------------------- the hot path


def test_default_trainer_uses_the_no_op_profiler_and_debug_profiler_still_profiles(tmp_path):
    cfg = compose_cfg(["trainer.accelerator=cpu"], tmp_path / "a")
    assert isinstance(instantiate(cfg.trainer).profiler, NoProfiler)
    cfg = compose_cfg(["trainer.accelerator=cpu", "debug=profiler"], tmp_path / "b")
    assert isinstance(instantiate(cfg.trainer).profiler, SimpleProfiler)
    profiler = NoProfiler()
    with profiler.profile("outer"), profiler.profile("nested"):
        pass


def test_task_fast_setattr_leaves_module_registration_intact():
    task = Classifier([4], 2, {"arch": "mlp", "hidden_sizes": [8]}, {"name": "adam", "lr": 1e-3})
    task._current_fx_name = "training_step"
    assert task._current_fx_name == "training_step" and "_current_fx_name" in task.__dict__
    task.extra = nn.Linear(2, 2)
    assert "extra" in task._modules and "extra.weight" in task.state_dict()


def test_litlab_imports_no_optional_heavy_package():
    """Start-up: scikit-learn, Optuna, TensorBoard, Pillow load only where used, not at import."""
    code = (
        "import sys, torch, lightning; before = {m.split('.')[0] for m in sys.modules}; "
        "import litlab.train, litlab.data, litlab.tasks, litlab.models, litlab.callbacks, litlab.profiler; "
        "print(sorted({m.split('.')[0] for m in sys.modules} - before))"
    )
    new = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, check=True).stdout
    for heavy in ("sklearn", "optuna", "tensorboard", "PIL", "matplotlib", "pandas"):
        assert f"'{heavy}'" not in new, new


# ---------------------------------------------------------------- GPU switches, CPU-safe


def test_channels_last_cnn_computes_the_same_function():
    torch.manual_seed(0)
    plain = CNN([3, 16, 16], 5, channels=[8, 16])
    fast = CNN([3, 16, 16], 5, channels=[8, 16], channels_last=True)
    fast.load_state_dict(plain.state_dict())
    conv = fast.features[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 16, 16)
    plain.eval(), fast.eval()
    torch.testing.assert_close(fast(x), plain(x), atol=1e-5, rtol=1e-5)
    plain.load_state_dict(fast.state_dict())  # checkpoints move between layouts


def test_float32_matmul_precision_is_set_for_jobs_on_a_cuda_gpu_only(monkeypatch):
    from omegaconf import OmegaConf

    from litlab.resources import use_resources

    def job(accelerator: str) -> OmegaConf:
        return OmegaConf.create(
            {
                "threads": torch.get_num_threads(),
                "float32_matmul_precision": "medium",
                "trainer": {"accelerator": accelerator},
            }
        )

    previous = torch.get_float32_matmul_precision()
    try:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        use_resources(job("auto"))
        assert torch.get_float32_matmul_precision() == previous
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        use_resources(job("cpu"))  # a CPU job on a GPU machine keeps oneDNN's float32
        assert torch.get_float32_matmul_precision() == previous
        use_resources(job("auto"))
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision(previous)


def test_fused_optimizer_only_on_cuda():
    opt = build_optimizer(MLP([4], 2), "adamw", lr=1e-3, fused=True)
    assert not opt.defaults.get("fused")


@cuda
def test_fused_optimizer_on_cuda():
    opt = build_optimizer(MLP([4], 2).cuda(), "adamw", lr=1e-3, fused=True)
    assert opt.defaults["fused"] is True


def test_gpu_switches_run_on_the_cpu(train_in_process):
    """trainer=gpu's keys, bf16 autocast, channels_last and fused AdamW: one run, no GPU needed."""
    metrics, _ = train_in_process(
        "trainer=gpu",
        "trainer.accelerator=cpu",
        "trainer.precision=bf16-mixed",
        "model=cnn",
        "model.net.channels_last=true",
        "model.optimizer.fused=true",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=4",
        "+trainer.limit_val_batches=2",
        "+trainer.limit_test_batches=2",
        "logger=none",
    )
    assert all(math.isfinite(v) for v in metrics.values()), metrics


@cuda
def test_gpu_fast_paths_train(train_in_process):
    """The GPU recipe: bf16, compiled net, channels_last, fused AdamW, data on the device."""
    metrics, _ = train_in_process(
        "trainer=gpu",
        "trainer.precision=bf16-mixed",
        "model=cnn",
        "model.compile=true",
        "model.net.channels_last=true",
        "model.optimizer.fused=true",
        "++data.on_device=true",
        "trainer.max_epochs=2",
        "logger=none",
    )
    assert metrics["test/acc"] > 0.5, metrics


@cuda
def test_memory_monitor_logs_the_gpu_peak(train_in_process):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, run_dir = train_in_process("trainer=gpu", "trainer.max_epochs=2")
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    peaks = [e.value for e in acc.Scalars("memory/gpu_peak_mb")]
    assert len(peaks) == 2 and all(p > 0 for p in peaks)


@pytest.mark.cuda  # runs everywhere; `pytest -m cuda` selects it for the GPU peak
def test_step_timer_marks_each_epoch_and_the_end_of_training(train_in_process, tmp_path):
    """The benchmark's instrument: the last mark ends the last epoch, and on a GPU it reads the peak there."""
    out = tmp_path / "timer.json"
    timer = ["+callbacks.step_timer._target_=litlab.callbacks.StepTimer", f"+callbacks.step_timer.path={out}"]
    gpu = ["trainer=gpu"] if torch.cuda.is_available() else ["trainer.accelerator=cpu"]
    train_in_process(*gpu, *timer, "trainer.max_epochs=2", "logger=none")
    marks = json.loads(out.read_text())
    assert len(marks["epoch_starts"]) == 2 and marks["first_step"] < marks["epoch_starts"][1] < marks["fit_end"]
    assert (marks["gpu_peak_mb"] > 0) if torch.cuda.is_available() else marks["gpu_peak_mb"] is None


# ---------------------------------------------------------------- the allocator

FAULTS = """
import ctypes, resource, sys
from litlab.allocator import reuse_freed_memory
if sys.argv[1] == "reuse":
    assert reuse_freed_memory()
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
def step():  # a training step's pattern: a large buffer filled, freed, and asked for again
    p = libc.malloc(48 << 20)
    ctypes.memset(p, 1, 48 << 20)
    libc.free(p)
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 10)
"""


def page_faults(mode: str) -> int:
    """Minor page faults per step of a 48 MiB buffer, with glibc's defaults or reusing freed memory."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([PYTHON, "-c", FAULTS, mode], capture_output=True, text=True, check=True, env=env)
    return int(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
def test_reused_memory_is_not_faulted_in_again_each_step():
    default, reuse = page_faults("default"), page_faults("reuse")
    # glibc maps blocks above 32 MiB afresh each time and unmaps them on free: every page of
    # the buffer (12288) is faulted in again on every step. Reused memory is already there.
    assert default >= 12_000
    assert reuse < 100, reuse


def test_users_malloc_environment_wins(monkeypatch):
    from litlab.allocator import reuse_freed_memory

    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "0")
    assert reuse_freed_memory() is False


# ---------------------------------------------------------------- host reads (GPU syncs)


@pytest.mark.cuda  # runs everywhere; on a GPU it also covers the guard's event and the pinned batches
def test_default_training_steps_read_nothing_back_between_logged_steps(train_in_process):
    """A read of a tensor's value on every step is a GPU sync on every step: the default run has none."""
    gpu = ["trainer=gpu"] if torch.cuda.is_available() else ["trainer.accelerator=cpu"]
    # The bar redraws by the clock: only at the epoch's end here, so its reads do not depend on the speed.
    bar = "callbacks.progress_bar.min_interval=1e6"
    _, run_dir = train_in_process(*gpu, "debug=host_reads", "data.batch_size=8", "test=false", bar)
    report = json.loads((run_dir / "host_reads.json").read_text())
    batches, logged = report["batches"], report["batches"] // 50  # log_every_n_steps: 50
    assert batches == 158 and logged == 3
    every_step = [s["site"] for s in report["sites"] if s["batches"] > logged + 1]  # + the bar's last redraw
    # On a CPU the NaN guard reads the loss (no sync there); on a GPU it waits on an event instead.
    guard = [] if torch.cuda.is_available() else ["nan_guard.py"]
    assert [Path(site.split(":")[0]).name for site in every_step] == guard, report
    assert all(s["reads"] <= 2 * s["batches"] for s in report["sites"])


def test_host_reads_names_each_line_that_reads_in_a_training_step(tmp_path):
    """User lines are counted per step; torch's own reads (Adam's CPU step count) and validation are not."""
    import lightning as L

    from litlab.callbacks import HostReads
    from litlab.data.loader import ShardSampler, TensorLoader

    class Reader(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Linear(4, 1)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            loss = self.net(batch[0]).pow(2).mean()
            self.seen = loss.item()  # every step
            if batch_idx % 2 and loss:  # every other step: __bool__
                pass
            self.text = f"{loss:.3f}"  # every step, through torch's Python-level __format__
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self.net(batch[0]).sum().item()

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters())

    loader = TensorLoader([torch.randn(32, 4)], ShardSampler(32, shuffle=False), 4)
    audit = HostReads(path=str(tmp_path / "reads.json"))
    trainer = L.Trainer(
        max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False, callbacks=[audit]
    )
    trainer.fit(Reader(), loader, loader)
    report = json.loads((tmp_path / "reads.json").read_text())
    name = Path(__file__).name
    here = {s["site"].split(":", 1)[1]: (s["reads"], s["batches"]) for s in report["sites"] if name in s["site"]}
    assert report["batches"] == 16
    assert sorted(here.values()) == [(8, 8), (16, 16), (16, 16)], report
    assert [s for s in report["sites"] if name not in s["site"]] == [], report
    assert audit._mode is None and torch._C._len_torch_function_stack() == 0  # the recorder is off after training


def sync_read(t: torch.Tensor) -> int:
    """A read that goes through the torch function modes and then, as ``.item()`` on a GPU, warns."""
    if torch.overrides.has_torch_function_unary(t):
        return torch.overrides.handle_torch_function(sync_read, (t,), t)
    warnings.warn(SYNC_WARNING, stacklevel=1)  # as torch warns: at the line that called it
    return 0


def user_sync() -> None:
    warnings.warn(SYNC_WARNING, stacklevel=1)  # a sync torch makes for this line (x[mask], torch.nonzero)


def test_host_reads_counts_torchs_sync_warnings_once_each(tmp_path, monkeypatch):
    """What torch.cuda.set_sync_debug_mode("warn") reports is counted at the line that made the sync.

    On a CPU nothing warns, so this test's functions warn as torch would: at the line whose call
    synced, inside torch with the line outside torch that led there, and not a second time for a
    read the recorder counts itself. Other warnings are shown as before, and afterwards the
    filters and ``showwarning`` are torch's and Python's again.
    """
    import lightning as L

    from litlab.callbacks import HostReads, host_reads
    from litlab.data.loader import ShardSampler, TensorLoader

    # A function whose code lies in torch's directory, as a sync inside one of torch's functions does.
    scope = {"warnings": warnings, "SYNC_WARNING": SYNC_WARNING}
    source = "def torch_sync():\n    warnings.warn(SYNC_WARNING, stacklevel=1)\n"
    exec(compile(source, str(host_reads.TORCH / "_sync.py"), "exec"), scope)
    monkeypatch.setattr(host_reads, "READS", host_reads.READS | {sync_read})

    class Syncs(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Linear(4, 1)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            loss = self.net(batch[0]).pow(2).mean()
            user_sync()
            scope["torch_sync"]()  # every step
            if batch_idx % 2:
                sync_read(loss.detach())  # every other step
            warnings.warn("not a sync", UserWarning, stacklevel=1)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    loader = TensorLoader([torch.randn(32, 4)], ShardSampler(32, shuffle=False), 4)
    audit = HostReads(path=str(tmp_path / "reads.json"))
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.callbacks.append(audit)
    filters, show = list(warnings.filters), warnings.showwarning
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        trainer.fit(Syncs(), loader)
    report = json.loads((tmp_path / "reads.json").read_text())
    sites: dict[str, tuple[int, int]] = {}  # per function: two lines of one would add up
    for site in report["sites"]:
        reads, batches = sites.get(name := re.sub(r":\d+", "", site["site"]), (0, 0))
        sites[name] = (reads + site["reads"], batches + site["batches"])
    here = Path(__file__).name  # named as imported: tests/ is on sys.path
    assert sites == {
        f"{here} (user_sync)": (8, 8),
        f"torch/_sync.py (torch_sync) via {here} (training_step)": (8, 8),
        f"{here} (sync_read)": (4, 4),  # the recorder's count, not the warning's as well
    }, report
    assert any(str(w.message) == "not a sync" for w in shown)
    assert not any(SYNC_WARNING in str(w.message) for w in shown)
    assert warnings.filters == filters and warnings.showwarning is show


@cuda
def test_host_reads_counts_syncs_inside_torch_on_a_gpu(tmp_path):
    """On a GPU, torch's own syncs are counted too: a mask's nonzero, clipping that checks the norm."""
    import lightning as L

    from litlab.callbacks import HostReads
    from litlab.data.loader import ShardSampler, TensorLoader

    class Syncs(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Linear(4, 1)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            out = self.net(batch[0])
            loss = out[out > 0].sum() + out.pow(2).mean()  # every step: a boolean mask syncs
            return loss

        def on_before_optimizer_step(self, optimizer: Any) -> None:
            nn.utils.clip_grad_norm_(self.parameters(), 1.0, error_if_nonfinite=True)  # syncs inside torch

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    loader = TensorLoader([torch.randn(32, 4)], ShardSampler(32, shuffle=False), 4)
    audit = HostReads(path=str(tmp_path / "reads.json"))
    trainer = L.Trainer(
        accelerator="gpu", devices=1, max_epochs=1, logger=False, enable_checkpointing=False, callbacks=[audit]
    )
    trainer.fit(Syncs(), loader)
    report = json.loads((tmp_path / "reads.json").read_text())
    every = {s["site"] for s in report["sites"] if s["batches"] == 8}
    assert any("(training_step)" in s and " via " not in s for s in every), report
    assert any(s.startswith("torch/nn/utils/clip_grad.py") and "(on_before_optimizer_step)" in s for s in every), report
    assert torch.cuda.get_sync_debug_mode() == 0


def test_host_reads_knows_which_copies_wait(monkeypatch):
    from litlab.callbacks.host_reads import _waits

    T, host, device = torch.Tensor, torch.ones(2), torch.ones(2, device="meta")  # meta: any device
    assert _waits(T.to, (device, "cpu"), {}) and _waits(T.cpu, (device,), {})  # device -> host
    assert not _waits(T.to, (device, "cpu"), {"non_blocking": True})  # into pinned memory, asynchronously
    assert _waits(T.copy_, (host, device, True), {})  # ... unless the destination is pageable
    assert _waits(T.to, (host, "meta"), {"non_blocking": True})  # pageable host -> device
    assert not _waits(T.to, (host, torch.float16), {}) and not _waits(T.to, (host, "cpu"), {})
    assert not _waits(T.to, (device, torch.device("meta")), {})
    monkeypatch.setattr(torch.Tensor, "is_pinned", lambda self: self.device.type == "cpu")  # no pinning here
    assert not _waits(T.to, (host, "meta"), {"non_blocking": True})  # pinned host -> device, asynchronously
    assert not _waits(T.to, (host, "meta", None, True), {}) and not _waits(T.cuda, (host, None, True), {})
    assert _waits(T.to, (host, "meta"), {}) and _waits(T.cuda, (host,), {})  # a blocking copy always waits
    assert not _waits(T.copy_, (host, device, True), {})  # into pinned memory, asynchronously


def test_fast_path_pins_host_batches_bound_for_a_cuda_gpu_only(tmp_path):
    from types import SimpleNamespace

    from litlab.data import ArraysDataModule

    arrays = {"x": torch.randn(40, 3).numpy(), "y": torch.randint(0, 2, (40,)).numpy()}
    for device, pinned in (("cuda", True), ("cpu", False)):
        dm = ArraysDataModule(arrays=arrays, input_shape=[3], num_classes=2, val_split=0.25)
        strategy = SimpleNamespace(root_device=torch.device(device))
        dm.trainer = SimpleNamespace(global_rank=0, world_size=1, strategy=strategy, overfit_batches=0)
        dm.setup("fit")
        assert dm.train_dataloader().pin_memory is pinned and dm.val_dataloader().pin_memory is pinned


@cuda
def test_fast_path_batches_are_pinned_on_a_gpu():
    from litlab.data.loader import ShardSampler, TensorLoader

    x = torch.arange(12.0).reshape(6, 2)
    (batch,) = next(iter(TensorLoader([x], ShardSampler(6, shuffle=True), 4, pin_memory=True)))
    assert batch.is_pinned() and batch.shape == (4, 2)
    assert torch.equal(batch, x[batch[:, 0].long() // 2])
