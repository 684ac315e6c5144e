"""Time the same local sweep run serially (basic launcher) and in parallel (hydra/launcher=joblib).

    python scripts/sweep_speed.py                      # 4 short CNN jobs, default n_jobs
    python scripts/sweep_speed.py --jobs 4 --epochs 5 --n-jobs 2

Prints a Markdown table (wall time of each, speed-up, cores, jobs at once, torch threads per
job) and exits non-zero if the parallel sweep was not faster. Runs in a temporary directory.
"""

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from litlab.resources import parallel_jobs, usable_cores

BIN = Path(sys.executable).parent


def timed_sweep(overrides: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    cmd = [str(BIN / "litlab-train"), "-m", *overrides]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if proc.returncode:
        sys.exit(f"litlab-train -m {' '.join(overrides)} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=4, help="jobs in the sweep (seeds 1..N)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--n-jobs", type=int, default=None, help="joblib n_jobs (default: litlab's)")
    args = parser.parse_args()

    n_jobs = args.n_jobs or parallel_jobs()
    common = [
        "print_config=false",
        f"model={args.model}",
        f"trainer.max_epochs={args.epochs}",
        "callbacks.early_stopping=null",
        # Interleaved progress bars of parallel jobs are unreadable; off in both runs alike.
        "callbacks.progress_bar=null",
        "+trainer.enable_progress_bar=false",
        "seed=" + ",".join(str(s) for s in range(1, args.jobs + 1)),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        serial = timed_sweep(common, Path(tmp))
        # Serial again with one thread per job: separates the gain of running side by side
        # from the cost of torch's thread pool on a busy machine.
        serial_1 = timed_sweep(common, Path(tmp), env={"OMP_NUM_THREADS": "1"})
        parallel = timed_sweep([*common, "hydra/launcher=joblib", f"hydra.launcher.n_jobs={n_jobs}"], Path(tmp))
    threads = max(1, usable_cores() // n_jobs)
    print(f"{args.jobs} x `litlab-train model={args.model} trainer.max_epochs={args.epochs}` on {platform.node()}")
    print(f"({usable_cores()} usable cores, {os.cpu_count()} in the machine, load {os.getloadavg()[0]:.1f})\n")
    print("| launcher | jobs at once | torch threads per job | wall time (s) |")
    print("|---|---|---|---|")
    print(f"| basic (serial) | 1 | torch default ({usable_cores()}) | {serial:.1f} |")
    print(f"| basic (serial), OMP_NUM_THREADS=1 | 1 | 1 | {serial_1:.1f} |")
    print(f"| joblib | {n_jobs} | {threads} | {parallel:.1f} |")
    print(f"\njoblib speed-up: {serial / parallel:.2f}x over serial, {serial_1 / parallel:.2f}x over serial 1-thread")
    return 0 if parallel < serial else 1


if __name__ == "__main__":
    sys.exit(main())
