from ganforge.callbacks.ema import GeneratorEMA, ema_weights
from ganforge.callbacks.image_grid import ImageGrid

__all__ = ["GeneratorEMA", "ImageGrid", "ema_weights"]
