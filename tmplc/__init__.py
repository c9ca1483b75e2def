"""tmplc: compile chat templates into training templates with proven ``{% generation %}`` markers.

``tmplc.augment`` and ``tmplc.verify`` are loaded on first use, so ``tmplc lint`` never imports
hypothesis (nor transformers, which tmplc only uses in tests).
"""

__version__ = "0.1.0"

__all__ = ["AugmentResult", "augment", "verify", "__version__"]


def __getattr__(name):
    if name in ("AugmentResult", "augment", "verify"):
        from . import compiler

        return getattr(compiler, name)
    raise AttributeError(name)
