"""onnxruntime vs PyTorch inference on CPU at 256 px, batch 1, in images/s (docs/benchmarks.md).

`python bench/export_throughput.py [iters]`: the reference-size generators (pix2pix unet_256 in eval mode,
CycleGAN resnet_9blocks), random weights, exported as ganforge-export does (TorchScript-based
torch.onnx.export, opset 17, dynamic batch/H/W); both runtimes on all the machine's cores. Prints a table.
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from ganforge.nets import ResnetGenerator, UnetGenerator
from ganforge.nets.export import ImageToImage, eval_copy


def rate(fn, iters: int) -> float:
    for _ in range(2):
        fn()
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    return iters / (time.perf_counter() - t)


def main(iters: int = 10) -> None:
    torch.manual_seed(0)
    x = torch.rand(1, 3, 256, 256) * 2 - 1
    rows = []
    for name, net in (("pix2pix unet_256 (eval)", UnetGenerator(num_downs=8)), ("CycleGAN resnet_9blocks", ResnetGenerator())):
        module = ImageToImage(eval_copy(net)).eval()
        with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            path = Path(d) / "g.onnx"
            torch.onnx.export(
                module,
                (x,),
                str(path),
                dynamo=False,
                opset_version=17,
                input_names=["image"],
                output_names=["output"],
                dynamic_axes={"image": {0: "batch", 2: "h", 3: "w"}},
            )
            sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        xn = x.numpy()
        with torch.inference_mode():
            r_torch = rate(partial(module, x), iters)
        r_ort = rate(partial(sess.run, None, {"image": xn}), iters)
        diff = float(np.abs(sess.run(None, {"image": xn})[0] - module(x).detach().numpy()).max())
        rows.append((name, r_torch, r_ort, diff))
    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}, {torch.get_num_threads()} threads, {iters} iterations")
    print("| generator (256 px, batch 1, fp32) | PyTorch (images/s) | onnxruntime (images/s) | ratio | max abs diff |")
    print("|---|---|---|---|---|")
    for name, a, b, diff in rows:
        print(f"| {name} | {a:.2f} | {b:.2f} | {b / a:.2f}x | {diff:.1e} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
