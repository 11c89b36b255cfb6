"""Make the Keras seed DCGAN golden fixture (model=dcgan_seed), for tests/test_golden_dcgan_seed.py.

    KERAS_BACKEND=torch python -m tests.golden.make_keras_dcgan --ref <fchollet/deep-learning-with-python-notebooks checkout>

(or GANFORGE_REF_KERAS_DCGAN=<folder>). Needs Keras 3 (`pip install keras`, a dev-only tool: ganforge does not
depend on it) on its torch backend. The seed's code is the notebook first_edition/8.5-introduction-to-gans.ipynb
of Deep Learning with Python (Keras 2.0.8, its recorded output), not a module, and it does not run on Keras 3
as written: `RMSprop(lr=..., decay=...)` is refused (Keras 3 has neither argument), and its
`discriminator.trainable = False` before compiling the GAN leaves D with no trainable weights in its own
`train_on_batch` (Keras 3 reads `trainable` at each step, Keras 2 at compile time): D never trains. So:

- the nets are rebuilt here from the notebook's layer list, at tiny widths (`build`). With `--ref`, the
  notebook's own generator and discriminator cells (checked by SHA-256) are run at the book's sizes and their
  layers, class and config, must be this rebuild's at those sizes, so the rebuild is the notebook's;
- the optimizer is Keras 2.0.8's RMSprop (`Keras2RMSprop`: its `get_updates`, epsilon 1e-8 outside the
  square root, lr / (1 + decay * iterations)) as a Keras 3 optimizer, with Keras' own clipvalue; Keras 3's
  RMSprop puts epsilon inside the square root;
- the loss is Keras 2.0.8's binary_crossentropy (`keras2_binary_crossentropy`: the sigmoid's output clipped
  to [1e-7, 1 - 1e-7], turned back into a logit, then TensorFlow's sigmoid_cross_entropy_with_logits). Keras
  3's on torch calls `torch.nn.functional.binary_cross_entropy`, which refuses the book's noisy labels above 1
  ("all elements of target should be between 0 and 1");
- `discriminator.trainable` is True for D's `train_on_batch` and False for the GAN's, Keras 2's semantics;
- float64: `keras.config.set_floatx` and `set_dtype_policy("float64")`, and Keras' result-type table made to
  keep float64 (`keras.src.backend.common.dtypes.BIT64_TO_BIT32_DTYPE`: on torch Keras 3 multiplies two
  float64 tensors in float32, as JAX does by default);
- the training loop is the notebook's (latents, labels generated = 1 / real = 0 plus 0.05 U[0, 1), D on the
  concatenated batch, the GAN on new latents with targets 0, frogs in file order scaled by 1 / 255), on 12
  CIFAR-10 frogs of the shared data, batch 4, 3 iterations;
- D's dropout masks are drawn with numpy (the same rate, Keras' scaling x / (1 - rate)) and recorded, so
  that ganforge can replay them, as it replays the latents and the label noise: Keras and torch draw from
  different generators.

Output: keras_dcgan.safetensors: the frogs (8-bit), the initial weights, and per iteration the latents, the
label noise's uniform draws, the dropout masks, both losses, and every weight after it, with the RMSprop accumulators at
the end, each named `<G|D>/<index of its layer in the Keras model>/<kernel|bias>`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from tests.golden import FIXTURES, save_fixture  # noqa: E402

FROGS = FIXTURES.parents[2].parent / "shared" / "data" / "cifar10_frog" / "train" / "frog"
NOTEBOOK = "first_edition/8.5-introduction-to-gans.ipynb"
#: the fchollet/deep-learning-with-python-notebooks commit and the notebook's SHA-256 (LF line endings)
PINNED = "dea84a4e12cc3bb3cb61ce952a0168bca113d315"
NOTEBOOK_SHA256 = "55ac792640a3e576e710e35e4e4cfef87ee20243ccdfd8fd261d1a425b91d42e"
#: tiny widths: latent_dim, the Dense's maps (the book's 128), G's convs (256), D's convs (128)
ARGS = {"latent_dim": 8, "width": 4, "ngf": 4, "ndf": 4, "size": 32, "channels": 3, "batch": 4, "iterations": 3, "dropout": 0.4}
OPTIMIZERS = {"D": {"lr": 0.0008, "clipvalue": 1.0, "decay": 1e-8}, "GAN": {"lr": 0.0004, "clipvalue": 1.0, "decay": 1e-8}}
SEED = 0


def build(keras, latent_dim: int, width: int, ngf: int, ndf: int, size: int, channels: int, dropout: float):
    """The notebook's generator and discriminator (its cells 'The generator' and 'The discriminator'),
    with the widths as arguments: at 32, 128, 256, 128 they are the book's."""
    layers = keras.layers
    half = size // 2
    generator_input = keras.Input(shape=(latent_dim,))
    x = layers.Dense(width * half * half)(generator_input)
    x = layers.LeakyReLU()(x)
    x = layers.Reshape((half, half, width))(x)
    x = layers.Conv2D(ngf, 5, padding="same")(x)
    x = layers.LeakyReLU()(x)
    x = layers.Conv2DTranspose(ngf, 4, strides=2, padding="same")(x)
    x = layers.LeakyReLU()(x)
    x = layers.Conv2D(ngf, 5, padding="same")(x)
    x = layers.LeakyReLU()(x)
    x = layers.Conv2D(ngf, 5, padding="same")(x)
    x = layers.LeakyReLU()(x)
    x = layers.Conv2D(channels, 7, activation="tanh", padding="same")(x)
    generator = keras.models.Model(generator_input, x)

    discriminator_input = layers.Input(shape=(size, size, channels))
    x = layers.Conv2D(ndf, 3)(discriminator_input)
    x = layers.LeakyReLU()(x)
    x = layers.Conv2D(ndf, 4, strides=2)(x)
    x = layers.LeakyReLU()(x)
    x = layers.Conv2D(ndf, 4, strides=2)(x)
    x = layers.LeakyReLU()(x)
    x = layers.Conv2D(ndf, 4, strides=2)(x)
    x = layers.LeakyReLU()(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(dropout)(x)
    x = layers.Dense(1, activation="sigmoid")(x)
    discriminator = keras.models.Model(discriminator_input, x)
    return generator, discriminator


def layer_configs(model) -> list[tuple[str, dict]]:
    """Each layer's class and config, without its generated name."""
    out = []
    for layer in model.layers:
        config = {k: v for k, v in layer.get_config().items() if k != "name"}
        out.append((type(layer).__name__, json.loads(json.dumps(config, default=str))))
    return out


def check_notebook(keras, ref: Path) -> None:
    """Run the notebook's generator and discriminator cells (up to the optimizer, which Keras 3 refuses) and
    stop unless their layers are `build`'s at the book's sizes."""
    path = ref / NOTEBOOK
    text = path.read_bytes().replace(b"\r\n", b"\n") if path.is_file() else b""
    if hashlib.sha256(text).hexdigest() != NOTEBOOK_SHA256:
        sys.exit(f"{path} is not the notebook of commit {PINNED}: check that commit out")
    cells = ["".join(c["source"]) for c in json.loads(text)["cells"] if c["cell_type"] == "code"]
    g_cell = next(c for c in cells if "generator = keras.models.Model" in c)
    d_cell = next(c for c in cells if "discriminator = keras.models.Model" in c)
    d_cell = d_cell.split("discriminator.summary()")[0]  # the rest compiles with Keras 2's RMSprop arguments
    scope: dict = {}
    exec(compile(g_cell.replace("generator.summary()", ""), str(path), "exec"), scope)  # noqa: S102 - the pinned notebook
    exec(compile(d_cell, str(path), "exec"), scope)  # noqa: S102
    generator, discriminator = build(keras, 32, 128, 256, 128, 32, 3, 0.4)
    for ours, theirs, what in ((generator, scope["generator"], "generator"), (discriminator, scope["discriminator"], "discriminator")):
        if layer_configs(ours) != layer_configs(theirs):
            sys.exit(f"the rebuilt {what} is not the notebook's: {layer_configs(ours)} != {layer_configs(theirs)}")
        if ours.count_params() != theirs.count_params():
            sys.exit(f"the rebuilt {what} has {ours.count_params()} parameters, the notebook's {theirs.count_params()}")


def keras2_rmsprop(keras):
    class Keras2RMSprop(keras.optimizers.Optimizer):
        """keras 2.0.8 optimizers.py RMSprop.get_updates: a = rho a + (1 - rho) g^2;
        p -= lr / (1 + decay * iterations) * g / (sqrt(a) + epsilon). Gradients clipped by the base class."""

        def __init__(self, lr, rho=0.9, epsilon=1e-8, decay=0.0, clipvalue=None, name="keras2_rmsprop"):
            super().__init__(learning_rate=lr, clipvalue=clipvalue, name=name)
            self.rho, self.epsilon, self.decay = rho, epsilon, decay

        def build(self, var_list):
            if self.built:
                return
            super().build(var_list)
            self.accumulators = self.add_optimizer_variables(var_list, "accumulator")

        def update_step(self, gradient, variable, learning_rate):
            ops = keras.ops
            a = self.accumulators[self._get_variable_index(variable)]
            iterations = ops.cast(self.iterations, variable.dtype)
            lr = ops.cast(learning_rate, variable.dtype) * (1.0 / (1.0 + self.decay * iterations))
            self.assign(a, self.rho * a + (1.0 - self.rho) * ops.square(gradient))
            self.assign_sub(variable, lr * gradient / (ops.sqrt(a) + self.epsilon))

    return Keras2RMSprop


def keras2_binary_crossentropy(keras, values: list[float]):
    """Keras 2.0.8's loss; each batch's value is appended to `values` in float64 (train_on_batch returns the
    loss through a float32 metric)."""
    ops = keras.ops

    def binary_crossentropy(y_true, y_pred):
        """keras 2.0.8 losses.binary_crossentropy with its TensorFlow backend's K.binary_crossentropy."""
        eps = 1e-7  # keras 2.0.8 backend/common.py _EPSILON = 10e-8
        output = ops.clip(y_pred, eps, 1 - eps)
        logits = ops.log(output / (1 - output))
        # tf.nn.sigmoid_cross_entropy_with_logits: max(x, 0) - x z + log(1 + exp(-|x|))
        loss = ops.relu(logits) - logits * y_true + ops.log1p(ops.exp(-ops.abs(logits)))
        loss = ops.mean(loss, axis=-1)
        values.append(float(ops.stop_gradient(ops.mean(loss))))  # Keras' reduction: the sum over the batch / its size
        return loss

    return binary_crossentropy


def frogs(n: int) -> np.ndarray:
    files = sorted(FROGS.glob("*.jpg"))[:n]
    if len(files) < n:
        sys.exit(f"{FROGS} has {len(files)} frogs, {n} needed")
    return np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])  # (n, 32, 32, 3) uint8


