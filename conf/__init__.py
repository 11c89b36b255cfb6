"""ganforge's Hydra configs, installed as the package `ganforge.conf` (see [tool.setuptools] in pyproject.toml)."""
