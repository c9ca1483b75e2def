"""tmplc.lint helpers: noqa suppressions, code frames, GitHub annotation escaping."""

import pytest

from tmplc.lint import code_frame, format_github, suppressions
from tmplc.rules import Diagnostic

A, B = "TMPL004", "TMPL005"

SUPPRESSIONS = [
    ("{# tmplc: noqa TMPL004 #}", {1: {A}, 2: {A}}, "one-code-its-line-and-the-next"),
    ("{#- tmplc: noqa TMPL004, TMPL005 -#}", {1: {A, B}, 2: {A, B}}, "two-codes-with-whitespace-control"),
    ("{# tmplc: noqa TMPL004,TMPL005 #}", {1: {A, B}, 2: {A, B}}, "codes-without-space"),
    ("{# tmplc: noqa tmpl004 #}", {1: {A}, 2: {A}}, "codes-are-case-insensitive"),
    ("{# tmplc: noqa #}", {1: None, 2: None}, "bare-noqa-is-every-code"),
    ("{#tmplc:noqa#}", {1: None, 2: None}, "no-spaces"),
    ("{# tmplc: noqa: TMPL004 #}", {1: {A}, 2: {A}}, "colon-after-noqa"),
    ("x\n\n{# tmplc: noqa TMPL004 #}", {3: {A}, 4: {A}}, "line-numbers-are-1-based"),
    ("x\r\n{# tmplc: noqa TMPL004 #}", {2: {A}, 3: {A}}, "crlf-lines"),
    ("{# tmplc: noqa\nTMPL004 #}", {1: {A}, 2: {A}}, "comment-over-two-lines-counts-from-its-start"),
    ("{# tmplc: noqa TMPL004 #}{# tmplc: noqa TMPL005 #}", {1: {A, B}, 2: {A, B}}, "same-line-merges"),
    ("{# tmplc: noqa TMPL004 #}\n{# tmplc: noqa TMPL005 #}", {1: {A}, 2: {A, B}, 3: {B}}, "next-line-merges-with-own-line"),
    ("{# tmplc: noqa #}\n{# tmplc: noqa TMPL004 #}", {1: None, 2: None, 3: {A}}, "bare-wins-over-codes-after"),
    ("{# tmplc: noqa TMPL004 #}\n{# tmplc: noqa #}", {1: {A}, 2: None, 3: None}, "bare-wins-over-codes-before"),
    ("{# noqa TMPL004 #}", {}, "needs-the-tmplc-prefix"),
    ("{# tmplc: noqanything #}", {}, "noqa-must-be-a-word"),
    ("tmplc: noqa TMPL004", {}, "only-inside-a-comment"),
    ("{{ x }}", {}, "no-comment"),
]


@pytest.mark.parametrize("source, expected", [r[:2] for r in SUPPRESSIONS], ids=[r[2] for r in SUPPRESSIONS])
def test_suppressions(source, expected):
    assert suppressions(source) == expected


CODE_FRAME = [
    ("ab\ncdef", 2, 3, "     2 | cdef\n       |   ^", "caret-under-column"),
    ("ab\ncdef", 1, 1, "     1 | ab\n       | ^", "first-column"),
    ("ab\r\ncd", 1, 2, "     1 | ab\n       |  ^", "carriage-return-stripped"),
    ("x" * 200, 1, 1, "     1 | " + "x" * 120 + "\n       | ^", "line-cut-at-120-characters"),
    ("\n" * 11 + "q", 12, 1, "    12 | q\n       | ^", "line-number-right-aligned"),
    ("ab", 0, 1, "", "line-zero-no-frame"),
    ("ab", 2, 1, "", "line-past-the-end-no-frame"),
]


@pytest.mark.parametrize("source, line, col, expected", [r[:4] for r in CODE_FRAME], ids=[r[4] for r in CODE_FRAME])
def test_code_frame(source, line, col, expected):
    assert code_frame(source, line, col) == expected


def diag(message="m", path="t.jinja", severity="error", line=1, col=2):
    return Diagnostic("TMPL004", "mask-covers-prompt", message, path, line, col, severity)


GITHUB = [
    ([diag()], "::error file=t.jinja,line=1,col=2,title=TMPL004 mask-covers-prompt::m", "error"),
    ([diag(severity="warning")], "::warning file=t.jinja,line=1,col=2,title=TMPL004 mask-covers-prompt::m", "warning"),
    ([diag("50% a\nb\rc")], "::error file=t.jinja,line=1,col=2,title=TMPL004 mask-covers-prompt::50%25 a%0Ab%0Dc",
     "message-percent-newline-cr-escaped"),
    ([diag("a: b, c")], "::error file=t.jinja,line=1,col=2,title=TMPL004 mask-covers-prompt::a: b, c",
     "message-colon-comma-kept"),
    ([diag(), diag(line=3)], "::error file=t.jinja,line=1,col=2,title=TMPL004 mask-covers-prompt::m\n"
     "::error file=t.jinja,line=3,col=2,title=TMPL004 mask-covers-prompt::m", "one-line-per-diagnostic"),
    ([], "", "no-diagnostics"),
]


@pytest.mark.parametrize("diags, expected", [r[:2] for r in GITHUB], ids=[r[2] for r in GITHUB])
def test_format_github(diags, expected):
    assert format_github(diags) == expected


@pytest.mark.parametrize(
    "path, escaped",
    [("dir,v2/t.jinja", "dir%2Cv2/t.jinja"), ("C:/t.jinja", "C%3A/t.jinja")],
    ids=["comma-in-path", "colon-in-path"],
)
def test_format_github_escapes_the_file_property(path, escaped):
    assert format_github([diag(path=path)]).startswith(f"::error file={escaped},line=1,")
