"""litlab beside a raw PyTorch loop on MNIST-sized data: per-step time, start-up, memory, parity.

    python scripts/benchmark.py                      # MLP, CNN, Transformer; writes docs/performance.md
    python scripts/benchmark.py --models mlp --repeats 3 --out /tmp/perf.md
    python scripts/benchmark.py --device cuda --precision bf16-mixed --compile --channels-last
                                                     # the GPU workloads: tokens/s, MFU, samples/s

On ``--device cuda`` the default nets are ``transformer_lm`` (6 layers, width 384, 256 tokens,
batch 64) and ``cnn_cifar`` (3x32x32, batch 256), every side runs the GPU recipe (cuDNN
autotuning, data held on the GPU, fused optimizer, ``--precision``, ``--compile``), the
results go to their own block of docs/performance.md, and a third table gives samples/s,
tokens/s and model FLOPs utilization.

The data are synthetic (fixed seed) and MNIST-sized: 55k train, 5k val and 10k test images of
1x28x28 whose labels come from a fixed random teacher, written once to an ``.npz`` that
``litlab-train data=arrays`` reads. Every measurement is its own process, of three sides:

- the raw loop, ``benchmark_loops.py raw <spec>``;
- bare Lightning, ``benchmark_loops.py lightning <spec>``: the raw loop's net, optimizer and batches
  in a LightningModule with no logger, checkpoints, metrics or progress bar: the floor that
  Lightning's own loop sets;
- litlab, the ``litlab-train`` beside this interpreter, with its default callbacks and logger.

All three get the same net (built from the composed litlab config), the same seed and so the
same initial weights, the same optimizer, batch size and batch order; the parity runs check
that their losses agree to ``--tolerance`` for ``--parity-steps`` steps and exit 1 if not.

Timing runs of 1 and 3 epochs are interleaved (in a shuffled order, then the import floor) and
repeated; the tables show medians. The raw and bare-Lightning loops run with the malloc
settings litlab's process uses (``reuse_freed_memory``, litlab.allocator), so the ratios are the
frameworks' own cost; one more raw run per repeat keeps glibc's defaults, the loop as it is
usually run. Two per-step ratios are reported:

- ``steady``: epoch wall time inside the process (epoch start to next epoch start, including
  validation and checkpointing) of the epochs after the first, per training step;
- ``3-1 epochs``: (time of a 3-epoch run - time of a 1-epoch run) / 2, the whole process timed
  from outside, so start-up cancels (the issue-4 definition).

``--variants`` times litlab with other overrides beside the rest (what one part costs, in the
same run); ``--keep-going`` reports a failed parity check or net in the table and the exit
status and measures the other nets, for one-shot runs on a lent GPU (scripts/gpu_check.sh).
"""

import argparse
import datetime as dt
import itertools
import json
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOOPS = Path(__file__).with_name("benchmark_loops.py")
MARK_BEGIN, MARK_END = "<!-- benchmark:begin -->", "<!-- benchmark:end -->"

MNIST = {"kind": "images", "shape": [1, 28, 28]}

#: litlab overrides per net, its data, and ``limit`` batches per epoch (train, val): a full epoch
#: of the CNN or the Transformer takes minutes on 2 CPU cores, the ratio does not need it.
#: ``batch_size`` replaces ``--batch-size``. The last two are the GPU workloads of issue 8.
NETS: dict[str, dict[str, Any]] = {
    "mlp": {"overrides": ["experiment=mnist_mlp"], "limit": None, "data": MNIST},
    "cnn": {
        "overrides": ["model=cnn", "model/optimizer=adam", "model.scheduler=null", "model.net.dropout=0"],
        "limit": (40, 8),
        "data": MNIST,
    },
    "transformer": {
        "overrides": ["model=transformer", "model/optimizer=adam", "model.scheduler=null", "model.net.patch_size=4"],
        "limit": (24, 6),
        "data": MNIST,
    },
    # A GPT-small-ish encoder on token sequences: throughput in tokens/s and model FLOPs utilization.
    "transformer_lm": {
        "overrides": [
            "model=transformer",
            "model.scheduler=null",
            "model.net.d_model=384",
            "model.net.n_layers=6",
            "model.net.n_heads=6",
            "model.net.d_ff=1536",
        ],
        "limit": (100, 10),
        "data": {"kind": "tokens", "seq": 256, "vocab": 512},
        "batch_size": 64,
    },
    # The default CNN on CIFAR-sized images: throughput in samples/s.
    "cnn_cifar": {
        "overrides": ["model=cnn", "model.scheduler=null", "model.net.dropout=0"],
        "limit": (100, 10),
        "data": {"kind": "images", "shape": [3, 32, 32]},
        "batch_size": 256,
    },
}
#: Nets that run when ``--models`` is not given, per device.
DEFAULT_NETS = {"cpu": ["mlp", "cnn", "transformer"], "cuda": ["transformer_lm", "cnn_cifar"]}


