"""Lightning-free network library shared by every GAN: generators, discriminators, encoders."""

from ganforge.nets.discriminators import (
    MultiscaleDiscriminator,
    NLayerDiscriminator,
    PixelDiscriminator,
)
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

from ganforge.nets.simple import (  # noqa: E402
    ConvDiscriminator,
    ConvResGenerator,
    EncoderDecoderGenerator,
)

__all__ += ["ConvDiscriminator", "ConvResGenerator", "EncoderDecoderGenerator"]

from ganforge.nets.dualgan import DualGANDiscriminator, DualGANGenerator  # noqa: E402

__all__ += ["DualGANDiscriminator", "DualGANGenerator"]

from ganforge.nets.norms import SPADE  # noqa: E402
from ganforge.nets.spade import (  # noqa: E402
    SPADEDiscriminator,
    SPADEEncoder,
    SPADEGenerator,
    SPADEResnetBlock,
)

__all__ += ["SPADE", "SPADEDiscriminator", "SPADEEncoder", "SPADEGenerator", "SPADEResnetBlock"]

from ganforge.nets.dcgan import (  # noqa: E402
    ConvDropoutDiscriminator,
    DCGANDiscriminator,
    DCGANGenerator,
    DenseConvGenerator,
)

__all__ += ["ConvDropoutDiscriminator", "DCGANDiscriminator", "DCGANGenerator", "DenseConvGenerator"]
