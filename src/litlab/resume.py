"""Resume a run in its own directory: same config, same TensorBoard run, no repeated steps.

``ckpt_path=last`` or ``ckpt_path=<run dir>`` on the command line becomes, before Hydra
starts, the original run's overrides plus ``hydra.run.dir=<that run>``: the run continues
where it was, with the config it had (new overrides on the command line still win).
"""

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from litlab.runs import CHECKPOINTS, LAST_CHECKPOINT

if TYPE_CHECKING:  # the command line is read with this module before torch and Lightning load (--help)
    import lightning as L

log = logging.getLogger(__name__)

#: Overrides that say where a run is, not what it is: never carried over from the old run.
NOT_CARRIED = ("ckpt_path", "hydra.run.dir")


def run_dir_of(checkpoint: str | Path) -> Path | None:
    """The litlab run directory holding ``checkpoint`` (``<run>/checkpoints/x.ckpt``), if any."""
    path = Path(checkpoint).resolve()
    run = path.parent.parent
    if path.parent.name == CHECKPOINTS and (run / ".hydra" / "overrides.yaml").is_file():
        return run
    return None


def override_key(override: str) -> str:
    """The key an override sets: ``+data.x=1`` -> ``data.x``."""
    return override.split("=", 1)[0].lstrip("+~")


def resume_overrides(args: list[str], checkpoint: str | Path) -> list[str]:
    """``args`` completed to resume ``checkpoint`` in its run directory; unchanged for other files."""
    run = run_dir_of(checkpoint)
    if run is None:
        return args
    rest = [a for a in with_run_overrides(args, run) if override_key(a) not in NOT_CARRIED]
    return [*rest, f"ckpt_path='{Path(checkpoint).resolve()}'", f"hydra.run.dir='{run}'"]


def with_run_overrides(args: list[str], run: str | Path) -> list[str]:
    """``args`` after the overrides stored in ``run`` that they do not give again."""
    given = {override_key(a) for a in args}
    held = stored_overrides(run)
    return [*(o for o in held if override_key(o) not in {*given, *NOT_CARRIED}), *args]


def stored_overrides(run: str | Path) -> list[str]:
    """The command-line overrides a run was started with (``.hydra/overrides.yaml``); ``ValueError`` if damaged."""
    import yaml
    from omegaconf import ListConfig, OmegaConf

    record = Path(run) / ".hydra" / "overrides.yaml"
    try:
        stored = OmegaConf.load(record)
    except yaml.YAMLError as e:
        stored = str(e).split("\n")[0]
    if not isinstance(stored, ListConfig):  # a damaged record: which config the run had is unknown
        raise ValueError(f"{record} is not a list of overrides ({stored}): the run's record is damaged; restore it")
    return [str(o) for o in stored]


def requeued_checkpoint(run_dir: str | Path) -> str | None:
    """``last.ckpt`` of a run directory that already has one: a requeued job (submitit, SLURM) resumes it."""
    last = Path(run_dir, LAST_CHECKPOINT)
    return str(last) if last.is_file() else None


def prepare_resume(checkpoint: str | Path) -> None:
    """Clear what a crash left beside ``checkpoint``; a resumed run expects its own files there."""
    import warnings

    for stale in Path(checkpoint).parent.glob(".*.tmp"):  # writes cut short (litlab.checkpoint)
        stale.unlink(missing_ok=True)
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")


