"""Errors raised by recsys-db.

Messages follow pgvector's style: lowercase, specific, no trailing period.
"""


class RecsysError(Exception):
    """Base class for every error recsys-db raises on purpose."""


class ConfigError(RecsysError):
    """The model's configuration or its source does not allow training."""


class DataError(RecsysError):
    """The source data cannot be trained on (bad weights, nothing to train)."""


class TrainingError(RecsysError):
    """Fitting the model failed (for example the factors became NaN)."""


class EngineError(RecsysError):
    """The training engine failed or could not be reached (a Spark master, its executors);
    unlike TrainingError, trying again later may help."""
