"""`ganforge-predict ckpt_path=<ckpt> input=<image or folder> output=<folder>`: translate images.

`model=<file.onnx or export folder>` instead of ckpt_path runs a `ganforge-export` ONNX export with
onnxruntime alone (ganforge.runtime: no torch, no Lightning, no checkpoint), through the same loop.
Every input is translated and saved as `<output>/<stem>.png` at the input's original size. A file
that cannot be read goes into `<output>/predict_report.json` (and the printed report) instead of
stopping the run; each output is written atomically, so nothing already written is lost.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from pathlib import Path

from omegaconf import DictConfig
from PIL import Image
from rich.console import Console
from rich.table import Table

from ganforge.app import entry_point
from ganforge.errors import ConfigError, GanforgeError, ImageFileError
from ganforge.imageio import IMG_EXTENSIONS, fit_size, save_frames

log = logging.getLogger("ganforge.predict")


def list_inputs(input_path: str | None) -> list[Path]:
    if not input_path:
        raise ConfigError("input=<image or folder> is required")
    input_path = Path(input_path)
    if input_path.is_file():
        return [input_path]
    if not input_path.is_dir():
        raise ConfigError(f"input={input_path} does not exist; give an image file or a folder of images")
    files = sorted(p for p in input_path.iterdir() if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
    if not files:
        raise ConfigError(f"input={input_path} holds no images (extensions: {', '.join(sorted(IMG_EXTENSIONS))})")
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


class CheckpointModel:
    """A checkpoint's GAN as the predict loop drives it (OnnxModel in ganforge.runtime is the other kind);
    `gan` is the GAN itself, for what only a checkpoint has (the demo's pages read its contract)."""

    def __init__(self, opts: Mapping):
        from ganforge.checkpoint import build_model  # torch and Lightning: not needed for model=<onnx>

        self.gan, run_cfg = build_model(opts["ckpt_path"], trust=bool(opts.get("trust_checkpoint")),
                                        use_ema=bool(opts.get("use_ema", True)))
        if opts.get("test_dropout") is not None:
            self.gan.hparams.test_dropout = bool(opts["test_dropout"])
        self.train_size = int(run_cfg["data"].get("crop_size", 256))
        self.needs_input = self.gan.needs_input
        self.input_size_multiple = self.gan.input_size_multiple
        self.predict_direction, self.predict_load = self.gan.predict_direction, self.gan.predict_load
        self.predict_samples, self.run_app = self.gan.predict_samples, self.gan.run_app

    def predict_images(self, img, size: tuple[int, int], orig: tuple[int, int], opts) -> dict[str, list]:
        from ganforge.imageio import tensor_to_image

        x = self.gan.predict_tensor(img, size).to(self.gan.device)
        return {suffix: [tensor_to_image(o, orig) for o in out] for suffix, out in self.gan.predict_outputs(x, opts).items()}


def load_model(cfg: Mapping):
    """The checkpoint's GAN (ckpt_path=) or an ONNX export (model=), and the report's name for it."""
    if cfg.get("model_path") and cfg.get("ckpt_path"):
        raise ConfigError("give ckpt_path=<checkpoint> or model=<file.onnx or export folder>, not both")
    if cfg.get("model_path"):
        from ganforge.runtime import OnnxModel

        return OnnxModel(cfg["model_path"]), str(cfg["model_path"])
    if not cfg.get("ckpt_path"):
        raise ConfigError("ckpt_path=<checkpoint> (or model=<file.onnx or export folder>) is required")
    return CheckpointModel(cfg), str(cfg["ckpt_path"])


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
    out_dir = Path(cfg.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.get("app") or not model.needs_input:
        if cfg.get("app") and not isinstance(model, CheckpointModel):
            raise ConfigError("app= runs from a checkpoint (ckpt_path=); an ONNX export writes samples (num_samples=, seed=)")
        written = model.run_app(cfg, out_dir) if cfg.get("app") else model.predict_samples(cfg, out_dir)
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
