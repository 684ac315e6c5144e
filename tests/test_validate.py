"""A bad command line fails before anything is built: one line naming the key and what is allowed."""

import re
import signal
import subprocess
import sys

import pytest
from conftest import cli

from litlab.command_line import check_command_line
from litlab.rules import ConfigError

BAD = {
    "unknown key, with a close one": (
        ["trainer.max_epoch=3"],
        "trainer.max_epoch: no such key; did you mean trainer.max_epochs?",
    ),
    "unknown top-level key": (["modle=cnn"], "modle: no such key; did you mean model?"),
    "wrong type": (["trainer.max_epochs=ten"], "trainer.max_epochs=ten: must be an integer >= 1, or -1 for no limit"),
    "invalid precision": (["trainer.precision=17"], "trainer.precision=17: not a precision; choose one of"),
    "unknown model": (["model=resnet"], "model=resnet: no such option (choose one of cnn, mlp, rnn, transformer)"),
    "unknown option in a sweep": (["model=mlp,resnet"], "model=resnet: no such option"),
    "unknown nested group option": (["model/optimizer=lamb"], "model/optimizer=lamb: no such option"),
    "unknown option in a sweep of lists": (["callbacks=default,[default,emma]"], "callbacks=emma: no such option"),
    "unknown option in a list of options": (
        ["callbacks=[default,emma]"],
        "callbacks=emma: no such option; did you mean",
    ),
    "net argument the net does not take": (
        ["model=cnn", "+model.net.hidden_sizes=[3]"],
        "model.net.hidden_sizes: the cnn net takes no such argument (it takes init, channels,",
    ),
    "net argument of the wrong kind": (["model.net.hidden_sizes=5"], "model.net.hidden_sizes=5: must be a list of"),
    "net argument only the net refuses": (
        ["model.net.activation=5"],
        "model: the task cannot be built from this config (activation 5 is unknown",
    ),
    # torch's errors (a traceback, exit 1) named neither key nor value.
    "negative width": (["model.net.hidden_sizes=[-5]"], "model.net.hidden_sizes=[-5]: must be a list of integers >= 1"),
    "zero width": (["model.net.hidden_sizes=[0]"], "model.net.hidden_sizes=[0]: must be a list of integers >= 1"),
    "no heads": (["model=transformer", "model.net.n_heads=0"], "model.net.n_heads=0: must be an integer >= 1"),
    "kernel of 0": (["model=cnn", "model.net.kernel_size=0"], "model.net.kernel_size=0: must be an integer >= 1"),
    "negative class count": (["data.num_classes=-3"], "data.num_classes=-3: must be an integer >= 2"),
    # Refused only once training ran (a ZeroDivisionError, a TypeError after an epoch), or never.
    "no batches between validations": (
        ["trainer.val_check_interval=0"],
        "trainer.val_check_interval=0: must be an integer >= 1 (batches), a fraction of an epoch in (0, 1]",
    ),
    "validation by the clock": (  # a dict reached Lightning as a DictConfig; a time broke EarlyStopping
        ["trainer.val_check_interval={minutes: 5}"],
        "trainer.val_check_interval={'minutes': 5}: must be an integer >= 1 (batches)",
    ),
    "min_delta not a number": (
        ["callbacks.early_stopping.min_delta=abc"],
        "callbacks.early_stopping.min_delta=abc: must be a finite number",
    ),
    "negative dropout": (["model.net.dropout=-0.1"], "model.net.dropout=-0.1: must be a probability in [0, 1)"),
    "dropout of everything": (["model=cnn", "model.net.dropout=1"], "model.net.dropout=1: must be a probability"),
    "negative depth": (
        ["model=transformer", "model.net.n_layers=-1"],
        "model.net.n_layers=-1: must be an integer >= 1",
    ),
    "nothing prefetched": (
        ["data.num_workers=2", "data.prefetch_factor=0"],
        "data.prefetch_factor=0: must be an integer >= 1 or null",
    ),
    "warmup longer than the run": (
        ["model.scheduler.warmup_ratio=2"],
        "model.scheduler.warmup_ratio=2: must be a number",
    ),
    "an input size of 0": (["data.input_shape=[0,8,8]"], "data.input_shape=[0, 8, 8]: must be a list of integers"),
    "balanced class weights of a stream": (
        ["data=synthetic_stream", "+model.class_weights=balanced"],
        "model.class_weights=balanced: needs the training labels, which a stream",
    ),
    "glob matching no option": (["model=glob(resnet*)"], "model=glob(resnet*): matches no option"),
    "a misspelled key of a sweep only a sweeper samples": (
        ["model.optimizer.lrr=interval(0.001,0.1)"],
        "model.optimizer.lrr: no such key; did you mean model.optimizer.lr?",
    ),
    "ema decay above 1": (
        ["callbacks=[default,ema]", "callbacks.ema.decay=2"],
        "callbacks.ema.decay=2: must be a number in [0, 1)",
    ),
    "net argument the data sets": (["+model.net.num_outputs=3"], "model.net.num_outputs: set by the data config"),
    "class weights of another class count": (
        ["+model.class_weights=[1,2]"],
        "model.class_weights has 2 weights but data.num_classes=10",
    ),
    "class weights that are not numbers": (
        ["+model.class_weights=heavy"],
        "model.class_weights=heavy: give 'balanced' or one non-negative number per class",
    ),
    "gpu without a gpu": (["trainer.accelerator=gpu"], "trainer.accelerator=gpu: no gpu device on this machine"),
    "unknown accelerator": (["trainer.accelerator=npu"], "trainer.accelerator=npu: not an accelerator; choose one of"),
    "monitor never logged": (
        ["callbacks.early_stopping.monitor=val/accuracy"],
        "callbacks.early_stopping.monitor=val/accuracy: the classification task never logs it; did you mean val/acc?",
    ),
    "fp16 clipping with a fused optimizer": (
        ["trainer.precision=16-mixed", "model.optimizer.fused=true", "trainer.gradient_clip_val=1"],
        "model.optimizer.fused=true with trainer.precision=16-mixed cannot clip gradients",
    ),
    "token data for a net without embeddings": (
        ["data=sequences"],
        "model.net.arch=mlp: this data gives token ids (data.vocab_size=3), which only rnn, transformer can embed",
    ),
    "unknown init": (
        ["model.net.init=he"],
        "model.net.init=he: unknown; choose one of default, xavier, kaiming, orthogonal, normal",
    ),
    "a model argument the task does not take": (
        ["+model.pos_weight=3"],
        "model.pos_weight: the classification task takes no such argument (it takes net, optimizer,",
    ),
    "a task the data has no targets for": (
        ["data=sequences", "model=rnn", "data.task=regression"],
        "data.task=regression: SequenceDataModule has targets for classification only",
    ),
    "a ??? left empty": (["data=arrays"], "data.input_shape: needs a value (it is ???); give it as"),
    "a later value of a sweep": (["seed=1,2", "data.batch_size=32,-1"], "data.batch_size=-1: must be an integer >= 1"),
    "batch size 0": (["data.batch_size=0"], "data.batch_size=0: must be an integer >= 1"),
    "negative lr": (["model.optimizer.lr=-0.1"], "model.optimizer.lr=-0.1: must be a finite number >= 0"),
    "infinite lr": (["model.optimizer.lr=inf"], "model.optimizer.lr=inf: must be a finite number >= 0"),
    "lr not a number": (["model.optimizer.lr=fast"], "model.optimizer.lr=fast: must be a finite number >= 0"),
    "missing checkpoint": (["ckpt_path=nowhere.ckpt"], "ckpt_path=nowhere.ckpt: no such checkpoint file"),
    "no checkpoint to resume": (["ckpt_path=last"], "ckpt_path=last: no checkpoints/last.ckpt under"),
    "every_n_train_steps negative": (
        ["callbacks.model_checkpoint.every_n_train_steps=-5"],
        "callbacks.model_checkpoint.every_n_train_steps=-5: must be an integer >= 1, or 0 or null for no",
    ),
    "bad override syntax": (["trainer.max_epochs=[1"], "trainer.max_epochs=[1"),
    "group set to null": (
        ["logger=null"],
        "logger=null: a config group takes an option name; to drop it use logger=none",
    ),
    "group without a none option set to null": (
        ["debug=null"],
        "debug=null: a config group takes an option name; to drop it use ~debug",
    ),
    "scheduler monitor": (
        ["model/scheduler=plateau", "model.scheduler.monitor=val/los"],
        "model.scheduler.monitor=val/los: the classification task never logs it; did you mean val/loss?",
    ),
    "optimized metric": (
        ["hparams_search=optuna", "optimized_metric=val/acc_bset", "callbacks.model_checkpoint.monitor=val/acc"],
        "optimized_metric=val/acc_bset: no run of the classification task reports it; did you mean val/acc_best?",
    ),
    "no Optuna trials": (["hparams_search=optuna", "hydra.sweeper.n_trials=0"], "hydra.sweeper.n_trials=0: must be"),
    "Optuna trials not a number": (
        ["hparams_search=optuna", "hydra.sweeper.n_trials=abc"],
        "hydra.sweeper.n_trials=abc: must be an integer >= 1",
    ),
    "an Optuna direction": (
        ["hparams_search=optuna", "hydra.sweeper.direction=up"],
        "hydra.sweeper.direction=up: must be minimize or maximize (min, max)",
    ),
    "an Optuna space Optuna cannot sample": (
        ["hparams_search=optuna", "hydra.sweeper.params={model.optimizer.lr: 'tag(log, interval(0, 1))'}"],
        "hydra.sweeper.params: model.optimizer.lr=tag(log, interval(0, 1)): Optuna cannot sample it: `low > 0` must",
    ),
    "optimized metric per step": (
        ["hparams_search=optuna", "optimized_metric=train/loss_step"],
        "optimized_metric=train/loss_step: no run of the classification task reports it",
    ),
    "a search for the worst accuracy": (
        ["hparams_search=optuna", "optimized_metric=test/acc"],
        "hydra.sweeper.direction=min: a higher test/acc is better; give hydra.sweeper.direction=maximize",
    ),
    "a search for the worst loss": (
        ["hparams_search=optuna", "hydra.sweeper.direction=maximize"],
        "hydra.sweeper.direction=maximize: a lower val/loss_best is better; give hydra.sweeper.direction=minimize",
    ),
    "optimized test metric without a test": (
        ["hparams_search=optuna", "optimized_metric=test/acc", "hydra.sweeper.direction=maximize", "test=false"],
        "optimized_metric=test/acc: no run of the classification task reports it with test=false",
    ),
    "a key of another schedule": (
        ["model=transformer", "model/scheduler=plateau"],
        "model.scheduler.warmup_ratio: the plateau schedule takes no such argument (it takes monitor, mode, factor, "
        "patience); set for another schedule, drop it with ~model.scheduler.warmup_ratio",
    ),
    "a key torch's OneCycleLR does not take": (
        ["model=transformer", "model/scheduler=onecycle"],
        "model.scheduler.warmup_ratio: the onecycle schedule takes no such argument",
    ),
    "no epochs": (["trainer.max_epochs=0"], "trainer.max_epochs=0: must be an integer >= 1, or -1 for no limit"),
    "no steps": (["trainer.max_steps=0"], "trainer.max_steps=0: must be an integer >= 1, or -1 for no limit"),
    "testing a checkpoint without training": (
        ["train=false", "ckpt_path=weights.ckpt"],
        "train=false ckpt_path=weights.ckpt: a run that does not train does not resume; to test a checkpoint use "
        "litlab-eval",
    ),
    "not a boolean": (["reuse_freed_memory=maybe"], "reuse_freed_memory=maybe: must be true or false"),
    # Hydra reads no, off and yes as strings, which every `if` takes as true.
    "a boolean as a word": (["data.shuffle=no"], "data.shuffle=no: must be true or false"),
    "a boolean of the model as a word": (["model.compile=maybe"], "model.compile=maybe: must be true or false"),
    "a boolean of one option": (["model=rnn", "model.net.bidirectional=yes"], "model.net.bidirectional=yes: must be"),
    "a boolean of a group's file": (
        ["model/optimizer=sgd", "model.optimizer.nesterov=1"],
        "model.optimizer.nesterov=1:",
    ),
    "a boolean that may also warn": (
        ["trainer.deterministic=maybe"],
        "trainer.deterministic=maybe: must be true, false",
    ),
    "a boolean that may be null": (["data.pin_memory=3"], "data.pin_memory=3: must be true, false or null"),
    # Each failed after the run directory was made (torch's, numpy's or Lightning's error, some after an
    # epoch), or was taken silently.
    "split seed not a number": (["data.split_seed=abc"], "data.split_seed=abc: must be an integer in [0, 2**64 - 1]"),
    "seed numpy cannot take": (["seed=99999999999"], "seed=99999999999: must be an integer in [0, 2**32 - 1]"),
    "save_top_k not a number": (
        ["callbacks.model_checkpoint.save_top_k=abc"],
        "callbacks.model_checkpoint.save_top_k=abc: must be an integer >= 1, 0 for none or -1 for every one",
    ),
    "negative momentum": (
        ["model/optimizer=sgd", "model.optimizer.momentum=-1"],
        "model.optimizer.momentum=-1: must be a finite number >= 0",
    ),
    "nesterov without momentum": (
        ["model/optimizer=sgd", "model.optimizer.momentum=0"],
        "model.optimizer.momentum=0: Nesterov momentum needs a momentum > 0",
    ),
    "label smoothing above 1": (["+model.label_smoothing=2"], "model.label_smoothing=2: must be a number in [0, 1)"),
    "onecycle warmup past the end": (
        ["model/scheduler=onecycle", "model.scheduler.pct_start=1.5"],
        "model.scheduler.pct_start=1.5: must be a number in [0, 1)",
    ),
    "a step schedule over no end": (
        ["trainer.max_epochs=-1", "+trainer.max_time=00:00:00:05"],
        "model.scheduler.name=cosine runs over the run's total steps, which trainer.max_epochs=-1 leaves open",
    ),
    "plateau without epoch-end validation": (
        ["model/scheduler=plateau", "trainer.check_val_every_n_epoch=null", "trainer.val_check_interval=60"],
        "model.scheduler.name=plateau steps on a validation metric at the end of each epoch that validates",
    ),
    "plateau without validation": (
        ["model/scheduler=plateau", "+trainer.limit_val_batches=0"],
        "model.scheduler.name=plateau steps on a validation metric, and trainer.limit_val_batches=0",
    ),
    "plateau factor raising the lr": (
        ["model/scheduler=plateau", "model.scheduler.factor=2"],
        "model.scheduler.factor=2: must be a number in (0, 1)",
    ),
    "one beta": (["+model.optimizer.betas=[0.9]"], "model.optimizer.betas=[0.9]: must be two numbers in [0, 1)"),
    "synthetic data seed": (
        ["data=synthetic", "data.data_seed=-1"],
        "data.data_seed=-1: must be an integer in [0, 2**40]",
    ),
    "val split of more than all": (
        ["data.val_split=1.5"],
        "data.val_split=1.5: must be a fraction in [0, 1) or a count >= 0 (an integer)",
    ),
    "confusion matrix every 0 epochs": (
        ["callbacks.confusion_matrix.every_n_epochs=0"],
        "callbacks.confusion_matrix.every_n_epochs=0: must be an integer >= 1",
    ),
    "checkpoint name read as a dict": (
        ["callbacks.model_checkpoint.filename={epoch:zz}"],
        "callbacks.model_checkpoint.filename={'epoch': 'zz'}: must be a string of {metric:format} fields, quoted",
    ),
    "checkpoint name with a bad format": (
        ["callbacks.model_checkpoint.filename='{epoch:zz}'"],
        "callbacks.model_checkpoint.filename={epoch:zz}: must be a string",
    ),
    "negative refresh rate": (
        ["callbacks.progress_bar.refresh_rate=-1"],
        "callbacks.progress_bar.refresh_rate=-1: must be an integer >= 0",
    ),
    "negative redraw interval": (
        ["callbacks.progress_bar.min_interval=-1"],
        "callbacks.progress_bar.min_interval=-1: must be a finite number of seconds >= 0",
    ),
    "negative sample count": (
        ["callbacks.misclassified.max_samples=-1"],
        "callbacks.misclassified.max_samples=-1: must be an integer >= 0",
    ),
    "ema from a negative step": (
        ["callbacks=[default,ema]", "callbacks.ema.update_starting_at_step=-1"],
        "callbacks.ema.update_starting_at_step=-1: must be an integer >= 0, or null",
    ),
    "negative sanity steps": (
        ["+trainer.num_sanity_val_steps=-5"],
        "trainer.num_sanity_val_steps=-5: must be an integer >= 0, -1 for all of validation, or null",
    ),
    "teacher of width 0": (["data=synthetic", "data.hidden=0"], "data.hidden=0: must be an integer >= 1"),
    "task name leaving the log directory": (["task_name=../../escape"], "task_name=../../escape: must be a name"),
    "matmul precision": (
        ["float32_matmul_precision=tf32"],
        "float32_matmul_precision=tf32: must be highest, high or medium",
    ),
}


