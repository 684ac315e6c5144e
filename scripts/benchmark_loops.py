"""The two reference loops of scripts/benchmark.py, each run as its own process.

    python scripts/benchmark_loops.py raw SPEC.json         # plain PyTorch
    python scripts/benchmark_loops.py lightning SPEC.json   # a bare LightningModule

``SPEC.json`` is what ``benchmark.raw_spec`` reads from the composed litlab config (net,
optimizer, data, seed, device, precision) plus the run's ``epochs``, ``limit``, ``max_steps``
and ``out``, where the loop writes its timings (and losses, for the parity check) as JSON.
"""

import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any


def setup(spec: dict[str, Any]) -> tuple[Any, ...]:
    """The data, the seeded net, its forward and its optimizer, as the config says; shared by the raw and
    bare-Lightning loops. On a GPU the data are held there (litlab's ``data.on_device``); ``forward`` is
    ``torch.compile(net)`` when the config compiles, as litlab's Task does.
    """
    import numpy as np
    import torch

    from litlab.models import build_net  # plain nn.Modules: the same net, nothing of Lightning
    from litlab.optim import build_optimizer

    if spec["scheduler"]:
        raise SystemExit("the raw loop has no learning-rate schedule: benchmark with model.scheduler=null")
    if spec["reuse_freed_memory"]:  # the allocator litlab's process runs with (litlab.allocator)
        from litlab.allocator import reuse_freed_memory

        reuse_freed_memory()
    with np.load(spec["path"]) as z:
        x_train, y_train = torch.from_numpy(z["x_train"]), torch.from_numpy(z["y_train"])
        x_val, y_val = torch.from_numpy(z["x_val"]), torch.from_numpy(z["y_val"])
    device = torch.device(spec["device"])
    x_train, y_train, x_val, y_val = (t.to(device) for t in (x_train, y_train, x_val, y_val))
    torch.backends.cudnn.benchmark = spec["cudnn_benchmark"]
    if spec.get("deterministic"):  # as Lightning's Trainer(deterministic="warn")
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
        torch.use_deterministic_algorithms(True, warn_only=True)
    if spec["float32_matmul_precision"] and device.type == "cuda":  # as litlab.resources.use_resources
        torch.set_float32_matmul_precision(spec["float32_matmul_precision"])
    torch.manual_seed(spec["seed"])
    extra = {"vocab_size": spec["vocab_size"]} if spec["vocab_size"] is not None else {}
    net = build_net(**spec["net"], input_shape=spec["input_shape"], num_outputs=spec["num_classes"], **extra)
    net.to(device)
    forward = torch.compile(net) if spec["compile"] else net
    optimizer = build_optimizer(net, **spec["optimizer"])  # plain torch.optim, as litlab builds it
    return x_train, y_train, x_val, y_val, net, forward, optimizer


def batches(x: Any, y: Any, size: int, limit: int | None = None, seed: int | None = None) -> Any:
    """One epoch of ``(x, y)`` batches: a seeded shuffle with one gather per batch, or slices in order."""
    import torch

    count = math.ceil(len(x) / size) if limit is None else min(limit, math.ceil(len(x) / size))
    if seed is None:
        return ((x[i * size : (i + 1) * size], y[i * size : (i + 1) * size]) for i in range(count))
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed)).to(x.device)
    return ((x[i], y[i]) for i in order[: count * size].split(size))


def mixed_precision(spec: dict[str, Any]) -> tuple[Any, Any]:
    """What Lightning's precision setting does, by hand: an autocast context and, for float16, a grad scaler."""
    import torch

    precision, device = spec["precision"], spec["device"]
    if precision in ("32-true", "32"):
        return contextlib.nullcontext, None
    if precision not in ("bf16-mixed", "16-mixed"):
        raise SystemExit(f"--precision {precision}: the raw loop mirrors 32-true, bf16-mixed and 16-mixed")
    dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.float16
    scaler = torch.amp.GradScaler(device) if precision == "16-mixed" else None
    return lambda: torch.autocast(device, dtype=dtype), scaler


