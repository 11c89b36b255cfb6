"""The image history buffer of Shrivastava et al. (2017), as CycleGAN uses it.

D is trained on a mix of current and earlier fakes, which damps the oscillation between G and D.
While the pool is not full every fake is stored and returned as is; once full, each fake is, with
probability 0.5, swapped for a random stored one (which is returned, the new one taking its slot).

The draws are the reference's (pytorch-CycleGAN-and-pix2pix util/image_pool.py): `random.uniform(0, 1)
> 0.5`, then `random.randint(0, pool_size - 1)`, from a `random.Random` of its own rather than Python's
global stream, so nothing else (a data transform, a library) draws in between. Give the two pools of a
model one generator, as the reference's two pools share the `random` module: seeded as the reference's
`random.seed(seed)`, they swap the same images at the same steps. The contents and the generator's state
are training state: `state_dict()` goes into the checkpoint, so a resumed run draws the same.
"""

from __future__ import annotations

import random

import torch


class ImagePool:
    def __init__(self, pool_size: int = 50, rng: random.Random | None = None):
        if pool_size < 0:
            raise ValueError(f"pool_size must be >= 0, got {pool_size}")
        self.pool_size = pool_size
        self.rng = rng if rng is not None else random.Random(torch.initial_seed())
        self.images: list[torch.Tensor] = []

    def __len__(self) -> int:
        return len(self.images)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """A batch of the same shape: each image is the new fake or a stored one."""
        if self.pool_size == 0:
            return images
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.pool_size:
                self.images.append(image.clone())
                out.append(image)
            elif self.rng.uniform(0, 1) > 0.5:
                i = self.rng.randint(0, self.pool_size - 1)
                out.append(self.images[i].to(image))  # the current dtype/device (e.g. bf16 under autocast)
                self.images[i] = image.clone()
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state_dict(self) -> dict:
        # Stored on the CPU: the checkpoint must load on any device. The generator's state is Mersenne
        # Twister's 625 words (plain ints, which weights_only loading accepts).
        version, words, gauss = self.rng.getstate()
        return {"pool_size": self.pool_size, "images": [t.cpu() for t in self.images], "rng_state": [version, list(words), gauss]}

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu") -> None:
        self.images = [t.to(device) for t in state["images"]][: self.pool_size]
        if "rng_state" in state:  # checkpoints written before the pool had its own generator lack it
            version, words, gauss = state["rng_state"]
            self.rng.setstate((version, tuple(words), gauss))