@pytest.mark.parametrize("overrides,message", BAD.values(), ids=BAD.keys())
def test_bad_override_is_one_line_naming_key_and_choices(overrides, message):
    with pytest.raises(ConfigError) as e:
        check_command_line(overrides)
    assert str(e.value).startswith(message) or message in str(e.value), str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "overrides",
    [
        ["seed=1,2,3"],
        ["model=cnn", "model.net.channels=[8,16]"],
        ["experiment=digits_cnn"],
        ["model/optimizer=sgd", "trainer=ddp_cpu"],
        [
            "+trainer.num_sanity_val_steps=0",
            "trainer.max_steps=5",
            "trainer.precision=bf16-mixed",
            "trainer.precision=32",
        ],
        ["callbacks.model_checkpoint.monitor=val/acc", "callbacks.model_checkpoint.mode=max"],
        ["callbacks=none", "logger=none", "data.batch_size=1"],
        ["callbacks=[default,ema]", "+model.class_weights=balanced"],
        ["callbacks=default,[default,ema]"],
        ["callbacks=choice([default],[default,ema])"],
        ["model=glob(*)"],
        ["model=transformer", "model/scheduler=plateau", "~model.scheduler.warmup_ratio"],
        ["model/scheduler=onecycle", "+model.scheduler.div_factor=10"],
        ["trainer.deterministic=warn", "data.pin_memory=null", "callbacks.model_checkpoint.save_last=link"],
        ["debug=fast_dev_run", "trainer.fast_dev_run=3", "trainer.enable_model_summary=null"],
        ["trainer.val_check_interval=0.25", "callbacks.early_stopping.min_delta=0.01", "data.prefetch_factor=4"],
        ["trainer.val_check_interval=100", "callbacks.early_stopping.min_delta=-0.01"],
        ["model=transformer", "model.net.dropout=0.5"],
        ["seed=7", "hydra.run.dir=${paths.log_dir}/a${seed}", "+tag=${model.optimizer.name}"],
        [
            "callbacks.model_checkpoint.every_n_train_steps=0",
            "callbacks.model_checkpoint.save_top_k=-1",
            "callbacks.model_checkpoint.filename='{epoch:03d}-{val/loss:.4f}'",
            "+trainer.num_sanity_val_steps=-1",
            "seed=4294967295",
            "task_name=5",
        ],
        ["data=mnist", "data.val_split=5000", "model/scheduler=onecycle", "model.scheduler.pct_start=0"],
    ],
)
def test_good_command_lines_pass(overrides):
    check_command_line(overrides)


