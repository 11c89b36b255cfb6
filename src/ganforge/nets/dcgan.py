"""DCGAN's generator and discriminator (Radford et al. 2016), as pytorch/examples `dcgan/main.py`
builds them: transposed convs 4x4 with BatchNorm + ReLU up from a 1x1 latent, strided convs 4x4 with
LeakyReLU 0.2 down to one score, N(0, 0.02) convs and N(1, 0.02) BatchNorm weights.

The reference is written for 64 px (four doublings from 4x4); the depth here follows the image size,
so 32 px (CIFAR-10) has one block fewer at each end and 4x4 carries ngf*4 / ndf*4 channels.

Below them, the Keras GAN of Chollet's *Deep Learning with Python* §8.5 (model=dcgan_seed).
"""

from __future__ import annotations

import functools
import math

from torch import Tensor, nn

from ganforge.nets.registry import register_net
from ganforge.utils.errors import ConfigError


def _num_blocks(image_size: int) -> int:
    """Doublings between the 4x4 map and the image, minus the last one (the output layer)."""
    n = math.log2(image_size) if image_size > 0 else 0
    if n != int(n) or image_size < 16:
        raise ConfigError(f"DCGAN needs data.image_size a power of two >= 16 (e.g. 32 or 64), got {image_size}")
    return int(n) - 3


def dcgan_init(net: nn.Module) -> nn.Module:
    """main.py `weights_init`: conv weights N(0, 0.02); BatchNorm weights N(1, 0.02), biases 0."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return net


@register_net
class DCGANGenerator(nn.Module):
    """z (B, nz, 1, 1) -> image (B, nc, S, S) in [-1, 1]."""

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3, image_size: int = 64):
        super().__init__()
        self.nz, self.image_size = nz, image_size
        n = _num_blocks(image_size)
        ch = ngf * 2**n
        layers: list[nn.Module] = [nn.ConvTranspose2d(nz, ch, 4, 1, 0, bias=False), nn.BatchNorm2d(ch), nn.ReLU(True)]
        for _ in range(n):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2), nn.ReLU(True)]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, nc, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, z: Tensor) -> Tensor:
        return self.main(z.view(z.shape[0], self.nz, 1, 1))


@register_net
class DCGANDiscriminator(nn.Module):
    """image (B, nc, S, S) -> one logit per image (B,). The reference ends in a sigmoid for BCELoss;
    the logit goes to BCE-with-logits (GANLoss vanilla), the same loss computed stably."""

    def __init__(self, ndf: int = 64, nc: int = 3, image_size: int = 64):
        super().__init__()
        n = _num_blocks(image_size)
        layers: list[nn.Module] = [nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
        ch = ndf
        for _ in range(n):
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch * 2), nn.LeakyReLU(0.2, inplace=True)]
            ch *= 2
        layers += [nn.Conv2d(ch, 1, 4, 1, 0, bias=False)]
        self.main = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x).view(-1)


def glorot_init(net: nn.Module) -> nn.Module:
    """Keras' defaults for Dense and Conv kernels: glorot_uniform weights, zero biases."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return net


#: keras.layers.LeakyReLU()'s default slope (0.3, where PyTorch GANs use 0.2)
KERAS_LEAKY_SLOPE = 0.3


@register_net
class DenseConvGenerator(nn.Module):
    """The GAN of Chollet, *Deep Learning with Python* (2017) §8.5, in Keras: z (B, nz) -> Dense to
    `width` maps at half the image size -> LeakyReLU -> conv5 `ngf` -> convT4 s2 `ngf` (to the full
    size) -> 2x conv5 `ngf`, each followed by LeakyReLU -> conv7 to nc, tanh. Convs keep the size
    ('same' padding). At the book's 32 px: Dense(128*16*16), 256 channels."""

    def __init__(self, nz: int = 32, width: int = 128, ngf: int = 256, nc: int = 3, image_size: int = 32):
        super().__init__()
        if image_size % 2 or image_size < 4:
            raise ConfigError(f"the dense-conv generator needs an even data.image_size >= 4, got {image_size}")
        self.nz, self.width, self.start = nz, width, image_size // 2
        act = functools.partial(nn.LeakyReLU, KERAS_LEAKY_SLOPE)
        self.dense = nn.Sequential(nn.Linear(nz, width * self.start**2), act())
        self.convs = nn.Sequential(
            nn.Conv2d(width, ngf, 5, padding=2),
            act(),
            nn.ConvTranspose2d(ngf, ngf, 4, 2, 1),
            act(),  # Keras 'same' for k4 s2 crops 1 a side, as padding=1
            nn.Conv2d(ngf, ngf, 5, padding=2),
            act(),
            nn.Conv2d(ngf, ngf, 5, padding=2),
            act(),
            nn.Conv2d(ngf, nc, 7, padding=3),
            nn.Tanh(),
        )
        glorot_init(self)

    def forward(self, z: Tensor) -> Tensor:
        h = self.dense(z.reshape(z.shape[0], self.nz))
        return self.convs(h.view(-1, self.width, self.start, self.start))


@register_net
class ConvDropoutDiscriminator(nn.Module):
    """The discriminator of the same §8.5: conv3 `ndf` then 3x conv4 s2 `ndf` ('valid' padding), each
    followed by LeakyReLU, flatten, dropout 0.4, Dense to one logit (B,). The book's Dense ends in a
    sigmoid for binary_crossentropy; the logit goes to BCE-with-logits, the same loss computed stably."""

    def __init__(self, ndf: int = 128, nc: int = 3, image_size: int = 32, dropout: float = 0.4):
        super().__init__()
        side = image_size - 2
        for _ in range(3):
            side = (side - 4) // 2 + 1
        if side < 1:
            raise ConfigError(f"the conv-dropout discriminator needs data.image_size >= 16, got {image_size}")
        act = functools.partial(nn.LeakyReLU, KERAS_LEAKY_SLOPE)
        self.features = nn.Sequential(
            nn.Conv2d(nc, ndf, 3),
            act(),
            nn.Conv2d(ndf, ndf, 4, 2),
            act(),
            nn.Conv2d(ndf, ndf, 4, 2),
            act(),
            nn.Conv2d(ndf, ndf, 4, 2),
            act(),
            nn.Flatten(),
            nn.Dropout(dropout),
        )
        self.score = nn.Linear(ndf * side * side, 1)
        glorot_init(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.score(self.features(x)).view(-1)
