"""`ganforge-demo ckpt_path=<ckpt> [port=7860] [host=127.0.0.1]`: a local web app for a trained model.

The page follows the model's GAN contract (`demo.ui`); every request runs through the code of
ganforge-predict (`demo.backend`). It runs offline and on CPU: Gradio's analytics are off, the theme
uses system fonts, nothing is fetched from the network, and the server listens on 127.0.0.1 unless
`host=` says otherwise. The files SinGAN and DCGAN requests write are kept under `output=`.
Needs the `demo` extra: `pip install -e ".[demo]"`.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from pathlib import Path

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


def create(cfg: DictConfig):
    """(the Gradio app, its backend) for `cfg` (conf/demo.yaml), not yet launched."""
    try:
        from ganforge.cli.demo.backend import CheckpointBackend
        from ganforge.cli.demo.ui import build_app
    except ModuleNotFoundError as e:
        raise ConfigError(f"ganforge-demo needs {e.name}: pip install -e \".[demo]\" (or pip install gradio)") from None
    work_dir = Path(cfg.output)
    work_dir.mkdir(parents=True, exist_ok=True)
    backend = CheckpointBackend(cfg, work_dir)
    return build_app(backend), backend


def launch(blocks, host: str, port: int, allowed_paths=(), block: bool = True) -> str:
    """Serve `blocks` on host:port (files under `allowed_paths` may be served); the local URL.
    Gradio's own start-up lines are silenced (`main` prints the address; there is no public link).
    `block=False` returns at once (the caller closes the app)."""
    from ganforge.cli.demo.ui import THEME

    check_port_free(host, port)
    try:
        blocks.queue(default_concurrency_limit=1).launch(
            server_name=host, server_port=port, share=False, inbrowser=False, ssr_mode=False, mcp_server=False,
            prevent_thread_lock=not block, quiet=True, theme=THEME, show_error=True,
            allowed_paths=[str(p) for p in allowed_paths],
        )
    except OSError as e:  # taken between the check and Gradio's own bind
        raise ConfigError(f"cannot serve on {host}:{port} ({e}); give another port=") from None
    return f"http://{host}:{port}/"


@entry_point("demo")
def main(cfg: DictConfig) -> None:
    check_port_free(str(cfg.host), int(cfg.port))  # before the model loads: a taken port is known at once
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's requests to itself at start-up
    blocks, backend = create(cfg)
    print(f"ganforge demo of {backend.name} on http://{cfg.host}:{int(cfg.port)}/ (Ctrl+C stops it)")
    launch(blocks, str(cfg.host), int(cfg.port), allowed_paths=[backend.work_dir], block=True)