BAD_INTERPOLATIONS = {  # each a raw OmegaConf traceback (exit 1), naming some other key that read it
    "a misspelled key": (
        "train",
        ["model.optimizer.lr=${model.optimizer.lrr}"],
        "model.optimizer.lr=${model.optimizer.lrr}: the interpolation does not resolve (no key model.optimizer.lrr; "
        "did you mean model.optimizer.lr?)",
    ),
    "a key that reads itself": (
        "train",
        ["seed=${seed}"],
        "seed=${seed}: the interpolation does not resolve (Recursive interpolation detected)",
    ),
    "an unset environment variable": (
        "train",
        ["task_name=${oc.env:LITLAB_UNSET_VARIABLE}"],
        "task_name=${oc.env:LITLAB_UNSET_VARIABLE}: the interpolation does not resolve (Environment variable",
    ),
    "an added key": ("train", ["+foo=${nope}"], "foo=${nope}: the interpolation does not resolve (no key nope)"),
    "the run directory": (
        "train",
        ["hydra.run.dir=${paths.log_dir}/${nope}"],
        "hydra.run.dir=${paths.log_dir}/${nope}: the interpolation does not resolve (no key nope)",
    ),
    "predict's": ("predict", ["ckpt_path=X", "batch_size=${nope}"], "batch_size=${nope}: the interpolation does not"),
    "export's": ("export", ["ckpt_path=X", "atol=${nope}"], "atol=${nope}: the interpolation does not resolve"),
}
BAD_ANY_COMMAND = {
    **BAD_INTERPOLATIONS,
    "predict's run name outside paths.log_dir": (
        "predict",
        ["ckpt_path=X", "task_name=a/b"],
        "task_name=a/b: must be a name without /",
    ),
}


