"""Prune bad trials of an Optuna sweep (hparams_search=<model>_optuna) from inside the training job.

hydra-optuna-sweeper asks Optuna for a trial and launches the job with its parameters as overrides; the
job never sees the trial object. This callback finds it in the sweep's storage (the RUNNING trial whose
parameters are this job's overrides, exactly as the sweeper writes them), reports the monitored metric
after every validation that logged it (step = epoch), and asks the study's pruner whether to stop.

Why not optuna's PyTorchLightningPruningCallback: hydra-optuna-sweeper pins optuna<3, whose callback
imports the old `pytorch_lightning` package and is a `pytorch_lightning.Callback`, which a
`lightning.pytorch` Trainer refuses; optuna-integration's port needs optuna>=3.

A pruned trial stops training (trainer.should_stop, the same on every rank) and the job returns its last
value; the sweeper then records the trial as COMPLETE with that value, because hydra-optuna-sweeper 1.3
tells every returned job COMPLETE and fails the sweep on a trial that the job itself finished. The trial
keeps the user attribute `pruned_at_epoch`, and its intermediate values stop there.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning.pytorch as L

from ganforge.utils.errors import ConfigError

log = logging.getLogger("ganforge")


class OptunaPruning(L.Callback):
    def __init__(self, monitor: str, storage: str | None, study_name: str, pruner: Any = None):
        self.monitor, self.storage, self.study_name, self.pruner = monitor, storage, study_name, pruner
        self.trial = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage != "fit" or self.trial is not None or trainer.global_rank != 0:
            return  # only rank 0 talks to the storage; the decision is broadcast
        self.trial = self.find_trial()

    def find_trial(self):
        import optuna
        from hydra.core.hydra_config import HydraConfig

        if not self.storage:
            raise ConfigError(
                "callbacks.optuna_pruning needs the sweep's Optuna storage (hydra.sweeper.storage=sqlite:///...), "
                "which this job can open; in-memory storage lives only in the sweeper"
            )
        study = optuna.load_study(study_name=self.study_name, storage=self.storage, pruner=self.pruner)
        overrides = set(HydraConfig.get().overrides.task) if HydraConfig.initialized() else set()
        mine = [
            t
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
            if t.params and all(f"{k}={v}" in overrides for k, v in t.params.items())
        ]
        if not mine:
            raise ConfigError(
                f"callbacks.optuna_pruning: no running trial of study {self.study_name!r} in {self.storage} has this "
                f"job's parameters ({sorted(overrides)}); run it through the sweep (python train.py -m hparams_search=...) "
                "or drop the callback (callbacks.optuna_pruning=null)"
            )
        trial = optuna.trial.Trial(study, max(mine, key=lambda t: t.number)._trial_id)
        log.info("Optuna: trial %d of study %s reports %s each epoch", trial.number, self.study_name, self.monitor)
        return trial

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        prune = False
        if trainer.global_rank == 0:
            epoch = trainer.current_epoch
            value = float(trainer.callback_metrics[self.monitor])
            self.trial.report(value, step=epoch)
            prune = self.trial.should_prune()
            if prune:
                self.trial.set_user_attr("pruned_at_epoch", epoch)
                log.info("Optuna pruned trial %d at epoch %d (%s=%.4g): stopping", self.trial.number, epoch, self.monitor, value)
        if trainer.strategy.broadcast(prune, src=0):
            trainer.should_stop = True
