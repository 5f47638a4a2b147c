"""The one exception type of the pipeline: a one-line message meant for the user."""


class PipelineError(RuntimeError):
    """Bad params, bad study file, unreachable tracking server, unusable results (message is one line)."""