@pytest.mark.parametrize("command,overrides,message", BAD_ANY_COMMAND.values(), ids=BAD_ANY_COMMAND.keys())
def test_a_bad_value_of_any_command_is_named(command, overrides, message):
    with pytest.raises(ConfigError) as e:
        check_command_line(overrides, command)
    assert str(e.value).startswith(message), str(e.value)
    assert "\n" not in str(e.value)


def test_cli_exits_2_with_one_line_and_leaves_no_run_directory(tmp_path):
    proc = cli("litlab-train", "trainer.max_epochs=ten", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr == "litlab: error: trainer.max_epochs=ten: must be an integer >= 1, or -1 for no limit\n"
    assert not (tmp_path / "logs").exists()


def test_in_process_train_checks_before_building_anything(train_in_process, monkeypatch):
    import litlab.tasks

    monkeypatch.setattr(litlab.tasks, "build_task", lambda cfg: pytest.fail("built the model"))
    with pytest.raises(ConfigError, match=r"data.batch_size=0: must be an integer >= 1"):
        train_in_process("data.batch_size=0")


def test_a_config_file_that_is_not_yaml_is_named_in_one_line(tmp_path, monkeypatch):
    import shutil

    import litlab.command_line
    from litlab.config import config_dir

    conf = tmp_path / "conf"
    shutil.copytree(config_dir(), conf)
    (conf / "local" / "default.yaml").write_text("paths: {data_dir: /scratch\n")  # the closing brace forgotten
    monkeypatch.setattr(litlab.command_line, "config_dir", lambda: conf)
    with pytest.raises(ConfigError, match=r"^a config file is not valid YAML: .*local/default\.yaml\", line 1") as e:
        check_command_line([])
    assert "\n" not in str(e.value)


def test_a_run_directory_given_through_an_interpolation_is_the_run_it_names(tmp_path):
    """hydra.run.dir='${paths.log_dir}/...' names the same run as its resolved path, for every check of it."""
    from omegaconf import OmegaConf

    from litlab.command_line import _resumed
    from litlab.run_dirs import check_own_run_dir

    run_dir = tmp_path / "logs" / "train" / "runs" / "a"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"")
    (run_dir / ".hydra").mkdir()
    OmegaConf.save(OmegaConf.create(["model=cnn"]), run_dir / ".hydra" / "overrides.yaml")
    OmegaConf.save(OmegaConf.create({"hydra": {"job": {"config_name": "train"}}}), run_dir / ".hydra" / "hydra.yaml")
    args = [f"paths.log_dir={tmp_path / 'logs'}", "hydra.run.dir=${paths.log_dir}/train/runs/a"]

    assert _resumed(args) == ["model=cnn", *args]
    # Resolved with every override, not the defaults: seed=7 names another directory than seed=42's.
    other = [f"paths.log_dir={tmp_path / 'logs'}", "seed=7", "hydra.run.dir=${paths.log_dir}/train/runs/a${seed}"]
    (run_dir.parent / "a42").symlink_to(run_dir)
    assert _resumed(other) == other
    with pytest.raises(ConfigError, match=f"^hydra.run.dir={run_dir} holds a litlab-train run; litlab-eval"):
        check_own_run_dir(args, "eval")