def common_overrides(data: Path, shape: dict[str, Any], batch_size: int, args: argparse.Namespace) -> list[str]:
    """The litlab overrides every side shares (the raw loop reads its net, optimizer and data from them)."""
    tokens = shape["kind"] == "tokens"
    overrides = [
        "data=arrays",
        f"data.path={data}",
        f"data.input_shape=[{shape['seq']}]" if tokens else f"data.input_shape=[{','.join(map(str, shape['shape']))}]",
        *([f"++data.vocab_size={shape['vocab']}"] if tokens else []),
        "data.num_classes=10",
        f"data.batch_size={batch_size}",
        "seed=0",
        "test=false",
        "print_config=false",
        f"trainer.precision={args.precision}",
    ]
    if args.device == "cuda":
        # The GPU recipe (docs/performance.md): cuDNN autotuning, data held on the GPU, fused optimizer.
        overrides += ["trainer=gpu", "++data.on_device=true", "model.optimizer.fused=true"]
    else:
        overrides.append("trainer.accelerator=cpu")
    if args.compile:
        overrides.append("model.compile=true")
    return overrides


# ---------------------------------------------------------------- data


def write_data(path: Path, sizes: tuple[int, int, int], shape: dict[str, Any] = MNIST, seed: int = 0) -> Path:
    """Float32 images in [0, 1] or token ids in [1, vocab); 10 labels from a fixed random linear teacher."""
    import numpy as np

    rng = np.random.default_rng(seed)
    width = shape["seq"] if shape["kind"] == "tokens" else math.prod(shape["shape"])
    teacher = rng.standard_normal((width, 10)).astype(np.float32)
    arrays = {}
    for split, n in zip(("train", "val", "test"), sizes, strict=True):
        if shape["kind"] == "tokens":
            x = rng.integers(1, shape["vocab"], (n, shape["seq"]), dtype=np.int64)
            features = (x % 2).astype(np.float32)  # the teacher reads each token's parity
        else:
            x = rng.random((n, *shape["shape"]), dtype=np.float32)
            features = x.reshape(n, -1)
        arrays[f"x_{split}"] = x
        arrays[f"y_{split}"] = ((features - 0.5) @ teacher).argmax(1).astype(np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


# ---------------------------------------------------------------- what the loops read from the config


def raw_spec(overrides: list[str]) -> dict[str, Any]:
    """What the raw loop needs from the litlab config composed with ``overrides``."""
    from hydra import compose, initialize_config_dir

    from litlab.config import config_dir

    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    model = {k: cfg.model[k] for k in ("net", "optimizer")}
    from omegaconf import OmegaConf

    return {
        **OmegaConf.to_container(OmegaConf.create(model), resolve=True),
        "scheduler": cfg.model.get("scheduler"),
        "batch_size": cfg.data.batch_size,
        "seed": cfg.seed,
        "data_seed": cfg.data.seed,
        "input_shape": list(cfg.data.input_shape),
        "num_classes": cfg.data.num_classes,
        "vocab_size": cfg.data.get("vocab_size"),
        "path": cfg.data.path,
        "reuse_freed_memory": bool(cfg.get("reuse_freed_memory")),
        "device": "cuda" if cfg.trainer.accelerator in ("gpu", "cuda") else "cpu",
        "precision": str(cfg.trainer.precision),
        "compile": bool(cfg.model.get("compile")),
        "cudnn_benchmark": bool(cfg.trainer.get("benchmark")),
        "float32_matmul_precision": cfg.get("float32_matmul_precision"),
    }


# ---------------------------------------------------------------- running the two sides


#: Set by ``--threads``: torch's intra-op threads in every child (OMP_NUM_THREADS).
THREADS: int | None = None


def run_process(cmd: list[str], log: Path, cwd: Path) -> dict[str, float]:
    """Run ``cmd``; its wall time, start time and peak resident memory (this child's own, via wait4)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS)} if THREADS else None
    with open(log, "w") as out:
        start = time.time()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.time() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        tail = log.read_text()[-4000:]
        raise RuntimeError(f"{' '.join(cmd)}\nexited {code}; log {log}:\n{tail}")
    return {"start": start, "wall": wall, "peak_mb": usage.ru_maxrss / 1024}


def run_loop(spec: dict[str, Any], work: Path, tag: str, side: str = "raw", **extra: Any) -> dict[str, Any]:
    """``benchmark_loops.py raw|lightning <spec>``: the raw loop or the bare-Lightning one."""
    out = work / f"{tag}.json"
    spec_file = work / f"{tag}.spec.json"
    spec_file.write_text(json.dumps({**spec, **extra, "out": str(out)}))
    proc = run_process([sys.executable, str(LOOPS), side, str(spec_file)], work / f"{tag}.log", work)
    return {**proc, **json.loads(out.read_text())}


def run_litlab(overrides: list[str], work: Path, tag: str, record_losses: bool = False) -> dict[str, Any]:
    out = work / f"{tag}.json"
    cmd = [
        str(BIN / "litlab-train"),
        *overrides,
        f"task_name=bench_{tag}",
        "+callbacks.step_timer._target_=litlab.callbacks.StepTimer",
        f"+callbacks.step_timer.path={out}",
        f"+callbacks.step_timer.record_losses={record_losses}",
    ]
    proc = run_process(cmd, work / f"{tag}.log", work)
    return {**proc, **json.loads(out.read_text())}


def limit_overrides(limit: tuple[int, int] | None) -> list[str]:
    if limit is None:
        return []
    return [f"++trainer.limit_train_batches={limit[0]}", f"++trainer.limit_val_batches={limit[1]}"]


def check_parity(raw: list[float], lit: list[float], steps: int, tolerance: float, side: str = "litlab") -> float:
    """The largest difference of the two loss curves; raises if they differ by more than ``tolerance``."""
    if len(raw) != steps or len(lit) != steps:
        raise AssertionError(f"parity: expected {steps} losses from each side, got raw {len(raw)}, {side} {len(lit)}")
    diffs = [abs(a - b) for a, b in zip(raw, lit, strict=True)]
    worst = max(diffs)
    if worst > tolerance or any(math.isnan(d) for d in diffs):
        step = diffs.index(worst)
        raise AssertionError(
            f"parity: {side}'s loss differs from the raw loop's by {worst:.3g} > {tolerance:g} at step {step + 1} "
            f"(raw {raw[step]:.7f}, {side} {lit[step]:.7f}): the two runs are not doing the same work"
        )
    return worst


def steady_step_time(run: dict[str, Any], steps_per_epoch: int, clock: str = "wall") -> float:
    """Median epoch time after the first (epoch start to next epoch start, or to fit end), per step."""
    marks = [*run["epoch_starts"], run["fit_end"]] if clock == "wall" else [*run["epoch_cpu"], run["fit_end_cpu"]]
    epochs = [b - a for a, b in itertools.pairwise(marks)][1:]
    return statistics.median(epochs) / steps_per_epoch


def import_floor(work: Path) -> float:
    return run_process([sys.executable, "-c", "import torch, lightning"], work / "floor.log", work)["wall"]


# ---------------------------------------------------------------- report


def machine() -> dict[str, str]:
    import lightning
    import numpy
    import torch

    import litlab

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{cpu}, {cores} cores (torch threads {torch.get_num_threads()})",
        "gpu": gpu,
        "versions": f"python {platform.python_version()}, torch {torch.__version__}, "
        f"lightning {lightning.__version__}, numpy {numpy.__version__}, litlab {litlab.__version__}",
        "load": "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()),
    }


def rate(step: float) -> str:
    """Steps per second of a per-step time, to three significant figures at least."""
    return f"{1 / step:.0f}" if step < 0.1 else f"{1 / step:.3g}"


def table(results: dict[str, dict[str, Any]], floor: float, epochs: int) -> str:
    """Two Markdown tables: per-step speed against the raw loop and bare Lightning; start-up and memory."""
    speed = [
        "| net | steps/epoch | raw steps/s | bare Lightning steps/s | litlab steps/s | litlab / raw (steady) "
        f"| ({epochs}-1 epochs) | (CPU time) | target | bare Lightning / raw | litlab / bare Lightning "
        "| raw steps/s, glibc malloc | litlab / that |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    cost = [
        "| net | raw peak MB | litlab peak MB | raw GPU peak MB | litlab GPU peak MB | litlab start-up s "
        "| import floor s | start-up - floor s |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def mb(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}"

    for name, r in results.items():
        raw, bare, lit, glibc = r["raw_step"], r["bare_step"], r["lit_step"], r["glibc_step"]
        speed.append(
            f"| {r.get('label', name)} | {r['steps']} | {rate(raw)} | {rate(bare)} | {rate(lit)} | {r['ratio']:.2f}x "
            f"| {r['ratio_diff']:.2f}x | {r['ratio_cpu']:.2f}x | {r['target']:.2f}x "
            f"| {bare / raw:.2f}x | {lit / bare:.2f}x "
            + (f"| {rate(glibc)} | {lit / glibc:.2f}x |" if glibc else "| - | - |")
        )
        cost.append(
            f"| {name} | {r['raw_peak']:.0f} | {r['lit_peak']:.0f} | {mb(r['raw_gpu_peak'])} | {mb(r['lit_gpu_peak'])} "
            f"| {r['startup']:.2f} | {floor:.2f} "
            f"| {r['startup'] - floor:+.2f} |"
        )
    return "\n".join(speed) + "\n\n" + "\n".join(cost) + "\n"


def describe(shape: dict[str, Any]) -> str:
    if shape["kind"] == "tokens":
        return f"{shape['seq']} tokens of {shape['vocab']}"
    return "x".join(map(str, shape["shape"]))


#: Dense bf16/fp16 tensor-core peak FLOP/s by GPU name (vendor datasheets); ``--peak-tflops`` for others.
#: More specific names first: "H100 PCIe" before "H100".
PEAK_16BIT = [
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),
    ("H200", 989e12),
    ("A100", 312e12),
    ("L40S", 362e12),
]


def peak_flops(gpu: str, precision: str) -> float | None:
    """The GPU's 16-bit peak, for mixed precision only (float32 runs have another, lower peak)."""
    if precision not in ("bf16-mixed", "16-mixed"):
        return None
    return next((peak for name, peak in PEAK_16BIT if name in gpu), None)


def flops_per_token(spec: dict[str, Any]) -> float:
    """Training FLOPs per token of the token Transformer: 6 per weight (forward and backward, embeddings
    excluded) plus the attention scores, 12 * layers * width * sequence (PaLM's and nanoGPT's estimate)."""
    from litlab.models import build_net

    net = build_net(
        **spec["net"], input_shape=spec["input_shape"], num_outputs=spec["num_classes"], vocab_size=spec["vocab_size"]
    )
    weights = sum(p.numel() for n, p in net.named_parameters() if not n.startswith(("embed", "pos")))
    cfg, seq = spec["net"], spec["input_shape"][-1]
    return 6 * weights + 12 * cfg["n_layers"] * cfg["d_model"] * seq


def throughput_table(results: dict[str, dict[str, Any]], specs: dict[str, dict[str, Any]], peak: float | None) -> str:
    """Samples/s of each side; tokens/s and model FLOPs utilization for token nets."""
    rows = [
        "| net | batch | raw samples/s | litlab samples/s | raw tokens/s | litlab tokens/s | GFLOPs/token "
        "| raw MFU | litlab MFU |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        spec = specs[name]
        B = spec["batch_size"]
        raw, lit = B / r["raw_step"], B / r["lit_step"]
        cells = [name, str(B), f"{raw:.0f}", f"{lit:.0f}", "-", "-", "-", "-", "-"]
        if spec["vocab_size"] is not None:
            T, flops = spec["input_shape"][-1], flops_per_token(spec)
            cells[4:7] = [f"{raw * T:.0f}", f"{lit * T:.0f}", f"{flops / 1e9:.3f}"]
            if peak:
                cells[7:] = [f"{raw * T * flops / peak:.1%}", f"{lit * T * flops / peak:.1%}"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def variant_table(samples: dict[str, dict], steps: dict[str, int], args: argparse.Namespace) -> str:
    """litlab with each ``--variants`` override set beside plain litlab and the raw loop (steady per-step time)."""
    med = statistics.median
    rows = ["| net | litlab with | steps/s | / raw | / litlab |", "|---|---|---|---|---|"]
    for name, n in steps.items():
        raw = med([steady_step_time(r, n) for r in samples[name][("raw", args.epochs)]])
        lit = med([steady_step_time(r, n) for r in samples[name][("lit", args.epochs)]])
        for i, variant in enumerate(args.variants):
            runs = samples[name].get((f"variant{i}", args.epochs))
            if not runs:
                rows.append(f"| {name} | `{variant}` | FAILED | - | - |")
                continue
            t = med([steady_step_time(r, n) for r in runs])
            some = f" ({len(runs)} of {args.repeats} runs)" if len(runs) < args.repeats else ""
            rows.append(f"| {name} | `{variant}` | {rate(t)}{some} | {t / raw:.2f}x | {t / lit:.2f}x |")
    return "\n".join(rows) + "\n"


def write_report(path: Path, text: str, key: str = "") -> None:
    """Replace the generated block of ``path`` (between the markers), keeping the prose around it.

    ``key`` names another block (``cuda``: the GPU results beside the CPU ones).
    """
    begin, end = (
        (MARK_BEGIN, MARK_END)
        if not key
        else (m.replace("benchmark:", f"benchmark-{key}:") for m in (MARK_BEGIN, MARK_END))
    )
    block = f"{begin}\n{text}{end}"
    old = path.read_text() if path.exists() else ""
    if begin in old and end in old:
        before, rest = old.split(begin, 1)
        new = before + block + rest.split(end, 1)[1]
    else:
        new = (old or "# Performance\n\n") + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new)


# ---------------------------------------------------------------- main


def summarize(
    name: str, runs: dict[tuple[str, int], list[dict]], steps: int, E: int, device: str = "cpu"
) -> dict[str, Any]:
    """Medians over the repeats of one net's runs, keyed ``(side, epochs)``."""
    med = statistics.median

    def diffs(side: str) -> list[float]:
        pairs = zip(runs[(side, E)], runs[(side, 1)], strict=True)
        return [(a["wall"] - b["wall"]) / (E - 1) / steps for a, b in pairs]

    raw, lit = runs[("raw", E)], runs[("lit", E)]
    ratios = [steady_step_time(a, steps) / steady_step_time(b, steps) for a, b in zip(lit, raw, strict=True)]
    cpu = [steady_step_time(a, steps, "cpu") / steady_step_time(b, steps, "cpu") for a, b in zip(lit, raw, strict=True)]
    raw_step = med([steady_step_time(r, steps) for r in raw])
    lit_step = med([steady_step_time(r, steps) for r in lit])
    glibc = runs.get(("glibc", E))
    return {
        "glibc_step": med([steady_step_time(r, steps) for r in glibc]) if glibc else None,
        "bare_step": med([steady_step_time(r, steps) for r in runs[("lightning", E)]]),
        "steps": steps,
        "raw_step": raw_step,
        "lit_step": lit_step,
        "ratio": lit_step / raw_step,
        "ratio_diff": med(diffs("lit")) / med(diffs("raw")),
        "ratios_diff": [a / b for a, b in zip(diffs("lit"), diffs("raw"), strict=True)],
        "ratios": ratios,
        "ratio_cpu": med(cpu),
        "target": 1.1 if device == "cuda" else 1.5 if name == "mlp" else 1.25,
        "raw_peak": med([r["peak_mb"] for r in raw]),
        "lit_peak": med([r["peak_mb"] for r in lit]),
        # torch's largest allocation on the GPU (None on a CPU): the host RSS above misses it.
        "raw_gpu_peak": None if raw[0].get("gpu_peak_mb") is None else med([r["gpu_peak_mb"] for r in raw]),
        "lit_gpu_peak": None if lit[0].get("gpu_peak_mb") is None else med([r["gpu_peak_mb"] for r in lit]),
        "startup": med([r["first_step"] - r["start"] for r in runs[("lit", 1)]]),
    }


def benchmark(args: argparse.Namespace) -> int:
    global THREADS
    THREADS = args.threads
    work = Path(tempfile.mkdtemp(prefix="litlab-bench-"))
    try:
        return measure(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def measure(args: argparse.Namespace, work: Path) -> int:
    print(f"data: synthetic, sizes {args.sizes}; work dir {work}", flush=True)
    floors: list[float] = []
    failures: list[str] = []  # with --keep-going: what failed, reported and measured around
    parity_failed: set[str] = set()

    def failed(what: str, e: Exception) -> None:
        """Stop, or with --keep-going note the failure (once: a repeat fails alike) and go on."""
        if not args.keep_going:
            raise e
        print(f"FAILED {what}: {e}", flush=True)
        if not any(f.startswith(f"{what}: ") for f in failures):
            failures.append(f"{what}: {e}")

    plans = {}
    for name in args.models:
        net = NETS[name]
        shape = net["data"]
        data = work / f"data_{describe(shape).replace(' ', '_')}.npz"
        if not data.exists():
            write_data(data, tuple(args.sizes), shape)
        limit = tuple(args.limit) if args.limit else net["limit"]
        batch_size = net.get("batch_size") or args.batch_size
        extra = ["model.net.channels_last=true"] if args.channels_last and "model=cnn" in net["overrides"] else []
        overrides = [
            *common_overrides(data, shape, batch_size, args),
            *net["overrides"],
            *extra,
            *limit_overrides(limit),
        ]
        spec = {**raw_spec(overrides), "limit": limit}
        # Parity first: a benchmark of two different computations measures nothing. Deterministic
        # kernels and no cuDNN autotuning, so that each process picks the same GPU algorithms.
        budget = {
            "epochs": 10**6,
            "max_steps": args.parity_steps,
            "record_losses": True,
            "deterministic": True,
            "cudnn_benchmark": False,
        }
        # Early stopping would ask for a val/loss that a run stopped mid-epoch never computed.
        lit_over = [
            *overrides,
            *args.litlab_extra,
            f"++trainer.max_steps={args.parity_steps}",
            "callbacks.early_stopping=null",
            "trainer.deterministic=warn",
            "++trainer.benchmark=false",
        ]
        try:
            raw = run_loop(spec, work, f"{name}_parity_raw", **budget)
            lit = run_litlab(lit_over, work, f"{name}_parity_lit", record_losses=True)
            bare = run_loop(spec, work, f"{name}_parity_lightning", "lightning", **budget)
            worst = max(
                check_parity(raw["losses"], lit["losses"], args.parity_steps, args.tolerance),
                check_parity(raw["losses"], bare["losses"], args.parity_steps, args.tolerance, "bare Lightning"),
            )
            print(f"{name}: parity over {args.parity_steps} steps, largest loss difference {worst:.2g}", flush=True)
        except (AssertionError, RuntimeError) as e:
            failed(name, e)
            if isinstance(e, RuntimeError):  # a process failed: nothing of this net can be timed
                continue
            parity_failed.add(name)
        n_train = args.sizes[0]
        steps = math.ceil(n_train / batch_size)
        plans[name] = ([*overrides, *args.litlab_extra], spec, min(steps, limit[0]) if limit else steps)
    if args.parity_only:
        return 1 if failures else 0

    samples: dict[str, dict[str, list]] = {n: {} for n in plans}
    broken: set[str] = set()  # nets a timed run of which failed (--keep-going)
    for rep in range(args.repeats):
        for name, (overrides, spec, _) in plans.items():
            if name in broken:
                continue
            jobs = [(side, e) for side in ("raw", "lit") for e in (1, args.epochs)]
            jobs.append(("lightning", args.epochs))
            if spec["reuse_freed_memory"] and args.device == "cpu":
                jobs.append(("glibc", args.epochs))
            jobs += [(f"variant{i}", args.epochs) for i in range(len(args.variants))]
            random.Random(rep).shuffle(jobs)  # interleaved, in a different order each repeat
            try:
                for side, epochs in jobs:
                    tag = f"{name}_{side}{epochs}_r{rep}"
                    if side == "raw":
                        run = run_loop(spec, work, tag, epochs=epochs)
                    elif side == "glibc":  # the raw loop as usually run: glibc's malloc defaults
                        run = run_loop(spec, work, tag, epochs=epochs, reuse_freed_memory=False)
                    elif side == "lightning":
                        run = run_loop(spec, work, tag, "lightning", epochs=epochs)
                    elif side.startswith("variant"):
                        variant = args.variants[int(side.removeprefix("variant"))]
                        over = [*overrides, *variant.split(), f"trainer.max_epochs={epochs}"]
                        try:
                            run = run_litlab(over, work, tag)
                        except RuntimeError as e:  # a failed variant costs its own row, not the net's
                            failed(f"{name} with {variant}", e)
                            continue
                    else:
                        run = run_litlab([*overrides, f"trainer.max_epochs={epochs}"], work, tag)
                    samples[name].setdefault((side, epochs), []).append(run)
            except RuntimeError as e:
                failed(f"{name} timing", e)
                broken.add(name)
                continue
            floors.append(import_floor(work))
            steps = plans[name][2]
            raw, lit = (steady_step_time(samples[name][(side, args.epochs)][-1], steps) for side in ("raw", "lit"))
            print(
                f"repeat {rep + 1}/{args.repeats} {name} done: steady ms/step raw {raw * 1e3:.2f}, "
                f"litlab {lit * 1e3:.2f} ({lit / raw:.2f}x)",
                flush=True,
            )

    plans = {name: plan for name, plan in plans.items() if name not in broken}
    if not plans:
        print("FAILED: no net could be measured\n" + "\n".join(failures), file=sys.stderr)
        return 1
    floor = statistics.median(floors)
    results = {
        name: summarize(name, samples[name], steps, args.epochs, args.device) for name, (_, _, steps) in plans.items()
    }
    for name in parity_failed & set(results):
        results[name]["label"] = f"{name} (parity FAILED)"
    info = machine()
    md = table(results, floor, args.epochs)
    if args.device == "cuda" or any(NETS[n]["data"]["kind"] == "tokens" for n in plans):
        peak = args.peak_tflops * 1e12 if args.peak_tflops else peak_flops(info["gpu"], args.precision)
        md += "\n" + throughput_table(results, {n: spec for n, (_, spec, _) in plans.items()}, peak)
    if args.variants:
        md += "\n" + variant_table(samples, {n: steps for n, (_, _, steps) in plans.items()}, args)
    spread = "; ".join(f"{n}: " + ", ".join(f"{x:.2f}" for x in r["ratios"]) for n, r in results.items())
    spread_diff = "; ".join(f"{n}: " + ", ".join(f"{x:.2f}" for x in r["ratios_diff"]) for n, r in results.items())
    shapes = ", ".join(
        f"{n} {describe(NETS[n]['data'])} batch {spec['batch_size']}" for n, (_, spec, _) in plans.items()
    )
    cmd = "python scripts/benchmark.py " + " ".join(args.argv)
    text = (
        f"Measured {info['date']} with `{cmd.strip()}`\n\n"
        f"- machine: {info['cpu']}; GPU: {info['gpu']}; {info['load']} at the end\n"
        f"- torch threads per process: {args.threads or 'torch default'}\n"
        f"- versions: {info['versions']}\n"
        f"- data: synthetic arrays ({' / '.join(map(str, args.sizes))} train/val/test; {shapes}), "
        f"medians of {args.repeats} interleaved repeats of {args.epochs}- and 1-epoch runs\n"
        f"- device {args.device}, precision {args.precision}, compile {args.compile}, "
        f"channels_last {args.channels_last}"
        + (" (GPU recipe: trainer=gpu, data.on_device, fused optimizer)\n" if args.device == "cuda" else "\n")
        + f"- parity: litlab's and bare Lightning's losses equal the raw loop's to {args.tolerance:g} "
        f"over {args.parity_steps} steps for "
        + ("each net" if not parity_failed else f"each net but {', '.join(sorted(parity_failed))} (FAILED)")
        + " (deterministic kernels, no cuDNN autotuning)\n"
        f"- steady ratio of each repeat: {spread}\n"
        f"- {args.epochs}-1 epochs ratio of each repeat: {spread_diff}\n"
        + "".join(f"- **FAILED** {f.splitlines()[0]}\n" for f in failures)
        + "\n"
        + md
    )
    print("\n" + text)
    if args.out:
        write_report(Path(args.out), text, report_key(args))
        print(f"written to {args.out}")
    if failures:
        print("FAILED:\n" + "\n".join(failures), file=sys.stderr)
    return 1 if failures else 0


def report_key(args: argparse.Namespace) -> str:
    """The block of docs/performance.md a run fills: the CPU table, or one GPU block per precision."""
    return "" if args.device == "cpu" else f"{args.device}-{args.precision}" + ("-compile" if args.compile else "")


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--models",
        nargs="+",
        choices=list(NETS),
        help="default: mlp cnn transformer (cpu), transformer_lm cnn_cifar (cuda)",
    )
    p.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        default="cpu",
        help="cuda: litlab with trainer=gpu, data.on_device and a fused optimizer; the raw loop likewise",
    )
    p.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed", "16-mixed"])
    p.add_argument("--compile", action="store_true", help="torch.compile the net on every side (model.compile)")
    p.add_argument("--channels-last", action="store_true", help="NHWC for the CNNs (model.net.channels_last)")
    p.add_argument("--peak-tflops", type=float, help="the GPU's 16-bit peak, for MFU where its name is not known")
    p.add_argument("--sizes", nargs=3, type=int, default=[55000, 5000, 10000], metavar=("TRAIN", "VAL", "TEST"))
    p.add_argument("--batch-size", type=int, default=128, help="for nets that do not set their own")
    p.add_argument("--limit", nargs=2, type=int, help="train and val batches per epoch for every net")
    p.add_argument("--epochs", type=int, default=3, help="the long run; the short one is 1 epoch")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--parity-steps", type=int, default=50)
    p.add_argument(
        "--tolerance",
        type=float,
        help="default 1e-5; 1e-3 on CUDA, whose embedding and scatter backward kernels add in a varying order",
    )
    p.add_argument("--parity-only", action="store_true")
    p.add_argument(
        "--variants",
        nargs="*",
        default=[],
        help="litlab runs to time beside the others, each a space-separated set of overrides, "
        "e.g. 'callbacks.nan_guard=null': what one part costs, in the same run",
    )
    p.add_argument(
        "--keep-going",
        action="store_true",
        help="measure on past a failed parity check or a failed net; the report names the failures, exit 1",
    )
    p.add_argument("--threads", type=int, help="torch threads per process (default: torch's own choice)")
    p.add_argument("--keep", action="store_true", help="keep the work dir (data, logs, runs) for a look")
    p.add_argument(
        "--litlab-extra",
        nargs="*",
        default=[],
        help="overrides for litlab's parity and timed runs only, e.g. callbacks.nan_guard=null",
    )
    p.add_argument("--out", default=str(ROOT / "docs" / "performance.md"), help="'' to write nothing")
    args = p.parse_args(argv)
    args.argv = argv
    if args.epochs < 2:
        p.error("--epochs must be at least 2 (the short run is 1 epoch)")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            p.error("--device cuda: torch sees no CUDA GPU here")
    if args.device == "cpu" and args.precision == "16-mixed":
        p.error("--precision 16-mixed needs --device cuda: on a CPU Lightning runs bf16-mixed in its place")
    args.models = args.models or DEFAULT_NETS[args.device]
    if args.tolerance is None:
        args.tolerance = 1e-3 if args.device == "cuda" else 1e-5
    return args


if __name__ == "__main__":
    try:
        sys.exit(benchmark(parse(sys.argv[1:])))
    except AssertionError as e:
        print(f"FAILED {e}", file=sys.stderr)
        sys.exit(1)
