"""One exception type for bad input: the CLI turns it into a one-line error and exit code 2."""


class LtmError(Exception):
    """A user-facing problem (bad params, bad data, bad checkpoint). The message is one line."""
