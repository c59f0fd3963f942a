"""Errors the command line reports as one line with exit code 2."""

EXIT_SAME = 0
EXIT_DIVERGENT = 1
EXIT_USAGE = 2
EXIT_INCONCLUSIVE = 3  # the baselines did not reproduce the recording: the run could not test (diff.fidelity)
EXIT_INTERRUPTED = 130  # the shell's convention for SIGINT


class UserError(Exception):
    """Bad input from the user: the message says what was wrong and what to do."""
