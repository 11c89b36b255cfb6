"""ganforge: image GANs on PyTorch Lightning + Hydra.

The public API is the inference side, which imports neither Lightning nor Hydra:

    import ganforge
    model = ganforge.load("path/to/model-folder")   # or a .ckpt, or a Hugging Face Hub id
    out = model.translate(img)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_API = (
    "load",
    "InferenceModel",
    "Pix2PixModel",
    "TwoDomainModel",
    "BicycleGANModel",
    "SPADEInference",
    "DCGANModel",
    "SinGANModel",
    "MODELS",
)
__all__ = ["__version__", *_API]

if TYPE_CHECKING:
    from ganforge.models import (  # noqa: F401
        MODELS,
        BicycleGANModel,
        DCGANModel,
        InferenceModel,
        Pix2PixModel,
        SinGANModel,
        SPADEInference,
        TwoDomainModel,
        load,
    )


def __getattr__(name: str) -> Any:
    # Imported on first use: `import ganforge` alone (e.g. for __version__) does not import torch.
    if name in _API:
        import ganforge.models

        return getattr(ganforge.models, name)
    raise AttributeError(f"module 'ganforge' has no attribute {name!r}")
