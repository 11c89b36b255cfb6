"""User-facing errors.

Everything a user can cause (a bad file, a missing folder, a wrong config value) raises a
`GanforgeError`. The command-line entry points print its message alone and exit non-zero;
`HYDRA_FULL_ERROR=1` shows the traceback as well.
"""

from __future__ import annotations


class GanforgeError(Exception):
    """An error the user can fix; its message says what went wrong and how to fix it."""


class ImageFileError(GanforgeError):
    """An image file that cannot be used: corrupt, empty, not an image, or of an unusable shape."""

    # A one-argument call must work too: DataLoader workers re-raise exceptions as `type(msg)`.
    def __init__(self, path, problem: str = "", fix: str = ""):
        self.path, self.problem, self.fix = str(path), problem, fix
        msg = f"{self.path}: {problem}" if problem else self.path
        if fix:
            msg += f". Fix: {fix}"
        super().__init__(msg)


class DataLayoutError(GanforgeError):
    """A dataset folder that is missing or not in an expected layout."""


class DatasetUnavailableError(GanforgeError):
    """A dataset that is not on disk and cannot be downloaded."""


class ConfigError(GanforgeError):
    """A configuration value that cannot work (caught before any training starts)."""


class CheckpointError(GanforgeError):
    """A checkpoint that does not match the model or config it is loaded into."""


class ExportError(GanforgeError):
    """An export that cannot be written or does not reproduce the PyTorch model (the parity check)."""
