"""ganforge's data modules by class name: what a data config read from a checkpoint may build (ganforge-eval)."""

from __future__ import annotations

from ganforge.data.image_folder import ImageFolderDataModule
from ganforge.data.labelmap import LabelMapDataModule
from ganforge.data.paired import PairedDataModule
from ganforge.data.single_image import SingleImageDataModule
from ganforge.data.torchvision_sets import TorchvisionDataModule
from ganforge.data.unpaired import UnpairedDataModule

DATA_MODULES = {
    cls.__name__: cls
    for cls in (
        ImageFolderDataModule,
        LabelMapDataModule,
        PairedDataModule,
        SingleImageDataModule,
        TorchvisionDataModule,
        UnpairedDataModule,
    )
}
