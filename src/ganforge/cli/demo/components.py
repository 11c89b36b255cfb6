"""The demo's image inputs, which Gradio decodes nothing of before ganforge has checked it.

Gradio's own Image decodes an upload, whatever its size, and converts it to 8-bit RGB before the
request sees it; its ImageEditor decodes the canvas it is sent. Here `ImageUpload` hands the request
the file that was sent, which ganforge's loader reads as ganforge-predict reads a file, and `Canvas`
lets Gradio decode only images that passed ganforge's header checks. Both are Gradio templates (the
page draws Gradio's own Image and ImageEditor) and refuse an image over the demo's `max_pixels` from
its header. Their errors are ganforge's one-line messages, naming an uploaded file by its own name.

Gradio writes a typing stub (components.pyi) next to a module that defines components; git ignores it.
"""

from __future__ import annotations

import re
from pathlib import Path

import gradio as gr
from gradio.utils import get_upload_folder

from ganforge.utils.errors import GanforgeError, ImageFileError
from ganforge.utils.imageio import MemoryFile, read_header


def without_upload_folder(message: str) -> str:
    """`message` with each uploaded file named by its own name, not by where the server keeps it
    (Gradio stores an upload as <upload folder>/<hash>/<its name>)."""
    return re.sub(re.escape(get_upload_folder()) + r"[/\\][^/\\]+[/\\]", "", message)


def shown(e: GanforgeError) -> str:
    """ganforge's message for the page. An image file's fix is left out: it speaks of files on disk (skip
    them, raise PIL's limit), and the page's user can only send another."""
    if isinstance(e, ImageFileError) and e.problem:
        return without_upload_folder(f"{e.path}: {e.problem}")
    return without_upload_folder(str(e))


def error(message: str) -> gr.Error:
    """Gradio's error toast, without a traceback in the server's log (it is the user's to fix)."""
    return gr.Error(message, print_exception=False)


def check_image(file: str | Path | MemoryFile, max_pixels: int) -> None:
    """What ganforge checks of an image file from its header alone (an image PIL reads, complete, under
    PIL's bomb limit), and the demo's own pixel limit: a request's image passes it before any decoding."""
    w, h = read_header(file)
    if w * h > max_pixels:
        raise ImageFileError(
            file,
            f"{w}x{h} = {w * h} pixels is over this demo's limit of {max_pixels} pixels "
            "(ganforge-demo max_pixels=); refused before decoding",
        )


class ImageUpload(gr.Image):
    """An uploaded image, handed to the request as the file that was sent once it passed `check_image`."""

    is_template = True
    max_pixels: int  # set by `image_upload`: Gradio builds a component's page config from its constructor's arguments

    def preprocess(self, payload) -> str | None:
        if payload is None:
            return None
        if payload.path is None:
            raise error(f"{self.label}: send the image as a file")
        try:
            check_image(payload.path, self.max_pixels)
        except GanforgeError as e:
            raise error(shown(e)) from None
        return payload.path


class Canvas(gr.ImageEditor):
    """Gradio's image editor, whose images pass `check_image` before Gradio decodes them: from the page they
    arrive as PNG blobs of the canvas, from a client as files."""

    is_template = True
    max_pixels: int  # set by `canvas`, as ImageUpload's

    def preprocess(self, payload):
        if payload is None:
            return None
        blobs = self.blob_storage.get(payload.id) if payload.id is not None else None
        if blobs is not None:
            images = [MemoryFile("canvas.png", b) for b in (blobs.background, *blobs.layers, blobs.composite) if b]
        else:
            images = [f.path for f in (payload.background, *payload.layers, payload.composite) if f is not None]
        try:
            for image in images:
                check_image(image, self.max_pixels)
            return super().preprocess(payload)
        except GanforgeError as e:
            message = shown(e)
        except Exception as e:  # what PIL finds only in decoding, past a sound header
            message = without_upload_folder(f"{self.label}: the canvas cannot be read ({type(e).__name__}: {e})")
        self.blob_storage.pop(payload.id, None)  # Gradio drops a canvas's blobs once it is read; a refused one's too
        raise error(message)


def image_upload(max_pixels: int, **kwargs) -> ImageUpload:
    upload = ImageUpload(**{"type": "filepath", "image_mode": None, "sources": ("upload", "clipboard"), **kwargs})
    upload.max_pixels = max_pixels
    return upload


def canvas(max_pixels: int, **kwargs) -> Canvas:
    editor = Canvas(**kwargs)
    editor.max_pixels = max_pixels
    return editor
