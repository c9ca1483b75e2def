"""``tmplc show``: render a conversation and show which characters the training template masks.

The mask shown is the one transformers computes: the ``{% generation %}`` spans of the
*training* template rendered on the conversation. ``TEMPLATE`` may already be a training
template (its own markers are shown, not re-proved) or an original (tmplc augments and proves it
first and shows the spans of the training template it would write; a template that cannot be
proved is an error, exit 1).

Each character of the rendering is one of four kinds (:data:`KINDS`):

* ``masked`` — inside a generation span: the model is trained on it;
* ``stop`` — masked text after the turn's last field (the end-of-turn/stop token);
* ``cue`` — unmasked generation-prompt text right before a turn (``<|im_start|>assistant\\n``):
  ``G_i = render(C[:i], add_generation_prompt=True) - render(C[:i])`` as far as it precedes the
  turn's mask;
* ``prompt`` — everything else (unmasked).

Turn boundaries and field ends come from the oracle (:mod:`tmplc.verification`) run on a *shadow* copy
of the conversation whose fields carry the oracle's sentinels; shadow offsets are mapped back to
the real rendering when removing the sentinels gives it back (the template does not transform
the field text). Otherwise cue and stop are still shown from the generation prompt and the
spans, and the oracle comparison is skipped (``oracle_agrees`` is None).
All offsets are characters of the rendered text, never tokens.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .analysed import analyse
from .compiler import Unsupported, augment
from .containers import Source, atomic_write, read_sources
from .conversations import SENTINEL_RE, TOOLS, Case, sentinel, tool_call, wrap
from .errors import InputError, NotProved, OutputError
from .oracle import generation_prompt
from .probes import detect_features
from .render import REASONING_FIELDS, compile_template
from .verification import Raised, Rendered, Renderings, check_renderings, mark_spans, merge_spans

Span = tuple[int, int]
KINDS = ("prompt", "cue", "masked", "stop")
LEGEND = {
    "masked": "masked: trained on (inside {% generation %})",
    "stop": "stop token: masked end of turn after the last field",
    "cue": "prompt cue: generation prompt before the turn (not trained)",
    "prompt": "prompt: not trained",
}
RICH_STYLES = {"masked": "black on green3", "stop": "bold white on dark_green", "cue": "bold magenta underline",
               "prompt": "grey50"}


@dataclass
class Turn:
    """One assistant turn in characters of the rendering: ``mask`` is the union of generation
    spans of the turn; ``cue``/``stop`` are None when the template writes none."""

    message: int
    mask: Span
    cue: Span | None = None
    stop: Span | None = None


@dataclass
class View:
    """A rendered conversation with its mask: ``segments`` are ``(start, end, kind)`` covering
    ``text`` in order; ``oracle_agrees`` is None when the oracle could not be mapped back."""

    title: str
    text: str
    spans: list[Span]
    turns: list[Turn]
    segments: list[tuple[int, int, str]]
    oracle_agrees: bool | None = None
    oracle_detail: str = ""


# --------------------------------------------------------------------------- inputs

def training_template(source: str, label: str, examples: int = 50, seed: int = 0) -> tuple[str, str]:
    """The training template to show and how it was obtained.

    Args:
        source: template text (original or training). label: file label for errors.
    Returns:
        ``(training_text, how)``, ``how`` one of ``"own markers"``, ``"augmented: proved on N
        examples, seed S"``.
    Raises:
        InputError: malformed Jinja (exit 2). NotProved: augment found no proved placement (exit 1).
    """
    analysed = analyse(source, label)
    if analysed.has_markers:
        return source, "own {% generation %} markers (not re-proved)"
    result = augment(analysed, label, examples=examples, seed=seed)
    if isinstance(result, Unsupported):
        raise NotProved(label, result.reason, result.message.split("\n")[0])
    return result.text, f"augmented by tmplc: proved on {result.report.examples} examples, seed {seed}"


def sample_case(source: str) -> Case:
    """A small conversation the template accepts: system (if supported), user, assistant with a
    tool call and its result (if supported), user, assistant (with reasoning if supported)."""
    f = detect_features(source)
    blocks = f.block_content and not f.string_content

    def c(text):
        return [{"type": "text", "text": text}] if blocks else text

    msgs: list[dict[str, Any]] = []
    if f.system:
        msgs.append({"role": "system", "content": c("You are a helpful assistant.")})
    msgs.append({"role": "user", "content": c("What's the weather in Paris?")})
    tools = TOOLS if (f.tools or f.tools_required) else None
    if f.tool_calls and f.tool_role:
        call = tool_call(0, 0, f.tool_args[0] == "json")
        call["function"]["name"] = "get_weather"
        args = {"city": "Paris"}
        call["function"]["arguments"] = json.dumps(args) if f.tool_args[0] == "json" else args
        msgs.append({"role": "assistant", "content": c("Let me check."), "tool_calls": [call]})
        msgs.append({"role": "tool", "content": c("18°C, sunny"), "tool_call_id": "call0", "name": "get_weather"})
    msgs.append({"role": "assistant", "content": c("It is 18°C and sunny in Paris.")})
    msgs.append({"role": "user", "content": c("Thanks!\nAnd tomorrow?")})
    last: dict[str, Any] = {"role": "assistant", "content": c("I can only see today's weather.")}
    if f.reasoning:
        last["reasoning_content"] = "The tool only reports today."
    msgs.append(last)
    return Case(msgs, tools, f.kwargs(), False)


def _case_from(data: Any, label: str, line: int, base_kwargs: dict[str, Any]) -> Case:
    if not isinstance(data, dict) or not isinstance(data.get("messages"), list) or not data["messages"]:
        raise InputError("expected an object with a non-empty 'messages' list", label, line, 1)
    for k, m in enumerate(data["messages"]):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise InputError(f"message {k}: expected an object with a string 'role'", label, line, 1)
    tools = data.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise InputError("'tools' must be a list", label, line, 1)
    extra = {k: v for k, v in data.items() if k not in ("messages", "tools", "add_generation_prompt")}
    return Case(data["messages"], tools, {**base_kwargs, **extra}, bool(data.get("add_generation_prompt", False)))


def load_conversations(path: Path, base_kwargs: dict[str, Any] | None = None) -> list[Case]:
    """Read ``path``: a ``.json`` object ``{"messages": [...], "tools": [...], KWARG: ...}`` or a
    ``.jsonl`` file with one such object per line (blank lines skipped).

    Keys other than ``messages``, ``tools`` and ``add_generation_prompt`` are template kwargs
    (``enable_thinking``, ``bos_token``...), added to ``base_kwargs``.

    Raises:
        InputError: missing or unreadable file, invalid JSON (at its line:col), wrong shape.
    """
    label = str(path)
    if not path.is_file():
        raise InputError("no such file" if not path.exists() else "is a directory", label, 0, 0)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 (byte offset {exc.start})", label, 1, 1) from None
    base = dict(base_kwargs or {})
    if path.suffix == ".jsonl":
        cases = []
        for n, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"invalid JSON: {exc.msg}", label, n, exc.colno) from None
            cases.append(_case_from(data, label, n, base))
        if not cases:
            raise InputError("no conversation in the file", label, 1, 1)
        return cases
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON: {exc.msg}", label, exc.lineno, exc.colno) from None
    return [_case_from(data, label, 1, base)]


# --------------------------------------------------------------------------- the mask view

def _shadow(case: Case) -> Case:
    """The conversation with every field wrapped in the oracle's sentinels."""
    msgs = []
    for i, m in enumerate(case.messages):
        m = dict(m)
        content = m.get("content")
        # Empty values stay empty: a template tests them (`{% if content %}`).
        if isinstance(content, str) and content:
            m["content"] = wrap(i, "c", content)
        elif isinstance(content, list):
            texts = [k for k, b in enumerate(content) if isinstance(b, dict) and isinstance(b.get("text"), str) and b["text"]]
            if texts:
                content = [dict(b) if isinstance(b, dict) else b for b in content]
                first, last = texts[0], texts[-1]
                content[first]["text"] = sentinel(i, "c") + content[first]["text"]
                content[last]["text"] = content[last]["text"] + sentinel(i, "c", closing=True)
                m["content"] = content
        for key in REASONING_FIELDS:
            if isinstance(m.get(key), str) and m[key]:
                m[key] = wrap(i, "r", m[key])
        if m.get("role") == "assistant" and isinstance(m.get("tool_calls"), list):
            calls = []
            for k, tc in enumerate(m["tool_calls"]):
                if not isinstance(tc, dict):
                    calls.append(tc)
                    continue
                tc = dict(tc)
                fn = dict(tc["function"]) if isinstance(tc.get("function"), dict) else tc
                if isinstance(fn.get("name"), str) and fn["name"]:
                    fn["name"] = wrap(i, f"n{k}", fn["name"])
                args = fn.get("arguments")
                if isinstance(args, str) and args:
                    fn["arguments"] = wrap(i, f"a{k}", args)
                elif isinstance(args, dict):
                    keys = [a for a, v in args.items() if isinstance(v, str) and v]
                    if keys:
                        args = dict(args)
                        args[keys[0]] = sentinel(i, f"a{k}") + args[keys[0]]
                        args[keys[-1]] = args[keys[-1]] + sentinel(i, f"a{k}", closing=True)
                        fn["arguments"] = args
                if fn is not tc:
                    tc["function"] = fn
                calls.append(tc)
            m["tool_calls"] = calls
        msgs.append(m)
    return Case(msgs, case.tools, case.kwargs, case.add_generation_prompt)


