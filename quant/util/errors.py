"""One exception type for bad user input: its message is one line that names the problem."""


class QuantError(ValueError):
    """Bad input (weights, ONNX, data, images, imgsz, thresholds): ``str(e)`` is a one-line message."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))  # always one line


class BuildError(QuantError):
    """A variant's build failed (a worker crashed or hung, a timeout): one line; only that variant fails."""