def variable_names(model, prefix: str) -> dict[int, str]:
    """id(variable) -> `<prefix>/<index of its layer in model.layers>/<kernel|bias>`: names that do not
    depend on how many layers the session made before (Keras numbers `conv2d_<n>` globally)."""
    return {id(v): f"{prefix}/{i}/{v.name}" for i, layer in enumerate(model.layers) for v in layer.weights}


def named_weights(model, prefix: str) -> dict[str, torch.Tensor]:
    names = variable_names(model, prefix)
    return {names[id(v)]: torch.as_tensor(np.array(v.numpy())) for v in model.weights}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", default=os.environ.get("GANFORGE_REF_KERAS_DCGAN"), help="a deep-learning-with-python-notebooks checkout")
    args = ap.parse_args()
    import keras

    if keras.backend.backend() != "torch":
        sys.exit(f"KERAS_BACKEND is {keras.backend.backend()}; run with KERAS_BACKEND=torch")
    if args.ref:
        check_notebook(keras, Path(args.ref))
    else:
        print("no --ref: the rebuild is not compared with the notebook's cells", file=sys.stderr)
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")  # the layers compute and keep their weights in float64
    # Keras 3 demotes a 64-bit result type to 32 bits on every backend but TensorFlow (JAX's default), so a
    # float64 Dense would multiply in float32: keep float64 float64.
    from keras.src.backend.common import dtypes

    dtypes.BIT64_TO_BIT32_DTYPE["float64"] = "float64"
    keras.utils.set_random_seed(SEED)  # the initial weights (glorot_uniform) and numpy's draws below
    a = ARGS
    generator, discriminator = build(keras, a["latent_dim"], a["width"], a["ngf"], a["ndf"], a["size"], a["channels"], a["dropout"])
    losses: list[float] = []
    rmsprop, bce = keras2_rmsprop(keras), keras2_binary_crossentropy(keras, losses)
    discriminator.compile(optimizer=rmsprop(**OPTIMIZERS["D"]), loss=bce)
    discriminator.trainable = False
    gan_input = keras.Input(shape=(a["latent_dim"],))
    gan = keras.models.Model(gan_input, discriminator(generator(gan_input)))
    gan.compile(optimizer=rmsprop(**OPTIMIZERS["GAN"]), loss=bce)

    masks: list[np.ndarray] = []
    dropout_call = keras.layers.Dropout.call

    def recorded_dropout(self, inputs, training=False):
        if not training:
            return dropout_call(self, inputs, training=training)
        keep = (np.random.random(tuple(inputs.shape)) >= self.rate).astype("float64")
        masks.append(keep)
        return inputs * keras.ops.convert_to_tensor(keep) / (1.0 - self.rate)

    keras.layers.Dropout.call = recorded_dropout

    pixels = frogs(a["batch"] * a["iterations"])
    x_train = pixels.astype("float64") / 255.0
    out = {"data/frogs": torch.as_tensor(pixels), **named_weights(generator, "init/G"), **named_weights(discriminator, "init/D")}
    batch_size, start = a["batch"], 0
    for step in range(a["iterations"]):
        random_latent_vectors = np.random.normal(size=(batch_size, a["latent_dim"]))
        generated_images = generator.predict(random_latent_vectors, verbose=0)
        stop = start + batch_size
        real_images = x_train[start:stop]
        combined_images = np.concatenate([generated_images, real_images])
        labels = np.concatenate([np.ones((batch_size, 1)), np.zeros((batch_size, 1))])
        uniform = np.random.random(labels.shape)
        labels += 0.05 * uniform
        discriminator.trainable = True  # Keras 2: D was compiled trainable
        discriminator.train_on_batch(combined_images, labels)
        d_loss = losses[-1]
        discriminator.trainable = False  # Keras 2: the GAN was compiled with D frozen
        gan_latent_vectors = np.random.normal(size=(batch_size, a["latent_dim"]))
        gan.train_on_batch(gan_latent_vectors, np.zeros((batch_size, 1)))
        a_loss = losses[-1]
        start += batch_size
        if start > len(x_train) - batch_size:
            start = 0
        out.update(
            {
                f"step{step}/z_d": torch.as_tensor(random_latent_vectors),
                f"step{step}/label_uniform": torch.as_tensor(uniform[:, 0]),
                f"step{step}/z_g": torch.as_tensor(gan_latent_vectors),
                f"step{step}/mask_d": torch.as_tensor(masks[-2]),
                f"step{step}/mask_g": torch.as_tensor(masks[-1]),
                f"step{step}/loss/d_loss": torch.tensor([float(d_loss)], dtype=torch.float64),
                f"step{step}/loss/a_loss": torch.tensor([float(a_loss)], dtype=torch.float64),
                **named_weights(generator, f"step{step}/G"),
                **named_weights(discriminator, f"step{step}/D"),
            }
        )
        assert len(masks) == 2 * (step + 1), "D runs in training mode exactly twice an iteration"
    for name, opt, model in (("D", discriminator.optimizer, discriminator), ("G", gan.optimizer, generator)):
        names = variable_names(model, f"rmsprop/{name}")
        for v, acc in zip(opt._trainable_variables, opt.accumulators, strict=True):
            out[names[id(v)]] = torch.as_tensor(np.array(acc.numpy()))
    meta = {
        "reference": f"fchollet/deep-learning-with-python-notebooks {PINNED} {NOTEBOOK} (rebuilt; see make_keras_dcgan.py)",
        "keras": keras.__version__,
        "args": json.dumps(ARGS),
        "optimizers": json.dumps(OPTIMIZERS),
        "checked_against_notebook": str(bool(args.ref)),
    }
    path = save_fixture("keras_dcgan", out, meta)
    print(f"{path}: {len(out)} tensors, {path.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
