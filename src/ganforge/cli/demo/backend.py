"""What the demo's pages call: one trained model behind the predict code path.

`CheckpointBackend` loads a model as ganforge-predict does (`predict.TorchModel`, i.e. `ganforge.load`: a checkpoint, a
model folder or a Hub id) and runs every request through the functions `ganforge-predict` runs: `predict.load_input` +
`predict.translate_image` for an input image, `write_samples` for a model that samples from noise and `run_app` for a
SinGAN application,
with the predict options (ganforge/conf/predict.yaml) a request overrides. The pages (`demo.ui`) read
only the attributes and methods below, so another backend with the same surface (e.g. one running an
exported model) serves the same pages.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from ganforge.cli.predict import TorchModel, compile_errors, load_input, translate_image
from ganforge.utils.errors import ConfigError
from ganforge.utils.imageio import load_image

#: what a request may set: the predict options the pages expose
REQUEST_OPTIONS = (
    "direction",
    "reconstruct",
    "n_samples",
    "seed",
    "num_samples",
    "interp",
    "interp_steps",
    "app",
    "scale_h",
    "scale_w",
    "gen_start_scale",
    "ref",
    "mask",
    "inject_scale",
    "sifid",
    "z_from",
    "style",
    "grid",
)


class CheckpointBackend:
    """A ganforge checkpoint, loaded once, answering the demo's requests one at a time."""

    def __init__(self, opts: Mapping, work_dir: str | Path):
        """`opts`: the predict options (ckpt_path, use_ema, ...) every request starts from."""
        self.predictor = TorchModel(opts)
        self.model = self.predictor.model
        # precision= as ganforge-predict applies it (compile= too, in TorchModel); autocast is entered per request, in its thread
        self._precision = self.predictor.precision_context(opts)
        self.name = f"{self.model.model_name} ({Path(opts['ckpt_path']).name})"
        # a plain dict: a request's strings are never read as ${...} interpolations
        self.base_opts: dict[str, Any] = (
            cast(dict, OmegaConf.to_container(opts, resolve=True)) if isinstance(opts, DictConfig) else dict(opts)
        )
        self.work_dir = Path(work_dir)
        self._requests = itertools.count()
        self._lock = threading.Lock()  # one request at a time: the model and the torch streams are shared

    # ----- what the model is, for the pages ---------------------------------------------------------
    @property
    def directions(self) -> tuple[str, ...]:
        return self.predictor.directions

    @property
    def needs_input(self) -> bool:
        return self.predictor.needs_input

    @property
    def apps(self) -> tuple[str, ...]:
        return tuple(self.predictor.apps)

    @property
    def style_option(self) -> str | None:
        return self.predictor.style_option

    def label_classes(self) -> list[tuple[str, tuple[int, int, int]]] | None:
        return self.predictor.label_classes()

    @property
    def input_channels(self) -> int:
        return self.predictor.input_channels(self.base_opts)

    @property
    def train_size(self) -> tuple[int, int]:
        """(w, h) of the training crop: the size of a blank canvas."""
        size = getattr(self.model, "train_size", None)
        if isinstance(size, tuple):  # SPADE: its generator's geometry
            return size
        side = int(getattr(self.model.spec, "train_size", 256))
        return side, side

    def options(self, **request: Any) -> dict[str, Any]:
        """The predict options for one request: predict.yaml's values, those of the command line, and the request's."""
        unknown = sorted(set(request) - set(REQUEST_OPTIONS))
        if unknown:
            raise ConfigError(f"unknown demo request options {unknown}; known: {', '.join(REQUEST_OPTIONS)}")
        return {**self.base_opts, **request}

    # ----- requests ---------------------------------------------------------------------------------
    def translate(self, path: str | Path, **request: Any) -> dict[str, list[Image.Image]]:
        """The outputs for an image file, as ganforge-predict computes them: {file-name suffix: frames}."""
        opts = self.options(**request)
        with self._serving():
            self.predictor.predict_direction(opts)
            return translate_image(self.predictor, load_input(self.predictor, Path(path), opts), opts)

    def translate_label_ids(self, ids: np.ndarray, **request: Any) -> dict[str, list[Image.Image]]:
        """The outputs for a painted label map of class ids (indices of `label_classes`)."""
        opts = self.options(**request)
        with self._serving():
            return translate_image(self.predictor, Image.fromarray(np.asarray(ids, dtype=np.int32), "I"), opts)

    def samples(self, **request: Any) -> list[Path]:
        """The files `write_samples` writes (a model without inputs), in a fresh folder under `work_dir`."""
        opts = self.options(**request)
        with self._serving():
            return [Path(p) for p in self.predictor.write_samples(opts, self._request_dir("samples"))]

    def run_app(self, app: str, **request: Any) -> list[Path]:
        """The files `run_app` writes for one of `apps`, in a fresh folder under `work_dir`."""
        if app not in self.apps:
            raise ConfigError(f"app={app!r} is not one of this model's apps ({', '.join(self.apps) or 'none'})")
        opts = self.options(app=app, **request)
        with self._serving():
            return [Path(p) for p in self.predictor.run_app(opts, self._request_dir(app))]

    @contextlib.contextmanager
    def _serving(self) -> Iterator[None]:
        """One request at a time (the model and the torch streams are shared), in the run's precision."""
        with self._lock, self._precision, compile_errors(self.predictor.compiled):
            yield

    def _request_dir(self, what: str) -> Path:
        out = self.work_dir / f"{next(self._requests):04d}_{what}"
        out.mkdir(parents=True, exist_ok=True)
        return out


def read_images(paths: list[Path]) -> list[tuple[Image.Image, str]]:
    """(image, file name) for the images among written files (reports such as sifid.json are skipped)."""
    return [(load_image(p), p.name) for p in paths if p.suffix.lower() == ".png"]
