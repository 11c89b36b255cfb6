"""`ganforge-predict ckpt_path=<ckpt> input=<image or folder> output=<folder>`: translate images.

`model=<file.onnx or export folder>` instead of ckpt_path runs a `ganforge-export` ONNX export with
onnxruntime alone (ganforge.export.runtime: no torch, no Lightning, no checkpoint), through the same loop.
Every input is translated and saved as `<output>/<stem>.png` at the input's original size. A file
that cannot be read goes into `<output>/predict_report.json` (and the printed report) instead of
stopping the run; each output is written atomically, so nothing already written is lost.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np
from omegaconf import DictConfig
from PIL import Image
from rich.console import Console
from rich.table import Table

from ganforge.cli.app import entry_point
from ganforge.utils.errors import ConfigError, GanforgeError, ImageFileError
from ganforge.utils.imageio import (
    IMG_EXTENSIONS,
    fit_size,
    image_to_tensor,
    load_image,
    load_label_ids,
    save_atomic,
    save_frames,
    tensor_to_image,
)

log = logging.getLogger("ganforge.cli.predict")
#: SinGAN's applications (ganforge.models.singan), named here so model=<onnx> runs import no torch
SINGAN_APPS = ("samples", "paint2image", "editing", "harmonization", "sr", "animation")
PRECISIONS = ("32-true", "bf16-mixed")
#: the models precision=bf16-mixed runs: the image-to-image translators
BF16_KINDS = ("Pix2PixModel", "TwoDomainModel", "BicycleGANModel")


def list_inputs(input_path: str | None) -> list[Path]:
    if not input_path:
        raise ConfigError("input=<image or folder> is required")
    folder = Path(input_path)
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise ConfigError(f"input={folder} does not exist; give an image file or a folder of images")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
    if not files:
        raise ConfigError(f"input={folder} holds no images (extensions: {', '.join(sorted(IMG_EXTENSIONS))})")
    return files


def network_size(size_opt, orig: tuple[int, int], train_crop: int, multiple: int) -> tuple[int, int]:
    """(w, h) fed to the generator: the training crop size (as the reference test.py), the
    image's own size fitted to the generator's multiple ("native"), or a given side."""
    if size_opt in (None, "train"):
        return fit_size(train_crop, train_crop, multiple)
    if size_opt == "native":
        return fit_size(*orig, multiple)
    side = int(size_opt)
    return fit_size(side, side, multiple)


class TorchModel:
    """A trained model (`ganforge.load`: a model folder, a checkpoint or a Hub id) as the predict loop drives it
    (OnnxModel in ganforge.export.runtime is the other kind). The file-level steps live here, the images come from
    the inference model's methods: `model` is that inference model."""

    def __init__(self, opts: Mapping):
        from ganforge.models import load  # torch: not needed for model=<onnx>

        # Any: the family's own methods are called, chosen by `kind`
        self.model = cast(Any, load(opts["ckpt_path"], use_ema=bool(opts.get("use_ema", True))))
        if opts.get("test_dropout") is not None and hasattr(self.model.spec, "test_dropout"):
            self.model.spec.test_dropout = bool(opts["test_dropout"])
        self.compiled = bool(opts.get("compile"))
        if self.compiled:  # the graphs are built at the first call, in the precision set by then
            # inductor's C++ toolchain lookup logs that a CPU-only machine has no CUDA runtime: not news here
            logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
            self.model.compile()
        self.kind = type(self.model).__name__
        self.needs_input = self.kind not in ("DCGANModel", "SinGANModel")
        self.apps = SINGAN_APPS if self.kind == "SinGANModel" else ()
        self.directions = tuple(getattr(self.model, "directions", ("AtoB",)))
        self.style_option = {"BicycleGANModel": "z_from"}.get(self.kind) or (
            "style" if self.kind == "SPADEInference" and self.model.use_vae else None
        )
        self.input_size_multiple = int(getattr(self.model, "size_multiple", 1))
        spec = self.model.spec
        self.train_size = int(getattr(spec, "train_size", None) or (self.model.train_size[0] if self.kind == "SPADEInference" else 256))

    def precision_context(self, opts: Mapping):
        """`precision=bf16-mixed`: the nets' weights in bfloat16, run under torch.autocast (convolutions in bf16, the
        ops autocast keeps in fp32 in fp32), about 1.7x (U-Net) to 2x (ResNet) the images/s of fp32 on a CPU with
        avx512_bf16 (docs/benchmarks.md); autocast alone would cast every weight again for every image, which costs
        the U-Net most of the gain. Refused on a CPU that would emulate bf16, unless `allow_slow_bf16`."""
        import torch

        from ganforge.cli.precision import refuse_emulated_bf16

        precision = str(opts.get("precision") or "32-true")
        if precision not in PRECISIONS:
            raise ConfigError(f"precision={precision} is not one of {', '.join(PRECISIONS)}")
        if precision == "32-true":
            return contextlib.nullcontext()
        if self.kind not in BF16_KINDS:
            raise ConfigError(
                f"precision=bf16-mixed runs the translation models (pix2pix, CycleGAN family, BicycleGAN), not {self.model.model_name}"
            )
        device = self.model.device.type
        if device == "cpu" and not opts.get("allow_slow_bf16"):
            refuse_emulated_bf16("precision", precision, "slower than fp32")
        self.model.to(torch.bfloat16)
        return torch.autocast(device, dtype=torch.bfloat16)

    def label_classes(self) -> list[tuple[str, tuple[int, int, int]]] | None:
        return self.model.label_classes() if self.kind == "SPADEInference" else None

    def predict_direction(self, opts: Mapping) -> str:
        """The direction predict runs (and which half of an A|B input is the model's input): a paired model's
        training direction; a two-domain model's `direction=` (AtoB by default)."""
        if self.kind in ("Pix2PixModel", "BicycleGANModel"):
            return self.model.spec.direction
        direction = opts.get("direction") or self.directions[0]
        if direction not in self.directions:
            raise ConfigError(f"direction must be {' or '.join(self.directions)}, got {direction!r} ({self.model.model_name})")
        return direction

    def input_channels(self, opts: Mapping) -> int:
        if self.kind == "TwoDomainModel":
            return self.model.input_channels(self.predict_direction(opts))
        return int(getattr(self.model.spec, "input_nc", 3))

    def predict_load(self, path: Path, opts: Mapping) -> Image.Image:
        """An input file as the model reads it: an 8-bit image, or a label map's ids converted as the training data's."""
        if self.kind == "SPADEInference":
            ids = self.model.label_ids().convert(load_label_ids(path), Path(path))
            return Image.fromarray(ids.astype(np.int32), "I")
        return load_image(path, channels=self.input_channels(opts))

    def predict_tensor(self, img: Image.Image, size: tuple[int, int]):
        import torch

        if self.kind == "SPADEInference":
            ids = np.asarray(img.resize(self.model.fit_label_size(size), Image.Resampling.NEAREST), dtype=np.int64)
            return torch.from_numpy(ids)[None, None]
        return image_to_tensor(img, size).unsqueeze(0)

    def predict_images(self, img, size: tuple[int, int], orig: tuple[int, int], opts) -> dict[str, list]:
        x = self.predict_tensor(img, size).to(self.model.device)
        return {suffix: [tensor_to_image(o, orig) for o in out] for suffix, out in outputs(self, x, opts).items()}

    def write_samples(self, opts: Mapping, out_dir: Path) -> list[Path]:
        if self.kind == "SinGANModel":
            return run_singan_app({**opts, "app": "samples"}, self.model, out_dir)
        return write_dcgan_samples(self.model, opts, out_dir)

    def run_app(self, opts: Mapping, out_dir: Path) -> list[Path]:
        if not self.apps:
            raise ConfigError(f"app={opts.get('app')} is not available for {self.model.model_name} (it has no apps)")
        return run_singan_app(opts, self.model, out_dir)


