"""recsys-db: implicit-feedback ALS recommendations as a property of your PostgreSQL database."""

__version__ = "0.1.0"