def raw_main(spec: dict[str, Any]) -> None:
    """Plain PyTorch: tensors in memory, one gather per batch, forward, backward, step."""
    import torch
    import torch.nn.functional as F

    from litlab.callbacks.step_timer import gpu_peak_mb, wait_for  # the same marks as the other two sides
    from litlab.data.loader import epoch_seed  # the same order of batches

    x_train, y_train, x_val, y_val, net, forward, optimizer = setup(spec)
    autocast, scaler = mixed_precision(spec)
    B, (train_limit, val_limit) = spec["batch_size"], spec.get("limit") or (None, None)
    max_steps, record = spec.get("max_steps") or math.inf, spec.get("record_losses", False)
    first_step, epoch_starts, epoch_cpu, losses, step = None, [], [], [], 0
    for epoch in range(spec["epochs"]):
        wait_for(spec["device"])
        epoch_starts.append(time.time())
        epoch_cpu.append(time.process_time())
        net.train()
        for x, y in batches(x_train, y_train, B, train_limit, epoch_seed(spec["data_seed"], epoch)):
            if first_step is None:
                first_step = time.time()
            with autocast():
                loss = F.cross_entropy(forward(x), y)
            optimizer.zero_grad(set_to_none=True)
            if scaler is None:
                loss.backward()
                optimizer.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            if record:
                losses.append(loss.item())
            step += 1
            if step >= max_steps:
                break
        if step >= max_steps:
            break
        net.eval()
        with torch.no_grad(), autocast():
            total, correct = torch.zeros((), device=x_val.device), torch.zeros((), device=x_val.device)
            for x, y in batches(x_val, y_val, B, val_limit):
                out = forward(x)
                total += F.cross_entropy(out, y, reduction="sum")
                correct += (out.argmax(1) == y).sum()
    wait_for(spec["device"])
    summary = {"first_step": first_step, "epoch_starts": epoch_starts, "fit_end": time.time()}
    summary.update(epoch_cpu=epoch_cpu, fit_end_cpu=time.process_time(), gpu_peak_mb=gpu_peak_mb(spec["device"]))
    Path(spec["out"]).write_text(json.dumps({**summary, "steps": step, "losses": losses}))


def lightning_main(spec: dict[str, Any]) -> None:
    """Lightning with nothing added: the raw loop's net, optimizer and batches in a bare LightningModule.

    No logger, checkpoints, progress bar, metrics or callbacks but the timer (litlab's
    StepTimer, the instrument on the litlab side too): the floor that Lightning's own loop
    sets under anything built on it.
    """
    import lightning as L
    import torch
    import torch.nn.functional as F

    from litlab.callbacks import StepTimer
    from litlab.data.loader import epoch_seed

    x_train, y_train, x_val, y_val, net, forward, optimizer = setup(spec)
    B, (train_limit, val_limit) = spec["batch_size"], spec.get("limit") or (None, None)

    class Batches:
        """The raw loop's batches (``batches``) as a loader: the epoch comes from the trainer."""

        def __init__(self, x: Any, y: Any, limit: int | None, shuffle: bool) -> None:
            self.x, self.y, self.limit, self.shuffle = x, y, limit, shuffle

        def __len__(self) -> int:
            n = math.ceil(len(self.x) / B)
            return n if self.limit is None else min(n, self.limit)

        def __iter__(self) -> Any:
            seed = epoch_seed(spec["data_seed"], trainer.current_epoch) if self.shuffle else None
            return batches(self.x, self.y, B, self.limit, seed)

    class Bare(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.__dict__["forward_fn"] = forward  # the compiled net, if any, outside the module tree

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            return F.cross_entropy(self.forward_fn(batch[0]), batch[1])

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            out = self.forward_fn(x)
            self.val_total += F.cross_entropy(out, y, reduction="sum")
            self.val_correct += (out.argmax(1) == y).sum()

        def on_validation_epoch_start(self) -> None:
            self.val_total, self.val_correct = torch.zeros((), device=self.device), torch.zeros((), device=self.device)

        def configure_optimizers(self) -> Any:
            return optimizer

    timer = StepTimer(spec["out"], record_losses=spec.get("record_losses", False))
    trainer = L.Trainer(
        accelerator=spec["device"],
        devices=1,
        precision=spec["precision"],
        benchmark=spec["cudnn_benchmark"],
        deterministic="warn" if spec.get("deterministic") else None,
        max_epochs=spec["epochs"],
        max_steps=spec.get("max_steps") or -1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[timer],
    )
    trainer.fit(Bare(), Batches(x_train, y_train, train_limit, True), Batches(x_val, y_val, val_limit, False))


if __name__ == "__main__":
    if sys.argv[1:2] not in (["raw"], ["lightning"]) or len(sys.argv) != 3:
        sys.exit(__doc__)
    main = raw_main if sys.argv[1] == "raw" else lightning_main
    main(json.loads(Path(sys.argv[2]).read_text()))
