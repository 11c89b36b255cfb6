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

from abc import ABCMeta, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.optim import Optimizer, lr_scheduler

from ganforge.checkpoint import FORMAT_VERSION, check_state_dict_matches, plain_hyperparameters, rng_states, set_rng_states
from ganforge.errors import CheckpointError, ConfigError
from ganforge.imageio import image_to_tensor, load_image
from ganforge.losses import GANLoss
from ganforge.metrics.swd import patch_swd

SCHEDULER_POLICIES = ("linear", "step", "plateau", "cosine")
DIRECTIONS = ("AtoB", "BtoA")


def build_scheduler(
    optimizer: Optimizer,
    policy: str = "linear",
    n_epochs: int = 100,
    n_epochs_decay: int = 100,
    step_size: int = 50,
    gamma: float = 0.1,
    plateau_factor: float = 0.2,
    plateau_patience: int = 5,
    monitor: str = "val/l1",
    monitor_mode: str = "min",
) -> dict:
    """The reference repos' LR policies (pytorch-CycleGAN-and-pix2pix `models/networks.py`
    `get_scheduler`), as a Lightning scheduler config.

    `linear` keeps the LR for `n_epochs` epochs, then decays it linearly over `n_epochs_decay`:
    factor = 1 - max(0, epoch - n_epochs) / (n_epochs_decay + 1) for the 1-based epoch.
    """
    if policy == "linear":
        def factor(epoch0: int) -> float:
            return 1.0 - max(0, epoch0 + 1 - n_epochs) / float(n_epochs_decay + 1)

        sched = lr_scheduler.LambdaLR(optimizer, lr_lambda=factor)
    elif policy == "step":
        sched = lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)
    elif policy == "plateau":
        sched = lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=monitor_mode, factor=plateau_factor, threshold=0.01, patience=plateau_patience
        )
    elif policy == "cosine":
        sched = lr_scheduler.CosineAnnealingLR(optimizer, T_max=n_epochs, eta_min=0)
    else:
        raise ConfigError(f"model.scheduler.policy={policy!r} is unknown; choose one of {SCHEDULER_POLICIES}")
    config = {"scheduler": sched, "interval": "epoch"}
    if policy == "plateau":
        config["monitor"] = monitor
    return config