def outputs(predictor: TorchModel, x, opts: Mapping) -> dict:
    """Named outputs for one input batch (the key is the file-name suffix, `<stem><key>.png`)."""
    model, kind = predictor.model, predictor.kind
    if kind == "Pix2PixModel":
        return {"": model.generate(x)}
    if kind == "TwoDomainModel":
        forward = predictor.predict_direction(opts)
        out = {"": model.generate(x, forward)}
        if opts.get("reconstruct"):
            out["_rec"] = model.generate(out[""], "BtoA" if forward == "AtoB" else "AtoB")
        return out
    if kind == "BicycleGANModel":
        return bicyclegan_outputs(model, x, opts)
    if kind == "SPADEInference":
        return spade_outputs(model, x, opts)
    raise ConfigError(f"{model.model_name} generates from noise: give no input= (num_samples=, seed=)")


def _style_image(path: Any, key: str, channels: int, like, model):
    if not path or not Path(str(path)).is_file():
        raise ConfigError(f"{key}={path} is not an image file; give {key} a style image")
    try:
        x = image_to_tensor(load_image(path, channels=channels), (like.shape[-1], like.shape[-2])).unsqueeze(0)
    except ImageFileError as e:
        raise ConfigError(f"{key}={path}: {e}") from None
    return x.to(model.device)


