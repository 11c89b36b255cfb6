"""Run a training script in this process and print its peak resident memory (VmHWM) at exit.

    OMP_NUM_THREADS=1 python bench/peak_rss.py train.py model=pix2pix data=paired data.root=<A|B folder> ...
    OMP_NUM_THREADS=1 python bench/peak_rss.py <reference checkout>/train.py --dataroot <A|B folder> --model pix2pix ...

The script runs as `__main__` with its own folder first on sys.path, as `python <script>` would run it, so
ganforge and a reference repository are measured the same way, each in a fresh process. VmHWM counts
everything resident (torch's tensors, glibc's retained heap, mapped files), which tracemalloc does not see.
`--trace <file>` also writes VmRSS every 20 ms with the main thread's Python stack, to attribute the peak.
"""

from __future__ import annotations

import atexit
import os
import runpy
import sys
import threading
import time


def vm(key: str) -> float:
    """/proc/self/status's `key` in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(key)


def stack(thread_id: int) -> str:
    frame, names = sys._current_frames().get(thread_id), []
    while frame is not None:
        path = frame.f_code.co_filename.split("site-packages/")[-1].split("/src/")[-1]
        names.append(f"{path}:{frame.f_lineno}:{frame.f_code.co_name}")
        frame = frame.f_back
    return " > ".join(reversed(names))


def trace_to(path: str) -> None:
    main, start = threading.main_thread().ident, time.monotonic()
    out = open(path, "w")  # noqa: SIM115 (written until the process ends)

    def sample() -> None:
        while True:
            out.write(f"{time.monotonic() - start:.2f} {vm('VmRSS'):.0f} | {stack(main)}\n")
            time.sleep(0.02)

    threading.Thread(target=sample, daemon=True).start()
    atexit.register(out.flush)


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["--trace"]:
        trace_to(args[1])
        args = args[2:]
    if not args:
        sys.exit(__doc__)
    atexit.register(lambda: print(f"peak RSS (VmHWM) {vm('VmHWM'):.0f} MiB", file=sys.stderr))
    script = os.path.abspath(args[0])
    sys.argv = args
    sys.path.insert(0, os.path.dirname(script))
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
