"""`ganforge-demo ckpt_path=<ckpt> [port=7860] [host=127.0.0.1]`: a local web app for a trained model.

The page follows the model's GAN contract (`demo.ui`); every request runs through the code of
ganforge-predict (`demo.backend`). It runs offline and on CPU: Gradio's analytics are off, the theme
uses system fonts, nothing is fetched from the network, and the server listens on 127.0.0.1 unless
`host=` says otherwise. The files SinGAN and DCGAN requests write are kept under `output=`; the page
gets images, so nothing there is served.

What a web page elsewhere could make a browser send is refused: a Host header other than the demo's
own (DNS rebinding; any host with host=0.0.0.0), and a cross-origin POST (an upload or a request from
another site's page). Uploads are bounded in bytes (`max_file_size`, by Gradio, before they are stored)
and in pixels (`max_pixels`, from the header, before anything decodes them: `demo.ui`).
Needs the `demo` extra: `pip install -e ".[demo]"`.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import socket
from pathlib import Path
from urllib.parse import urlsplit

from omegaconf import DictConfig

from ganforge.cli.app import entry_point
from ganforge.utils.errors import ConfigError

# Before gradio is imported: no usage statistics, no Hugging Face telemetry.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def check_port_free(host: str, port: int) -> None:
    """Stop with one sentence when `port` is taken (Gradio's own error is a traceback that says little)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        # As uvicorn binds: a port left in TIME_WAIT by a server that just stopped is free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"port {port} on {host} is already in use (another ganforge-demo, or another server?); "
                    f"stop that one, or give another port: port={port + 1}"
                ) from None
            raise ConfigError(f"cannot listen on {host}:{port} ({e.strerror}); give another host= or port=") from None


#: host= values that listen on every interface: any Host header is then a name of this machine
ALL_INTERFACES = ("0.0.0.0", "::")
#: a size in bytes with its unit, as max_file_size= takes it
FILE_SIZE = re.compile(r"(\d+)\s*(b|kb|mb|gb)", re.IGNORECASE)
UNITS = {"b": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30}


def upload_limits(cfg: DictConfig) -> tuple[int, int]:
    """(max_file_size in bytes, max_pixels) of conf/demo.yaml, checked before the model loads."""
    size, pixels = cfg.max_file_size, cfg.max_pixels
    match = FILE_SIZE.fullmatch(str(size).strip())
    if match is None and not (isinstance(size, int) and size > 0):
        raise ConfigError(f"max_file_size={size} is not a size; give bytes or a number with a unit (b, kb, mb, gb): max_file_size=20mb")
    if not isinstance(pixels, int) or isinstance(pixels, bool) or pixels < 1:
        raise ConfigError(f"max_pixels={pixels} must be a positive number of pixels (width x height): max_pixels=16777216")
    return (int(match[1]) * UNITS[match[2].lower()] if match else size), pixels


class SameOriginWrites:
    """ASGI middleware: a request that is not a read (POST, PUT, PATCH, DELETE) whose Origin header names
    another site gets 403. A browser sends Origin with such requests, so another site's page cannot upload
    to the demo or run it; Gradio's CORS middleware only hides the answer from that page, after the upload
    is stored. Clients that are not browsers (gradio_client, curl) send no Origin and are not concerned."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        # starlette comes with gradio (the demo extra), which this module must not need to be imported
        from starlette.datastructures import Headers
        from starlette.responses import PlainTextResponse

        if scope["type"] == "http" and scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            headers = Headers(scope=scope)
            origin = headers.get("origin")
            # "null" (a sandboxed frame, a local file) has no host: refused as well
            if origin is not None and urlsplit(origin).netloc.lower() != headers.get("host", "").lower():
                await PlainTextResponse("cross-origin request refused", status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def request_guards(host: str) -> list:
    """The middleware between the network and Gradio's app: the Host check (Starlette's TrustedHostMiddleware:
    a page of another site whose name is made to resolve to this machine sends its own name, and gets 400)
    and `SameOriginWrites`. With host=0.0.0.0 every name of the machine is valid, so the Host check is off."""
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    hosts = ["*"] if host in ALL_INTERFACES else sorted({host, "localhost", "127.0.0.1"})
    return [Middleware(TrustedHostMiddleware, allowed_hosts=hosts, www_redirect=False), Middleware(SameOriginWrites)]


def create(cfg: DictConfig):
    """(the Gradio app, its backend) for `cfg` (conf/demo.yaml), not yet launched."""
    _, max_pixels = upload_limits(cfg)
    try:
        from ganforge.cli.demo.backend import CheckpointBackend
        from ganforge.cli.demo.ui import build_app
    except ModuleNotFoundError as e:
        raise ConfigError(f'ganforge-demo needs {e.name}: pip install -e ".[demo]" (or pip install gradio)') from None
    work_dir = Path(cfg.output)
    work_dir.mkdir(parents=True, exist_ok=True)
    backend = CheckpointBackend(cfg, work_dir)
    return build_app(backend, max_pixels=max_pixels), backend


def launch(blocks, host: str, port: int, max_file_size: int, block: bool = True) -> str:
    """Serve `blocks` on host:port behind `request_guards`, refusing uploads over `max_file_size` bytes;
    the local URL. No folder is served: the pages return images, which Gradio keeps in its own cache.
    Gradio's own start-up lines are silenced (`main` prints the address; there is no public link).
    `block=False` returns at once (the caller closes the app)."""
    from ganforge.cli.demo.ui import THEME

    check_port_free(host, port)
    try:
        blocks.queue(default_concurrency_limit=1).launch(
            server_name=host,
            server_port=port,
            share=False,
            inbrowser=False,
            ssr_mode=False,
            mcp_server=False,
            prevent_thread_lock=not block,
            quiet=True,
            theme=THEME,
            show_error=True,
            max_file_size=max_file_size,
            app_kwargs={"middleware": request_guards(host)},
        )
    except OSError as e:  # taken between the check and Gradio's own bind
        raise ConfigError(f"cannot serve on {host}:{port} ({e}); give another port=") from None
    return f"http://{host}:{port}/"


@entry_point("demo")
def main(cfg: DictConfig) -> None:
    # before the model loads: a taken port or a bad limit is known at once
    check_port_free(str(cfg.host), int(cfg.port))
    max_file_size, _ = upload_limits(cfg)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's requests to itself at start-up
    blocks, backend = create(cfg)
    print(f"ganforge demo of {backend.name} on http://{cfg.host}:{int(cfg.port)}/ (Ctrl+C stops it)")
    launch(blocks, str(cfg.host), int(cfg.port), max_file_size, block=True)
