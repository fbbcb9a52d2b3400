"""One way to show a token (issue 31, item 1): one display form (↵ newline, · space, → tab) made by
gpt.token_display.display_token, and one escaping per context (explorer.ui.text: token_text for plotly, options and
tables; token_html escaped once; token_md a markdown code span; plotly's own rule in explorer.figures.base.safe).

The unit tests pin each context function; the walk opens every page of the app (AppTest) on a model whose vocabulary
holds a newline, a tab, an apostrophe, '<', '&', a double quote, a backtick, '*' and '_', with a prompt full of them,
and reads every string the page sends (markdown as rendered, labels, options, tables, figures) for a literal \\n or
an HTML entity shown as text; test_browser_every_page.py reads the same pages' visible text in Chromium."""
from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest
import torch
from conftest import ROOT, checkpoints_env, open_page
from token_display_support import CORRUPTED, FORBIDDEN, PROMPT, make_awkward_run

from explorer.figures.base import safe
from explorer.ui.text import chips_html, code_md, esc, text_md, token_html, token_md, token_text
from gpt.token_display import display_text, display_token, raw_token
from gpt.tokenizers import BPETokenizer, CharTokenizer

NASTY = "a\nb\tc'd<e&f\"g`h*i_j k"

# ---- the display form (gpt/) ----

def test_display_text_makes_whitespace_visible_and_keeps_everything_else():
    assert display_text(NASTY) == "a↵b→c'd<e&f\"g`h*i_j·k"
    assert display_text("") == "∅"
    assert display_text("\r\x00\x7f") == "␍␀␡"   # other control characters: their control pictures
    assert display_text(display_text(NASTY)) == display_text(NASTY)   # display text stays as it is


def test_display_token_of_char_and_bpe_tokens():
    char = CharTokenizer.train(NASTY)
    for c in NASTY:
        (i,) = char.encode(c)
        assert raw_token(char, i) == c and display_token(char, i) == display_text(c)
    assert display_token(char, char.encode("\n")[0]) == "↵" and char.token_str(char.encode("\n")[0]) == "↵"
    bpe = BPETokenizer.train("JULIET:\nO Romeo, Romeo!\n" * 20 + "héllo wörld " * 20, 300)
    ids = bpe.encode("JULIET:\nO Romeo")
    shown = "".join(display_token(bpe, i) for i in ids)
    assert shown == "JULIET:↵O·Romeo" and "Ġ" not in shown and "\\n" not in shown
    # a byte token that is not whole UTF-8 (the first byte of "é") keeps a readable hex escape
    (first_e_byte,) = [i for i in range(bpe.vocab_size) if bpe.token_bytes(i) == "é".encode()[:1]]
    assert display_token(bpe, first_e_byte) == "\\xc3"
    mixed = BPETokenizer([bytes([b]) for b in range(256)] + [b" \xc3"], [(32, 0xC3, 256)])
    assert display_token(mixed, 256) == "·\\xc3"   # whole characters shown, the stray byte escaped


def test_gpt2_vocabulary_never_shows_its_byte_alphabet(tmp_path):
    """A tokenizer read from GPT-2's vocab.json (where a space is 'Ġ' and a newline 'Ċ') shows real whitespace."""
    from gpt.tokenizers import _bytes_to_unicode
    byte_char = _bytes_to_unicode()
    vocab = {byte_char[b]: b for b in range(256)} | {"Ġt": 256, "Ġth": 257, "Ġthe": 258}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (tmp_path / "merges.txt").write_text("#version: 0.2\nĠ t\nĠt h\nĠth e\n", encoding="utf-8")
    tok = BPETokenizer.from_gpt2_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    assert [display_token(tok, i) for i in tok.encode(" the\n")] == ["·the", "↵"]


# ---- one escaping per context (explorer/) ----

def test_token_text_html_and_markdown_contexts():
    tok = CharTokenizer.train(NASTY)
    for c in NASTY:
        (i,) = tok.encode(c)
        shown = display_text(c)
        assert token_text(tok, i) == shown                       # plotly labels, options, tables: as is
        assert html.unescape(token_html(tok, i)) == shown        # HTML: escaped exactly once
        assert token_md(tok, i).strip("`").strip() == shown      # markdown: a code span, nothing escaped inside
    assert token_html(tok, tok.encode("<")[0]) == "&lt;" and token_html(tok, tok.encode("'")[0]) == "&#x27;"
    assert token_html(tok, tok.encode("&")[0]) == "&amp;" and token_html(tok, tok.encode('"')[0]) == "&quot;"
    assert token_md(tok, tok.encode("'")[0]) == "`'`" and token_md(tok, tok.encode("<")[0]) == "`<`"


