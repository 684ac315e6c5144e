"""Fine-tuning: init_from takes another run's net weights, init_skip leaves some fresh, model.freeze stops training."""

import re

import pytest
import torch
from conftest import FAST, cli, read_metrics

from litlab.checkpoint import load_checkpoint
from litlab.command_line import check_command_line
from litlab.rules import ConfigError
from litlab.tasks import load_task

SHORT = ["debug=limit", "logger=none"]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A digits MLP (10 classes) trained for a few steps: the run to start from."""
    from conftest import compose_cfg

    from litlab.train import train

    root = tmp_path_factory.mktemp("source")
    train(compose_cfg([*FAST, f"paths.root_dir={root}", *SHORT], root / "run"))
    return root / "run"


def net_state(path) -> dict[str, torch.Tensor]:
    state = load_checkpoint(path)["state_dict"]
    return {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}


def test_fine_tune_new_head_on_frozen_layers(source, train_in_process):
    # synthetic data has 4 classes: the 10-class head cannot be taken, the hidden layers can.
    _, run = train_in_process(
        *SHORT, "data=synthetic", f"init_from={source}", "init_skip=[head]", "model.freeze=[layers]"
    )
    before = net_state(read_metrics(source)["best_checkpoint"])
    after = net_state(run / "checkpoints" / "last.ckpt")
    layers = [k for k in before if k.startswith("layers.")]
    assert layers and any("running_mean" in k for k in layers)
    for k in layers:  # weights untouched, and BatchNorm's statistics too (frozen parts stay in eval mode)
        assert torch.equal(before[k], after[k]), k
    assert after["head.weight"].shape == (4, 128)

    checkpoint = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert checkpoint["global_step"] == read_metrics(run)["steps"] > 0  # a new run: counted from 0
    # The optimizer holds only what trains: the head's weight and bias.
    assert len(checkpoint["optimizer_states"][0]["state"]) == 2
    task = load_task(run / "checkpoints" / "last.ckpt")
    assert [n for n, p in task.net.named_parameters() if p.requires_grad] == ["head.weight", "head.bias"]


def test_init_from_reads_an_exported_state_dict(source, tmp_path, train_in_process):
    from trained import config

    from litlab.export import export

    meta = export(config("export", tmp_path / "export", f"ckpt_path={source}", "format=state_dict"))
    exported = tmp_path / "export" / meta["file"]
    _, run = train_in_process(*SHORT, f"init_from={exported}", "model.freeze=[head]")
    head = torch.load(exported, weights_only=True)["head.bias"]
    assert torch.equal(net_state(run / "checkpoints" / "last.ckpt")["head.bias"], head)


@pytest.mark.slow
def test_resume_of_a_fine_tuned_run_needs_not_its_source(source, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(source, copy)
    run = tmp_path / "tuned"
    cli(
        "litlab-train", *FAST, *SHORT, f"init_from={copy}", "trainer.max_epochs=1", f"hydra.run.dir={run}", cwd=tmp_path
    )
    shutil.rmtree(copy)  # the resumed run's weights are in its own checkpoint
    cli("litlab-train", *FAST, f"ckpt_path={run}", "trainer.max_epochs=2", cwd=tmp_path)
    assert read_metrics(run)["epochs"] == 2


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["data=synthetic"],
            "2 of the net's 14 tensors do not fit (head.weight: checkpoint (10, 128), net (4, 128)); "
            "start them fresh with init_skip=[head]",
        ),
        (
            ["model=cnn"],
            "no tensor fits: the checkpoint holds another net (its parts: layers, head; "
            "this config's net: features, head)",
        ),
        (["init_skip=[hed]"], "init_skip: hed names no tensor of the net; its parts: layers, head"),
        # Only the layers that do not fit are named: the first hidden layer (and its BatchNorm) still fits.
        (["model.net.hidden_sizes=[256,64]"], "start them fresh with init_skip=[layers.5,layers.6,head]"),
        (["model.net.hidden_sizes=[64]"], "no tensor fits: the checkpoint holds another net"),
        (["init_skip=[layers,head]"], "init_skip=[layers,head] leaves no tensor to take from the checkpoint"),
    ],
)
def test_a_net_that_does_not_fit_is_refused_before_the_run(source, overrides, message):
    with pytest.raises(ConfigError) as e:
        check_command_line([f"init_from={source}", *overrides])
    assert str(e.value).startswith(f"init_from={source} (")
    assert message in str(e.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.freeze=[layerz]"], "model.freeze: layerz names no parameter of the net; its parts: layers, head"),
        (["model.freeze=[layers,head]"], "model.freeze=[layers,head] freezes every parameter: nothing would train"),
        (["init_skip=[head]"], "init_skip=[head]: has no effect without init_from="),
        (["init_from=nowhere"], "init_from=nowhere: no such checkpoint file"),
    ],
)
def test_bad_fine_tuning_keys(overrides, message):
    with pytest.raises(ConfigError, match="^" + message.replace("[", r"\[").replace("]", r"\]")):
        check_command_line(overrides)


def test_cli_refuses_a_misfit_with_one_line(source, tmp_path):
    proc = cli("litlab-train", *FAST, f"init_from={source}", "data=synthetic", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "init_skip=[head]" in proc.stderr
    assert not (tmp_path / "logs").exists()


def test_init_from_a_copied_run_directory_reads_the_copy(source, tmp_path):
    import shutil

    from litlab.runs import resolve_checkpoint

    copy = tmp_path / "copy"
    shutil.copytree(source, copy)
    best = read_metrics(source)["best_checkpoint"]
    assert resolve_checkpoint(copy, None, best=True) == str(copy / "checkpoints" / best.rsplit("/", 1)[1])
    shutil.rmtree(copy / "checkpoints")
    (copy / "checkpoints").mkdir()
    with pytest.raises(FileNotFoundError, match=r"init_from=.*: a directory without a best checkpoint"):
        resolve_checkpoint(copy, None, best=True, key="init_from")


def test_a_bare_name_is_one_prefix(source, train_in_process):
    _, run = train_in_process(*SHORT, "model.freeze=layers", f"init_from={source}", "init_skip=head")
    task = load_task(run / "checkpoints" / "last.ckpt")
    assert [n for n, p in task.net.named_parameters() if p.requires_grad] == ["head.weight", "head.bias"]


def test_resuming_with_another_freeze_is_refused(source):
    with pytest.raises(
        ConfigError, match=re.escape("the run trained with model.freeze=[], this config freezes [layers]")
    ):
        check_command_line([f"ckpt_path={source}", "model.freeze=[layers]"])