def _unshadow(text: str) -> tuple[str, list[int]]:
    """Remove sentinels; return the text and a map shadow offset → plain offset (len+1 long)."""
    out: list[str] = []
    mapping: list[int] = []
    pos = plain = 0
    for m in SENTINEL_RE.finditer(text):
        out.append(text[pos:m.start()])
        mapping += range(plain, plain + m.start() - pos)
        plain += m.start() - pos
        mapping += [plain] * (m.end() - m.start())
        pos = m.end()
    out.append(text[pos:])
    mapping += range(plain, plain + len(text) - pos + 1)
    return "".join(out), mapping


def _cue_before(text: str, start: int, gp: str) -> Span | None:
    """The longest prefix of the generation prompt ``gp`` that ends at ``start`` in ``text``."""
    for k in range(len(gp), 0, -1):
        if start - k >= 0 and text[start - k:start] == gp[:k]:
            return (start - k, start)
    return None


def mask_view(training: str, case: Case, title: str = "") -> View:
    """Render ``case`` with ``training`` and classify every character (see module docstring).

    Args:
        training: a template with ``{% generation %}`` markers. case: the conversation.
    Returns:
        :class:`View` with character offsets into the rendered text.
    Raises:
        InputError: the template raises on the conversation (message = the template's error).
    """
    compiled = compile_template(training)
    rendered = Renderings(compiled, case)
    full = rendered.full()
    if isinstance(full, Raised):  # the template refuses the conversation
        raise InputError(f"the template raises on this conversation: {full}".split("\n")[0],
                         title or "<conversation>", 0, 0)
    text, spans = full.text, list(full.spans)
    masked = merge_spans(spans)
    # Turn boundaries and field ends from the oracle on the shadow conversation.
    oracle_turns: dict[int, Span] = {}
    field_end: dict[int, int] = {}
    agrees: bool | None = None
    detail = ""
    shadow = Renderings(compiled, _shadow(case))
    check = check_renderings(shadow, shadow)  # the mask rules' check, on the sentinel-marked copy
    oracle = check.oracle
    if oracle is not None:
        plain, mp = _unshadow(oracle.text)
        if plain == text:
            oracle_turns = {i: (mp[a], mp[b]) for i, (a, b) in oracle.turns.items()}
            field_end = {i: max(mp[b] for _, b in fs) for i, fs in oracle.fields.items() if fs}
            agrees = check.ok
            if check.defects:
                d = check.defects[0]
                detail = (f"{sum(e.span[1] - e.span[0] for e in check.defects)} characters differ from the oracle's "
                          f"mask, first at offset {mp[d.span[0]]} "
                          f"({'generated but not masked' if d.missing else 'masked but not generated'})")
            elif check.problem is not None:
                detail = check.problem.message
    turns = _turns(rendered, text, masked, oracle_turns, field_end)
    segments = _segments(len(text), masked, turns)
    return View(title, text, list(spans), turns, segments, agrees, detail)


