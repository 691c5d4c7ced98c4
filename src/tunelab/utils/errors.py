"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class TunelabError(Exception):
    """A user-facing error: the message names the file, line, key or value and what would be valid."""


class ConfigError(TunelabError):
    pass


class DataError(TunelabError):
    pass


class ModelError(TunelabError):
    pass