def bicyclegan_outputs(model, x, opts: Mapping) -> dict:
    """`<stem>_<k>`: n_samples outputs from z ~ N(0, 1) drawn with `seed` (the k-th z is the same for every input,
    so the k-th outputs share a style), or one output `<stem>_0` from E's mean of the style image `z_from`.
    `interp` (a style image or an int seed) adds `<stem>_interp`, a strip (and a GIF) of `interp_steps` outputs
    along the line from the first z to that code."""
    import torch

    from ganforge.models.images import seeded_normal

    n, z_from = int(opts.get("n_samples", 1)), opts.get("z_from")
    if n < 1:
        raise ConfigError(f"n_samples must be >= 1, got {n}")
    if z_from and n > 1:
        raise ConfigError("z_from gives one code per input: drop n_samples (or use n_samples=1)")
    nz, out_nc = model.spec.nz, model.spec.output_nc
    zs = (
        model.encode_tensor(_style_image(z_from, "z_from", out_nc, x, model))
        if z_from
        else seeded_normal((n, nz), opts.get("seed", 0)).to(model.device)
    )
    out = {f"_{k}": model.generate(x, z.expand(x.shape[0], -1)) for k, z in enumerate(zs[:, None])}
    interp = opts.get("interp")
    if interp is not None:
        steps = int(opts.get("interp_steps", 8))
        if steps < 2:
            raise ConfigError(f"interp_steps must be >= 2, got {steps}")
        if isinstance(interp, int):
            end = seeded_normal((1, nz), interp).to(model.device)
        else:
            end = model.encode_tensor(_style_image(str(interp), "interp", out_nc, x, model))
        frames = [model.generate(x[:1], torch.lerp(zs[:1], end, t)) for t in torch.linspace(0, 1, steps).tolist()]
        out["_interp"] = torch.cat(frames)
    return out


def spade_outputs(model, x, opts: Mapping) -> dict:
    """One photo per label map (`<stem>.png`); with the VAE, `style=<image>` encodes that image's style (E's mean),
    and `n_samples=K` writes `<stem>_<k>.png` from K random z ~ N(0, 1) drawn with `seed` (the k-th z is the same
    for every label map)."""
    from ganforge.models.images import seeded_normal

    n, style = int(opts.get("n_samples", 1)), opts.get("style")
    if n < 1:
        raise ConfigError(f"n_samples must be >= 1, got {n}")
    if (style or n > 1) and not model.use_vae:
        raise ConfigError("style= and n_samples>1 need a model trained with model.use_vae=true (a style encoder)")
    if style and n > 1:
        raise ConfigError("style= gives one style: drop n_samples (or use n_samples=1)")
    if style:
        try:
            photo = image_to_tensor(load_image(style)).unsqueeze(0).to(model.device)
        except ImageFileError as e:
            raise ConfigError(f"style={style}: {e}") from None
        return {"": model.generate(x, style=photo, use_mean=True)}
    if not model.use_vae:
        return {"": model.generate(x)}
    zs = seeded_normal((n, model.netG.z_dim), opts.get("seed", 0)).to(model.device)
    if n == 1:
        return {"": model.generate(x, z=zs[:1])}
    return {f"_{k}": model.generate(x, z=zs[k : k + 1]) for k in range(n)}


def write_dcgan_samples(model, opts: Mapping, out_dir: Path) -> list[Path]:
    """`num_samples` images from seed `seed` (sample_NNNN.png) and their grid (grid.png, unless grid=false); with
    interp=<seed2>, interp_steps images from z(seed) to z(seed2), linearly (interp_linear.png) and along the
    sphere (interp_slerp.png)."""
    from torchvision.utils import make_grid

    n, seed = int(opts.get("num_samples") or 0), int(opts.get("seed") or 0)
    if n < 1:
        raise ConfigError(f"num_samples must be >= 1, got {opts.get('num_samples')}")
    samples = model.sample(n, seed=seed, output_type="tensor").cpu()
    written = [save_atomic(tensor_to_image(x), out_dir / f"sample_{i:04d}.png") for i, x in enumerate(samples)]
    if opts.get("grid", True):
        grid = make_grid(samples, nrow=math.ceil(math.sqrt(n)), padding=2, pad_value=1.0)
        written.append(save_atomic(tensor_to_image(grid), out_dir / "grid.png"))
    if opts.get("interp") is not None:
        steps = int(opts.get("interp_steps") or 8)
        for mode in ("linear", "slerp"):
            strip = model.interpolate(seed, int(opts["interp"]), steps, mode, output_type="tensor").cpu()
            written.append(
                save_atomic(tensor_to_image(make_grid(strip, nrow=steps, padding=2, pad_value=1.0)), out_dir / f"interp_{mode}.png")
            )
    return written