@pytest.mark.parametrize("text, span", [
    ("a", "`a`"), ("`", "`` ` ``"), ("a`b", "``a`b``"), ("``x", "``` ``x ```"), ("x`", "`` x` ``"),
    ("a\nb", "`a↵b`"), ("&amp;", "`&amp;`"), ("", "`∅`"),
])
def test_code_md_fences_backticks_per_commonmark(text, span):
    assert code_md(text) == span


def test_text_md_escapes_what_markdown_would_read():
    assert text_md("*a* _b_ `c` <d> & [e](f) #1. $x$ :red[y]") == (
        "\\*a\\* \\_b\\_ \\`c\\` \\<d\\> \\& \\[e\\]\\(f\\) \\#1\\. \\$x\\$ \\:red\\[y\\]")
    assert text_md("·↵→'\"") == "·↵→'\""   # display symbols and quotes need nothing


def test_plotly_safe_escapes_only_what_plotly_reads_as_markup():
    assert safe("<") == "<" and safe("a<b") == "a<b" and safe("&") == "&" and safe("'\"") == "'\""
    assert safe("<b>x</b>") == "&lt;b>x&lt;/b>" and safe("<br>") == "&lt;br>" and safe("<sup >") == "&lt;sup >"
    assert safe("&amp;") == "&amp;amp;" and safe("&#39;") == "&amp;#39;" and safe("& amp;") == "& amp;"
    assert safe("<bold>") == "<bold>"   # not one of plotly's tags: drawn as typed


def test_chips_take_raw_text_and_show_the_display_form_escaped_once():
    tok = CharTokenizer.train(NASTY)
    out = chips_html([(raw_token(tok, i), f"id {i}", "#eee") for i in tok.encode(NASTY)])
    shown = html.unescape(re.sub(r"<[^>]*>", "", out))
    assert shown == display_text(NASTY)
    assert out.count("<br>") == 1   # the newline still ends its line
    assert "&amp;amp;" not in out and "&amp;#x27;" not in out
    assert esc("'") == "&#x27;"


# ---- every page, on a model whose vocabulary holds the awkward characters (AppTest) ----

PAGES = [p.stem for p in sorted((ROOT / "explorer" / "views").glob("*.py"))]


@pytest.fixture(scope="module")
def awkward_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("awkward-checkpoints")
    make_awkward_run(root)
    make_awkward_run(root, "bpe")
    with checkpoints_env(root):
        yield root


def _strings(value):
    """Every string inside a JSON-like value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


def shown_strings(at) -> list[tuple[str, str]]:
    """(element type, text) for every string the page sends to the browser: markdown with HTML as a reader sees it
    (tags dropped, entities read once), every other proto field as sent, figures' and charts' strings from their
    JSON, tables' cells."""
    from google.protobuf.json_format import MessageToDict
    out = []
    for node in at._tree:
        proto = getattr(node, "proto", None)
        kind = getattr(node, "type", type(node).__name__)
        if proto is None or not hasattr(proto, "DESCRIPTOR"):
            continue
        if kind == "dataframe" or kind == "arrow_data_frame":
            frame = node.value
            out += [(kind, str(c)) for c in frame.columns]
            out += [(kind, v) for col in frame.columns for v in frame[col].tolist() if isinstance(v, str)]
            continue
        fields = MessageToDict(proto, preserving_proto_field_name=True)
        if kind == "vega_lite_chart":   # the chart's rows (Arrow): the line view's tokens are text marks
            from streamlit import dataframe_util
            for dataset in proto.datasets:
                frame = dataframe_util.convert_arrow_bytes_to_pandas_df(dataset.data.data)
                out += [(kind, v) for col in frame.columns for v in frame[col].tolist() if isinstance(v, str)]
            fields.pop("datasets", None)
        for name in ("spec",):   # plotly and Vega-Lite: a JSON document in a string
            if isinstance(fields.get(name), str) and fields[name].startswith("{"):
                out += [(kind, s) for s in _strings(json.loads(fields.pop(name)))]
        fields.pop("data", None)   # arrow bytes
        if kind == "markdown" and fields.get("allow_html"):
            body = fields.pop("body", "")
            out.append((kind + " (html, as read)", html.unescape(re.sub(r"<[^>]*>", "", body))))
        out += [(kind, s) for s in _strings(fields)]
    return out


