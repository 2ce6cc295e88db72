"""Backend registries for header routing (seed 001): the environment and the config (`base`), and
DynamoDB items (`dynamodb`, the one adapter here that does I/O)."""

from .base import (
    DEFAULT_BACKENDS,
    Backend,
    BackendRegistry,
    ChainRegistry,
    ConfigRegistry,
    EnvRegistry,
    InvalidBackend,
    choose_backend,
    location_of,
    validate_backend_url,
)
from .dynamodb import DYNAMODB_PREFIX, DynamoDBRegistry

__all__ = [
    "DEFAULT_BACKENDS",
    "DYNAMODB_PREFIX",
    "Backend",
    "BackendRegistry",
    "ChainRegistry",
    "ConfigRegistry",
    "DynamoDBRegistry",
    "EnvRegistry",
    "InvalidBackend",
    "choose_backend",
    "location_of",
    "validate_backend_url",
]
