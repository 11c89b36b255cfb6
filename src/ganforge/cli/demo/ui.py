"""The demo's pages (Gradio Blocks), one per kind of model, chosen from the GAN contract's flags:

* `apps` (SinGAN): random samples at a chosen size, and paint2image / editing / harmonization with an
  uploaded image (that can be painted on) and a mask;
* not `needs_input` (DCGAN): a grid of samples by seed, and the interpolation between two seeds;
* `label_classes()` (SPADE): a canvas painted with the dataset's class colours, or an uploaded label map;
* otherwise an image translator: upload or draw the input; a direction choice and the cycle
  reconstruction for models with two `directions` (CycleGAN, DiscoGAN, DualGAN); a style seed, n samples
  side by side and "z from a style image" for models with a `style_option` (BicycleGAN, SPADE's VAE).

Every button calls one function of the backend (`demo.backend`), named by `api_name` so that Gradio's
client (`gradio_client.Client(url).predict(..., api_name="/translate")`) calls it as the page does.

Images come in through `demo.components`: an upload as the file that was sent, a canvas decoded by
Gradio only after ganforge's header checks; both refuse an image over `max_pixels` from its header.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import gradio as gr
import numpy as np
from PIL import Image

from ganforge.cli.demo.backend import CheckpointBackend, read_images
from ganforge.cli.demo.components import canvas, error, image_upload, shown
from ganforge.utils.errors import GanforgeError

INJECTION_APPS = {
    "paint2image": "paint (a rough painting of the training image's colours)",
    "editing": "edit (a pasted/edited region; give its mask)",
    "harmonization": "harmonize (a pasted object; give its mask)",
}
#: the brush colours of a drawn translation input (edges, sketches, simple label colours)
SKETCH_COLOURS: list[str | tuple[str, float]] = ["#000000", "#ffffff", "#808080", "#ff0000", "#00ff00", "#0000ff", "#ffff00", "#00ffff"]
#: system fonts only: the default theme would fetch Google Fonts, and the demo runs offline
THEME = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
#: Gradio's cache of uploads and served outputs: every 10 minutes the files older than an hour go (all at shutdown)
CACHE_CLEANUP = (600, 3600)


def user_errors(fn: Callable) -> Callable:
    """A GanforgeError (a bad option or image) as Gradio's error toast, with ganforge's own message."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except GanforgeError as e:
            raise error(shown(e)) from None

    return wrapper


def hex_colour(rgb) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def blank(size: tuple[int, int], rgb=(255, 255, 255)) -> Image.Image:
    return Image.new("RGB", size, tuple(rgb))


def gallery_items(outputs: dict[str, list[Image.Image]]) -> list[tuple[Image.Image, str]]:
    """Every output frame, captioned by its predict file-name suffix."""
    return [
        (frame, (suffix.lstrip("_") or "output") + (f" {i}" if len(frames) > 1 else ""))
        for suffix, frames in outputs.items()
        for i, frame in enumerate(frames)
    ]


def show_if_several(items) -> gr.Gallery:
    """The gallery of all outputs, shown only when there is more than the one output image."""
    return gr.Gallery(visible=len(items or []) > 1)


def composite(value, what: str):
    """The flattened canvas of an ImageEditor value; a clear message when nothing is there."""
    img = value.get("composite") if isinstance(value, dict) else value
    if img is None:
        raise error(f"{what}: upload an image or draw on the canvas first")
    return img