def test_a_misspelled_key_in_the_local_config_is_named(tmp_path, monkeypatch):
    """conf/local/default.yaml's keys land at the top of every command's config, where a typo applies nothing."""
    import shutil

    import litlab.command_line
    from litlab.config import config_dir

    conf = tmp_path / "conf"
    shutil.copytree(config_dir(), conf)
    monkeypatch.setattr(litlab.command_line, "config_dir", lambda: conf)
    (conf / "local" / "default.yaml").write_text("paths: {data_dir: /scratch}\nthreads: 4\ntrainer: {devices: 1}\n")
    check_command_line([])
    (conf / "local" / "default.yaml").write_text("pathz: {data_dir: /scratch}\n")
    with pytest.raises(ConfigError, match=r"local/default\.yaml: pathz: no such top-level key; did you mean paths\?"):
        check_command_line([])
    (conf / "local" / "default.yaml").write_text("paths: 5\n")  # composed, a traceback resolving paths.log_dir
    with pytest.raises(ConfigError, match=r"local/default\.yaml: paths: 5 where the keys of paths go"):
        check_command_line([])


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["callbacks.model_checkpoint.monitor=val/acc"], "callbacks.model_checkpoint.mode=min: a higher val/acc"),
        (["callbacks.early_stopping.mode=max"], "callbacks.early_stopping.mode=max: a lower val/loss is better"),
        (["model/scheduler=plateau", "model.scheduler.monitor=val/f1"], "model.scheduler.mode=min: a higher val/f1"),
    ],
)
def test_a_monitor_with_the_wrong_mode_is_named(overrides, message):
    """mode=min on val/acc kept the worst epoch as the best checkpoint, and tested it."""
    with pytest.raises(ConfigError, match=f"^{message}"):
        check_command_line(overrides)


