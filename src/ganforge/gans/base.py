"""The GAN contract: everything the framework asks of a GAN module, declared once, here.

A GAN is one `GANModule` subclass. The trainer, the callbacks (sample grids, metrics), and the
predict and eval commands call the hooks below and nothing else. Abstract hooks must be written
(building a module without one fails and names it); the others have a default that fits a
model without that feature.

Training-side conventions (DESIGN.md): manual optimization, one small method per phase that
returns its losses, schedules in epochs (`global_step` counts every optimizer step, 2-4 per
batch in a GAN), exact resume through the checkpoint (Lightning's state, the random streams and
`checkpoint_extras`).
"""

from __future__ import annotations

import inspect
from abc import ABCMeta, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any

import lightning.pytorch as L
import torch
from torch import nn
from torch.optim import Optimizer, lr_scheduler

from ganforge.gans.checkpoint import (
    FORMAT_VERSION,
    check_state_dict_matches,
    plain_hyperparameters,
    rng_states,
    set_rng_states,
)
from ganforge.gans.losses import GANLoss
from ganforge.gans.precision import use_cached_casts
from ganforge.metrics.swd import patch_swd
from ganforge.models import MODELS, InferenceModel
from ganforge.nets.norms import use_reference_kernels
from ganforge.nets.registry import net_config
from ganforge.utils.errors import CheckpointError, ConfigError

SCHEDULER_POLICIES = ("linear", "step", "plateau", "cosine")
DIRECTIONS = ("AtoB", "BtoA")


@dataclass(frozen=True)
class LRSchedule:
    """`model.scheduler`: the reference repos' LR policies (pytorch-CycleGAN-and-pix2pix `models/networks.py`
    `get_scheduler`); `build` makes one optimizer's Lightning scheduler config.

    `linear` keeps the LR for `n_epochs` epochs, then decays it linearly over `n_epochs_decay`:
    factor = 1 - max(0, epoch - n_epochs) / (n_epochs_decay + 1) for the 1-based epoch.
    """

    policy: str = "linear"  # one of SCHEDULER_POLICIES
    n_epochs: int = 100
    n_epochs_decay: int = 100
    step_size: int = 50  # step: x gamma every step_size epochs
    gamma: float = 0.1
    plateau_factor: float = 0.2
    plateau_patience: int = 5
    monitor: str = "val/l1"  # the metric plateau watches
    monitor_mode: str = "min"

    @classmethod
    def from_config(cls, scheduler: Mapping[str, Any]) -> LRSchedule:
        unknown = sorted(set(scheduler) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"model.scheduler has no key {', '.join(unknown)}; it takes {', '.join(f.name for f in fields(cls))}")
        return cls(**scheduler)

    def __post_init__(self) -> None:
        if self.policy not in SCHEDULER_POLICIES:
            raise ConfigError(f"model.scheduler.policy={self.policy!r} is unknown; choose one of {SCHEDULER_POLICIES}")

    def build(self, optimizer: Optimizer) -> dict:
        if self.policy == "linear":
            n_epochs, n_epochs_decay = self.n_epochs, self.n_epochs_decay

            def factor(epoch0: int) -> float:
                return 1.0 - max(0, epoch0 + 1 - n_epochs) / float(n_epochs_decay + 1)

            sched: Any = lr_scheduler.LambdaLR(optimizer, lr_lambda=factor)
        elif self.policy == "step":
            sched = lr_scheduler.StepLR(optimizer, step_size=self.step_size, gamma=self.gamma)
        elif self.policy == "plateau":
            sched = lr_scheduler.ReduceLROnPlateau(
                optimizer, mode=self.monitor_mode, factor=self.plateau_factor, threshold=0.01, patience=self.plateau_patience
            )
        else:
            sched = lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.n_epochs, eta_min=0)
        config = {"scheduler": sched, "interval": "epoch"}
        if self.policy == "plateau":
            config["monitor"] = self.monitor
        return config


def fused(optimizer: Optimizer) -> Optimizer:
    """The same optimizer on torch's fused kernel where it has one (Adam, AdamW, SGD, Adagrad; CPU and CUDA):
    one pass over all parameters instead of about ten passes per tensor, which is a quarter of a pix2pix step on
    CPU. The update rule is the same; float32 results differ from the single-tensor loop in the last bits. An
    optimizer configured with `fused` or `foreach` set, or whose parameters live elsewhere, is kept as it is."""
    settings = optimizer.defaults
    if settings.get("fused", False) is not None or settings.get("foreach") or settings.get("differentiable"):
        return optimizer
    groups = optimizer.param_groups
    if not all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for g in groups for p in g["params"]):
        return optimizer
    accepted = inspect.signature(type(optimizer)).parameters  # AdamW's defaults hold a key its constructor fixes
    settings = {k: v for k, v in settings.items() if k in accepted}
    return type(optimizer)([{**g, "fused": True} for g in groups], **{**settings, "fused": True})


