"""Split straddling output nodes so the mask boundary falls between nodes.

A node labelled *straddling* by :mod:`tmplc.locate` writes prompt and generated text in one
emission. Four strategies, each leaving the rendering unchanged:

* a concatenation ``{{ a + b ~ c }}`` becomes ``{{ a }}{{ b }}{{ c }}`` (joined again by
  :func:`tmplc.edits.cleanup` where no marker ends up between the parts);
* a string literal ``{{ '<|assistant|>\\n' }}`` is cut into two literals at the boundary;
* a text run gets a split placeholder at the boundary;
* any other value ``{{ X }}`` becomes ``{{ X[:K] }}{{ X[K:] }}`` with ``K`` found at run time
  from a fixed anchor text (:func:`runtime_split`), or as the length of the common prefix of
  ``X`` and the generation prompt's tail, chosen by a traced condition (:func:`prompt_split`).

Offsets are characters of the template source or of an emission, as each function says.
"""

from __future__ import annotations

import json

from .edits import JOIN_OPEN, SPLIT_MARK
from .locate import STRADDLE, Evidence, Labelled
from .reasons import CannotAugment, Reason
from .syntax import Output, Template, Text
from .trace import Instrumented, Site

_LOW = {"if", "else", "and", "or", "not", "in", "is"}
_LOWOPS = {"==", "!=", "<", ">", "<=", ">=", "-", "*", "/", "//", "%", "**", ","}


def concat_terms(node: Output) -> list[tuple[int, int]] | None:
    """Source spans of the terms of a top-level ``a + b ~ c`` concatenation, or None."""
    sig = node.sig()
    depth = 0
    cuts: list[int] = []
    for k, t in enumerate(sig):
        if t.kind == "OP" and t.text in "([{":
            depth += 1
        elif t.kind == "OP" and t.text in ")]}":
            depth -= 1
        elif depth == 0:
            if (t.kind == "NAME" and t.text in _LOW) or (t.kind == "OP" and t.text in _LOWOPS):
                return None
            if t.kind == "OP" and t.text in ("+", "~"):
                if k == 0 or k == len(sig) - 1:
                    return None
                cuts.append(k)
    # `~` binds tighter than `+` in Jinja (`a + b ~ c` is `a + (b ~ c)`): when both occur at the
    # top level, only the `+` separate terms.
    if any(sig[k].text == "+" for k in cuts):
        cuts = [k for k in cuts if sig[k].text == "+"]
    if not cuts:
        return None
    spans = []
    prev = 0
    for k in cuts + [len(sig)]:
        part = sig[prev:k]
        if not part:
            return None
        spans.append((part[0].start, part[-1].end))
        prev = k + 1
    return spans


def _unescape(raw_inner: str) -> str:
    text = raw_inner.replace("\r\n", "\n").replace("\r", "\n")
    return text.encode("ascii", "backslashreplace").decode("unicode-escape")


def split_literal(literal: str, offset: int) -> tuple[str, str] | None:
    """Split a Jinja string literal so the first part's value has ``offset`` characters."""
    q, inner = literal[0], literal[1:-1]
    full = _unescape(inner)
    for p in range(len(inner) + 1):
        try:
            a, b = _unescape(inner[:p]), _unescape(inner[p:])
        except UnicodeDecodeError:
            continue
        if len(a) == offset and a + b == full:
            return q + inner[:p] + q, q + inner[p:] + q
    return None


Edit = tuple[int, int, str]  # (start, end, replacement) in characters of the template source


def split_edits(template: Template, inst: Instrumented, evidence: Evidence) -> list[Edit]:
    """Replacements that split every straddling node, or [] when none straddles.

    Raises:
        CannotAugment: ``unsplittable-output`` for a node no strategy can split.
    """
    edits: list[Edit] = []
    for site in inst.sites:
        straddles = [it for it in evidence.labels.get(site.id, []) if it.label == STRADDLE]
        if not straddles:
            continue
        node = site.node
        cuts = sorted({c for it in straddles for c in it.cuts})
        if isinstance(node, Output):
            edits += _split_output(template, site, straddles, cuts, evidence)
        elif isinstance(node, Text):
            edits += _split_text(template.source, node, evidence.emitted(straddles[0]), cuts)
        else:
            raise CannotAugment(Reason.UNSPLITTABLE_OUTPUT,
                                f"output at offset {node.start} writes both prompt and generated text")
    return edits


