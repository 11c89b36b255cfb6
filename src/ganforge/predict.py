"""`ganforge-predict ckpt_path=<ckpt> input=<image or folder> output=<folder>`: translate images.

Every input is translated and saved as `<output>/<stem>.png` at the input's original size. A file
that cannot be read goes into `<output>/predict_report.json` (and the printed report) instead of
stopping the run; each output is written atomically, so nothing already written is lost.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import hydra
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from PIL import Image
from rich.console import Console
from rich.table import Table

from ganforge.cli import CONF_DIR, user_errors_exit
from ganforge.data.images import IMG_EXTENSIONS, load_image
from ganforge.data.transforms import fit_size
from ganforge.errors import CheckpointError, ConfigError, GanforgeError
from ganforge.gans.base import check_state_dict_matches

log = logging.getLogger("ganforge.predict")


def load_model(ckpt_path: str | Path, map_location: str = "cpu"):
    """Rebuild a GAN module from the config stored in its checkpoint and load its weights."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise ConfigError(f"ckpt_path={path} does not exist; give a .ckpt written by train.py")
    try:
        # Lightning checkpoints pickle the optimizer factories in their hyper-parameters.
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not a checkpoint"
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(e).__name__}: {e})") from e
    meta = ckpt.get("ganforge") if isinstance(ckpt, dict) else None
    if not meta or not meta.get("config"):
        raise CheckpointError(f"{path} was not written by ganforge's train.py (it has no stored run config)")
    cfg = meta["config"]
    model = hydra.utils.instantiate(cfg["model"])
    check_state_dict_matches(model.state_dict(), ckpt["state_dict"], where=type(model).__name__)
    model.load_state_dict(ckpt["state_dict"])
    model.run_config = cfg
    return model, cfg


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


def to_tensor(img: Image.Image, size: tuple[int, int]) -> torch.Tensor:
    img = img.resize(size, Image.BICUBIC)
    t = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(img.size[1], img.size[0], -1)
    return t.permute(2, 0, 1).float().div(127.5).sub(1).unsqueeze(0)


def to_image(t: torch.Tensor, size: tuple[int, int]) -> Image.Image:
    t = F.interpolate(t.float(), size=(size[1], size[0]), mode="bicubic", align_corners=False)
    arr = ((t[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)


def save_atomic(img: Image.Image, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    img.save(tmp, format="PNG")
    os.replace(tmp, path)


def save_frames(frames: list[Image.Image], target: Path) -> None:
    """One image, or for several frames (a latent walk) a strip beside an animated GIF."""
    if len(frames) == 1:
        save_atomic(frames[0], target)
        return
    w, h = frames[0].size
    strip = Image.new(frames[0].mode, (w * len(frames), h))
    for i, frame in enumerate(frames):
        strip.paste(frame, (i * w, 0))
    save_atomic(strip, target)
    frames[0].save(target.with_suffix(".gif"), save_all=True, append_images=frames[1:], duration=200, loop=0)


def predict(cfg: DictConfig) -> dict:
    """Translate every input image; models add outputs through `predict_outputs` and whole
    applications (SinGAN's `app=...`) through `run_app`."""
    model, run_cfg = load_model(cfg.ckpt_path)
    if cfg.get("test_dropout") is not None:
        model.hparams.test_dropout = bool(cfg.test_dropout)
    out_dir = Path(cfg.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.get("app"):
        report = {"checkpoint": str(cfg.ckpt_path), "written": [str(p) for p in model.run_app(cfg, out_dir)], "failed": {}}
        _print_report(report, out_dir)
        return report

    data_cfg = run_cfg["data"]
    in_nc = model.predict_input_nc(cfg)
    multiple = getattr(model, "input_size_multiple", 1)
    files = list_inputs(cfg.input)
    written, failed = [], {}
    for path in files:
        try:
            img = load_image(path, channels=in_nc)
        except GanforgeError as e:
            failed[str(path)] = str(e)
            log.warning("skipped %s", e)
            continue
        if cfg.get("pair"):
            w, h = img.size
            if w % 2:
                failed[str(path)] = f"{path}: an A|B pair must have an even width, got {w}"
                continue
            halves = (img.crop((0, 0, w // 2, h)), img.crop((w // 2, 0, w, h)))
            img = halves[1] if model.predict_direction(cfg) == "BtoA" else halves[0]
        orig = img.size
        x = to_tensor(img, network_size(cfg.get("size"), orig, int(data_cfg.get("crop_size", 256)), multiple))
        for suffix, out in model.predict_outputs(x.to(model.device), cfg).items():
            target = out_dir / f"{path.stem}{suffix}.png"
            save_frames([to_image(o[None], orig) for o in out], target)
            written.append(str(target))

    report = {"checkpoint": str(cfg.ckpt_path), "written": written, "failed": failed}
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


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="predict")
@user_errors_exit
def _main(cfg: DictConfig) -> None:
    report = predict(cfg)
    if report["failed"]:
        sys.exit(3)


def main() -> None:
    _main()