def _turns(rendered: Renderings, text: str, masked: list[Span], oracle_turns: dict[int, Span],
           field_end: dict[int, int]) -> list[Turn]:
    """Each assistant turn's masked span, with its cue (the generation prompt before it) and its
    stop (masked text after its last field); characters of ``text``."""
    turns: list[Turn] = []
    for i, m in enumerate(rendered.case.messages):
        if m.get("role") != "assistant" or i == 0:
            continue
        # Generation prompt G_i, as the oracle defines it.
        p, b = (rendered.get(i, agp) for agp in (True, False))
        gp = generation_prompt(p.text, b.text) if isinstance(p, Rendered) and isinstance(b, Rendered) else ""
        if i in oracle_turns:
            lo, hi = oracle_turns[i]
            mine = [(a, e) for a, e in masked if a < max(hi, lo + 1) and e > lo] or []
        else:
            prev_end = turns[-1].mask[1] if turns else 0
            mine = [s for s in masked if s[0] >= prev_end][:1]
        if not mine:
            continue
        span = (mine[0][0], mine[-1][1])
        cue = _cue_before(text, span[0], gp) if gp else None
        fe = field_end.get(i)
        stop = (fe, span[1]) if fe is not None and span[0] <= fe < span[1] else None
        turns.append(Turn(i, span, cue, stop))
    return turns