def _split_output(template: Template, site: Site, straddles: list[Labelled], cuts: list[int],
                  evidence: Evidence) -> list[Edit]:
    """A ``{{ }}`` node: at its top-level ``+``/``~``, inside its string literal, or at run time."""
    source = template.source
    node = site.node
    assert isinstance(node, Output)
    terms = concat_terms(node)
    if terms:
        return _split_concatenation(source, node, terms)
    sig = node.sig()
    if len(sig) == 1 and sig[0].kind == "STRING":
        pieces, consumed, rest = [], 0, sig[0].text
        for c in cuts:
            parts = split_literal(rest, c - consumed)
            if parts is None:
                raise CannotAugment(Reason.UNSPLITTABLE_OUTPUT, f"cannot split string literal {sig[0].text!r}")
            pieces.append(parts[0])
            rest, consumed = parts[1], c
        pieces.append(rest)
        return [(sig[0].start, sig[0].end, " }}{{ ".join(pieces))]
    edit = runtime_split(node, source, straddles, evidence.emitted) or prompt_split(node, source, site, straddles,
                                                                                   evidence.emitted)
    if edit is None:
        raise CannotAugment(
            Reason.UNSPLITTABLE_OUTPUT,
            f"{template.where(node)}: one value writes both the prompt cue and "
            "generated text, and no fixed text marks the boundary",
            evidence.cases.get(straddles[0].emission.trace),
        )
    return [edit]


def _split_concatenation(source: str, node: Output, terms: list[tuple[int, int]]) -> list[Edit]:
    """``{{ a + b ~ c }}`` → ``{{ a }}{{ b }}{{ c }}`` with join notes for :func:`tmplc.edits.cleanup`."""
    literal = {(t.start, t.end) for t in node.sig() if t.kind == "STRING"}
    edits = []
    for (a_start, a_end), (b_start, b_end) in zip(terms, terms[1:]):
        sep = source[a_end:b_start]
        # `a + b` raises TypeError unless both are strings; keep that in each half
        # (`'' + None` raises the same message as `'\n' + None`).
        plus = sep.strip() == "+"
        left = " + ''" if plus and (a_start, a_end) not in literal else ""
        right = " '' +" if plus and (b_start, b_end) not in literal else ""
        edits.append((a_end, b_start, left + " }}" + JOIN_OPEN + sep + "#}{{" + right + " "))
    return edits


def _split_text(source: str, node: Text, emitted: str, cuts: list[int]) -> list[Edit]:
    """A text run: split placeholders at ``cuts`` (characters of the emitted text, which is the
    run's text with line endings normalised and surrounding whitespace possibly trimmed)."""
    raw = source[node.start : node.end]
    norm_to_raw, norm = [], []  # normalized index → raw index
    i = 0
    while i < len(raw):
        norm_to_raw.append(i)
        if raw[i] == "\r":
            norm.append("\n")
            i += 2 if raw[i : i + 2] == "\r\n" else 1
        else:
            norm.append(raw[i])
            i += 1
    norm_to_raw.append(len(raw))
    ns = "".join(norm)
    h = next(
        (h for h in range(len(ns) - len(emitted) + 1)
         if ns[h : h + len(emitted)] == emitted and not ns[:h].strip() and not ns[h + len(emitted):].strip()),
        None,
    ) if emitted else None
    if h is None:
        raise CannotAugment(Reason.UNSPLITTABLE_OUTPUT, f"cannot place a split in text at offset {node.start}")
    return [(node.start + norm_to_raw[h + c], node.start + norm_to_raw[h + c], SPLIT_MARK) for c in cuts]


def _common_suffix(texts: list[str]) -> str:
    first = texts[0]
    n = 0
    while n < len(first) and all(len(t) > n and t[-1 - n] == first[-1 - n] for t in texts):
        n += 1
    return first[len(first) - n :]


def _common_prefix(texts: list[str]) -> str:
    first = texts[0]
    n = 0
    while n < len(first) and all(len(t) > n and t[n] == first[n] for t in texts):
        n += 1
    return first[:n]


