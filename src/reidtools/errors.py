"""Errors that the CLI turns into exit code 1 and one line of text."""


class ReidError(Exception):
    """A runtime error the user can act on: bad input, a missing model, a failed rule."""


class UsageError(ReidError):
    """A usage error found below the CLI (task split, environment variables): exit code 2."""


class SampleError(ReidError):
    """A sample that breaks the contract; the message names its shard and key."""

    def __init__(self, shard: str, key: str | None, message: str):
        self.shard, self.key = shard, key
        where = f"{shard}: {key}" if key else shard
        super().__init__(f"{where}: {message}")