def closure_loss(closure: Callable[[], torch.Tensor] | None) -> torch.Tensor | None:
    """What an optimizer's `step(closure)` returns: the closure's loss, computed with gradients on (a
    torch optimizer's step runs under no_grad)."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def set_requires_grad(nets: nn.Module | list[nn.Module], flag: bool) -> None:
    for net in nets if isinstance(nets, list) else [nets]:
        for p in net.parameters():
            p.requires_grad_(flag)


@contextmanager
def frozen(nets: list[nn.Module]) -> Iterator[None]:
    """requires_grad False on `nets` for the block; all their parameters are trainable again after."""
    set_requires_grad(nets, False)
    try:
        yield
    finally:
        set_requires_grad(nets, True)


class GANModule(L.LightningModule, metaclass=ABCMeta):
    """Base class of every GAN. Subclasses take their nets and `_partial_` optimizers from the config."""

    # ----- what the model is: flags the metric suite and the commands read -------------------------
    #: outputs have a per-pixel ground truth (pix2pix): LPIPS, PSNR and SSIM against it apply
    metric_paired: bool = False
    #: several outputs per input from different latents (BicycleGAN): the inference model's `diverse` works
    metric_multimodal: bool = False
    #: trained on one image (SinGAN): SIFID against it applies
    metric_single_image: bool = False
    #: generated from label maps of this many classes (SPADE): `metric_batch` also returns "label" (ids,
    #: don't-care = the class count), and mIoU of a user-supplied segmenter applies
    metric_label_classes: int | None = None
    #: the translation directions `metric_batch` accepts
    directions: tuple[str, ...] = ("AtoB",)
    #: the registered inference model this module trains (ganforge.models.MODELS); stored in its checkpoints
    model_name: str = ""
    #: the generator modules, by attribute name: what an EMA copy averages (callbacks.ema)
    generator_names: tuple[str, ...] = ("netG",)
    #: nets, by attribute name, that stay eager under `compile=true` (a WGAN-GP critic: torch.compile has no
    #: double backward)
    eager_nets: tuple[str, ...] = ()

    def __init__(self, scheduler: Mapping[str, Any] | None = None):
        super().__init__()
        self._swd_fake: list[torch.Tensor] = []
        self._swd_real: list[torch.Tensor] = []
        self.automatic_optimization = False
        self.lr_schedule = LRSchedule.from_config(scheduler or {})
        #: the resolved run config, stored in checkpoints so predict/eval rebuild the model (set by the CLI)
        self.run_config: dict | None = None
        #: callbacks.nonfinite's policy: skip an optimizer step whose loss is NaN/Inf (a host sync a step)
        self.skip_nonfinite = False
        self._precise = False
        self.skipped_in_a_row = 0
        self._nonfinite: torch.Tensor | None = None  # on the device: did any loss so far fail isfinite?
        #: the last training step's `log_train` values, logged or not (callbacks.nonfinite names the culprit from them)
        self.train_values: dict[str, torch.Tensor | float] = {}
        self._resume_torch_rng: torch.Tensor | None = None

    @property
    def precise(self) -> bool:
        """train.yaml `precise`: the reference code's float order bit for bit (its single-tensor optimizer loop, torch's
        instance_norm kernel) instead of the fused optimizer and GroupNorm kernels; the algorithm is the same either way."""
        return self._precise

    @precise.setter
    def precise(self, flag: bool) -> None:
        self._precise = bool(flag)
        use_reference_kernels(self, self._precise)

    # ----- required hooks ------------------------------------------------------------------------
    @abstractmethod
    def configure_optimizers(self):
        """The optimizers, through `optimizers_for(...)` so the configured LR schedule applies."""

    @abstractmethod
    def training_step(self, batch: dict, batch_idx: int) -> None:
        """One iteration in the reference's update order (manual optimization)."""

    @abstractmethod
    def grid_rows(self, batch: dict) -> dict[str, torch.Tensor]:
        """The columns of the sample grid for a fixed validation batch, each a batch in [-1, 1]
        (e.g. input | output | target); every grid row is one sample. No gradient, no state change."""

    # ----- optional hooks, with defaults -----------------------------------------------------------
    @property
    def input_size_multiple(self) -> int:
        """Input sides must be multiples of this (a U-Net halves them `num_downs` times); the data
        module and predict fit images to it."""
        return 1

    @property
    def max_epochs(self) -> int | None:
        """Epochs the model itself needs, when its schedule is not the trainer's (SinGAN: one slice
        of its pyramid per epoch); None: `trainer.max_epochs` decides."""
        return None

    def metric_protocol(self) -> dict[str, Any]:
        """How `metric_batch` runs the generator, for the report of ganforge-eval (the inference model's protocol)."""
        return self.inference_model().metric_protocol()

    def metric_batch(self, batch: dict, direction: str = "AtoB") -> dict[str, torch.Tensor]:
        """{"fake": generated images, "real": the real images they are compared with}, both in [-1, 1], for FID,
        KID, IS (and LPIPS/PSNR/SSIM when `metric_paired`; with `metric_label_classes`, "label": the label maps
        the fakes were made from), on the reference's test protocol (the inference model's `metric_batch`)."""
        return self.inference_model().metric_batch(batch, direction)

    def inference_model(self) -> InferenceModel:
        """The inference model (ganforge.models) around this module's own generator nets (shared, not copied), its
        spec from the module's hyper-parameters, its nets' configs and the run's data config, by the model's own rule
        (`spec_data`, as `ganforge.load` reads a checkpoint): what the grids, validation, metric batches, exports and
        the model folder use. Built once and kept while the module's nets, buffers, hyper-parameters and run config are
        the same objects (a net swapped in setup, buffers moved by `.to()` or a hyper-parameter set anew build it
        again): training steps call it too."""
        key = (
            id(self.run_config),
            *map(id, self.children()),
            *map(id, self.buffers(recurse=False)),
            *((k, id(v)) for k, v in self.hparams.items()),
        )
        cached = self.__dict__.get("_inference")
        if cached is None or cached[0] != key:
            cached = self.__dict__["_inference"] = (key, self.build_inference_model())  # not a submodule: no state
        return cached[1]

    def build_inference_model(self) -> InferenceModel:
        cls = self.inference_class()
        spec = cls.Spec(
            **cls.spec_data(self.model_name, self.hparams, self.data_settings(), lambda key: net_config(getattr(self, key), key))
        )
        return cls(spec, nets={key: getattr(self, key) for key in spec.nets}, model_name=self.model_name)

    def inference_class(self) -> type[InferenceModel]:
        if self.model_name not in MODELS:
            raise ConfigError(
                f"{type(self).__name__}.model_name={self.model_name!r} names no registered inference model "
                f"(ganforge.models.MODELS: {', '.join(sorted(MODELS))})"
            )
        return MODELS[self.model_name]

    def data_settings(self) -> dict[str, Any]:
        """The run's data config (set by the CLI in `run_config`); empty for a module built by hand."""
        return dict((self.run_config or {}).get("data") or {})

    def checkpoint_extras(self) -> dict[str, Any]:
        """Training state outside parameters and buffers (e.g. image pools), saved for exact resume;
        tensors and plain values only (checkpoints load with weights_only=True)."""
        return {}

    def load_checkpoint_extras(self, extras: dict[str, Any]) -> None:
        """Restore what `checkpoint_extras` saved."""

    # ----- helpers for subclasses ---------------------------------------------------------------
    def compile_nets(self, **options: Any) -> None:
        """`compile=true`: torch.compile each net in place (`nn.Module.compile` keeps the parameter names, so
        checkpoints, EMA and the inference model are unchanged), a per-scale list net by net; `eager_nets` stay."""
        for name, child in self.named_children():
            if name in self.eager_nets or not any(True for _ in child.parameters()):
                continue
            for net in child if isinstance(child, nn.ModuleList) else (child,):
                net.compile(**options)

    def optimizers_for(self, *optimizers: Optimizer):
        """Pair each optimizer with the configured LR schedule (on the fused kernels unless `precise`)."""
        optimizers = self.fast_optimizers(*optimizers)
        return list(optimizers), [self.lr_schedule.build(o) for o in optimizers]

    def fast_optimizers(self, *optimizers: Optimizer) -> tuple[Optimizer, ...]:
        """The optimizers on torch's fused kernels (`fused`), or as configured when `precise`."""
        return optimizers if self.precise else tuple(fused(o) for o in optimizers)

    def step(self, opt, loss: torch.Tensor, *more: torch.Tensor) -> None:
        """zero_grad, backward, step for one optimizer; the caller has toggled it. Several losses are
        backpropagated one after another, as a reference that calls backward() once per term does
        (the gradients then add up in its order). A non-finite loss is recorded on the device (read by
        callbacks.nonfinite), or with `skip_nonfinite` not applied."""
        opt.zero_grad(set_to_none=True)
        for term in (loss, *more):
            self.manual_backward(term)
        bad = ~torch.isfinite(torch.stack([t.detach().float() for t in (loss, *more)])).all()
        if self.skip_nonfinite:
            if bool(bad):
                opt.zero_grad(set_to_none=True)
                # no optimizer step empties the bf16 cast cache here; a forward made under no_grad before this
                # step (SinGAN's first D steps) must not lend its gradient-less casts to the next one
                torch.clear_autocast_cache()
                self.skipped_in_a_row += 1
                self._batch_skipped = True
                return
            self.skipped_in_a_row = 0
        else:
            self._nonfinite = bad if self._nonfinite is None else self._nonfinite | bad
        opt.step()
        # Nothing reads a gradient after its step: freed now, D's no longer sit beside G's backward (peak RSS).
        opt.zero_grad(set_to_none=True)

    def log_train(self, values: Mapping[str, torch.Tensor | float], prog_bar: tuple[str, ...] = ()) -> None:
        """Log a training step's values as `train/<name>` on the steps the logger writes (`trainer.log_every_n_steps`,
        as Lightning's LearningRateMonitor decides), in one `log_dict` call (two with `prog_bar` names): each
        `self.log` walks and copies Lightning's result collection, a tenth of a small model's step (SinGAN's coarse
        scales). The progress bar and `trainer.callback_metrics` hold the values of the last logged step."""
        self.train_values = {f"train/{k}": v.detach() if torch.is_tensor(v) else v for k, v in values.items()}
        if not (self.trainer._logger_connector.should_update_logs or self.trainer.fast_dev_run):
            return
        shown = {f"train/{k}" for k in prog_bar}
        if shown:
            self.log_dict({k: v for k, v in self.train_values.items() if k in shown}, prog_bar=True)
        self.log_dict({k: v for k, v in self.train_values.items() if k not in shown})

    def nonfinite_loss_seen(self) -> bool:
        """Whether a loss so far was NaN or Inf (one host sync)."""
        return self._nonfinite is not None and bool(self._nonfinite)

    @staticmethod
    def d_loss(criterion: GANLoss, netD: nn.Module, real: torch.Tensor, fake: torch.Tensor, weight: float = 0.5) -> dict[str, torch.Tensor]:
        """The standard discriminator objective: (real + fake) * weight, fake already detached."""
        loss_fake = criterion(netD(fake), False)
        loss_real = criterion(netD(real), True)
        return {"loss_D_fake": loss_fake, "loss_D_real": loss_real, "loss_D": (loss_fake + loss_real) * weight}

    # ----- precision ----------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        # bf16-mixed on the CPU: each net's weights cast to bf16 once between optimizer steps (gans/precision.py)
        use_cached_casts(self.trainer)

    # ----- schedules ----------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        # A checkpoint written at validation end predates this epoch's schedule step: catch up.
        self._advance_schedules(to_epoch=self.current_epoch)

    def on_train_epoch_end(self) -> None:
        self._advance_schedules(to_epoch=self.current_epoch + 1)

    def _advance_schedules(self, to_epoch: int) -> None:
        """Step every epoch-based schedule until it stands at `to_epoch`: the LR is then a function of
        the epoch alone, however the run was interrupted and resumed."""
        for sched in self._schedulers():
            if not isinstance(sched, lr_scheduler.ReduceLROnPlateau):
                while sched.last_epoch < to_epoch:
                    sched.step()

    def collect_for_swd(self, fake: torch.Tensor, real: torch.Tensor) -> None:
        """Keep a validation batch's outputs and real images; at the epoch's end their patch SWD
        (ganforge.metrics.swd) is logged as val/swd, a distribution distance needing no pretrained net."""
        self._swd_fake.append(fake.detach().float().cpu())
        self._swd_real.append(real.detach().float().cpu())

    def _log_patch_swd(self) -> None:
        fake, real = torch.cat(self._swd_fake), torch.cat(self._swd_real)
        self._swd_fake, self._swd_real = [], []
        patch_size = self.hparams.get("swd_patch_size", 7)
        if min(fake.shape[-2:]) >= patch_size:
            self.log("val/swd", torch.tensor(patch_swd(fake, real, patch_size=patch_size)), prog_bar=True, sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        if self._swd_real:
            self._log_patch_swd()
        if self.trainer.sanity_checking:
            return
        for sched in self._schedulers():
            if isinstance(sched, lr_scheduler.ReduceLROnPlateau):
                monitor = self.lr_schedule.monitor
                value = self.trainer.callback_metrics.get(monitor)
                if value is None:
                    raise ConfigError(
                        f"model.scheduler.policy=plateau monitors {monitor!r}, which validation does not log; "
                        f"set model.scheduler.monitor to one of {sorted(self.trainer.callback_metrics)}"
                    )
                sched.step(value)

    def _schedulers(self) -> list:
        scheds = self.lr_schedulers()
        if scheds is None:
            return []
        return scheds if isinstance(scheds, list) else [scheds]

    # ----- checkpoints (Lightning's hooks; models extend through checkpoint_extras) ---------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Optimizer factories (`_partial_` configs) would make the checkpoint unloadable with
        # weights_only=True, which every load uses; the run config holds them.
        if checkpoint.get("hyper_parameters"):
            checkpoint["hyper_parameters"] = plain_hyperparameters(checkpoint["hyper_parameters"])
        metrics = self.trainer.callback_metrics if self._trainer is not None else {}
        checkpoint["ganforge"] = {
            "format_version": FORMAT_VERSION,
            "model_class": f"{type(self).__module__}.{type(self).__qualname__}",
            "model_name": self.model_name,
            "config": self.run_config,
            # Lightning saves optimizer, scheduler, epoch and step; the random streams make resume exact.
            # (Per process: a DDP run resumes every rank from rank 0's streams.)
            "rng_states": rng_states(),
            "extras": self.checkpoint_extras(),
            # written inside an epoch (callbacks.mid_epoch_checkpoint): the resumed run continues it
            "mid_epoch": self._trainer is not None
            and self.trainer.training
            and not self.trainer.fit_loop.epoch_loop.batch_progress.is_last_batch,
            # what a resumed finished run reports
            "metrics": {k: float(v) for k, v in metrics.items() if torch.is_tensor(v) and v.numel() == 1},
        }

    def weights_checkpoint(self) -> dict:
        """A checkpoint of this module's weights and run config alone (no optimizer, schedule or loop
        state), as ganforge-import writes: predict, eval, export and `init_from=` read it; resuming does not."""
        checkpoint = {"state_dict": self.state_dict(), "hyper_parameters": dict(self.hparams)}
        self.on_save_checkpoint(checkpoint)
        return checkpoint

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Refuse a checkpoint of another model or architecture with a readable message."""
        meta = checkpoint.get("ganforge") or {}
        mine = f"{type(self).__module__}.{type(self).__qualname__}"
        theirs = meta.get("model_class")
        if theirs and theirs != mine:
            raise CheckpointError(
                f"the checkpoint was written by {theirs}, but this run builds {mine}; pick the matching model=... or another ckpt_path"
            )
        check_state_dict_matches(self.state_dict(), checkpoint.get("state_dict", {}), where=mine)
        self.load_checkpoint_extras(meta.get("extras") or {})
        # Restored here, before Lightning builds the first train iterator (which shuffles and
        # prefetches a batch), so the resumed epoch draws what the uninterrupted run drew.
        if "rng_states" in meta:
            set_rng_states(meta["rng_states"])
            if meta.get("mid_epoch"):
                # Inside an epoch the new iterator draws a sampler seed from the torch stream (the
                # loader's restored state then replaces it): the model's draws (dropout, z, pools)
                # must continue from the saved stream, so it is set again before the next batch.
                self._resume_torch_rng = meta["rng_states"]["torch"]

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        if self._resume_torch_rng is not None:
            torch.set_rng_state(self._resume_torch_rng)
            self._resume_torch_rng = None
        if self.skip_nonfinite:
            # A skipped step's forward passes still fed BatchNorm's running statistics: kept to undo.
            self._batch_skipped = False
            self._norm_stats = [
                (b, b.clone()) for m in self.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) for b in m.buffers()
            ]

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self.skip_nonfinite and self._batch_skipped:
            for buf, value in self._norm_stats:
                buf.copy_(value)
