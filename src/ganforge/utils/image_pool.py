"""The image history buffer of Shrivastava et al. (2017), as CycleGAN uses it.

D is trained on a mix of current and earlier fakes, which damps the oscillation between G and D.
While the pool is not full every fake is stored and returned as is; once full, each fake is, with
probability 0.5, swapped for a random stored one (which is returned, the new one taking its slot).
The contents are part of the training state: `state_dict()` goes into the checkpoint, so a resumed
run draws from the same history.
"""

from __future__ import annotations

import torch


class ImagePool:
    def __init__(self, pool_size: int = 50):
        if pool_size < 0:
            raise ValueError(f"pool_size must be >= 0, got {pool_size}")
        self.pool_size = pool_size
        self.images: list[torch.Tensor] = []

    def __len__(self) -> int:
        return len(self.images)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """A batch of the same shape: each image is the new fake or a stored one. Draws from torch's
        global RNG, whose state the checkpoint carries (so a resumed run draws the same)."""
        if self.pool_size == 0:
            return images
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.pool_size:
                self.images.append(image.clone())
                out.append(image)
            elif torch.rand(()).item() > 0.5:
                i = int(torch.randint(0, self.pool_size, ()).item())
                out.append(self.images[i].to(image))  # the current dtype/device (e.g. bf16 under autocast)
                self.images[i] = image.clone()
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state_dict(self) -> dict:
        # Stored on the CPU: the checkpoint must load on any device.
        return {"pool_size": self.pool_size, "images": [t.cpu() for t in self.images]}

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu") -> None:
        self.images = [t.to(device) for t in state["images"]][: self.pool_size]
