"""The pre-scan: every image a data module will read is checked in `setup`, before the first step.

A bad file then stops the run at once with the full list (`on_bad_file=error`), instead of ending
it hours later inside a DataLoader worker at the first bad one; `on_bad_file=skip` drops the bad
files and warns once with the list. `verify=header` (the default) opens each file's header without
decoding pixels (`imageio.read_header`: size, decompression-bomb limit, a JPEG/PNG cut short);
`verify=full` decodes every file, as training will, and also catches corrupt pixel data.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_only

from ganforge.utils.errors import ConfigError, ImageFileError
from ganforge.utils.imageio import SKIP_HINT, load_image, read_header

VERIFY_CHOICES = ("header", "full")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileCheck:
    """One file a dataset reads, and how it reads it."""

    path: Path
    channels: int = 3
    #: an A|B side-by-side image, split in two halves: its upright width must be even
    side_by_side: bool = False


def check_verify(verify: str) -> None:
    if verify not in VERIFY_CHOICES:
        raise ConfigError(f"data.verify must be 'header' (fast, no decoding) or 'full' (decode every file), got {verify!r}")


def _problem(check: FileCheck, verify: str) -> str | None:
    """ "<path>: <problem>" for a bad file, None for a good one."""
    try:
        w = load_image(check.path, check.channels).size[0] if verify == "full" else read_header(check.path)[0]
    except ImageFileError as e:
        # The usual fix is the same for every file and the summary says it once; others (the bomb
        # limit's) stay beside their file.
        return str(e).removesuffix(f". Fix: {SKIP_HINT}")
    if check.side_by_side and w % 2:
        return f"{check.path}: width {w} is odd; an A|B side-by-side image must have an even width"
    return None


def find_bad_files(checks: Iterable[FileCheck], verify: str = "header") -> dict[FileCheck, str | None]:
    """Each check's problem (None: the file is good)."""
    check_verify(verify)
    checks = list(dict.fromkeys(checks))
    # Threads: the header check waits on the disk (a network file system most of all), and PIL
    # releases the GIL while it decodes, so both modes scale with threads.
    with ThreadPoolExecutor(max_workers=min(16, (os.cpu_count() or 1) * 2)) as pool:
        return dict(zip(checks, pool.map(lambda c: _problem(c, verify), checks)))


class PreScan:
    """The pre-scan of one data module: results are kept, so each file is checked once however
    often `setup` runs (fit, then test), and each skipped file is warned about once."""

    def __init__(self, on_bad_file: str, verify: str):
        check_verify(verify)
        self.on_bad_file, self.verify = on_bad_file, verify
        self._results: dict[FileCheck, str | None] = {}
        self._warned: set[str] = set()

    def bad_paths(self, checks: Iterable[FileCheck], where: Path) -> set[Path]:
        """The bad files among `checks`. With on_bad_file=error, one ImageFileError naming every one of
        them; with skip, one warning listing those not listed before."""
        checks = list(dict.fromkeys(checks))
        todo = [c for c in checks if c not in self._results]
        start = time.perf_counter()
        self._results.update(find_bad_files(todo, self.verify))
        if todo and getattr(rank_zero_only, "rank", 0) == 0:
            log.info("Pre-scan (data.verify=%s): %d files in %.2f s", self.verify, len(todo), time.perf_counter() - start)
        problems = sorted({p for c in checks if (p := self._results[c])})
        if not problems:
            return set()
        listing = "\n  ".join(problems)
        if self.on_bad_file == "error":
            raise ImageFileError(
                where,
                f"{len(problems)} bad image file(s), found before training by the pre-scan (data.verify={self.verify})",
                f"delete or replace them, or set data.on_bad_file=skip to train on the others:\n  {listing}",
            )
        new = [p for p in problems if p not in self._warned]
        if new and getattr(rank_zero_only, "rank", 0) == 0:
            log.warning(
                "data.on_bad_file=skip: skipping %d bad image file(s) in %s (pre-scan, data.verify=%s):\n  %s",
                len(new),
                where,
                self.verify,
                "\n  ".join(new),
            )
        self._warned.update(new)
        return {c.path for c in checks if self._results[c]}

    def drop_bad(self, datasets: Iterable, where: Path) -> None:
        """Pre-scan every file of `datasets` (their `file_checks()`) at once; with on_bad_file=skip each
        then leaves out its items with a bad file (`drop(bad_paths)`)."""
        datasets = list(datasets)
        bad = self.bad_paths([c for ds in datasets for c in ds.file_checks()], where)
        for ds in datasets if bad else ():
            ds.drop(bad)