def test_optimized_metric_follows_the_checkpoint_monitor():
    """A sweep monitoring val/acc is sorted and optimized by val/acc_best (val/loss_best was empty in every job)."""
    acc = ["callbacks.model_checkpoint.monitor=val/acc", "callbacks.model_checkpoint.mode=max"]
    assert check_command_line(acc).optimized_metric == "val/acc_best"
    assert check_command_line([]).optimized_metric == "val/loss_best"


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["train=false", "test=false"], "train=false test=false: the run would do nothing"),
        (["model=rnn", "model.net.n_layers=0"], "model.net.n_layers=0: an RNN has at least one recurrent layer"),
        (["data=synthetic_multilabel", "+model.pos_weight=[1,2]"], "model.pos_weight has 2 weights but"),
        (["trainer.precision=16-true"], "trainer.precision=16-true: Adam's state is float16 too, where eps=1e-08"),
        (["data.batch_transforms=[{name: normalize, mean: 0, std: 0}]"], "data.batch_transforms: std=0: every std"),
        (["data=sequences", "model=rnn", "data.transforms=[{name: hflip}]"], "data.transforms: transforms act on"),
        (["data.classes=[a,b]"], "data.classes: names 2 classes, the data has 10"),
    ],
)
def test_values_that_failed_mid_training_are_refused_up_front(overrides, message):
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}"):
        check_command_line(overrides)


def test_optimized_metric_without_a_monitor_is_checked():
    """monitor=null made optimized_metric None_best, which escaped the check and failed every trial."""
    with pytest.raises(ConfigError, match=r"^optimized_metric=val/loss_best: no run of the classification task"):
        check_command_line(["hparams_search=optuna", "callbacks.model_checkpoint.monitor=null"])


def test_every_boolean_of_the_shipped_configs_is_checked():
    """Found in the config files, wherever they set it: a group's file, a _bases file, a _global_ one, the root."""
    from omegaconf import OmegaConf

    from litlab.rules import check_rules
    from litlab.train_checks import boolean_rules, shipped_booleans

    found = set(shipped_booleans())
    assert {"print_config", "data.shuffle", "data.verify", "model.net.bidirectional", "trainer.fast_dev_run"} <= found
    assert {"model.optimizer.nesterov", "callbacks.early_stopping.strict", "trainer.sync_batchnorm"} <= found
    assert not found & {"data.pin_memory", "trainer.max_epochs", "data.num_classes"}  # not always a bool
    # A section built by the user's own class may give the same key another meaning.
    cfg = OmegaConf.create({"data": {"_target_": "my_package.Data", "shuffle": "by_length"}, "train": True})
    check_rules(cfg, boolean_rules(cfg))
    cfg.data._target_ = "litlab.data.DigitsDataModule"
    with pytest.raises(ConfigError, match=r"^data.shuffle=by_length: must be true or false$"):
        check_rules(cfg, boolean_rules(cfg))


