"""Optimizers and schedules built from config dicts."""

import pytest

from litlab.models import MLP, Transformer
from litlab.optim import build_optimizer, build_scheduler


def test_adamw_skips_decay_on_biases_and_norms():
    net = MLP([4], 2, hidden_sizes=[8], batch_norm=True)
    opt = build_optimizer(net, "adamw", lr=1e-3, weight_decay=0.1)
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decayed["params"])
    # BatchNorm weight and bias, and the head's bias
    assert len(plain["params"]) == 3


def test_transformer_layernorm_not_decayed():
    net = Transformer([1, 8, 8], 10, patch_size=4, d_model=16, n_layers=1, n_heads=2)
    opt = build_optimizer(net, "adamw", lr=1e-3, weight_decay=0.1)
    no_decay = {id(p) for p in opt.param_groups[1]["params"]}
    for name, p in net.named_parameters():
        assert (id(p) in no_decay) == (name.endswith("bias") or ".ln_" in name or name.startswith("ln_f"))


@pytest.mark.parametrize("name,kwargs", [("sgd", {"momentum": 0.9}), ("adam", {})])
def test_other_optimizers(name, kwargs):
    opt = build_optimizer(MLP([4], 2), name, lr=0.1, **kwargs)
    assert type(opt).__name__.lower() == name


def test_unknown_optimizer_lists_choices():
    with pytest.raises(ValueError, match=r"model.optimizer.name='lion'.*\['adam', 'adamw', 'sgd'\]"):
        build_optimizer(MLP([4], 2), "lion", lr=0.1)


def test_cosine_warmup_then_decay():
    opt = build_optimizer(MLP([4], 2), "adamw", lr=1.0)
    sched = build_scheduler(opt, 100, "cosine", warmup_ratio=0.1)["scheduler"]
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] > lrs[50] > lrs[99] >= 0.0
    assert lrs[99] < 0.01


@pytest.mark.parametrize("name", ["cosine", "onecycle"])
def test_resumed_schedule_follows_the_resumed_runs_length(name, caplog):
    """A run checkpointed at step 60 of 100 and resumed with 150 steps ends on the 150-step curve."""

    def run(total: int, steps: int, state: dict | None = None) -> tuple[list[float], dict]:
        opt = build_optimizer(MLP([4], 2), "adamw", lr=1.0)
        sched = build_scheduler(opt, total, name)["scheduler"]
        if state:
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
        lrs = []
        for _ in range(steps):
            opt.step()
            sched.step()
            lrs.append(opt.param_groups[0]["lr"])
        return lrs, {"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}

    _, state = run(100, 60)
    resumed, _ = run(150, 89, state)  # OneCycleLR alone raises at step 101
    planned, _ = run(150, 149)
    assert resumed == pytest.approx(planned[60:])
    assert "ran over 100 steps, this run has 150; from step 60 on" in caplog.text

    caplog.clear()
    same, _ = run(100, 39, state)
    assert same == pytest.approx(run(100, 99)[0][60:])
    assert not caplog.text, "an exact resume says nothing"


def test_plateau_and_onecycle_configs():
    opt = build_optimizer(MLP([4], 2), "sgd", lr=0.1, momentum=0.9)
    assert build_scheduler(opt, 10, "plateau")["monitor"] == "val/loss"
    assert build_scheduler(opt, 10, "onecycle")["interval"] == "step"
    with pytest.raises(ValueError, match=r"model\.scheduler\.name='step'"):
        build_scheduler(opt, 10, "step")


@pytest.mark.parametrize(
    "overrides,lr",
    [
        ([], 3e-3),
        (["model/optimizer=sgd"], 0.05),
        (["model=cnn", "model/optimizer=adam"], 3e-3),
        (["model=transformer"], 1e-3),
    ],
)
def test_the_chosen_optimizer_options_learning_rate_applies(overrides, lr):
    """An optimizer option's lr is not overwritten by what every model shares (sgd's 0.05 was dead)."""
    from litlab.command_line import check_command_line

    assert check_command_line(overrides).model.optimizer.lr == lr