def check_resumable(
    checkpoint: dict[str, Any],
    task: "L.LightningModule",
    where: str,
    fix: str = "resume without the changed overrides, or drop ckpt_path to start a new run",
) -> None:
    """``ValueError`` naming the first reason ``checkpoint`` cannot resume training ``task``.

    Run before Hydra writes anything into the run directory, so a resume that cannot work
    leaves the finished (or killed) run as it was. ``task`` may live on the meta device.
    """
    from litlab.finetune import as_list

    if "task" not in checkpoint:  # torch.save(model.state_dict()), another framework's file
        raise ValueError(
            f"{where}: not a checkpoint litlab wrote (it names no task); litlab-train resumes only the full "
            "checkpoints of its runs: to start a new run from these weights use init_from=<file>"
        )
    if "optimizer_states" not in checkpoint or "loops" not in checkpoint:
        raise ValueError(
            f"{where}: not a training checkpoint (no optimizer or loop state: a weights-only file?); "
            "litlab-eval, litlab-predict and litlab-export take it, litlab-train resumes only full checkpoints"
        )
    if checkpoint.get("task") != task.name:
        raise ValueError(f"{where}: a {checkpoint.get('task')} checkpoint; the config's data.task is {task.name}")
    held_freeze = as_list(checkpoint.get("hyper_parameters", {}).get("freeze"))
    freeze = as_list(task.hparams.get("freeze"))
    if held_freeze != freeze:  # the optimizer's state holds the parameters that trained
        raise ValueError(
            f"{where}: the run trained with model.freeze=[{','.join(held_freeze)}], this config freezes "
            f"[{','.join(freeze)}]; {fix}"
        )
    held_hparams = checkpoint.get("hyper_parameters", {})
    for part in ("optimizer", "scheduler"):  # Lightning restores both from their saved state
        changed = _changed(_settings(held_hparams.get(part)), _settings(task.hparams.get(part)))
        if changed:
            key, held_value, value = ("null" if v is None else v for v in changed)
            raise ValueError(
                f"{where}: the run trained with model.{part}{key}={held_value}, this config has {value}; a resume "
                f"restores the {part}'s saved state, so the change would not apply: {fix} (or start a new run "
                "from its weights: init_from=<the run>)"
            )
    shapes = {k: tuple(v.shape) for k, v in task.state_dict().items()}
    saved = {k: tuple(v.shape) for k, v in checkpoint["state_dict"].items()}
    if saved == shapes:
        return
    # What the user changed, to name in the message: the net's keys one by one, then the data's.
    held, wanted = checkpoint.get("hyper_parameters", {}), dict(task.hparams)
    changed = [k for k in sorted(wanted) if k not in ("optimizer", "scheduler", "compile") and held.get(k) != wanted[k]]
    if isinstance(held.get("net"), dict) and "net" in changed:
        net = [
            f"model.net.{k}"
            for k in sorted(held["net"].keys() | wanted["net"].keys())
            if held["net"].get(k) != wanted["net"].get(k)
        ]
        changed = [*net, *(k for k in changed if k != "net")]
    odd = sorted(k for k in shapes.keys() | saved.keys() if shapes.get(k) != saved.get(k))
    first = f"{odd[0]}: checkpoint {saved.get(odd[0], 'none')}, config {shapes.get(odd[0], 'none')}"
    differs = f"changed: {', '.join(changed[:3])}{', ...' if len(changed) > 3 else ''}; " if changed else ""
    raise ValueError(
        f"{where}: the checkpoint's net is not the one this config builds ({differs}{first}, "
        f"{len(odd)} tensors differ); {fix}"
    )


def _settings(part: Any) -> dict[str, Any]:
    """What of an optimizer's or schedule's settings the saved state fixes (``fused`` may change: the device may)."""
    from litlab.optim import FOLLOWED_ON_RESUME

    settings = dict(part or {})
    followed = ("fused", *FOLLOWED_ON_RESUME.get(settings.get("name"), ()))
    return {k: v for k, v in settings.items() if k not in followed}


def _changed(held: dict[str, Any], wanted: dict[str, Any]) -> tuple[str, Any, Any] | None:
    """The first difference as ``(".key" or "" for the name, held, wanted)``; keys one side lacks are skipped.

    (A key added to litlab's configs since the run was saved is not a change the user made.)
    """
    if held.get("name") != wanted.get("name"):
        return "", held.get("name"), wanted.get("name")
    return next(
        ((f".{k}", held[k], wanted[k]) for k in sorted(held.keys() & wanted.keys()) if held[k] != wanted[k]), None
    )


def check_not_past(checkpoint: dict[str, Any], trainer: Any, where: str) -> None:
    """``ValueError`` when the run is already past ``trainer.max_epochs`` or ``trainer.max_steps``.

    Lightning would train nothing and test again, and the run's record (``.hydra/``) would then
    say it trained less than it did.
    """
    epoch, step = checkpoint.get("epoch", 0) + 1, checkpoint.get("global_step", 0)  # epoch: the one begun
    for key, limit, reached in (
        ("max_epochs", trainer.get("max_epochs"), epoch),
        ("max_steps", trainer.get("max_steps"), step),
    ):
        if limit is not None and limit >= 0 and reached > limit:
            raise ValueError(
                f"{where}: the run is at epoch {epoch}, step {step}, past trainer.{key}={limit}; "
                f"raise trainer.{key} to train on, or test the run with litlab-eval ckpt_path=<its run directory>"
            )