@pytest.mark.parametrize("command", ["train", "predict"])
def test_ctrl_c_during_the_start_up_checks_exits_130_without_a_traceback(monkeypatch, command):
    """The checks before Hydra starts (~2 s) were outside the try block: a KeyboardInterrupt traceback."""
    import litlab.command_line as command_line

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(command_line, "check_command_line", interrupted)
    monkeypatch.setattr(sys, "argv", [f"litlab-{command}", "seed=1"])
    wrap = command_line.validated if command == "train" else command_line.checked_command(command)
    with pytest.raises(SystemExit) as exit:
        wrap(lambda: pytest.fail("the command started"))()
    assert exit.value.code == 130 and exit.value.__cause__ is None and exit.value.__suppress_context__
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "Ctrl-C is a KeyboardInterrupt again"


def exit_after_ctrl_c(code: str) -> tuple[int, str]:
    """Exit status and stderr of ``python -c code``, which sends itself a Ctrl-C, as in a terminal."""
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # not a background job's SIG_IGN
    )
    return proc.returncode, proc.stderr


def test_ctrl_c_in_the_start_up_imports_exits_130_there_and_then():
    """A KeyboardInterrupt cut a numpy import short, a library swallowed it: exit 1, an AttributeError traceback."""
    code = (
        "import os, signal, time\n"
        "from litlab.cli import ctrl_c_exits_at_once\n"
        "with ctrl_c_exits_at_once():\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    time.sleep(30)\n"
    )
    assert exit_after_ctrl_c(code) == (130, "")


def test_ctrl_c_while_a_command_imports_exits_130_without_a_traceback():
    """The console scripts imported their command (Hydra, ~0.2 s; with torch ~3 s) before any handler was set."""
    code = (
        "import importlib.abc, os, signal, sys, time\n"
        "class InterruptHydra(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'hydra':\n"
        "            os.kill(os.getpid(), signal.SIGINT)\n"
        "            time.sleep(30)\n"
        "sys.meta_path.insert(0, InterruptHydra())\n"
        "from litlab.cli import train\n"
        "train()\n"
    )
    assert exit_after_ctrl_c(code) == (130, "")


def test_help_answers_without_loading_torch():
    """--help imported Lightning first (~2 s on 2 cores): litlab.resume and litlab.export imported it at the top."""
    code = (
        "import contextlib, importlib, io, sys\n"
        "for command in ('train', 'eval', 'predict', 'export'):\n"
        "    sys.argv = [f'litlab-{command}', '--help']\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "        importlib.import_module(f'litlab.{command}').main()\n"
        "print(sorted({'torch', 'lightning'} & sys.modules.keys()))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout) == (0, "[]\n"), proc.stderr[-3000:]


@pytest.mark.parametrize("record", ["", "hydra:\n  job:\n    config_name: train\na: [b\n", "[train]\n"])
def test_a_run_directory_with_a_damaged_record_is_refused(tmp_path, record):
    """A damaged hydra.yaml gave yaml's traceback; an empty one passed as a free directory, and litlab-predict
    then wrote over the train run's .hydra/overrides.yaml."""
    from litlab.run_dirs import check_own_run_dir

    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "hydra.yaml").write_text(record)
    damaged = rf"^hydra.run.dir={tmp_path} holds a run whose record \(.hydra/hydra.yaml\) is damaged: .*choose another"
    with pytest.raises(ConfigError, match=damaged):
        check_own_run_dir([f"hydra.run.dir={tmp_path}"], "predict")


def test_a_checkpoint_folder_of_another_run_is_refused(tmp_path, monkeypatch):
    """dirpath=<another run>/checkpoints: the fresh run replaced that run's last.ckpt; the default dirpath
    (inside the new run's directory) passes wherever the command is started."""
    from litlab.run_dirs import check_checkpoint_dir

    monkeypatch.chdir(tmp_path)
    other = tmp_path / "other" / "checkpoints"
    other.mkdir(parents=True)
    (other / "last.ckpt").write_bytes(b"")
    (tmp_path / "checkpoints").mkdir()  # beside the command: what the default dirpath reads as before Hydra starts
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"")
    check_checkpoint_dir(check_command_line([]))
    check_checkpoint_dir(check_command_line(["callbacks.model_checkpoint.dirpath=${hydra:runtime.output_dir}/c"]))
    with pytest.raises(ConfigError, match=f"^callbacks.model_checkpoint.dirpath={other} holds checkpoints of another"):
        check_checkpoint_dir(check_command_line([f"callbacks.model_checkpoint.dirpath={other}"]))


