import os
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parent.parent
# The vendored copy (tests/corpus, provenance in its MANIFEST.tsv) makes the suite self-contained;
# the workplace's shared corpus, when it exists beside the repository, adds the templates that
# are not vendored yet.
CORPUS = REPO / "tests" / "corpus"
SHARED_CORPUS = REPO.parent / "shared" / "corpus"

settings.register_profile("ci", max_examples=25, deadline=None, suppress_health_check=list(HealthCheck),
                          derandomize=True, database=None)
settings.register_profile("dev", max_examples=100, deadline=None, suppress_health_check=list(HealthCheck),
                          database=None)
# The long fuzz run of tests/test_fuzz.py: HYPOTHESIS_PROFILE=fuzz python -m pytest -q -s tests/test_fuzz.py
settings.register_profile("fuzz", max_examples=300, deadline=None, suppress_health_check=list(HealthCheck),
                          database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# Proof examples per augment in tests (the CLI default is 200).
PROOF_EXAMPLES = 40 if os.environ.get("HYPOTHESIS_PROFILE") == "ci" else 100


def extra_corpus_files() -> list[Path]:
    """Templates of ../shared/corpus that are not vendored (none when it does not exist)."""
    if not SHARED_CORPUS.is_dir():
        return []
    vendored = {p.name for p in CORPUS.glob("*.jinja")}
    return sorted(p for p in SHARED_CORPUS.glob("*.jinja") if p.name not in vendored)


def corpus_files() -> list[Path]:
    """Every corpus template: the vendored ones, then the shared ones not vendored."""
    files = sorted(CORPUS.glob("*.jinja"))
    assert files, f"vendored corpus missing at {CORPUS}"
    return files + extra_corpus_files()


# A template that raises on every conversation: tmplc cannot prove it (exit 1, raises-on-every-probe).
UNPROVABLE = "{{ raise_exception('this template refuses every conversation') }}"


def qwen2_5_masking_the_cue() -> str:
    """tmplc's qwen2_5 golden rebuilt with TRL's defect: the cue's newline inside the generation
    block (same rendering, the mask covers the '\\n' of '<|im_start|>assistant\\n')."""
    good = (REPO / "templates" / "qwen2_5_training.jinja").read_text(encoding="utf-8")
    cue = "{{- '<|im_start|>' + message.role + '\\n' }}{% if (message.role == \"assistant\") %}{% generation %}{{ '' + "
    moved = "{{- '<|im_start|>' + message.role }}{% if (message.role == \"assistant\") %}{% generation %}{{ '\\n' + "
    other = "{% else %}{{ '' + message.content"
    assert good.count(cue) == 1 and good.count(other) == 1, "the qwen2_5 golden changed shape"
    return good.replace(cue, moved).replace(other, "{% else %}{{ '\\n' + message.content")


def read(path: Path) -> str:
    with open(path, encoding="utf-8", newline="") as fh:
        return fh.read()


@cache
def augmented(name: str, examples: int, seed: int = 0):
    """``augment`` of the corpus template ``NAME.jinja`` (labelled ``NAME.jinja``), computed once per
    session for the same arguments: test_augment and test_trl_compare prove the same TRL templates
    with the same examples and seed (augment is deterministic in them). Treat the result as read-only."""
    from tmplc import augment

    return augment(read(CORPUS / f"{name}.jinja"), f"{name}.jinja", examples=examples, seed=seed)


@pytest.fixture
def repo():
    return REPO


def pytest_addoption(parser):
    parser.addoption("--update-goldens", action="store_true", help="Rewrite templates/*_training.jinja and docs/coverage.md.")


@pytest.fixture
def update_goldens(request):
    return request.config.getoption("--update-goldens") or bool(os.environ.get("TMPLC_UPDATE_GOLDENS"))
