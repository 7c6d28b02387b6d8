"""recsys-db: implicit-feedback ALS recommendations as a property of your PostgreSQL database."""

__version__ = "0.1.0"

from recsys_db.api import Recsys, Rows, connect

__all__ = ["Recsys", "Rows", "__version__", "connect"]
