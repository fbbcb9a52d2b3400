"""Safe to serve: .streamlit/config.toml binds 127.0.0.1 with XSRF protection and an upload limit, and the served
app does what it says (listens on this machine only, refuses an upload without its XSRF token); a crafted link or
run name reaches nothing outside the checkpoints folder; token text rendered as HTML is escaped (a corpus or
prompt holding `<script>` shows as text)."""
from __future__ import annotations

import html
import ipaddress
import json
import re
import tomllib
from pathlib import Path

import pytest
import torch
from conftest import ROOT, checkpoints_env, new_app, open_page

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


def listening_addresses(port: int) -> list:
    """The local addresses of the sockets listening on TCP `port` (Linux: /proc/net/tcp and tcp6)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:   # 0A: LISTEN
                words = bytes.fromhex(address)   # each 32-bit word in host (little-endian) order
                raw = b"".join(words[i:i + 4][::-1] for i in range(0, len(words), 4))
                found.append(ipaddress.ip_address(raw))
    return found


@pytest.mark.slow
def test_the_served_app_listens_on_this_machine_only_and_refuses_uploads_without_its_xsrf_token(tmp_path):
    """The server as `gpt-explorer` starts it (the project's .streamlit/config.toml, no address given) listens on
    loopback only, and an upload (PUT) from a page that lacks the app's XSRF cookie and header is refused (403);
    with them, the same request gets past that check (and fails on its made-up session instead: 400)."""
    import urllib.error
    import urllib.request

    from browser_support import app_server
    (tmp_path / "checkpoints").mkdir()
    with app_server(tmp_path / "checkpoints", tmp_path / "server.log", address=None) as url:
        port = int(url.rsplit(":", 1)[1])
        listening = listening_addresses(port)
        assert listening and all(a.is_loopback or (a.version == 6 and a.ipv4_mapped and a.ipv4_mapped.is_loopback)
                                 for a in listening), listening
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

        def upload_status(headers: dict) -> int:
            request = urllib.request.Request(f"{url}/_stcore/upload_file/made-up-session/file-1", data=b"x" * 100,
                                             method="PUT", headers=headers)
            with pytest.raises(urllib.error.HTTPError) as refused:
                opener.open(request, timeout=30)
            return refused.value.code

        assert upload_status({}) == 403
        with opener.open(f"{url}/_stcore/health", timeout=30) as health:
            cookie = next(v for k, v in health.headers.items() if k.lower() == "set-cookie" and "_streamlit_xsrf" in v)
        token = cookie.split(";")[0].split("=", 1)[1]
        assert upload_status({"Cookie": f"_streamlit_xsrf={token}", "X-Xsrftoken": token}) == 400


def test_a_link_naming_a_run_outside_the_checkpoints_folder_opens_none_of_it(root, tmp_path):
    """?run=../outside (a crafted link) where ../outside is a loadable run: the app opens its own run instead."""
    import shutil
    shutil.copytree(root / "tiny", tmp_path / "outside")
    at = new_app(run="../outside")
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.sidebar.selectbox(key="selected_run").value == "tiny"
    assert at.query_params["run"] in ("tiny", ["tiny"])   # the link now names what is shown


@pytest.mark.slow
def test_a_run_name_that_climbs_out_trains_inside_the_checkpoints_folder(root, tmp_path):
    """The Train form's run name '../../escape<b>x</b>' starts a run in a folder directly inside the checkpoints
    root with a safe name; nothing is created beside or above it."""
    before = sorted(p.name for p in tmp_path.iterdir())
    at = open_page("train")
    at.text_input(key="tf_name").input("../../escape<b>x</b>").run()
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception, [e.message for e in at.exception]
    started = [p for p in root.iterdir() if p.is_dir() and p.name != "tiny"]
    assert len(started) == 1 and started[0].parent == root, started
    assert all(c.isalnum() or c in "._-" for c in started[0].name) and "escape" in started[0].name
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not any(p.name.startswith("escape") for p in tmp_path.parent.iterdir())


def test_token_chips_escape_html():
    from explorer.ui.text import chips_html, esc
    html = chips_html([(EVIL, EVIL, "red;background:url(javascript:alert(4))")])
    assert "<script" not in html and "<img" not in html and "<b>" not in html
    assert "&lt;script&gt;" in html and "&quot; onmouseover=&quot;" in html
    # every attribute value stays inside its quotes
    assert all('"' not in value for value in re.findall(r'title="([^"]*)"', html))
    assert esc("<&>\"'") == "&lt;&amp;&gt;&quot;&#x27;"


# ---- in the app: a run whose corpus is full of HTML ----


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
    at = open_page(page, "evil")
    if page == "tokenizer":
        at.text_area[0].set_value(EVIL).run()
    assert_escaped(at, "<script>" if page == "tokenizer" else "<")  # a validation passage holds some '<'


def test_logit_lens_shows_markup_tokens_as_text(evil_root):
    at = open_page("logit_lens", "evil")
    at.text_area[0].set_value("<b>bold</b> to be").run()
    assert not at.exception, [e.value for e in at.exception]
    lens = json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]
    labels = " ".join(lens["x"]) + " ".join(t for row in lens["text"] for t in row)
    # one character per token: a lone '<' is drawn as itself by plotly (no tag), so it stays as typed; never a tag
    assert "0:<" in lens["x"] and "<b>" not in labels and "&lt;" not in labels


def test_generate_page_shows_an_html_prompt_as_text(evil_root):
    at = open_page("generate", "evil")
    at.text_area[0].set_value(EVIL).run()
    next(b for b in at.button if b.label == "Generate").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert_escaped(at)
