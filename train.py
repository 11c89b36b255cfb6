"""Train a GAN: `python train.py model=<gan> data=<dataset> [trainer=...] [logger=...]`. See README."""

from ganforge.cli.train import train_main

if __name__ == "__main__":
    train_main()