def run_singan_app(opts: Mapping, model, out_dir: Path) -> list[Path]:
    """A SinGAN application (`app=`), its images written into `out_dir`."""
    app = opts.get("app")
    if app not in SINGAN_APPS:
        raise ConfigError(f"app={app!r} is not a SinGAN application; choose one of {', '.join(SINGAN_APPS)}")
    seed = int(opts.get("seed") or 0)
    if app == "samples":
        scale_h, scale_w = float(opts.get("scale_h", 1.0)), float(opts.get("scale_w", 1.0))
        images = model.sample(
            int(opts.get("num_samples", 10)), scale_h, scale_w, int(opts.get("gen_start_scale", 0)), seed=seed, output_type="tensor"
        )
        written = [save_atomic(tensor_to_image(s), out_dir / f"sample_{k:04d}.png") for k, s in enumerate(images)]
        return written + (sifid_report(model, images, out_dir, opts) if opts.get("sifid", True) else [])
    if app == "sr":
        factor = float(opts.get("sr_factor", 4.0))
        return [save_atomic(model.super_resolution(factor, seed=seed), out_dir / f"sr_x{factor:g}.png")]
    if app == "animation":
        start = int(opts.get("gen_start_scale", 0))
        frames = model.animate(gen_start_scale=start, seed=seed)
        path = out_dir / f"animation_start{start}.gif"
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)  # 10 fps
        return [path]
    n = model.check_scale(int(opts.get("inject_scale", 1)), 1, "inject_scale")
    ref = _app_image(opts, "ref", model.spec.channels)
    if app == "paint2image":
        return [save_atomic(model.paint2image(ref, n, seed=seed), out_dir / f"{app}_scale{n}.png")]
    mask = _app_image(opts, "mask", 1)
    out, masked = (model.edit if app == "editing" else model.harmonize)(ref, mask, n, seed=seed)
    return [save_atomic(out, out_dir / f"{app}_scale{n}.png"), save_atomic(masked, out_dir / f"{app}_scale{n}_masked.png")]


def _app_image(opts: Mapping, key: str, channels: int) -> Image.Image:
    if not opts.get(key):
        raise ConfigError(f"{key}=<image> is required for this app")
    return load_image(opts[key], channels=channels)


def sifid_report(model, images: list, out_dir: Path, opts: Mapping) -> list[Path]:
    """SIFID of each sample against the training image (finest scale) into `sifid.json`, through the metric suite.
    It needs Inception's weights (docs/evaluation.md); without them the samples are still written, with a warning."""
    from ganforge.metrics.suite import MetricSuite
    from ganforge.metrics.weights import PretrainedWeightsError

    try:
        suite = MetricSuite(["sifid"], batch_size=1, weights=dict(opts.get("weights") or {}))
    except PretrainedWeightsError as e:
        log.warning("SIFID not computed: %s", e)
        return []
    real = model.real(model.num_scales - 1)
    for s in images:
        suite.update(s[None] if s.dim() == 3 else s, real)
    report = {
        "sifid_mean": float(suite.compute()["sifid"]),
        "sifid": [float(v) for v in suite.metrics["sifid"].scores],  # type: ignore[union-attr]  # a ModuleDict entry
        "num_samples": len(images),
        "reference": "the training image at the finest scale; Inception first max-pool features, native size",
    }
    path = out_dir / "sifid.json"
    path.write_text(json.dumps(report, indent=2))
    return [path]


def load_model(cfg: Mapping):
    """The checkpoint's GAN (ckpt_path=) or an ONNX export (model=), and the report's name for it."""
    if cfg.get("model_path") and cfg.get("ckpt_path"):
        raise ConfigError("give ckpt_path=<checkpoint> or model=<file.onnx or export folder>, not both")
    if cfg.get("model_path"):
        from ganforge.export.runtime import OnnxModel

        return OnnxModel(cfg["model_path"]), str(cfg["model_path"])
    if not cfg.get("ckpt_path"):
        raise ConfigError("ckpt_path=<checkpoint> (or model=<file.onnx or export folder>) is required")
    return TorchModel(cfg), str(cfg["ckpt_path"])