def open_awkward_page(page: str, run: str = "awkward"):
    """The page on `run` with the awkward prompt in the learner's place (and the Patching page's boxes filled)."""
    from explorer.ui.state import STORE
    at = open_page(page, run=run, state={STORE: {"prompt": PROMPT, "feature": "transcoder-L0#0"}, "_patch_run": run,
                                         "patch_clean": PROMPT, "patch_corrupted": CORRUPTED,
                                         "patch_answer": "'", "patch_wrong": "&"})
    if page == "generate":   # the chips of a generation and its step figures
        next(b for b in at.button if b.label == "Generate").click().run()
        assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.mark.slow   # 1-10 s a page on a quiet machine (the Features card scans its evaluation text)
@pytest.mark.usefixtures("fresh_caches")
@pytest.mark.parametrize("page", PAGES)
def test_every_page_shows_awkward_tokens_once_escaped(awkward_root, page):
    at = open_awkward_page(page)
    strings = shown_strings(at)
    bad = [(kind, s) for kind, s in strings if any(f in s for f in FORBIDDEN)]
    assert not bad, bad[:5]
    if page in ("inside", "why_token", "tokenizer", "attention", "circuit", "token_loss", "logit_lens", "mlp",
                "features", "patching", "generate"):
        joined = "\n".join(s for _, s in strings)
        assert "↵" in joined and "'" in joined, f"{page} shows no token of the prompt"
        if page in ("inside", "why_token", "tokenizer", "attention", "logit_lens", "mlp", "features"):
            assert "<" in joined and "&" in joined and "→" in joined   # the prompt's characters, shown as themselves


@pytest.mark.slow
@pytest.mark.usefixtures("fresh_caches")
@pytest.mark.parametrize("page", ["tokenizer", "inside", "why_token", "circuit"])
def test_bpe_tokens_show_once_escaped_too(awkward_root, page):
    """Byte-level BPE: merged tokens hold several awkward characters at once ("↵→", "·<"); the Tokenizer page also
    lists merges and replays them as chips."""
    at = open_awkward_page(page, "awkward-bpe")
    if page == "tokenizer":
        next(w for w in at.text_input if w.label.startswith("Replay")).set_value(" <3 &").run()
    strings = shown_strings(at)
    bad = [(kind, s) for kind, s in strings if any(f in s for f in FORBIDDEN)]
    assert not bad, bad[:5]
    assert "↵" in "\n".join(s for _, s in strings)


def test_graph_json_labels_tokens_in_the_display_form():
    """The attribution graph's JSON (the Circuit page's download, the report's embedded graph): token labels as the
    pages show them (circuit-tracer's files show a newline as a symbol too), the prompt raw, the ids exact."""
    from gpt.config import GPTConfig
    from gpt.interp.circuits import attribution_graph
    from gpt.interp.features.dictionary import Dictionary, DictionaryConfig, LoadedDictionary
    from gpt.model import GPT
    tok = CharTokenizer.train(NASTY)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=16, block_size=32)).eval()
    cfg = DictionaryConfig("transcoder", "blocks.0.mlp.in", "blocks.0.mlp.out", "topk", 24, 16, 16, "ab" * 32, 4)
    d = Dictionary(cfg)
    with torch.no_grad():
        for p in (d.W_enc, d.W_dec):
            p.normal_()
    ids = tok.encode(NASTY)
    graph = attribution_graph(model, ids, [LoadedDictionary("transcoder-L0", Path("."), cfg, d.eval(), None)])
    data = json.loads(json.dumps(graph.to_json(tokenizer=tok)))
    assert data["metadata"]["prompt_tokens"] == [display_text(c) for c in NASTY]
    assert data["metadata"]["prompt"] == NASTY and data["metadata"]["token_ids"] == ids
    assert {n["token"] for n in data["nodes"] if n["feature_type"] == "embedding"} <= set(display_text(NASTY))


def test_report_shows_the_prompt_and_the_guess_in_the_display_form_escaped_once():
    from explorer.report import dla_html
    from gpt.config import GPTConfig
    from gpt.model import GPT
    tok = CharTokenizer.train(PROMPT)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=16, block_size=96)).eval()
    out = dla_html(model, tok, PROMPT)
    read = html.unescape(re.sub(r"<[^>]*>", "", out))   # what the report's reader sees
    assert display_text(PROMPT[-40:]) in read and not any(f in read for f in FORBIDDEN)
    assert "&lt;·5" in out and "&amp;·Tybalt" in out   # the prompt's '<' and '&' escaped for HTML, once
