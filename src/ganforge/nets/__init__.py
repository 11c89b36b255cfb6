"""Lightning-free network library shared by every GAN: generators, discriminators, encoders."""

from ganforge.nets.discriminators import MultiscaleDiscriminator, NLayerDiscriminator, PixelDiscriminator
from ganforge.nets.encoders import ConvEncoder, ResnetEncoder
from ganforge.nets.generators import ResnetGenerator, UnetGenerator
from ganforge.nets.init import INIT_CHOICES, init_weights
from ganforge.nets.norms import NORM_CHOICES, conv_wrapper, get_norm_layer, use_bias
from ganforge.nets.singan import SinGANDiscriminator, SinGANGenerator

__all__ = [
    "ConvEncoder",
    "INIT_CHOICES",
    "MultiscaleDiscriminator",
    "NLayerDiscriminator",
    "NORM_CHOICES",
    "PixelDiscriminator",
    "ResnetEncoder",
    "ResnetGenerator",
    "SinGANDiscriminator",
    "SinGANGenerator",
    "UnetGenerator",
    "conv_wrapper",
    "get_norm_layer",
    "init_weights",
    "use_bias",
]

from ganforge.nets.simple import ConvDiscriminator, ConvResGenerator, EncoderDecoderGenerator  # noqa: E402

__all__ += ["ConvDiscriminator", "ConvResGenerator", "EncoderDecoderGenerator"]

from ganforge.nets.dualgan import DualGANDiscriminator, DualGANGenerator  # noqa: E402

__all__ += ["DualGANDiscriminator", "DualGANGenerator"]

from ganforge.nets.norms import SPADE  # noqa: E402
from ganforge.nets.spade import SPADEDiscriminator, SPADEEncoder, SPADEGenerator, SPADEResnetBlock  # noqa: E402

__all__ += ["SPADE", "SPADEDiscriminator", "SPADEEncoder", "SPADEGenerator", "SPADEResnetBlock"]

from ganforge.nets.dcgan import ConvDropoutDiscriminator, DCGANDiscriminator, DCGANGenerator, DenseConvGenerator  # noqa: E402

__all__ += ["ConvDropoutDiscriminator", "DCGANDiscriminator", "DCGANGenerator", "DenseConvGenerator"]
