"""The garbage collector's settings around a command: no full collections while it imports, on while it trains."""

import json
import subprocess
import sys
import textwrap

from conftest import FAST

# Each check runs in a fresh interpreter: freezing objects in pytest's own would leak them for the session.
API = """
import gc, json
from litlab.collector import NO_FULL, entry_point, imports_done

seen = {}

@entry_point
def main():
    seen["starting"] = gc.get_threshold()[2]
    imports_done()
    seen["running"] = gc.get_threshold()[2]
    seen["frozen"] = gc.get_freeze_count()
    seen["kept"] = [[] for _ in range(1000)]  # new objects: a second call must not freeze them
    imports_done()
    seen["frozen_again"] = gc.get_freeze_count()
    return 7

seen["returned"] = main()
seen["frozen_at_exit"] = gc.get_freeze_count()
seen["no_full"] = NO_FULL
seen["kept"] = len(seen["kept"])
print(json.dumps(seen))
"""

# litlab-train itself, with the task's epoch end recording the collector's state mid-run.
CLI = """
import gc, json, sys
import litlab.tasks.base as base
from litlab.train import main

end = base.Task.on_train_epoch_end

def record(self):
    with open("gc.json", "w") as f:
        json.dump({"full_threshold": gc.get_threshold()[2], "frozen": gc.get_freeze_count()}, f)
    end(self)

base.Task.on_train_epoch_end = record
sys.exit(main())
"""


def test_full_collections_wait_for_imports_done_and_exit_skips_them(tmp_path):
    out = subprocess.run([sys.executable, "-c", API], capture_output=True, text=True, check=True, cwd=tmp_path)
    seen = json.loads(out.stdout)
    assert seen["starting"] == seen["no_full"]
    assert seen["running"] == 10  # CPython's default again
    assert seen["frozen"] > 1000  # everything imported so far
    assert seen["frozen_again"] == seen["frozen"]
    assert seen["returned"] == 7
    assert seen["frozen_at_exit"] >= seen["frozen"] + seen["kept"]


def test_litlab_train_trains_with_full_collections_on(tmp_path):
    """A run that never called imports_done() would train with full collections off: cycles would pile up."""
    script = tmp_path / "probe.py"
    script.write_text(textwrap.dedent(CLI))
    args = [*FAST, "trainer.max_epochs=1", "test=false", "logger=none", "callbacks=none", f"paths.root_dir={tmp_path}"]
    subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, check=True, cwd=tmp_path)
    state = json.loads((tmp_path / "gc.json").read_text())
    assert state["full_threshold"] == 10
    assert state["frozen"] > 100_000  # torch, Lightning and Hydra's objects, out of the collector's sight
