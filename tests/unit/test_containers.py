"""tmplc.containers: reading template containers and naming outputs (valid inputs; bad inputs give
one-line ``path:line:col: message`` errors)."""

import json

import pytest

from tmplc.containers import Source, output_path, read_sources
from tmplc.errors import InputError


def write(tmp_path, name, content):
    p = tmp_path / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_bytes(content.encode("utf-8"))
    return p


READ = [
    ("t.jinja", "{{ x }}\n", [(None, "{{ x }}\n")], "plain-file"),
    ("chat_template.jinja", "A\r\nB", [(None, "A\r\nB")], "chat-template-jinja-crlf-kept"),
    ("t.jinja", "é😀", [(None, "é😀")], "utf8-text"),
    ("tokenizer_config.json", json.dumps({"chat_template": "T", "eos_token": "</s>"}), [(None, "T")], "json-string"),
    ("tokenizer_config.json",
     json.dumps({"chat_template": [{"name": "default", "template": "D"}, {"name": "tool_use", "template": "U"}]}),
     [("default", "D"), ("tool_use", "U")], "json-list-of-named-templates"),
    ("config.json", json.dumps({"chat_template": "C"}), [(None, "C")], "any-json-suffix"),
]


@pytest.mark.parametrize("name, content, expected", [r[:3] for r in READ], ids=[r[3] for r in READ])
def test_read_sources(tmp_path, name, content, expected):
    path = write(tmp_path, name, content)
    sources = read_sources(path)
    assert [(s.name, s.text) for s in sources] == expected
    assert all(s.path == path for s in sources)


def test_named_source_label(tmp_path):
    path = write(tmp_path, "tokenizer_config.json", json.dumps({"chat_template": [{"name": "rag", "template": "R"}]}))
    (src,) = read_sources(path)
    assert src.label == f"{path}#chat_template[rag]"
    assert Source(path, "x").label == str(path)


ERRORS = [
    ("tokenizer_config.json", json.dumps({"eos_token": "</s>"}), (1, 1),
     "no 'chat_template' string or list of {name, template}", "json-without-chat-template"),
    ("tokenizer_config.json", json.dumps({"chat_template": [{"name": "x"}]}), (1, 1),
     "chat_template[0] is not a {name, template} object", "json-list-item-without-template"),
    ("tokenizer_config.json", json.dumps({"chat_template": 3}), (1, 1),
     "no 'chat_template' string or list of {name, template}", "json-chat-template-not-a-string"),
    ("tokenizer_config.json", json.dumps(["chat_template"]), (1, 1),
     "no 'chat_template' string or list of {name, template}", "json-not-an-object"),
    ("tokenizer_config.json", '{"chat_template": "x",\n  oops}', (2, 3),
     "invalid JSON: Expecting property name enclosed in double quotes", "invalid-json-line-col"),
    ("tokenizer_config.json", '{"a": 1', (1, 8), "invalid JSON: Expecting ',' delimiter", "truncated-json"),
    ("t.jinja", b"ab\n\xffcd", (2, 1), "not UTF-8 (byte 0xff)", "non-utf8-line-col"),
    ("t.jinja", "éé".encode() + b"\xfe", (1, 3), "not UTF-8 (byte 0xfe)", "non-utf8-column-in-characters"),
    ("tokenizer_config.json", b'{"chat_template": "\xc3("}', (1, 20), "not UTF-8 (byte 0xc3)", "non-utf8-json"),
]


@pytest.mark.parametrize("name, content, pos, message", [r[:4] for r in ERRORS], ids=[r[4] for r in ERRORS])
def test_read_sources_errors(tmp_path, name, content, pos, message):
    path = write(tmp_path, name, content)
    with pytest.raises(InputError) as info:
        read_sources(path)
    err = info.value
    assert (err.message, err.line, err.col) == (message, *pos)
    assert str(err) == f"{path}:{pos[0]}:{pos[1]}: {message}"
    assert "\n" not in str(err)


def test_read_sources_missing_file(tmp_path):
    with pytest.raises(InputError) as info:
        read_sources(tmp_path / "nope.jinja")
    assert str(info.value) == f"{tmp_path / 'nope.jinja'}:0:0: no such file"


def test_read_sources_directory(tmp_path):
    with pytest.raises(InputError) as info:
        read_sources(tmp_path)
    assert str(info.value) == f"{tmp_path}:0:0: is a directory (pass template files)"


OUTPUT = [
    ("qwen.jinja", None, None, "qwen_training.jinja", "beside-the-input"),
    ("model.v2.jinja", None, None, "model.v2_training.jinja", "dotted-stem"),
    ("chat_template.jinja", None, None, "chat_template_training.jinja", "chat-template-jinja"),
    ("tokenizer_config.json", None, None, "chat_template_training.jinja", "tokenizer-config-string"),
    ("tokenizer_config.json", "tool_use", None, "chat_template_tool_use_training.jinja", "named-template"),
    ("config.json", None, None, "config_training.jinja", "other-json"),
    ("qwen.jinja", None, "outdir", "outdir/qwen_training.jinja", "into-existing-directory"),
    ("tokenizer_config.json", "rag", "outdir", "outdir/chat_template_rag_training.jinja", "named-into-directory"),
    ("qwen.jinja", None, "custom.jinja", "custom.jinja", "explicit-file"),
]


@pytest.mark.parametrize("name, tname, out, expected", [r[:4] for r in OUTPUT], ids=[r[4] for r in OUTPUT])
def test_output_path(tmp_path, name, tname, out, expected):
    src_dir = tmp_path / "in"
    src_dir.mkdir()
    (tmp_path / "outdir").mkdir()
    src = Source(src_dir / name, "x", tname)
    got = output_path(src, tmp_path / out if out else None)
    base = tmp_path if out else src_dir
    assert got == base / expected
