"""Fuzz the CLI contract with mutated real templates (issue 10).

hypothesis draws a bundled template (``templates/*.jinja``, originals only) and applies 1-3
mutations: delete, duplicate or swap characters; delete, duplicate or swap whole tags
(``{% %}``, ``{{ }}``, ``{# #}``); insert a delimiter or a block tag. ``tmplc augment`` and
``tmplc lint`` run on each mutant, in-process, in a fresh directory. The contract:

* no exception escapes (no traceback), exit codes in {0, 1, 2}, exit 2 is one line;
* exit 1 or 2: nothing is written (the directory is byte-for-byte as before);
* exit 0: exactly ``NAME_training.jinja`` is added; the mutant itself is never modified;
* the bundled templates are untouched.

The default run draws ``FUZZ_SMALL`` mutants (well under 2 minutes). The long run:
``HYPOTHESIS_PROFILE=fuzz python -m pytest -q -s tests/test_fuzz.py`` (300 mutants; set
``TMPLC_FUZZ_REPORT=counts.json`` to keep the counts).
"""

import hashlib
import json
import os
import re
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import REPO
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tmplc.cli import main

ORIGINALS = sorted(p for p in (REPO / "templates").glob("*.jinja") if not p.stem.endswith("_training"))
TAG_RE = re.compile(r"\{%.*?%\}|\{\{.*?\}\}|\{#.*?#\}", re.S)
INSERTS = ["{%", "%}", "{{", "}}", "{#", "'", '"', "\n", "{% endif %}", "{% if x %}", "{% endfor %}",
           "{% generation %}", "{% endgeneration %}", "{%- else -%}", "|", "(", ")"]
FUZZ_SMALL = 20
FUZZ_EXAMPLES = settings().max_examples if os.environ.get("HYPOTHESIS_PROFILE") == "fuzz" else FUZZ_SMALL
COUNTS: Counter = Counter()


def read(path: Path) -> str:
    with open(path, encoding="utf-8", newline="") as fh:
        return fh.read()


@st.composite
def mutation(draw, text: str) -> str:
    tags = [m.span() for m in TAG_RE.finditer(text)]
    kind = draw(st.sampled_from(["delete", "duplicate", "swap", "insert"] + ["tag"] * bool(tags)))
    if not text:
        return draw(st.sampled_from(INSERTS))
    i = draw(st.integers(0, len(text) - 1))
    n = draw(st.integers(1, 8))
    if kind == "delete":
        return text[:i] + text[i + n:]
    if kind == "duplicate":
        return text[:i] + text[i:i + n] * 2 + text[i + n:]
    if kind == "insert":
        return text[:i] + draw(st.sampled_from(INSERTS)) + text[i:]
    if kind == "swap":
        j = draw(st.integers(0, len(text) - 1))
        i, j = min(i, j), max(i, j)
        return text if i == j else text[:i] + text[j] + text[i + 1:j] + text[i] + text[j + 1:]
    a, b = sorted(draw(st.lists(st.integers(0, len(tags) - 1), min_size=2, max_size=2)))
    (s1, e1), (s2, e2) = tags[a], tags[b]
    op = draw(st.sampled_from(["delete", "duplicate", "swap"]))
    if op == "delete":
        return text[:s1] + text[e1:]
    if op == "duplicate":
        return text[:e1] + text[s1:e1] + text[e1:]
    return text if a == b else text[:s1] + text[s2:e2] + text[e1:s2] + text[s1:e1] + text[e2:]


@st.composite
def mutants(draw) -> tuple[str, str]:
    path = draw(st.sampled_from(ORIGINALS))
    text = read(path)
    for _ in range(draw(st.integers(1, 3))):
        text = draw(mutation(text))
    return path.name, text


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


@pytest.fixture(scope="module", autouse=True)
def originals_untouched():
    digest = lambda: {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in ORIGINALS}  # noqa: E731
    before = digest()
    yield
    assert digest() == before
    report = dict(sorted(COUNTS.items()))
    print(f"\nfuzz counts: {json.dumps(report)}")
    if os.environ.get("TMPLC_FUZZ_REPORT"):
        Path(os.environ["TMPLC_FUZZ_REPORT"]).write_text(json.dumps(report, indent=1) + "\n")


def invoke(*args: str):
    result = CliRunner().invoke(main, list(args))
    assert isinstance(result.exception, (SystemExit, type(None))), result.exception  # no traceback
    assert "Traceback" not in result.output
    assert result.exit_code in (0, 1, 2), result.output
    if result.exit_code == 2:
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(mutants())
def test_mutated_templates_keep_the_contract(mutant):
    name, text = mutant
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        src = root / name
        src.write_bytes(text.encode("utf-8", "surrogatepass"))
        before = snapshot(root)
        result = invoke("augment", str(src), "--examples", "3", "--timeout", "10")
        after = snapshot(root)
        if result.exit_code == 0:
            training = src.name[: -len(".jinja")] + "_training.jinja"
            assert after[src.name] == before[src.name]
            assert set(after) - set(before) <= {training}
        else:
            assert after == before
        reason = re.search(r": unsupported \[([a-z-]+)\]", result.output)
        COUNTS[f"augment exit {result.exit_code}"] += 1
        if reason:
            COUNTS[f"reason {reason.group(1)}"] += 1
        lint = invoke("lint", str(src))
        COUNTS[f"lint exit {lint.exit_code}"] += 1
        assert snapshot(root) == after
    COUNTS["mutants"] += 1
