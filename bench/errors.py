"""User-facing errors: the CLI prints their message (no traceback) and exits non-zero."""


class UserError(Exception):
    """Bad input a user can fix (files, arguments, configuration)."""


class DataError(UserError):
    """A dataset file or folder is missing, corrupt, unsafe or not in the EEG-CVPR40 layout."""
