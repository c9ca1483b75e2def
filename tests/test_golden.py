"""Golden files: templates/NAME_training.jinja is exactly what `tmplc augment templates/NAME.jinja`
writes (default 200 examples, seed 0). `pytest --update-goldens` rewrites them."""

import pytest
from conftest import REPO, read

from tmplc import augment, verify
from tmplc.containers import Source, output_path

ORIGINALS = sorted(p for p in (REPO / "templates").glob("*.jinja") if not p.stem.endswith("_training"))


def test_at_least_twelve_families():
    assert len(ORIGINALS) >= 12
    sources = (REPO / "templates" / "SOURCES.md").read_text()
    for path in ORIGINALS:
        assert f"`{path.name}`" in sources, f"{path.name} has no provenance row"


@pytest.mark.parametrize("path", ORIGINALS, ids=lambda p: p.stem)
def test_golden(path, update_goldens):
    result = augment(read(path), path.name, examples=200, seed=0)
    assert result.status == "proved", (result.reason, result.message)
    golden = output_path(Source(path, ""), None)
    if update_goldens:
        golden.write_text(result.text, encoding="utf-8", newline="")
    assert golden.exists(), "run pytest --update-goldens"
    assert read(golden) == result.text
    assert "proof: 200 examples, seed 0" in result.text.splitlines()[0]
    # The checked-in file also passes an independent proof with another seed.
    assert verify(read(path), read(golden), examples=30, seed=123).ok