def ids_from_colours(rgb: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Class ids of a painted canvas (H, W, 3): each pixel's nearest palette colour (K, 3), so the
    brush's anti-aliased edges take a neighbouring class instead of failing."""
    codes = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    uniq, inverse = np.unique(codes, return_inverse=True)
    colours = np.stack([(uniq >> 16) & 255, (uniq >> 8) & 255, uniq & 255], 1).astype(np.float32)
    nearest = ((colours[:, None, :] - palette[None].astype(np.float32)) ** 2).sum(-1).argmin(1)
    return nearest[inverse].reshape(codes.shape)


# ----- image translation (pix2pix, BicycleGAN, the CycleGAN family) ------------------------------------
def translation_page(backend: CheckpointBackend, max_pixels: int) -> None:
    two_way, style = len(backend.directions) > 1, backend.style_option
    with gr.Row():
        with gr.Column():
            source = image_upload(max_pixels, label="input image (read as ganforge-predict reads the file)", elem_id="input-image")
            drawing = canvas(
                max_pixels,
                value={"background": blank(backend.train_size), "layers": [], "composite": None},
                type="filepath",
                image_mode="RGB",
                format="png",
                sources=(),
                label="or draw the input (without an image above)",
                brush=gr.Brush(colors=SKETCH_COLOURS, default_color="#000000", default_size=3),
                elem_id="input-canvas",
            )
            controls: dict[str, gr.components.Component] = {}
            if two_way:
                controls["direction"] = gr.Radio(list(backend.directions), value=backend.directions[0], label="direction")
                controls["reconstruct"] = gr.Checkbox(False, label="also show the cycle reconstruction")
            if style:
                controls.update(
                    style_controls(style, "style seed (z ~ N(0, 1) drawn with it)", "z from a style image (optional)", max_pixels)
                )
            button = gr.Button("Translate", variant="primary", elem_id="run")
        with gr.Column():
            output = gr.Image(type="pil", format="png", label="output", elem_id="output-image", interactive=False)
            outputs = gr.Gallery(format="png", label="all outputs", columns=4, height="auto", visible=False, elem_id="outputs")

    names = list(controls)

    @user_errors
    def translate(image, drawn, *values):
        request = dict(zip(names, values))
        if style and request.get(style):
            request["n_samples"] = 1  # one code from the style image
        if "n_samples" in request:
            request["n_samples"] = int(request["n_samples"])
            request["seed"] = int(request["seed"])
        out = backend.translate(image or composite(drawn, "input"), **request)
        items = gallery_items(out)
        return items[0][0], items

    button.click(translate, [source, drawing, *controls.values()], [output, outputs], api_name="translate").then(
        show_if_several, outputs, outputs, api_name=False
    )


def style_controls(style: str, seed_label: str, image_label: str, max_pixels: int) -> dict:
    """A multimodal model's controls: a style seed, how many samples, and the `style` image option."""
    return {
        "seed": gr.Slider(0, 999, value=0, step=1, label=seed_label),
        "n_samples": gr.Slider(1, 8, value=1, step=1, label="samples side by side"),
        style: image_upload(max_pixels, label=image_label),
    }


# ----- label maps (SPADE) -------------------------------------------------------------------------------
def label_page(backend: CheckpointBackend, max_pixels: int) -> None:
    classes = backend.label_classes()
    assert classes is not None, "the label-map page is for label-map models"
    palette = np.array([c for _, c in classes], dtype=np.uint8)
    choices = [(f"{i}: {name}", i) for i, (name, _) in enumerate(classes)]
    style = backend.style_option

    def brush(i: int) -> gr.Brush:
        return gr.Brush(colors=[hex_colour(classes[i][1])], default_color=hex_colour(classes[i][1]), color_mode="fixed", default_size=12)

    with gr.Row():
        with gr.Column():
            paint = gr.Dropdown(choices, value=0, label="class to paint", elem_id="paint-class")
            painted = canvas(
                max_pixels,
                value={"background": blank(backend.train_size, classes[0][1]), "layers": [], "composite": None},
                type="numpy",
                image_mode="RGB",
                format="png",
                sources=(),
                label="label map: paint with the class colours",
                brush=brush(0),
                elem_id="label-canvas",
            )
            fill = gr.Button("Fill the canvas with this class")
            upload = image_upload(max_pixels, label="or a label-map file (class ids, as ganforge-predict reads them)", sources=("upload",))
            controls = style_controls(style, "style seed", "style image (optional)", max_pixels) if style else {}
            button = gr.Button("Synthesize", variant="primary", elem_id="run")
        with gr.Column():
            output = gr.Image(type="pil", format="png", label="output", elem_id="output-image", interactive=False)
            outputs = gr.Gallery(format="png", label="all outputs", columns=4, height="auto", visible=False, elem_id="outputs")
            gr.HTML(legend(classes), label="classes")

    paint.change(lambda i: gr.ImageEditor(brush=brush(int(i))), paint, painted, api_name=False)  # type: ignore[arg-type]  # gradio still takes False (a private endpoint); its annotation says str | None
    fill.click(
        lambda i: {"background": blank(backend.train_size, classes[int(i)][1]), "layers": [], "composite": None},
        paint,
        painted,
        api_name=False,  # type: ignore[arg-type]  # gradio still takes False (a private endpoint); its annotation says str | None
    )
    names = list(controls)

    @user_errors
    def synthesize(label_file, editor, *values):
        request = dict(zip(names, values))
        if style and request.get(style):
            request["n_samples"] = 1
        if "n_samples" in request:
            request["n_samples"], request["seed"] = int(request["n_samples"]), int(request["seed"])
        if label_file:
            out = backend.translate(label_file, **request)
        else:
            rgb = np.asarray(composite(editor, "label map"))[..., :3]
            out = backend.translate_label_ids(ids_from_colours(rgb, palette), **request)
        items = gallery_items(out)
        return items[0][0], items

    button.click(synthesize, [upload, painted, *controls.values()], [output, outputs], api_name="synthesize").then(
        show_if_several, outputs, outputs, api_name=False
    )


def legend(classes: list[tuple[str, tuple[int, int, int]]]) -> str:
    swatch = (
        '<span style="display:inline-flex;align-items:center;margin:2px 8px 2px 0;font-size:12px">'
        '<span style="width:12px;height:12px;background:{c};border:1px solid #888;margin-right:4px"></span>'
        "{i}: {n}</span>"
    )
    return "<div>" + "".join(swatch.format(c=hex_colour(rgb), i=i, n=name) for i, (name, rgb) in enumerate(classes)) + "</div>"


# ----- samples from noise (DCGAN) ---------------------------------------------------------------------
def samples_page(backend: CheckpointBackend) -> None:
    with gr.Row():
        with gr.Column():
            seed = gr.Number(0, precision=0, label="seed")
            count = gr.Slider(1, 64, value=16, step=1, label="samples")
            sample = gr.Button("Sample", variant="primary", elem_id="run")
            seed2 = gr.Number(1, precision=0, label="interpolate from the seed above to this seed")
            steps = gr.Slider(2, 16, value=8, step=1, label="interpolation steps")
            interpolate = gr.Button("Interpolate")
        with gr.Column():
            grid = gr.Image(type="pil", format="png", label="samples", elem_id="output-image", interactive=False)
            linear = gr.Image(type="pil", format="png", label="linear interpolation", interactive=False)
            slerp = gr.Image(type="pil", format="png", label="spherical (slerp) interpolation", interactive=False)

    @user_errors
    def draw(seed_value, n):
        files = backend.samples(seed=int(seed_value), num_samples=int(n), grid=True)
        return read_images([p for p in files if p.name == "grid.png"])[0][0]

    @user_errors
    def walk(seed_value, seed_end, n_steps):
        files = backend.samples(seed=int(seed_value), num_samples=1, grid=False, interp=int(seed_end), interp_steps=int(n_steps))
        images = {name: img for img, name in read_images(files)}
        return images["interp_linear.png"], images["interp_slerp.png"]

    sample.click(draw, [seed, count], grid, api_name="samples")
    interpolate.click(walk, [seed, seed2, steps], [linear, slerp], api_name="interpolate")


# ----- SinGAN's applications ---------------------------------------------------------------------------
def apps_page(backend: CheckpointBackend, max_pixels: int) -> None:
    injections = [a for a in INJECTION_APPS if a in backend.apps]
    if "samples" in backend.apps:
        with gr.Tab("Random samples"):
            with gr.Row():
                with gr.Column():
                    scale_h = gr.Slider(0.25, 4.0, value=1.0, step=0.25, label="height / training height")
                    scale_w = gr.Slider(0.25, 4.0, value=1.0, step=0.25, label="width / training width")
                    count = gr.Slider(1, 16, value=4, step=1, label="samples")
                    start = gr.Number(0, precision=0, label="start at scale (0: the coarsest)")
                    seed = gr.Number(0, precision=0, label="seed")
                    button = gr.Button("Sample", variant="primary", elem_id="run")
                gallery = gr.Gallery(format="png", label="samples", columns=4, elem_id="outputs")

            @user_errors
            def sample(h, w, n, start_scale, seed_value):
                files = backend.run_app(
                    "samples",
                    scale_h=float(h),
                    scale_w=float(w),
                    num_samples=int(n),
                    gen_start_scale=int(start_scale),
                    seed=int(seed_value),
                    sifid=False,
                )
                return read_images(files)

            button.click(sample, [scale_h, scale_w, count, start, seed], gallery, api_name="singan_samples")
    if injections:
        with gr.Tab("Paint, edit, harmonize"):
            with gr.Row():
                with gr.Column():
                    app = gr.Radio([(INJECTION_APPS[a], a) for a in injections], value=injections[0], label="application")
                    ref = canvas(
                        max_pixels,
                        type="filepath",
                        image_mode="RGB",
                        format="png",
                        sources=("upload", "clipboard"),
                        label="reference image: upload, and paint on it",
                        brush=gr.Brush(default_size=8, color_mode="defaults"),
                    )
                    mask = image_upload(
                        max_pixels, sources=("upload",), label="mask (editing, harmonization): white where the image was changed"
                    )
                    inject = gr.Number(1, precision=0, label="inject at scale (1: coarse changes, higher: finer)")
                    seed = gr.Number(0, precision=0, label="seed")
                    button = gr.Button("Run", variant="primary")
                gallery = gr.Gallery(format="png", label="outputs", columns=2)

            @user_errors
            def run(app_name, ref_value, mask_path, inject_scale, seed_value):
                files = backend.run_app(
                    app_name,
                    ref=composite(ref_value, "reference image"),
                    mask=mask_path,
                    inject_scale=int(inject_scale),
                    seed=int(seed_value),
                )
                return read_images(files)

            button.click(run, [app, ref, mask, inject, seed], gallery, api_name="singan_inject")


def build_app(backend: CheckpointBackend, max_pixels: int) -> gr.Blocks:
    """The page for this backend's model; an image a request sends may have up to `max_pixels` pixels."""
    with gr.Blocks(title=f"ganforge demo: {backend.name}", analytics_enabled=False, delete_cache=CACHE_CLEANUP) as blocks:
        gr.Markdown(f"## ganforge demo: {backend.name}")
        if backend.apps:
            apps_page(backend, max_pixels)
        elif not backend.needs_input:
            samples_page(backend)
        elif backend.label_classes() is not None:
            label_page(backend, max_pixels)
        else:
            translation_page(backend, max_pixels)
    return blocks