def _segments(n: int, masked: list[Span], turns: list[Turn]) -> list[tuple[int, int, str]]:
    """``(start, end, kind)`` runs covering ``n`` characters: cue, then masked, then stop win."""
    kinds = ["prompt"] * n
    for t in turns:
        if t.cue:
            for c in range(*t.cue):
                kinds[c] = "cue"
    for a, b in masked:
        for c in range(a, b):
            kinds[c] = "masked"
    for t in turns:
        if t.stop:
            for c in range(*t.stop):
                kinds[c] = "stop"
    segments: list[tuple[int, int, str]] = []
    for c, k in enumerate(kinds):
        if segments and segments[-1][2] == k:
            segments[-1] = (segments[-1][0], c + 1, k)
        else:
            segments.append((c, c + 1, k))
    return segments


# --------------------------------------------------------------------------- output

def visible(s: str) -> str:
    """Make newlines visible: ``\\n`` → ``↵\\n`` (tabs → ``→``)."""
    return s.replace("\n", "↵\n").replace("\t", "→")


def to_rich(view: View):
    """A ``rich.text.Text`` of the rendering coloured by :data:`RICH_STYLES`."""
    from rich.text import Text

    out = Text()
    for a, b, kind in view.segments:
        out.append(visible(view.text[a:b]), style=RICH_STYLES[kind])
    return out


def print_terminal(console, views: list[View], label: str, how: str) -> None:
    """Print the legend, each view's coloured rendering and one line per turn to ``console``."""
    from rich.text import Text

    console.print(Text.assemble(("tmplc show ", "bold"), label, " — ", how))
    legend = Text()
    for kind in ("masked", "stop", "cue", "prompt"):
        legend.append(f" {kind} ", style=RICH_STYLES[kind])
        legend.append("  ")
    legend.append("(↵ = newline)")
    console.print(legend)
    for view in views:
        console.rule(view.title)
        console.print(to_rich(view), soft_wrap=True)
        for t in view.turns:
            line = Text(f"message {t.message}: mask [{t.mask[0]}, {t.mask[1]})")
            if t.cue:
                line.append("  cue ").append(repr(view.text[t.cue[0]:t.cue[1]]), style=RICH_STYLES["cue"])
            if t.stop:
                line.append("  stop ").append(repr(view.text[t.stop[0]:t.stop[1]]), style=RICH_STYLES["stop"])
            console.print(line, soft_wrap=True)
        console.print(_agreement(view), highlight=False, markup=False)


