"""The one exception type the data package raises for bad input."""


class DatasetError(ValueError):
    """A dataset, archive or data configuration is malformed or unsafe.

    It subclasses ValueError so callers that already treat bad input as a ValueError
    keep working; the message always names the offending file (or config field) and
    the problem, because it is shown to users who have to fix their upload.
    """