@dataclass
class ExportGraph:
    """One network as `ganforge-export` writes it: `module(*example_inputs)` returns one tensor.

    `inputs` describes each input in order, as the manifest records it: {"name", "kind" (image |
    label | z | noise | flag), "shape" (ints, or axis names for the dynamic ones), "dtype", and for
    images the value range and channels}. `dynamic` names the axes that may change ({input or
    output name: {axis: axis name}}). `meta` goes into the manifest as is (direction, mode, ...).
    """

    name: str
    module: nn.Module
    example_inputs: tuple[torch.Tensor, ...]
    inputs: list[dict[str, Any]]
    output: dict[str, Any]
    dynamic: dict[str, dict[int, str]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


def image_io(name: str, channels: int, side: int, dynamic_hw: bool, kind: str = "image") -> dict[str, Any]:
    """The manifest entry of an image tensor in [-1, 1] (x / 127.5 - 1 of the 8-bit pixels)."""
    hw = ["height", "width"] if dynamic_hw else [side, side]
    return {"name": name, "kind": kind, "shape": ["batch", channels, *hw], "dtype": "float32",
            "channels": channels, "range": [-1.0, 1.0], "normalisation": "pixel / 127.5 - 1"}


def seeded_normal(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """N(0, 1) latents for predict, drawn with numpy's default generator from `seed`: an ONNX export run
    without torch (ganforge.runtime) draws the same ones, so it writes the checkpoint's samples."""
    return seeded_normals([shape], seed)[0]


def seeded_normals(shapes: list[tuple[int, ...]], seed: int) -> list[torch.Tensor]:
    """`seeded_normal` for a graph with several latent inputs: one generator draws them in turn, in the
    order of the export's inputs, as the runtime feeds them (SinGAN's noise pyramid)."""
    rng = np.random.default_rng(int(seed))
    return [torch.from_numpy(rng.standard_normal(shape).astype(np.float32)) for shape in shapes]


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
    #: several outputs per input from different latents (BicycleGAN): `sample_diverse` works
    metric_multimodal: bool = False
    #: trained on one image (SinGAN): SIFID against it applies
    metric_single_image: bool = False
    #: generated from label maps of this many classes (SPADE): `metric_batch` also returns "label" (ids,
    #: don't-care = the class count), and mIoU of a user-supplied segmenter applies
    metric_label_classes: int | None = None
    #: the translation directions `metric_batch`, `translate` and predict accept
    directions: tuple[str, ...] = ("AtoB",)
    #: the `app=` names `run_app` accepts
    apps: tuple[str, ...] = ()
    #: False for a model that generates from noise alone (DCGAN): predict calls `predict_samples`
    needs_input: bool = True
    #: the predict option that names a style image whose latent code the outputs take (BicycleGAN
    #: `z_from`, SPADE with its VAE `style`); None: no latent code. A model with one also draws its
    #: code from `seed` and gives `n_samples` outputs per input (predict and the demo offer both).
    style_option: str | None = None
    #: the generator modules, by attribute name: what an EMA copy averages (callbacks.ema)
    generator_names: tuple[str, ...] = ("netG",)

    def __init__(self, scheduler: Mapping[str, Any] | None = None):
        super().__init__()
        self._swd_fake: list[torch.Tensor] = []
        self._swd_real: list[torch.Tensor] = []
        self.automatic_optimization = False
        self.scheduler_cfg = dict(scheduler or {})
        #: the resolved run config, stored in checkpoints so predict/eval rebuild the model (set by the CLI)
        self.run_config: dict | None = None
        #: callbacks.nonfinite's policy: skip an optimizer step whose loss is NaN/Inf (a host sync a step)
        self.skip_nonfinite = False
        self.skipped_in_a_row = 0
        self._nonfinite: torch.Tensor | None = None  # on the device: did any loss so far fail isfinite?
        self._resume_torch_rng: torch.Tensor | None = None

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

    @abstractmethod
    def metric_batch(self, batch: dict, direction: str = "AtoB") -> dict[str, torch.Tensor]:
        """{"fake": generated images, "real": the real images they are compared with}, both in
        [-1, 1], for FID, KID, IS (and LPIPS/PSNR/SSIM when `metric_paired`; with `metric_label_classes`,
        "label": the label maps the fakes were made from). Generated on the reference's test protocol
        (see `metric_protocol`)."""

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
        """How `translate`/`metric_batch` run the generator, for the report of ganforge-eval: the mode
        of its norm and dropout layers and whether images are generated one at a time (their output
        then does not depend on the images batched with them)."""
        return {"generator_mode": "eval", "per_sample": False}

    def sample_diverse(self, batch: dict, n: int) -> torch.Tensor:
        """n outputs per input, each from its own latent: (n, B, C, H, W) (multimodal models only)."""
        raise ConfigError(f"{type(self).__name__} gives one output per input (it is not multimodal)")

    def translate(self, x: torch.Tensor, direction: str = "AtoB") -> torch.Tensor:
        """Generated images for the input batch `x` in [-1, 1], in inference mode."""
        raise ConfigError(f"{type(self).__name__} does not translate input images")

    def predict_direction(self, opts: Mapping) -> str:
        """The direction predict runs (and which half of an A|B input is the model's input)."""
        direction = opts.get("direction") or self.directions[0]
        if direction not in self.directions:
            raise ConfigError(f"direction must be {' or '.join(self.directions)}, got {direction!r} ({type(self).__name__})")
        return direction

    def predict_input_nc(self, opts: Mapping) -> int:
        """Channels of the images predict feeds the model."""
        data = (self.run_config or {}).get("data", {})
        return int(data.get("input_nc" if self.predict_direction(opts) == "AtoB" else "output_nc", 3))

    def predict_load(self, path: Path, opts: Mapping) -> Image.Image:
        """An input file as the model reads it (an 8-bit image; a label-map model reads label ids);
        raises ImageFileError naming the file when it cannot be used."""
        return load_image(path, channels=self.predict_input_nc(opts))

    def predict_tensor(self, img: Image.Image, size: tuple[int, int]) -> torch.Tensor:
        """The (1, C, h, w) network input for `img` at size=(w, h) (photos: bicubic, in [-1, 1])."""
        return image_to_tensor(img, size).unsqueeze(0)

    def label_classes(self) -> list[tuple[str, tuple[int, int, int]]] | None:
        """For a model whose input is a label map (SPADE): (name, RGB colour) of each class, indexed by
        the id `predict_tensor` takes (the demo paints with these colours); None: inputs are images."""
        return None

    def predict_samples(self, opts: Mapping, out_dir: Path) -> list[Path]:
        """The files predict writes for a model with `needs_input=False` (samples from noise)."""
        raise ConfigError(f"{type(self).__name__} translates input images: give input=<image or folder>")

    def predict_outputs(self, x: torch.Tensor, opts: Mapping) -> dict[str, torch.Tensor]:
        """Named outputs for one input batch; the key is the file-name suffix (`<stem><key>.png`)."""
        return {"": self.translate(x, self.predict_direction(opts))}

    def export_side(self) -> int:
        """The side of the example input an export traces with: the training crop."""
        return int((self.run_config or {}).get("data", {}).get("crop_size", 256))

    def export_graphs(self, opts: Mapping) -> list[ExportGraph]:
        """The networks `ganforge-export` writes, one file each (the CycleGAN family: one per
        direction), as inference modules in the predict protocol's mode with example inputs at
        the training size (`opts.size` overrides the side). The modules are copies: exporting
        changes nothing in the model."""
        raise ConfigError(f"{type(self).__name__} has no export (export_graphs is not defined)")

    def run_app(self, opts: Mapping, out_dir: Path) -> list[Path]:
        """A whole application (`ganforge-predict app=<name>`, one of `apps`): the files it wrote."""
        raise ConfigError(f"app={opts.get('app')} is not available for {type(self).__name__} (it has no apps)")

    def checkpoint_extras(self) -> dict[str, Any]:
        """Training state outside parameters and buffers (e.g. image pools), saved for exact resume;
        tensors and plain values only (checkpoints load with weights_only=True)."""
        return {}

    def load_checkpoint_extras(self, extras: dict[str, Any]) -> None:
        """Restore what `checkpoint_extras` saved."""

    # ----- helpers for subclasses ---------------------------------------------------------------
    @contextmanager
    def inference(self, *nets: nn.Module, train_mode: bool = False) -> Iterator[None]:
        """No gradient and `nets` in eval mode for the block, or with `train_mode` in train mode (pix2pix's
        test protocol: dropout on, BatchNorm on the batch's statistics). Modes and buffers come back after:
        train-mode BatchNorm would otherwise fold test batches into the running statistics (restoring is
        exact; momentum=0 would still advance num_batches_tracked)."""
        modes = [(m, m.training) for net in nets for m in net.modules()]
        saved = [(buf, buf.clone()) for net in nets for buf in net.buffers()] if train_mode else []
        for net in nets:
            net.train(train_mode)
        try:
            with torch.no_grad():
                yield
        finally:
            for buf, value in saved:
                buf.copy_(value)
            for m, mode in modes:
                m.training = mode

    def optimizers_for(self, *optimizers: Optimizer):
        """Pair each optimizer with the configured LR schedule."""
        return list(optimizers), [build_scheduler(o, **self.scheduler_cfg) for o in optimizers]

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
                self.skipped_in_a_row += 1
                self._batch_skipped = True
                return
            self.skipped_in_a_row = 0
        else:
            self._nonfinite = bad if self._nonfinite is None else self._nonfinite | bad
        opt.step()

    def nonfinite_loss_seen(self) -> bool:
        """Whether a loss so far was NaN or Inf (one host sync)."""
        return self._nonfinite is not None and bool(self._nonfinite)

    @staticmethod
    def d_loss(criterion: GANLoss, netD: nn.Module, real: torch.Tensor, fake: torch.Tensor,
               weight: float = 0.5) -> dict[str, torch.Tensor]:
        """The standard discriminator objective: (real + fake) * weight, fake already detached."""
        loss_fake = criterion(netD(fake), False)
        loss_real = criterion(netD(real), True)
        return {"loss_D_fake": loss_fake, "loss_D_real": loss_real, "loss_D": (loss_fake + loss_real) * weight}

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
                monitor = self.scheduler_cfg.get("monitor", "val/l1")
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
            "config": self.run_config,
            # Lightning saves optimizer, scheduler, epoch and step; the random streams make resume exact.
            # (Per process: a DDP run resumes every rank from rank 0's streams.)
            "rng_states": rng_states(),
            "extras": self.checkpoint_extras(),
            # written inside an epoch (callbacks.mid_epoch_checkpoint): the resumed run continues it
            "mid_epoch": self._trainer is not None and self.trainer.training
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
                f"the checkpoint was written by {theirs}, but this run builds {mine}; "
                f"pick the matching model=... or another ckpt_path"
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
            self._norm_stats = [(b, b.clone()) for m in self.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                                for b in m.buffers()]

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self.skip_nonfinite and self._batch_skipped:
            for buf, value in self._norm_stats:
                buf.copy_(value)