def runtime_split(node: Output, source: str, straddles: list[Labelled], emitted) -> tuple[int, int, str] | None:
    """Split ``{{ X }}`` into ``{{ X[:K] }}{{ X[K:] }}`` where ``K`` is found at run time from a
    fixed anchor text (Llama 3's ``content`` variable = header + message + ``<|eot_id|>``).

    ``X[:K] ~ X[K:] == X`` for every string and every ``K``, so rendering never changes; the anchor
    only decides where the boundary falls. The first cut of every straddling emission must be
    the end of the first occurrence of a common suffix of the prompt parts (cue → body), or the
    start of the last occurrence of a common prefix of the tails (body → next cue).
    """
    texts = [emitted(it) for it in straddles]
    firsts = [it.cuts[0] for it in straddles]
    code = node.code(source).strip()
    x = f"({code})"
    for direction in ("cue", "tail"):
        if direction == "cue":
            anchor = _common_suffix([t[:c] for t, c in zip(texts, firsts)])
            ok = anchor and all(t.find(anchor) + len(anchor) == c for t, c in zip(texts, firsts))
            k = f"{x}.find({json.dumps(anchor, ensure_ascii=False)}) + {len(anchor)}"
        else:
            anchor = _common_prefix([t[c:] for t, c in zip(texts, firsts)])
            ok = anchor and all(t.rfind(anchor) == c for t, c in zip(texts, firsts))
            k = f"{x}.rfind({json.dumps(anchor, ensure_ascii=False)})"
        if ok:
            replacement = f"{node.open} {x}[:{k}] }}}}{{{{ {x}[{k}:] {node.close}"
            return node.start, node.end, replacement
    return None


def _lcp_code(x: str, prompt: str) -> str:
    """Jinja: the length of the common prefix of the value ``x`` (code) and the literal ``prompt``."""
    code = "0"
    for n in range(1, len(prompt) + 1):
        code = f"({n} if {x}.startswith({json.dumps(prompt[:n], ensure_ascii=False)}) else {code})"
    return code


def _prompt_of(items: list[tuple[str, int]]) -> str | None:
    """The text whose common prefix with each emission ``t`` is its cut ``c``: the longest
    ``t[:c]``, when every other one agrees with it; None when there is none."""
    prompt = max((t[:c] for t, c in items), key=len)
    ok = all(len(_common_prefix([t, prompt])) == c for t, c in items) if prompt else False
    return prompt if ok else None


def prompt_split(node: Output, source: str, site, straddles: list[Labelled], emitted) -> tuple[int, int, str] | None:
    """Split ``{{ X }}`` into ``{{ X[:K] }}{{ X[K:] }}`` where ``K`` is the length of the common
    prefix of ``X`` and the part of the generation prompt it overlaps: the oracle counts as
    prompt the part of the generation prompt that the rendering shares (docs/oracle.md), so a
    value that starts with reasoning markup (Nemotron 3's ``<think></think>`` + content, against
    the prompt's ``<think>\\n`` or ``<think></think>``) is cut there. The prompt's text is read from
    the traced cuts; where it depends on a template switch, a traced global atom chooses
    (``enable_thinking``). ``X[:K] ~ X[K:] == X`` for every ``K``: rendering never changes.
    """
    items = [(emitted(it), it.cuts[0]) for it in straddles if len(it.cuts) == 1]
    if len(items) != len(straddles):
        return None
    x = f"({node.code(source).strip()})"
    prompt = _prompt_of(items)
    if prompt is not None:
        k = _lcp_code(x, prompt)
    else:
        k = None
        for atom in [a for a in site.atoms if a.scope == -1]:
            on = [(emitted(it), it.cuts[0]) for it in straddles if it.emission.atoms.get(atom)]
            off = [(emitted(it), it.cuts[0]) for it in straddles if not it.emission.atoms.get(atom)]
            p_on, p_off = (_prompt_of(on) if on else ""), (_prompt_of(off) if off else "")
            if on and off and p_on is not None and p_off is not None:
                k = f"({_lcp_code(x, p_on)} if ({atom.text}) else {_lcp_code(x, p_off)})"
                break
        if k is None:
            return None
    return node.start, node.end, f"{node.open} {x}[:{k}] }}}}{{{{ {x}[{k}:] {node.close}"
