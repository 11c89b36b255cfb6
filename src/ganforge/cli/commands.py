"""`ganforge [--version]`: the installed version and the ganforge-* commands.

A console script of its own: the Hydra entry points read every argument as a config override.
"""

from __future__ import annotations

import argparse

from ganforge import __version__

#: [project.scripts] of pyproject.toml, each with what it does (tests/test_package.py keeps the two alike)
COMMANDS = {
    "ganforge-train": "train a GAN (the same as python train.py)",
    "ganforge-predict": "translate or sample images with a checkpoint or an ONNX export",
    "ganforge-eval": "FID, KID, IS, LPIPS, PSNR, SSIM, ... of a checkpoint, into metrics.json",
    "ganforge-export": "ONNX, TorchScript or safetensors files of a checkpoint (ganforge[export])",
    "ganforge-import": "the reference repos' pix2pix, CycleGAN and BicycleGAN weights as a checkpoint",
    "ganforge-prepare": "a dataset as LitData shards (ganforge[shards])",
    "ganforge-demo": "a local web app for a trained model (ganforge[demo])",
}


def command_list() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {what}" for name, what in COMMANDS.items()]
    return "\n".join(["commands (each takes Hydra overrides, key=value; --help shows its config):", *lines])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="ganforge",
        description="Image GANs on PyTorch Lightning + Hydra.",
        epilog=command_list(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ganforge {__version__}")
    parser.parse_args(argv)
    print(f"ganforge {__version__}")
    print(command_list())


if __name__ == "__main__":
    main()
