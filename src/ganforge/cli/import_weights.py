"""`ganforge-import model=<pix2pix|cyclegan|bicyclegan|spade> data=<its data> G=<.pth> [G_B=<.pth>] [E=<.pth>]
[D=<.pth> D2=<.pth>] output=<folder>`.

Loads the official generators of the reference repos into ganforge's nets and writes
`<output>/imported.ckpt`, a checkpoint of weights and run config that ganforge-predict, -eval and
-export read and that `init_from=` fine-tunes from (the discriminators keep their fresh init unless a
BicycleGAN's D= and D2= are given):

* pytorch-CycleGAN-and-pix2pix (`models/networks.py`): pix2pix `unet_256` (UnetGenerator nesting
  `model.model.1.model.3...`) and CycleGAN `resnet_9blocks` (ResnetGenerator `model.N...`). ganforge's
  U-Net and ResNet keep those module layouts, so the names map one to one.
* BicycleGAN (`models/networks.py`): G `G_Unet_add_all` (UnetBlock_with_z: `down`, `submodule`, `up`),
  E `E_ResNet` (`fc.0`, `fcVar.0`) and, optionally, D and D2 `D_NLayersMulti` (`model_<i>.<n>` with
  `--num_Ds 2`, `model.<n>` with 1). The reference concatenates [up path, skip] where ganforge
  concatenates [skip, up path], so the in-channel halves of every up-conv above the innermost level swap.
  Its convs keep their bias before a BatchNorm (`norm=batch`): ganforge's BicycleGAN nets do too
  (`bias_before_batchnorm`, set in conf/model/bicyclegan.yaml).
* NVlabs/SPADE (`models/networks/generator.py`): SPADEGenerator (G). Its spectral norm is the hook API
  (`weight_orig`, `weight_u`, `weight_v`: torch's parametrization names here); the rest has the same names.
  Its ADE20K models read raw ids (channel 0 'other'), as `data=ade20k`; with `data=ade20k_shifted`
  (`label_shift=1`) the label channels of the convs that read the label map are reordered to match.

Every mapping is explicit (name -> name, shape checked); a file with weights the target net lacks, or
lacking weights it needs, or of other shapes, is refused with a message listing them. Old InstanceNorm
running statistics (saved by torch < 0.4, which the reference also deletes on load) are dropped.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar, cast

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ganforge.cli.app import entry_point
from ganforge.nets.discriminators import MultiscaleDiscriminator
from ganforge.nets.encoders import BasicBlock, ResnetEncoder
from ganforge.nets.generators import ResnetGenerator, UnetGenerator, UnetSkipBlock
from ganforge.utils.errors import CheckpointError, ConfigError

log = logging.getLogger("ganforge.import")

#: a mapping gives, per target name, (source name, transform of the source tensor)
Mapping_ = dict[str, tuple[str, Callable[[torch.Tensor], torch.Tensor]]]
Net = TypeVar("Net", bound=nn.Module)
SOURCES = {
    "pix2pix": "pytorch-CycleGAN-and-pix2pix unet_256/unet_128 (UnetGenerator)",
    "cyclegan": "pytorch-CycleGAN-and-pix2pix resnet_9blocks/resnet_6blocks (ResnetGenerator)",
    "bicyclegan": "BicycleGAN G_Unet_add_all (G), E_ResNet (E) and D_NLayersMulti (D, D2)",
    "spade": "NVlabs/SPADE SPADEGenerator (G)",
}


def _same(t: torch.Tensor) -> torch.Tensor:
    return t


def read_pth(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    """A reference .pth state dict (weights_only: nothing in it runs), without DataParallel's `module.`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what}={path} does not exist; give the .pth file of the reference's download script (docs/export.md)")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{what}={path} is empty (0 bytes); download it again")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the weights-only unpickler's notes on pickle protocols: the error says it all
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch.load fails with KeyError, IndexError, struct.error... on a file that is no torch save
        raise CheckpointError(
            f"{what}={path} is not a readable torch state dict (truncated, not a torch save, or holding "
            f"objects other than tensors, which are never loaded: {type(e).__name__}: {_load_error(e)}); "
            "give the .pth of the reference's download script (docs/export.md)"
        ) from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise CheckpointError(
            f"{what}={path} holds a {type(sd).__name__}, not a state dict of tensors (a .pth of the reference's networks)"
        )
    bad = [f"{k!r}: {type(v).__name__}" for k, v in sd.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if bad:
        raise CheckpointError(
            f"{what}={path} is not a state dict of tensors (a .pth of the reference's networks): "
            f"{len(bad)} entries are not name: tensor, e.g. {', '.join(bad[:3])}"
        )
    return {k.removeprefix("module."): v for k, v in sd.items() if not k.endswith("_metadata")}


def _load_error(e: Exception) -> str:
    """The informative line of torch.load's error: the weights-only unpickler's own reason, else the first line."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    for k, line in enumerate(lines):
        if "WeightsUnpickler error:" in line:
            return (line.split("WeightsUnpickler error:", 1)[1].strip() or (lines[k + 1] if k + 1 < len(lines) else ""))[:200]
    return lines[0][:200] if lines else ""


def identity_mapping(net: nn.Module) -> Mapping_:
    """Same names (the reference layouts of pytorch-CycleGAN-and-pix2pix)."""
    return {k: (k, _same) for k in net.state_dict()}


def _swap_halves(t: torch.Tensor) -> torch.Tensor:
    """[up, skip] -> [skip, up] along a ConvTranspose2d weight's in-channels (dim 0)."""
    half = t.shape[0] // 2
    return torch.cat([t[half:], t[:half]], 0)


def unet_with_z_mapping(net: UnetGenerator) -> Mapping_:
    """ganforge U-Net names <- BicycleGAN G_Unet_add_all names (UnetBlock_with_z)."""
    mapping: Mapping_ = {}
    block, ours, theirs = net.model, "model.", "model."
    while block is not None:
        layers = list(block.model)
        sub = next((i for i, m in enumerate(layers) if isinstance(m, UnetSkipBlock)), None)
        # ours: down layers, [submodule,] up layers; the reference: down = [LeakyReLU,] conv [, norm],
        # up = [ReLU, upconv, norm | Tanh, (Dropout)]; the innermost level's down part is [LeakyReLU, conv]
        n_down = sub if sub is not None else 2
        for i, m in enumerate(layers):
            if i == sub:
                continue
            side, j = ("down", i) if i < n_down else ("up", i - (sub + 1 if sub is not None else n_down))
            for name, _ in m.named_parameters(recurse=False):
                swap = side == "up" and sub is not None and isinstance(m, nn.ConvTranspose2d) and name == "weight"
                mapping[f"{ours}model.{i}.{name}"] = (f"{theirs}{side}.{j}.{name}", _swap_halves if swap else _same)
            for name, _ in m.named_buffers(recurse=False):
                mapping[f"{ours}model.{i}.{name}"] = (f"{theirs}{side}.{j}.{name}", _same)
        if sub is None:
            break
        block, ours, theirs = cast(UnetSkipBlock, layers[sub]), f"{ours}model.{sub}.", f"{theirs}submodule."
    missing = set(net.state_dict()) - set(mapping)
    if missing:
        raise ConfigError(f"the U-Net has weights the BicycleGAN layout has no place for: {sorted(missing)[:5]}")
    return mapping


def resnet_encoder_mapping(net: ResnetEncoder) -> Mapping_:
    """ganforge ResnetEncoder names <- BicycleGAN E_ResNet names: `fc.0`/`fcVar.0` for `fc`/`fcVar`, and
    each block's second conv inside convMeanpool (`conv.5.0`)."""
    mapping: Mapping_ = {}
    for k in net.state_dict():
        src = re.sub(r"^(fc|fcVar)\.", r"\1.0.", k)
        m = re.match(r"^conv\.(\d+)\.conv\.(\d+)\.(.+)$", k)
        if m and isinstance(block := net.conv[int(m.group(1))], BasicBlock):
            idx = int(m.group(2))
            if isinstance(block.conv[idx], nn.Conv2d) and idx == len(block.conv) - 2:
                src = f"conv.{m.group(1)}.conv.{idx}.0.{m.group(3)}"
        mapping[k] = (src, _same)
    return mapping


_SPECTRAL_NAMES = (
    ("parametrizations.weight.original", "weight_orig"),
    ("parametrizations.weight.0._u", "weight_u"),
    ("parametrizations.weight.0._v", "weight_v"),
)


def spade_reference_mapping(net: nn.Module) -> Mapping_:
    """ganforge SPADE net names <- NVlabs/SPADE names. Spectral norm there is the hook API
    (`weight_orig`, `weight_u`, `weight_v`; ours has torch's parametrization names); the discriminator's
    scale i, layer n is `discriminator_i.modeln` (its last conv wrapped in a Sequential: `modeln.0`), the
    encoder's layer i is `layer{i+1}`. Generator names are the same."""
    modules = dict(net.named_modules())
    mapping: Mapping_ = {}
    for k in net.state_dict():
        src = k
        for ours, theirs in _SPECTRAL_NAMES:
            src = src.replace(ours, theirs)
        m = re.match(r"^scales\.(\d+)\.stages\.(\d+)\.(.+)$", src)
        if m:
            bare = isinstance(modules[f"scales.{m.group(1)}.stages.{m.group(2)}"], nn.Conv2d)
            src = f"discriminator_{m.group(1)}.model{m.group(2)}.{'0.' if bare else ''}{m.group(3)}"
        m = re.match(r"^layers\.(\d+)\.(.+)$", src)
        if m:
            src = f"layer{int(m.group(1)) + 1}.{m.group(2)}"
        mapping[k] = (src, _same)
    return mapping


def multiscale_discriminator_mapping(net: MultiscaleDiscriminator) -> Mapping_:
    """ganforge MultiscaleDiscriminator names <- BicycleGAN D_NLayersMulti names: scale i's layer n is
    `model_i.n` with num_D >= 2, and `model.n` for the one scale of num_D 1 (the same Sequential layout)."""
    one = len(net.scales) == 1
    return {k: (re.sub(r"^scales\.(\d+)\.model\.", "model." if one else r"model_\1.", k), _same) for k in net.state_dict()}


def _label_channels_shifted(label_nc: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """In-channels of a conv on the label map, raw ids -> `label_shift=1` ids: our channel j < label_nc is
    their id j + 1, our don't-care channel (label_nc) their id 0; channels after those (instance edges) stay."""

    def reorder(t: torch.Tensor) -> torch.Tensor:
        return torch.cat([t[:, 1 : label_nc + 1], t[:, :1], t[:, label_nc + 1 :]], 1)

    return reorder


def spade_generator_mapping(net: nn.Module, label_nc: int, label_shift: int) -> Mapping_:
    """`spade_reference_mapping` for a file trained on raw ids, loaded into a G whose data subtracts
    `label_shift` (0 or 1) from them: with 1 the label channels of `fc` (without the VAE) and of every SPADE's
    `mlp_shared.0` are reordered (`_label_channels_shifted`)."""
    if label_shift not in (0, 1):
        raise ConfigError(f"data.label_shift={label_shift}: reference SPADE weights import with label_shift 0 (their ids) or 1")
    mapping = spade_reference_mapping(net)
    if label_shift:
        reads_labels = re.compile(r"^(fc\.weight|.*\.mlp_shared\.0\.weight)$")
        for k, (src, _) in mapping.items():
            if reads_labels.match(k) and not (k == "fc.weight" and getattr(net, "use_vae", False)):
                mapping[k] = (src, _label_channels_shifted(label_nc))
    return mapping


#: the net options to set when a file does not fit, per family
FIT_HINTS = {
    "spade": "the label channels (data.label_nc, data.contain_dontcare_label, data.use_instance), model.netG.ngf, "
    "model.netG.num_upsampling_layers, data.crop_size",
    "bicyclegan": "model.netG.num_downs, ngf, norm, bias_before_batchnorm, use_dropout, nz; model.netE.nef, n_blocks; "
    "model.netD.ndf, n_layers, num_D (--num_Ds), norm",
}
DEFAULT_FIT_HINT = "model.netG.num_downs, ngf, n_blocks, norm, use_dropout, nz"


def map_state_dict(
    net: nn.Module, source: dict[str, torch.Tensor], mapping: Mapping_, what: str, hint: str = DEFAULT_FIT_HINT
) -> dict[str, torch.Tensor]:
    """The target state dict from `source`; refuses with every mismatch listed."""
    target = net.state_dict()
    # torch < 0.4 saved InstanceNorm running statistics; the reference deletes them on load too
    # (base_model.py __patch_instance_norm_state_dict).
    used = {src for src, _ in mapping.values()}
    stale = {
        k
        for k in source
        if k not in used
        and k.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked")
        and _is_instance_norm(net, mapping, k)
    }
    out, missing, shapes = {}, [], []
    for k, (src, fn) in mapping.items():
        if src not in source:
            missing.append(src if src == k else f"{src} (for {k})")
            continue
        value = fn(source[src])
        if tuple(value.shape) != tuple(target[k].shape):
            shapes.append(f"{src}: file {tuple(source[src].shape)} vs ganforge {k} {tuple(target[k].shape)}")
            continue
        out[k] = value.to(target[k].dtype)
    unexpected = sorted(set(source) - used - stale)
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing: " + "; ".join(missing[:8]))
        if unexpected:
            parts.append(f"{len(unexpected)} not in the ganforge net: " + "; ".join(unexpected[:8]))
        if shapes:
            parts.append(f"{len(shapes)} of another shape: " + "; ".join(shapes[:8]))
        raise CheckpointError(
            f"{what} does not fit {type(net).__name__} as configured: {' | '.join(parts)}. Set the net options the "
            f"file was trained with (e.g. {hint})"
        )
    return out


def _is_instance_norm(net: nn.Module, mapping: Mapping_, key: str) -> bool:
    """Whether a stale statistics key belongs to a layer that is an InstanceNorm in `net`."""
    prefix = key.rsplit(".", 1)[0]
    ours = {src.rsplit(".", 1)[0]: k.rsplit(".", 1)[0] for k, (src, _) in mapping.items()}
    modules = dict(net.named_modules())
    if prefix in ours:
        return isinstance(modules.get(ours[prefix]), nn.InstanceNorm2d)
    return isinstance(modules.get(prefix), nn.InstanceNorm2d)


def _load(net: Net, path: str, what: str, mapping_fn: Callable[[Net], Mapping_], hint: str = DEFAULT_FIT_HINT) -> None:
    sd = map_state_dict(net, read_pth(path, what), mapping_fn(net), f"{what}={path}", hint)
    net.load_state_dict(sd)


def import_weights(cfg: DictConfig) -> Path:
    """Build the configured model, load the reference files into its generators (and E), write the checkpoint."""
    target = str(cfg.model.get("_target_", ""))
    kind = {
        "ganforge.gans.pix2pix.Pix2Pix": "pix2pix",
        "ganforge.gans.cyclegan.CycleGAN": "cyclegan",
        "ganforge.gans.bicyclegan.BicycleGAN": "bicyclegan",
        "ganforge.gans.spade.SPADEModel": "spade",
    }.get(target)
    if kind is None:
        raise ConfigError(f"ganforge-import reads the reference generators of {', '.join(SOURCES)}; model={target} is none of them")
    if not cfg.get("G"):
        raise ConfigError(f"G=<.pth> is required: the {SOURCES[kind]} weights")
    model = instantiate(cfg.model)
    model.run_config = OmegaConf.to_container(cfg, resolve=True)
    imported = {}
    if kind == "pix2pix":
        _load(model.netG, cfg.G, "G", identity_mapping)
        imported["netG"] = str(cfg.G)
    elif kind == "spade":
        shift = int(cfg.data.get("label_shift", 0) or 0)
        _load(model.netG, cfg.G, "G", lambda net: spade_generator_mapping(net, model.hparams.label_nc, shift), FIT_HINTS["spade"])
        imported["netG"] = str(cfg.G)
    elif kind == "cyclegan":
        if not isinstance(model.netG_A, ResnetGenerator):
            raise ConfigError("the CycleGAN import reads ResnetGenerator files (resnet_9blocks / resnet_6blocks)")
        _load(model.netG_A, cfg.G, "G", identity_mapping)
        imported["netG_A"] = str(cfg.G)
        if cfg.get("G_B"):
            _load(model.netG_B, cfg.G_B, "G_B", identity_mapping)
            imported["netG_B"] = str(cfg.G_B)
        else:
            log.warning(
                "no G_B=<.pth>: netG_B (direction=BtoA) keeps its random init; the reference's pretrained "
                "CycleGANs ship one file per direction (e.g. horse2zebra and zebra2horse)"
            )
    else:
        hint = FIT_HINTS["bicyclegan"]
        _load(model.netG, cfg.G, "G", unet_with_z_mapping, hint)
        imported["netG"] = str(cfg.G)
        if not cfg.get("E"):
            raise ConfigError("E=<.pth> is required for BicycleGAN: the encoder (latest_net_E.pth) gives the style codes")
        _load(model.netE, cfg.E, "E", resnet_encoder_mapping, hint)
        imported["netE"] = str(cfg.E)
        for key, attr in (("D", "netD"), ("D2", "netD2")):
            if not cfg.get(key):
                continue
            net = getattr(model, attr)
            if net is None:
                raise ConfigError(
                    f"{key}={cfg[key]}: model.use_same_D=true has no second discriminator; drop {key}= or set use_same_D=false"
                )
            if not isinstance(net, MultiscaleDiscriminator):
                raise ConfigError(
                    f"{key}= reads D_NLayersMulti files into a MultiscaleDiscriminator; model.{attr} is a {type(net).__name__}"
                )
            _load(net, cfg[key], key, multiscale_discriminator_mapping, hint)
            imported[attr] = str(cfg[key])
    ckpt = model.weights_checkpoint()
    ckpt["ganforge"]["imported"] = imported
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "imported.ckpt"
    torch.save(ckpt, path)
    print(f"Imported {', '.join(f'{k} <- {v}' for k, v in imported.items())}")
    print(f"Checkpoint: {path}")
    return path


@entry_point("import_weights")
def main(cfg: DictConfig) -> None:
    import_weights(cfg)