def _agreement(view: View) -> str:
    if view.oracle_agrees is None:
        return "oracle: not compared (the template transforms field text)"
    if view.oracle_agrees:
        return "oracle: the mask equals the oracle's expected mask"
    return "oracle: MISMATCH — " + view.oracle_detail


CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;background:#fff}
pre.render{white-space:pre-wrap;word-break:break-all;font:14px/1.5 ui-monospace,Menlo,Consolas,monospace;
  border:1px solid #ccc;padding:1em;background:#fff}
.seg.prompt{color:#666;background:transparent}
.seg.cue{color:#8e24aa;font-weight:bold;text-decoration:underline;background:transparent}
.seg.masked{background:#b9f0b0;color:#111}
.seg.stop{background:#1b7a2f;color:#fff;font-weight:bold}
.nl{opacity:.6}
ul.legend{list-style:none;padding:0;display:flex;gap:1.5em;flex-wrap:wrap}
table.turns{border-collapse:collapse;margin:1em 0}
table.turns td,table.turns th{border:1px solid #ccc;padding:.2em .6em;font-family:ui-monospace,monospace;text-align:left}
.agree{color:#1b7a2f}.mismatch{color:#b00020;font-weight:bold}
"""


def _html_text(s: str) -> str:
    return html.escape(s).replace("\n", '<span class="nl">↵</span>\n').replace("\t", "→")


def to_html(views: list[View], label: str, how: str) -> str:
    """A self-contained HTML page (inline CSS, no external assets): legend, each rendering with
    ``<span class="seg KIND" data-start data-end>`` segments and a per-turn table."""
    parts = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>tmplc show: {html.escape(label)}</title>", f"<style>{CSS}</style></head><body>",
             f"<h1>tmplc show: {html.escape(label)}</h1>", f"<p>{html.escape(how)}</p>", '<ul class="legend">']
    for kind in ("masked", "stop", "cue", "prompt"):
        parts.append(f'<li><span class="seg {kind}">{html.escape(kind)}</span> {html.escape(LEGEND[kind].split(": ", 1)[1])}</li>')
    parts.append('<li><span class="nl">↵</span> newline</li></ul>')
    for n, view in enumerate(views):
        parts.append(f'<section class="conversation" id="conversation-{n}"><h2>{html.escape(view.title)}</h2>')
        parts.append('<pre class="render">' + "".join(
            f'<span class="seg {k}" data-start="{a}" data-end="{b}">{_html_text(view.text[a:b])}</span>'
            for a, b, k in view.segments) + "</pre>")
        parts.append('<table class="turns"><tr><th>message</th><th>mask [start, end)</th><th>cue</th><th>stop</th>'
                     "<th>masked text</th></tr>")
        for t in view.turns:
            cue = html.escape(repr(view.text[t.cue[0]:t.cue[1]])) if t.cue else "-"
            stop = html.escape(repr(view.text[t.stop[0]:t.stop[1]])) if t.stop else "-"
            body = view.text[t.mask[0]:t.mask[1]]
            body = body if len(body) <= 80 else body[:77] + "..."
            parts.append(f"<tr><td>{t.message}</td><td>[{t.mask[0]}, {t.mask[1]})</td><td>{cue}</td><td>{stop}</td>"
                         f"<td>{html.escape(repr(body))}</td></tr>")
        parts.append("</table>")
        cls = "agree" if view.oracle_agrees else "mismatch" if view.oracle_agrees is False else ""
        parts.append(f'<p class="oracle {cls}">{html.escape(_agreement(view))}</p></section>')
    parts.append("</body></html>\n")
    return "\n".join(parts)


def mark_text(text: str, spans: list[Span], open_: str = "⟦", close: str = "⟧") -> str:
    """``text`` with each (merged) span wrapped in ``open_``/``close``; spans in characters."""
    return mark_spans(text, merge_spans(spans), open_, close)


def marked(view: View, open_: str = "⟦", close: str = "⟧") -> str:
    """The rendering with each masked span wrapped in ``open_``/``close`` (plain text)."""
    return mark_text(view.text, view.spans, open_, close)


@dataclass
class ShowResult:
    """What :func:`show` computed: ``views`` (one per conversation), how the training template
    was obtained (``how``) and the training template itself (``training``)."""

    label: str
    how: str
    training: str
    views: list[View] = field(default_factory=list)


def show(source: str, label: str, conversations: list[Case] | None = None, examples: int = 50,
         seed: int = 0, conversation_label: str = "") -> ShowResult:
    """Compute the mask views of ``conversations`` (default: :func:`sample_case`).

    Raises:
        InputError: malformed template, or the template raises on a conversation (exit 2).
        NotProved: an original template tmplc cannot prove (exit 1).
    """
    training, how = training_template(source, label, examples, seed)
    if conversations is None:
        cases, titles = [sample_case(source)], ["sample conversation"]
    else:
        base = detect_features(source).kwargs()
        cases = [Case(c.messages, c.tools, {**base, **c.kwargs}, c.add_generation_prompt) for c in conversations]
        titles = [f"{conversation_label or 'conversation'} #{k + 1}" if len(cases) > 1 else (conversation_label or "conversation")
                  for k in range(len(cases))]
    views = []
    for case, title in zip(cases, titles):
        try:
            views.append(mask_view(training, case, title))
        except InputError as exc:
            raise InputError(exc.message, conversation_label or label, 0, 0) from None
    return ShowResult(label, how, training, views)


def read_template(path: Path) -> Source:
    """The one template in ``path``: a ``.jinja`` file, a ``chat_template.jinja``, a
    ``tokenizer_config.json`` (string ``chat_template``, or the list entry named ``default``), or
    a model folder holding one of the last two (``chat_template.jinja`` first, as transformers).

    Raises:
        InputError: unreadable file, a folder without a template, or a list of templates without
        a ``default`` entry.
    """
    if path.is_dir():
        for candidate in ("chat_template.jinja", "tokenizer_config.json"):
            if (path / candidate).is_file():
                path = path / candidate
                break
        else:
            raise InputError("no chat template: neither chat_template.jinja nor tokenizer_config.json", str(path), 0, 0)
    sources = read_sources(path)
    if len(sources) == 1:
        return sources[0]
    default = [s for s in sources if s.name == "default"]
    if not default:
        raise InputError("several named templates and none named 'default'", str(path), 1, 1)
    return default[0]


def run_show(template: Path, conversation: Path | None, html_out: Path | None, examples: int, seed: int) -> None:
    """``tmplc show``: print the mask in the terminal, optionally write the HTML page.

    Raises:
        InputError, OutputError: bad input or an unusable output path (exit 2, nothing written).
        NotProved: the template cannot be proved (exit 1).
    """
    import click
    from rich.console import Console

    if html_out is not None and html_out.is_dir():
        raise OutputError("is a directory", str(html_out))
    src = read_template(template)
    cases = load_conversations(conversation) if conversation is not None else None
    result = show(src.text, src.label, cases, examples, seed, str(conversation) if conversation else "")
    print_terminal(Console(highlight=False, soft_wrap=True), result.views, result.label, result.how)
    if html_out is not None:
        atomic_write(html_out, to_html(result.views, result.label, result.how))
        click.echo(f"wrote {html_out}")


__all__ = ["read_template", "run_show", "KINDS", "ShowResult", "Turn", "NotProved", "View", "load_conversations", "mark_text", "marked", "mask_view",
           "print_terminal", "sample_case", "show", "to_html", "to_rich", "training_template"]
