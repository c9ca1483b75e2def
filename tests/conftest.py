import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus"

settings.register_profile("ci", max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
settings.register_profile("dev", max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# Proof examples per augment in tests (the CLI default is 200).
PROOF_EXAMPLES = 40 if os.environ.get("HYPOTHESIS_PROFILE") == "ci" else 100


def corpus_files():
    files = sorted(CORPUS.glob("*.jinja"))
    assert files, f"corpus not found at {CORPUS}"
    return files


def read(path: Path) -> str:
    with open(path, encoding="utf-8", newline="") as fh:
        return fh.read()


@pytest.fixture
def repo():
    return REPO


def pytest_addoption(parser):
    parser.addoption("--update-goldens", action="store_true", help="Rewrite templates/*_training.jinja and docs/coverage.md.")


@pytest.fixture
def update_goldens(request):
    return request.config.getoption("--update-goldens") or bool(os.environ.get("TMPLC_UPDATE_GOLDENS"))
