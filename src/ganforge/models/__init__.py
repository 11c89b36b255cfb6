"""Inference models: what a trained GAN is once training is over (torch only; no Lightning, Hydra or wandb).

One class per family, registered under its model names; `load` builds one from a model folder, a
checkpoint or a Hugging Face Hub id, and `save_pretrained` writes the folder.
"""

from ganforge.models.base import ExportGraph, InferenceModel
from ganforge.models.dcgan import DCGANModel
from ganforge.models.loading import load
from ganforge.models.registry import MODELS, register_model
from ganforge.models.singan import SinGANModel
from ganforge.models.spade import SPADEInference
from ganforge.models.translation import BicycleGANModel, Pix2PixModel, TwoDomainModel

__all__ = [
    "MODELS",
    "BicycleGANModel",
    "DCGANModel",
    "ExportGraph",
    "InferenceModel",
    "Pix2PixModel",
    "SPADEInference",
    "SinGANModel",
    "TwoDomainModel",
    "load",
    "register_model",
]
