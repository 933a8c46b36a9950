"""overparam: controlled experiments on implicit regularization and generalization in
overparameterized neural networks."""

from overparam.errors import ConfigError, DataError, ModelError, OverparamError

__version__ = "0.1.0"

__all__ = ["ConfigError", "DataError", "ModelError", "OverparamError", "__version__"]
