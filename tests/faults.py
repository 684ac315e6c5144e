"""litlab-train with a fault injected, for the fault-injection tests (run as a script).

FAULT_KILL_AT_STEP=k     SIGKILL this process as training step k starts.
FAULT_SIGNAL_AT_STEP=k:SIG  send SIG (TERM, USR1, INT) to this process as step k starts.
FAULT_KILL_IN_SAVE=n     SIGKILL in the middle of the n-th write of last.ckpt.
FAULT_SIGNAL_IN_TEST=SIG  send SIG to this process as the final test's first batch starts.
"""

import io
import os
import signal

import torch

import litlab.checkpoint
from litlab.tasks.base import Task
from litlab.train import main

training_step = Task.training_step
test_step = Task.test_step


def faulty_training_step(self, batch, batch_idx):
    if os.environ.get("FAULT_KILL_AT_STEP") == str(self.global_step):
        os.kill(os.getpid(), signal.SIGKILL)
    step, _, sig = os.environ.get("FAULT_SIGNAL_AT_STEP", "").partition(":")
    if step == str(self.global_step) and not getattr(self, "_signalled", False):
        self._signalled = True
        os.kill(os.getpid(), getattr(signal, f"SIG{sig}"))
    return training_step(self, batch, batch_idx)


def faulty_test_step(self, batch, batch_idx):
    if os.environ.get("FAULT_SIGNAL_IN_TEST") and batch_idx == 0:
        os.kill(os.getpid(), getattr(signal, f"SIG{os.environ['FAULT_SIGNAL_IN_TEST']}"))
    return test_step(self, batch, batch_idx)


saves = 0
real_save = torch.save


def faulty_save(obj, f, *args, **kwargs):
    """Write half of the checkpoint's bytes, then die as a preempted node would."""
    global saves
    target = os.readlink(f"/proc/self/fd/{f.fileno()}") if hasattr(f, "fileno") else str(f)
    saves += "last.ckpt" in target
    if os.environ.get("FAULT_KILL_IN_SAVE") != str(saves) or "last.ckpt" not in target:
        return real_save(obj, f, *args, **kwargs)
    buffer = io.BytesIO()
    real_save(obj, buffer, *args, **kwargs)
    data = buffer.getvalue()
    f.write(data[: len(data) // 2])
    f.flush()
    os.fsync(f.fileno())
    os.kill(os.getpid(), signal.SIGKILL)


Task.training_step = faulty_training_step
Task.test_step = faulty_test_step
litlab.checkpoint.torch.save = faulty_save  # the module's torch is the torch module: patch only for this process

if __name__ == "__main__":
    main()
