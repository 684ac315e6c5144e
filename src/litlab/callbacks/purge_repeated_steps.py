"""After a resume, the loggers drop the steps the interrupted run logged past its checkpoint."""

import logging

import lightning as L

log = logging.getLogger(__name__)


class PurgeRepeatedSteps(L.Callback):
    """Make TensorBoard and CSV drop what the dead run logged after its checkpoint; the resumed run logs it again.

    As training starts after the restore, each TensorBoard file gets the marker that
    ``SummaryWriter(purge_step=s)`` writes: readers then discard earlier events at steps >= s;
    litlab's CSVLogger removes those rows. ``s`` is the restored ``global_step``, the step the
    first batch logs at (after a validation-end, a mid-epoch or a mid-accumulation checkpoint
    alike); from ``on_train_start`` on, what the resumed run logs (an epoch's learning rate,
    logged before its first batch) stays.
    """

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:  # the other ranks' loggers hold no writer
            return
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog

        from litlab.csv_logger import CSVLogger
        from litlab.tensorboard import tensorboard_loggers

        step = trainer.global_step
        for logger in tensorboard_loggers(trainer):
            writer = logger.experiment._get_file_writer()
            writer.add_event(Event(step=step, session_log=SessionLog(status=SessionLog.START)))
            writer.flush()
        for logger in trainer.loggers:
            if isinstance(logger, CSVLogger):
                logger.drop_rows_from(step)
        log.info(f"Resumed at step {step}; the logs drop what the interrupted run logged from there on")
