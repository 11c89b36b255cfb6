"""ganforge against the reference implementations, side by side in one run on this machine (docs/benchmarks.md).

    python bench/vs_reference.py [--models pix2pix,bicyclegan,cyclegan,spade,singan] [--repeats 3] [--steps 5]
        [--warmup 2] [--threads N] [--images 8] [--ref-cache DIR] [--ref-source NAME=PATH ...] [--quick]

Every measurement is a fresh process. Training: the reference's own modules (options, data loader, model) stepped
by a small driver as its train.py steps them, and ganforge's `train.py` with Hydra overrides (run length, the CSV
logger, a timing callback); s/step is the median interval between the ends of consecutive steps after `--warmup`
steps, so the data loader and the per-step bookkeeping of each side count. Inference: the reference's `test.py`
and `ganforge-predict` on the same folder of N 256x256 images: steady images/s is (N - 1) over the time between
the first and the last output file written (start-up, loading and compiling come before the first), and the whole
command's time / N. Order alternates between repeats (ABC, CBA); medians.
The references are cloned at the pinned commits into --ref-cache (default ~/.cache/ganforge/references), from
GitHub or from --ref-source NAME=PATH (a git repository, or for singan a folder of its files; also
GANFORGE_REF_SOURCES="NAME=PATH,..."). Nothing of theirs is edited; the drivers below only call it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
PINNED = {  # name: (upstream, commit)
    "cyclegan": ("https://github.com/junyanz/pytorch-CycleGAN-and-pix2pix", "2a7afba2895d52556dd5dfe07e8555ef657ced6f"),
    "bicyclegan": ("https://github.com/junyanz/BicycleGAN", "40b9d52c27b9831f56c1c7c7a6ddde8bc9149067"),
    "spade": ("https://github.com/NVlabs/SPADE", "fecacc920c1367a038995c45a39c15f6521ca64f"),
    "sync_batchnorm": ("https://github.com/vacancy/Synchronized-BatchNorm-PyTorch", "7553990fb9a917cddd9342e89b6dc12a70573f5b"),
    "singan": ("https://github.com/tamarott/SinGAN", "f3678a0f47805b28bd46726738785ae48425a732"),
}
REF_OF = {"pix2pix": "cyclegan", "cyclegan": "cyclegan", "bicyclegan": "bicyclegan", "spade": "spade", "singan": "singan"}
MODELS = ("pix2pix", "bicyclegan", "cyclegan", "spade", "singan")
SPADE_SIZE = 128  # SPADE at 256 px takes minutes a step on 2 cores; both sides load and crop this size
#: the inference runs: the reference's test.py, then ganforge-predict with these options (bf16 only where native)
PREDICT_SIDES = {
    "reference": [],
    "ganforge": [],
    "ganforge compile": ["compile=true"],
    "ganforge bf16": ["precision=bf16-mixed"],
    "ganforge bf16 compile": ["precision=bf16-mixed", "compile=true"],
}
SINGAN_SCALES = 3  # the coarsest scales of balloons.png (the fine ones take seconds to minutes an iteration)
NOTES = {
    "spade": f"coco_stuff_sample at {SPADE_SIZE} px, no VGG loss, on both sides: the reference's VGGLoss calls .cuda() on CPU too",
    "singan": "Gsteps=1 on both sides: the reference's default 3 stops at its 2nd G step (in-place autograd error)",
}


# ------------------------------------------------------------------ the reference drivers (fresh processes)
def ref_train(model: str, ref: Path, root: str, work: str, warmup: int, steps: int, out: str) -> None:
    """Step the reference's own model over its own data loader, exactly as its train.py does, timing each step."""
    import torch

    sys.path.insert(0, str(ref))
    os.chdir(work)
    ends: dict[int, list[float]] = {}
    need = warmup + steps + 1  # step ends: the first warmup + 1 steps are not timed

    def stamp(group: int = 0) -> bool:
        ends.setdefault(group, []).append(time.perf_counter())
        Path(out).write_text(json.dumps({"threads": torch.get_num_threads(), "ends": ends}))
        return len(ends[group]) >= need

    common = ["--dataroot", root, "--name", "bench", "--checkpoints_dir", work]
    if model == "spade":
        # --no_vgg_loss: its VGGLoss calls .cuda() whatever --gpu_ids says (models/networks/loss.py)
        sys.argv = ["train.py", "--dataset_mode", "coco", "--gpu_ids", "-1", "--no_vgg_loss", "--load_size", str(SPADE_SIZE)]
        sys.argv += ["--crop_size", str(SPADE_SIZE), *common]
        import data
        from options.train_options import TrainOptions
        from trainers.pix2pix_trainer import Pix2PixTrainer

        opt = TrainOptions().parse()
        trainer, loader = Pix2PixTrainer(opt), data.create_dataloader(opt)
        while True:
            for i, batch in enumerate(loader):
                if i % opt.D_steps_per_G == 0:
                    trainer.run_generator_one_step(batch)
                trainer.run_discriminator_one_step(batch)
                if stamp():
                    return
    if model == "singan":
        import matplotlib

        matplotlib.use("Agg")
        import config
        import SinGAN.functions as functions
        import SinGAN.training as training

        opt = config.get_arguments().parse_args(["--not_cuda", "--Gsteps", "1", "--niter", str(need)])
        opt.input_dir, opt.input_name, opt.mode = str(Path(root).parent), Path(root).name, "train"  # main_train.py's
        opt = functions.post_config(opt)
        made = []

        class Done(Exception):
            pass

        class TimedMultiStepLR(torch.optim.lr_scheduler.MultiStepLR):
            """train_single_scale builds D's scheduler, then G's, and steps G's last in every iteration."""

            def __init__(self, *a, **kw):
                super().__init__(*a, **kw)  # (its own first step() runs before it is in `made`)
                made.append(self)

            def step(self, *a, **kw):
                super().step(*a, **kw)
                if made and self is made[-1] and len(made) % 2 == 0 and stamp(len(made) // 2 - 1) and len(made) // 2 == SINGAN_SCALES:
                    raise Done

        torch.optim.lr_scheduler.MultiStepLR = TimedMultiStepLR
        real = functions.read_image(opt)
        functions.adjust_scales2image(real, opt)
        try:
            training.train(opt, [], [], [], [])
        except Done:
            return
    sys.argv = ["train.py", *common, "--direction", "AtoB"]
    sys.argv += {
        "pix2pix": ["--model", "pix2pix"],
        "cyclegan": ["--model", "cycle_gan"],  # the edges2shoes script's settings (scripts/train_edges2shoes.sh):
        "bicyclegan": ["--model", "bicycle_gan", "--gpu_ids", "-1", "--load_size", "256", "--input_nc", "1", "--use_dropout"],
    }[model]
    from data import create_dataset
    from models import create_model
    from options.train_options import TrainOptions

    opt = TrainOptions().parse()
    if model != "bicyclegan":
        from util.util import init_ddp

        opt.device = init_ddp()
    dataset = create_dataset(opt)
    net = create_model(opt)
    net.setup(opt)
    while True:
        for batch in dataset:
            net.set_input(batch)
            if model == "bicyclegan" and not net.is_train():
                continue
            net.optimize_parameters()
            if stamp():
                net.save_networks("latest")  # for test.py
                return


def step_clock():
    """The ganforge side's timing callback (+callbacks.bench_clock._target_=bench.vs_reference.StepClock)."""
    import lightning.pytorch as L
    import torch

    class StepClock(L.Callback):
        def __init__(self, out: str, need: int, groups: int = 1):
            self.out, self.need, self.groups, self.ends = out, need, groups, {}

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            per_scale = getattr(pl_module, "epochs_per_scale", None)  # SinGAN: one group a scale
            group = trainer.current_epoch // per_scale if per_scale else 0
            self.ends.setdefault(group, []).append(time.perf_counter())
            Path(self.out).write_text(json.dumps({"threads": torch.get_num_threads(), "ends": self.ends}))
            if group == self.groups - 1 and len(self.ends[group]) >= self.need:
                trainer.should_stop = True

    return StepClock


def __getattr__(name):  # Hydra's _target_ lookup: Lightning is imported only by the ganforge processes
    if name == "StepClock":
        return step_clock()
    raise AttributeError(name)


# ------------------------------------------------------------------ the harness
def fetch(name: str, cache: Path, sources: dict[str, str]) -> Path:
    """The pinned commit's tree of reference `name` in the cache, cloned once (only its .py files are checked out)."""
    url, sha = PINNED[name]
    dest = cache / f"{name}-{sha[:7]}"
    if (dest / ".pinned").exists():
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    src = sources.get(name, url)
    if name == "singan" and Path(src).is_dir() and not (Path(src) / ".git").exists() and not (Path(src) / "HEAD").exists():
        # a folder of its files: each checked against the pinned commit's SHA-256 (in a child: it imports torch)
        check = "from pathlib import Path; from tests.golden import check_files; from tests.golden.make_singan import FILES; "
        subprocess.run([sys.executable, "-c", check + f"check_files(Path({str(src)!r}), FILES, {sha!r})"], cwd=REPO, check=True)
        shutil.copytree(src, dest)
    else:
        for git in (
            ["clone", "-q", "--no-checkout", src, str(dest)],
            ["-C", str(dest), "reset", "-q", sha],
            ["-C", str(dest), "checkout", "-q", "--", "*.py"],
        ):
            if subprocess.run(["git", *git]).returncode:
                sys.exit(f"git {' '.join(git)} failed: give --ref-source {name}=<a local clone of {url} holding {sha}>")
    if name == "spade":  # SPADE's README: copy Synchronized-BatchNorm-PyTorch's sync_batchnorm into models/networks/
        shutil.copytree(fetch("sync_batchnorm", cache, sources) / "sync_batchnorm", dest / "models" / "networks" / "sync_batchnorm")
    (dest / ".pinned").write_text(sha + "\n")
    return dest


def prepare_data(tmp: Path, copies: int, images: int) -> dict[str, str]:
    """The same files for both sides, in the layouts both read; 256x256 inputs for the inference runs."""
    from PIL import Image

    def fill(folder: Path, files: list[Path], n: int, crop_a: bool = False) -> str:
        folder.mkdir(parents=True)
        for i in range(n):
            im = Image.open(files[i % len(files)]).convert("RGB")
            (im.crop((0, 0, 256, 256)) if crop_a else im).save(folder / f"{i:03d}.png")
        return str(folder)

    p2p, h2z = sorted((SHARED / "pix2pix_paired_mini" / "train").glob("*.jpg")), SHARED / "horse2zebra_mini"
    fill(tmp / "pix2pix" / "train", p2p, copies)
    fill(tmp / "edges2shoes" / "train", [SHARED / "pix2pix_samples" / "AB" / "edges2shoes.jpg"], copies)
    for side in "AB":
        fill(tmp / "horse2zebra" / f"train{side}", sorted((h2z / f"train{side}").glob("*.jpg")), copies)
    for model, files, crop in (("pix2pix", p2p, True), ("cyclegan", sorted((h2z / "testA").glob("*.jpg")), False)):
        fill(tmp / f"infer_{model}", files, images, crop)
    return {
        "pix2pix": str(tmp / "pix2pix"),
        "bicyclegan": str(tmp / "edges2shoes"),
        "cyclegan": str(tmp / "horse2zebra"),
        "spade": str(SHARED / "coco_stuff_sample"),
        "singan": str(SHARED / "singan" / "Images" / "balloons.png"),
    }


def ganforge_train_cmd(model: str, root: str, work: str, need: int, out: str) -> list[str]:
    args = {
        "pix2pix": ["model=pix2pix", "data=paired"],
        "bicyclegan": ["experiment=bicyclegan_edges2shoes"],
        "cyclegan": ["experiment=cyclegan_horse2zebra"],
        "spade": ["experiment=spade_coco_stuff", "model.lambda_vgg=0", f"data.load_size={SPADE_SIZE}", f"data.crop_size={SPADE_SIZE}"],
        "singan": ["model=singan", "data=single_image", "model.g_steps=1", f"model.iters_per_scale={need}"],
    }[model]
    if model == "singan":
        args += [f"data.path={root}", f"data.iters_per_epoch={need}", f"+callbacks.bench_clock.groups={SINGAN_SCALES}"]
    else:
        args += [f"data.root={root}", "trainer.max_epochs=1", f"++trainer.limit_train_batches={need}"]
    clock = ["+callbacks.bench_clock._target_=bench.vs_reference.StepClock", f"+callbacks.bench_clock.out={out}"]
    run = [f"hydra.run.dir={work}", "logger=csv", "++trainer.limit_val_batches=0", "print_config=false", "optimized_metric=null"]
    return [sys.executable, str(REPO / "train.py"), *args, *run, *clock, f"+callbacks.bench_clock.need={need}"]


def tree_pss(pid: int) -> int:
    """PSS (bytes) of `pid` and all its descendants: the loader workers' pages shared with the parent count once."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def measure(cmd: list[str], env: dict, cwd: str, log: Path) -> dict:
    """Run one fresh process: wall s, the largest single process's peak RSS (wait4) and the tree's peak PSS."""
    with open(log, "a") as f:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=f, stderr=subprocess.STDOUT)
        peak, done = [0], threading.Event()

        def poll():
            while not done.wait(0.2):
                peak[0] = max(peak[0], tree_pss(proc.pid))

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        _, status, usage = os.wait4(proc.pid, 0)
        done.set()
        poller.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        tail = log.read_text().splitlines()[-15:]
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed ({proc.returncode}); {log}:\n" + "\n".join(tail))
    return {"wall": time.perf_counter() - start, "rss": usage.ru_maxrss * 1024, "pss": peak[0]}


def steady_rate(folder: Path, pattern: str, expected: int) -> float:
    """Images/s between the first and the last output written: each side writes an image as soon as it is
    translated, so this leaves out start-up, loading and (compile=true) compiling, which come before the first."""
    times = sorted(p.stat().st_mtime for p in folder.glob(pattern))
    if len(times) != expected:
        raise RuntimeError(f"{folder}: {len(times)} outputs ({pattern}), expected {expected}")
    return (expected - 1) / (times[-1] - times[0]) if times[-1] > times[0] else float("nan")


def step_times(out: str, warmup: int) -> dict:
    got = json.loads(Path(out).read_text())
    return {"threads": got["threads"], **{int(g): [b - a for a, b in zip(e[warmup:], e[warmup + 1 :])] for g, e in got["ends"].items()}}


def cpu_flags() -> set[str]:
    info = Path("/proc/cpuinfo").read_text()
    return set(next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), []))


def machine(threads: int) -> str:
    from importlib.metadata import version

    info = Path("/proc/cpuinfo").read_text()
    model = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "unknown CPU")
    flags = cpu_flags()
    have = ", ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags) or "none of avx2/avx512f/avx512_bf16/amx_bf16"
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{model}, {len(os.sched_getaffinity(0))} cores available ({have}); torch {version('torch')}, "
        f"{threads} torch thread(s) a process; load average {load}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5, help="timed steps a run (SinGAN: iterations a scale)")
    ap.add_argument("--warmup", type=int, default=2, help="steps left out at the start of each run (and scale)")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--images", type=int, default=16, help="images of the N-image inference runs")
    ap.add_argument("--ref-cache", default=os.path.expanduser("~/.cache/ganforge/references"))
    ap.add_argument("--ref-source", action="append", default=[], metavar="NAME=PATH", help=f"NAME: {', '.join(PINNED)}")
    ap.add_argument("--quick", action="store_true", help="1 repeat, 1 timed step, 2 images: checks that everything runs")
    ap.add_argument("--worker", nargs=7, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        model, ref, root, work, warmup, steps, out = a.worker
        return ref_train(model, Path(ref), root, work, int(warmup), int(steps), out)
    if a.quick:
        a.repeats, a.steps, a.warmup, a.images = 1, 1, 0, 2
    models = [m for m in MODELS if m in a.models.split(",")]
    items = [s for s in os.environ.get("GANFORGE_REF_SOURCES", "").split(",") if s] + a.ref_source
    sources = dict(s.split("=", 1) for s in items)
    refs = {m: fetch(REF_OF[m], Path(a.ref_cache), sources) for m in models}
    tmp = Path(tempfile.mkdtemp(prefix="ganforge_vs_ref_"))
    roots = prepare_data(tmp, copies=2 * (a.warmup + a.steps + 2), images=a.images)  # BicycleGAN: batch 2
    # (this process never imports torch: a child's ru_maxrss starts from the RSS of the process it was forked from)
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads)}
    need, log = a.warmup + a.steps + 1, tmp / "runs.log"
    print(f"machine: {machine(a.threads)}\nlog of every run: {log}", file=sys.stderr)
    train: dict[tuple[str, str], list] = {}
    ckpts: dict[tuple[str, str], str] = {}
    failed: set[str] = set()
    for r in range(a.repeats):
        for model in models if r % 2 == 0 else models[::-1]:
            for side in ("reference", "ganforge") if r % 2 == 0 else ("ganforge", "reference"):
                work = tmp / f"{model}_{side}_{r}"
                work.mkdir()
                out = str(work / "ends.json")
                if side == "reference":
                    cmd = [
                        sys.executable,
                        __file__,
                        "--worker",
                        *map(str, (model, refs[model], roots[model], work, a.warmup, a.steps, out)),
                    ]
                    ckpts[model, side] = str(work)  # its --checkpoints_dir
                else:
                    cmd = ganforge_train_cmd(model, roots[model], str(work), need, out)
                    ckpts[model, side] = str(work / "checkpoints" / "last.ckpt")
                try:
                    m = measure(cmd, env, str(REPO), log)
                except RuntimeError as e:  # the table says which run failed; the log has its output
                    print(e, file=sys.stderr)
                    failed.add(model)
                    continue
                train.setdefault((model, side), []).append({**m, "times": step_times(out, a.warmup)})
                print(f"  {model} {side} repeat {r}: {m['wall']:.0f} s", file=sys.stderr)
    infer: dict[tuple[str, str], list[dict]] = {}
    # ganforge-predict's options: compile=true, and bf16 where the CPU computes it natively (elsewhere predict refuses it)
    bf16 = bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})
    sides = tuple(s for s in PREDICT_SIDES if bf16 or "precision=bf16-mixed" not in PREDICT_SIDES[s])
    for r in range(a.repeats):
        for model in [m for m in ("pix2pix", "cyclegan") if m in models and m not in failed][:: 1 if r % 2 == 0 else -1]:
            for side in sides if r % 2 == 0 else sides[::-1]:
                src, dst = str(tmp / f"infer_{model}"), tmp / f"out_{model}_{side.replace(' ', '_')}_{r}"
                if side == "reference":
                    net = ["--netG", "unet_256", "--norm", "batch"] if model == "pix2pix" else ["--no_dropout", "--model_suffix", "_A"]
                    cmd = [sys.executable, str(refs[model] / "test.py"), "--dataroot", src, "--name", "bench", "--model", "test"]
                    cmd += [*net, "--checkpoints_dir", ckpts[model, side], "--results_dir", str(dst), "--num_test", str(a.images)]
                    outputs = "**/*_fake.png"  # its TestModel's visuals: real, fake
                else:
                    cmd = [sys.executable, "-c", "from ganforge.cli.predict import main; main()"]
                    cmd += [f"ckpt_path={ckpts[model, 'ganforge']}", f"input={src}", f"output={dst}", *PREDICT_SIDES[side]]
                    outputs = "*.png"
                wall = measure(cmd, env, str(tmp), log)["wall"]
                infer.setdefault((model, side), []).append({"wall": wall, "steady": steady_rate(dst, outputs, a.images)})
    print(report(models, train, infer, failed, a, log))
    if not failed:  # else keep the log the table points to
        shutil.rmtree(tmp, ignore_errors=True)


def report(models: list[str], train: dict, infer: dict, failed: set[str], a, log: Path) -> str:
    med, gb = statistics.median, 2**30
    lines = [
        f"Machine: {machine(a.threads)}.",
        f"Median of {a.repeats} runs each, order alternated; {a.steps} timed steps a run after {a.warmup} warm-up steps.",
        "",
        "| training, fp32 | reference s/step | ganforge s/step | ratio ref/ganforge | peak RSS GB ref / ganforge "
        "| peak PSS GB with loader workers, ref / ganforge |",
        "|---|---|---|---|---|---|",
    ]
    for model in models:
        if model in failed:
            lines.append(f"| {model} | failed: its error is in {log} | | | | |")
            continue
        ref, gf = train[model, "reference"], train[model, "ganforge"]
        mem = f"{med(r['rss'] for r in ref) / gb:.2f} / {med(r['rss'] for r in gf) / gb:.2f}"
        mem += f" | {med(r['pss'] for r in ref) / gb:.2f} / {med(r['pss'] for r in gf) / gb:.2f}"
        for group in sorted(g for g in ref[0]["times"] if g != "threads"):
            s_ref = med(med(r["times"][group]) for r in ref)
            s_gf = med(med(r["times"][group]) for r in gf)
            name = f"singan scale {group}" if model == "singan" else model
            lines.append(f"| {name} | {s_ref:.3f} | {s_gf:.3f} | **{s_ref / s_gf:.2f}** | {mem} |")
    threads = {
        s: sorted({r["times"]["threads"] for (_, side), runs in train.items() if side == s for r in runs})
        for s in ("reference", "ganforge")
    }
    lines.append(f"\ntorch threads seen in the training processes: reference {threads['reference']}, ganforge {threads['ganforge']}")
    if any(k[0] in ("pix2pix", "cyclegan") for k in infer):
        lines += ["", f"| inference, {a.images} images 256x256 | images/s steady, ref / ganforge | ratio | "
                  "whole command s/image, ref / ganforge | ratio |", "|---|---|---|---|---|"]  # fmt: skip
        for model in ("pix2pix", "cyclegan"):
            sides = [s for s in PREDICT_SIDES if (model, s) in infer]
            if "reference" not in sides:
                continue
            ips = {s: med(run["steady"] for run in infer[model, s]) for s in sides}
            whole = {s: med(run["wall"] for run in infer[model, s]) / a.images for s in sides}
            for side in sides[1:]:
                name = f"{model}, ganforge `{' '.join(PREDICT_SIDES[side])}`" if PREDICT_SIDES[side] else model
                lines.append(
                    f"| {name} | {ips['reference']:.2f} / {ips[side]:.2f} | **{ips[side] / ips['reference']:.2f}** | "
                    f"{whole['reference']:.2f} / {whole[side]:.2f} | {whole['reference'] / whole[side]:.2f} |"
                )
    lines += ["", *(f"- {m}: {NOTES[m]}" for m in models if m in NOTES)]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
