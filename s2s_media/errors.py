"""User-facing errors.

Anything a user can cause (a bad file, a bad config key, a bad manifest line) raises
:class:`UserError` with a one-line message that names the file, field or limit and says
what to do. The CLI prints these without a traceback; anything else is a bug.
"""


class UserError(Exception):
    """A problem with the user's input, explained in one line."""


class AudioError(UserError):
    """An audio file could not be read or is unusable."""


class ConfigError(UserError):
    """A config has an unknown key, a wrong type or an invalid value."""


class ManifestError(UserError):
    """A manifest line is not valid JSON or misses a required field."""


class ImageError(UserError):
    """An image file could not be read or is unusable."""