def test_a_run_directory_in_use_by_another_run_is_refused(tmp_path, monkeypatch):
    """Two runs started at once in one directory both passed the checks, then wrote among each other's files."""
    import os

    import litlab.run_dirs as run_dirs

    monkeypatch.setattr(run_dirs, "_held", {})
    run, resume = str(tmp_path / "run"), str(tmp_path / "run" / ".." / "run")
    with run_dirs.holding_run_dir(run):  # a job in its run directory (a default, timestamped one too)
        assert not run_dirs.hold_run_dir(resume), "held by this process already"
        fd = run_dirs._held.pop(str((tmp_path / "run").resolve()))  # as if held by another process
        with pytest.raises(ConfigError, match=r"hydra.run.dir=.*run is in use by another litlab-train running there"):
            run_dirs.hold_run_dir(resume)
        run_dirs._held[str((tmp_path / "run").resolve())] = fd
    assert run_dirs._held == {}, "released when the job ends (a sweep runs many in one process)"
    assert run_dirs.hold_run_dir(resume)  # the first run has ended
    os.close(run_dirs._held.popitem()[1])


def validated_exit() -> int | None:
    """How ``litlab-train`` with ``sys.argv`` ends before Hydra starts: its exit code, or None if it starts."""
    import litlab.command_line as command_line

    started = []
    try:
        command_line.validated(lambda: started.append(True))()
    except SystemExit as exit:
        assert not started
        return exit.code
    assert started
    return None


@pytest.mark.parametrize(
    ("rank", "checked"),
    [
        ({}, True),
        ({"RANK": "0", "LOCAL_RANK": "0"}, True),
        ({"LOCAL_RANK": "1"}, False),  # a child Lightning started
        ({"SLURM_PROCID": "1"}, False),  # another task of an srun step
        ({"NODE_RANK": "1", "LOCAL_RANK": "0"}, False),
    ],
)
def test_the_first_process_of_a_job_checks_the_command_line(monkeypatch, rank, checked):
    """Under torchrun every rank has LOCAL_RANK: rank 0 ran unchecked when its presence meant a DDP child."""

    for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(key, raising=False)
    for key, value in {**rank, "WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(sys, "argv", ["litlab-train", "data.batch_size=0"])
    assert validated_exit() == (2 if checked else None), "another rank runs with the overrides rank 0 checked"


def test_another_srun_task_resumes_with_the_runs_overrides(tmp_path, monkeypatch):
    """The other tasks of an srun step skip the checks, and skipped completing a resume's command line too."""
    import litlab.command_line as command_line

    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("- model=cnn\n")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("SLURM_PROCID", "1")
    monkeypatch.setattr(sys, "argv", ["litlab-train", f"hydra.run.dir={run}"])
    seen = []
    command_line.validated(lambda: seen.append(sys.argv[1:]))()
    assert seen == [["model=cnn", f"hydra.run.dir={run}"]]


def test_torchrun_without_its_store_needs_one_run_directory(monkeypatch):
    """Each rank composed its own ${now:...} run directory, and the run split in two, silently."""
    import litlab.command_line as command_line

    monkeypatch.delenv("TORCHELASTIC_USE_AGENT_STORE", raising=False)
    for rank in ("0", "1"):
        for key, value in {"RANK": rank, "LOCAL_RANK": rank, "WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": "7"}.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setattr(sys, "argv", ["litlab-train", "seed=1"])
        with pytest.raises(SystemExit) as exit:
            command_line.validated(lambda: pytest.fail("the command started"))()
        assert exit.value.code == 2, rank


@pytest.mark.parametrize(
    ("dirpath", "refused"),
    [
        (None, False),
        ("${paths.output_dir}/weights", False),
        ("${hydra:sweep.dir}/${hydra:job.num}/ckpt", False),
        ("{tmp}/checkpoints", True),
    ],
)
def test_a_sweep_gives_each_job_a_checkpoint_folder_of_its_own(tmp_path, monkeypatch, dirpath, refused):
    """One folder for every job: each job's last.ckpt replaced the others', and each tested another's best."""

    monkeypatch.chdir(tmp_path)
    given = [] if dirpath is None else ["callbacks.model_checkpoint.dirpath=" + dirpath.replace("{tmp}", str(tmp_path))]
    monkeypatch.setattr(sys, "argv", ["litlab-train", "-m", "seed=1,2", *given])
    assert validated_exit() == (2 if refused else None)


def test_a_search_without_a_multirun_is_refused(monkeypatch):
    """hparams_search=optuna without -m trained one default run, silently, and exited 0."""
    import litlab.command_line as command_line

    monkeypatch.setattr(sys, "argv", ["litlab-train", "hparams_search=optuna"])
    with pytest.raises(SystemExit) as exit:
        command_line.validated(lambda: pytest.fail("the run started"))()
    assert exit.value.code == 2