def load_input(model, path: Path, opts: Mapping) -> Image.Image:
    """An input file as the model reads it (`predict_load`); with `pair`, the half of an A|B pair that
    the model translates. Raises a GanforgeError naming the file when it cannot be used."""
    img = model.predict_load(path, opts)
    if not opts.get("pair"):
        return img
    w, h = img.size
    if w % 2:
        raise ImageFileError(path, f"an A|B pair must have an even width, got {w}")
    halves = (img.crop((0, 0, w // 2, h)), img.crop((w // 2, 0, w, h)))
    return halves[1] if model.predict_direction(opts) == "BtoA" else halves[0]


def translate_image(model, img: Image.Image, opts: Mapping) -> dict[str, list[Image.Image]]:
    """The outputs for one loaded input (`load_input`), at the input's size: {file-name suffix: frames}
    (one frame, or several for a latent walk). ganforge-predict and ganforge-demo both call this."""
    orig = img.size
    size = network_size(opts.get("size"), orig, model.train_size, model.input_size_multiple)
    return model.predict_images(img, size, orig, opts)


def predict(cfg: DictConfig) -> dict:
    """Translate every input image; models add outputs through `predict_outputs` and whole
    applications (SinGAN's `app=...`) through `run_app`."""
    model, source = load_model(cfg)
    if isinstance(model, TorchModel):
        import torch

        # pix2pix's test dropout draws its masks image after image from this stream, as the reference test.py
        torch.manual_seed(int(cfg.get("seed") or 0))
        precision = model.precision_context(cfg)
    elif str(cfg.get("precision") or "32-true") != "32-true" or cfg.get("compile"):
        option = "compile=true" if cfg.get("compile") else f"precision={cfg.get('precision')}"
        raise ConfigError(f"{option} runs a checkpoint (ckpt_path=); an ONNX export runs as it was exported")
    else:
        precision = contextlib.nullcontext()
    with precision, compile_errors(bool(cfg.get("compile"))):
        return _predict(cfg, model, source)


@contextlib.contextmanager
def compile_errors(compiling: bool) -> Iterator[None]:
    """compile=true where torch.compile cannot build its kernels (on a CPU inductor compiles C++): one line."""
    if not compiling:
        yield
        return
    from torch._dynamo.exc import BackendCompilerFailed

    try:
        yield
    except BackendCompilerFailed as e:
        cause = str(e.inner_exception).strip().splitlines()[0][:300] if str(e.inner_exception).strip() else type(e.inner_exception).__name__
        raise ConfigError(
            f"compile=true: torch.compile could not build the generator ({cause}); on a CPU inductor needs a C++ compiler "
            "(g++, or CXX=<compiler>): install one, or run without compile=true"
        ) from None


def _predict(cfg: DictConfig, model, source: str) -> dict:
    out_dir = Path(cfg.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.get("app") or not model.needs_input:
        if cfg.get("app") and not isinstance(model, TorchModel):
            raise ConfigError("app= runs from a checkpoint (ckpt_path=); an ONNX export writes samples (num_samples=, seed=)")
        written = model.run_app(cfg, out_dir) if cfg.get("app") else model.write_samples(cfg, out_dir)
        report = {"checkpoint": source, "written": [str(p) for p in written], "failed": {}}
        _print_report(report, out_dir)
        return report

    model.predict_direction(cfg)  # a bad direction= is one error before any file, not one per file
    files = list_inputs(cfg.input)
    written, failed = [], {}
    for path in files:
        try:
            img = load_input(model, path, cfg)
        except GanforgeError as e:
            failed[str(path)] = str(e)
            log.warning("skipped %s", e)
            continue
        for suffix, frames in translate_image(model, img, cfg).items():
            target = out_dir / f"{path.stem}{suffix}.png"
            save_frames(frames, target)
            written.append(str(target))

    report = {"checkpoint": source, "written": written, "failed": failed}
    (out_dir / "predict_report.json").write_text(json.dumps(report, indent=2))
    _print_report(report, out_dir)
    return report


def _print_report(report: dict, out_dir: Path) -> None:
    console = Console(stderr=False)
    console.print(f"Wrote {len(report['written'])} image(s) into {out_dir}")
    if report["failed"]:
        table = Table(title=f"{len(report['failed'])} file(s) could not be read", show_lines=False)
        table.add_column("file")
        table.add_column("problem")
        for f, msg in report["failed"].items():
            table.add_row(f, msg.split(": ", 1)[-1])
        console.print(table)
        console.print(f"Report: {out_dir / 'predict_report.json'}")


@entry_point("predict")
def _main(cfg: DictConfig) -> None:
    report = predict(cfg)
    if report["failed"]:
        sys.exit(3)


def main() -> None:
    """`model=<file.onnx or folder>` is read as `model_path=`: Hydra takes `model=` for the model config
    group (conf/model/) that every ganforge command shares."""
    sys.argv = [f"model_path={a.split('=', 1)[1]}" if a.startswith("model=") else a for a in sys.argv]
    _main()
