"""tmplc: compile chat templates into training templates with proven ``{% generation %}`` markers."""

__version__ = "0.1.0"

from .compiler import AugmentResult, augment, verify  # noqa: E402

__all__ = ["AugmentResult", "augment", "verify", "__version__"]
