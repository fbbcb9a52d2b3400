"""Safe to serve: .streamlit/config.toml binds 127.0.0.1 with XSRF protection and an upload limit, the README
says how to open it up deliberately, and token text rendered as HTML is escaped (a corpus or prompt holding
`<script>` shows as text)."""
from __future__ import annotations

import html
import json
import re
import tomllib

import pytest
import torch
from conftest import ROOT, checkpoints_env

from gpt import runs
from gpt.config import GPTConfig, TrainConfig
from gpt.data import MAX_CORPUS_BYTES
from gpt.model import GPT
from gpt.tokenizers import CharTokenizer, save_tokenizer

pytestmark = pytest.mark.usefixtures("fresh_caches")  # Streamlit caches cleared per test

EVIL = ("<script>document.title='pwned'</script> <img src=x onerror=\"alert(1)\"> "
        "\" onmouseover=\"alert(2) ' & <b>bold</b> [link](javascript:alert(3)) **md** ")


def test_streamlit_config_is_safe_by_default():
    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    server = cfg["server"]
    assert server["address"] == "127.0.0.1"  # only this machine can reach the app
    assert server["enableXsrfProtection"] is True
    assert server.get("enableCORS", True) is True
    assert 0 < server["maxUploadSize"] <= MAX_CORPUS_BYTES // 2**20  # uploads fit the library's corpus limit
    assert cfg["browser"]["gatherUsageStats"] is False


def test_readme_explains_serving_on_a_network_deliberately():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Serving on a network"):]
    for needed in ("--server.address", "127.0.0.1", "XSRF", "maxUploadSize", "GPT_EXPLORER_MAX_JOBS"):
        assert needed in section, needed


def test_token_chips_escape_html():
    from explorer.ui.text import chips_html, esc
    html = chips_html([(EVIL, EVIL, "red;background:url(javascript:alert(4))")])
    assert "<script" not in html and "<img" not in html and "<b>" not in html
    assert "&lt;script&gt;" in html and "&quot; onmouseover=&quot;" in html
    # every attribute value stays inside its quotes
    assert all('"' not in value for value in re.findall(r'title="([^"]*)"', html))
    assert esc("<&>\"'") == "&lt;&amp;&gt;&quot;&#x27;"


# ---- in the app: a run whose corpus is full of HTML ----
AppTest = pytest.importorskip("streamlit.testing.v1").AppTest


@pytest.fixture(scope="module")
def evil_root(tmp_path_factory):
    """A checkpoints root with an (untrained) char model whose corpus and vocabulary are full of HTML."""
    root = tmp_path_factory.mktemp("evil-checkpoints")
    corpus = root.parent / "evil-corpus.txt"
    corpus.write_text((EVIL + "\nTo be, or not to be: that is the question.\n") * 60)
    run = root / "evil"
    run.mkdir()
    tok = CharTokenizer.train(corpus.read_text())
    model_cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=256, n_layer=1, n_head=2, n_embd=16)
    torch.manual_seed(0)
    runs.write_config(run, model_cfg, TrainConfig(max_iters=1), corpus=str(corpus), tokenizer="char",
                      corpus_sha256=None, init_from=None)
    save_tokenizer(tok, run / runs.TOKENIZER)
    runs.atomic_save_model(GPT(model_cfg), run / runs.WEIGHTS, {"step": "1"})
    with checkpoints_env(root):
        yield root


def html_blocks(at) -> list[str]:
    """Every markdown element the page allowed to carry raw HTML."""
    return [m.value for m in at.markdown if m.proto.allow_html]


def assert_escaped(at, marker: str = "<script>") -> None:
    blocks = html_blocks(at)
    assert blocks, "the page rendered no HTML token view"
    joined = "\n".join(blocks)
    shown = html.unescape(re.sub(r"<[^>]*>", "", joined))  # what a reader sees: the chips' text
    assert marker in shown  # the text is there ...
    assert "<script" not in joined and "<img" not in joined and "<b>bold" not in joined  # ... only as text


@pytest.mark.parametrize("page", ["tokenizer", "token_loss"])
def test_pages_show_html_in_the_corpus_as_text(evil_root, page):
    if not (ROOT / "explorer" / "views" / f"{page}.py").exists():
        pytest.skip(f"no {page} page")
    at = AppTest.from_file(str(ROOT / "explorer" / "app.py"), default_timeout=180)
    at.session_state["selected_run"] = "evil"
    at.run()
    at.switch_page(f"views/{page}.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    if page == "tokenizer":
        at.text_area[0].set_value(EVIL).run()
    assert_escaped(at, "<script>" if page == "tokenizer" else "<")  # a validation passage holds some '<'


def test_logit_lens_shows_markup_tokens_as_text(evil_root):
    at = AppTest.from_file(str(ROOT / "explorer" / "app.py"), default_timeout=180)
    at.session_state["selected_run"] = "evil"
    at.run()
    at.switch_page("views/logit_lens.py").run()
    at.text_area[0].set_value("<b>bold</b> to be").run()
    assert not at.exception, [e.value for e in at.exception]
    lens = json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]
    labels = " ".join(lens["x"]) + " ".join(t for row in lens["text"] for t in row)
    # one character per token: a lone '<' is drawn as itself by plotly (no tag), so it stays as typed; never a tag
    assert "0:<" in lens["x"] and "<b>" not in labels and "&lt;" not in labels


def test_generate_page_shows_an_html_prompt_as_text(evil_root):
    at = AppTest.from_file(str(ROOT / "explorer" / "app.py"), default_timeout=180)
    at.session_state["selected_run"] = "evil"
    at.run()
    at.switch_page("views/generate.py")
    at.run()
    at.text_area[0].set_value(EVIL).run()
    next(b for b in at.button if b.label == "Generate").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert_escaped(at)
