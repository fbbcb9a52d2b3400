"""GPT-2 import/export against transformers' own GPT2LMHeadModel and GPT2Tokenizer (built here: no downloads)."""
import json

import pytest
import torch
from conftest import run_cli

from gpt import runs
from gpt.config import GPTConfig, TrainConfig
from gpt.hf import gpt2 as hf
from gpt.model import GPT
from gpt.tokenizers import BPETokenizer, CharTokenizer, TokenizerError, save_tokenizer

transformers = pytest.importorskip("transformers")

VARIED = ["Hello world", "ROMEO: But, soft! what light through yonder window breaks?",
          "café naïve 日本語 🙂🙂 ñ ü — “quotes” «ok»", "  multiple   spaces\n\nnew<|endoftext|>lines",
          "it's we'll I'M don't 'll 'VE", "12345 3.14159 1e-5 0x1F", "\t\ttabs  \n end ", "", " ", "\n",
          "Ελληνικά русский עברית العربية", "a<|endoftext|><|endoftext|>b", "x" * 50]


def perturb_(params, std=0.3, seed=0):
    """Larger random weights than the 0.02 init, so logits are O(1) and a 1e-4 match means something."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in params:
            p.copy_(torch.randn(p.shape, generator=gen) * std)


@pytest.fixture(scope="module")
def bpe_tokenizer(corpus_text):
    text = corpus_text[:20000] + " " + " ".join(VARIED)
    return BPETokenizer.train(text, 400)


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory, bpe_tokenizer):
    """A small random GPT-2 saved by transformers, with a GPT-2-format vocab.json/merges.txt written here."""
    folder = tmp_path_factory.mktemp("gpt2")
    vocab, merges = bpe_tokenizer.to_gpt2_vocab()
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(m + "\n" for m in merges), encoding="utf-8")
    cfg = transformers.GPT2Config(vocab_size=len(vocab), n_positions=48, n_embd=48, n_layer=2, n_head=4,
                                  layer_norm_epsilon=1e-3, bos_token_id=len(vocab) - 1,
                                  eos_token_id=len(vocab) - 1)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    perturb_(model.parameters())
    model.save_pretrained(folder)
    return folder


def hf_logits(folder, ids: torch.Tensor) -> torch.Tensor:
    model = transformers.GPT2LMHeadModel.from_pretrained(str(folder)).eval()
    with torch.no_grad():
        return model(ids).logits


def test_gpt2_files_tokenize_like_hf(gpt2_folder, corpus_text):
    ours = hf.read_gpt2_tokenizer(gpt2_folder)
    theirs = transformers.GPT2Tokenizer.from_pretrained(str(gpt2_folder))
    assert ours.vocab_size == len(theirs) == 401
    for text in VARIED + [corpus_text[30000:32000]]:
        ids = ours.encode(text)
        assert ids == theirs.encode(text), text
        assert ours.decode(ids) == text
    assert ours.encode("<|endoftext|>") == [400]  # special: kept whole


def test_gpt2_vocab_roundtrip_keeps_ids(bpe_tokenizer, tmp_path):
    vocab, merges = bpe_tokenizer.to_gpt2_vocab()
    (tmp_path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    again = BPETokenizer.from_gpt2_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    assert again.vocab_bytes == bpe_tokenizer.vocab_bytes and again.merges == bpe_tokenizer.merges
    for text in VARIED:
        assert again.encode(text) == bpe_tokenizer.encode(text)
    (tmp_path / "merges.txt").write_text("#version: 0.2\nnot-a-token other\n", encoding="utf-8")
    with pytest.raises(TokenizerError, match="line 2"):
        BPETokenizer.from_gpt2_files(tmp_path / "vocab.json", tmp_path / "merges.txt")


def test_import_gives_hf_logits_and_a_normal_run(gpt2_folder, tmp_path):
    run_dir = hf.import_gpt2(gpt2_folder, tmp_path / "imported")
    assert {p.name for p in run_dir.iterdir()} >= {"config.json", "tokenizer.json", "model.safetensors"}
    run = runs.load_run(run_dir)
    assert run.config.activation == "gelu_tanh" and run.config.layer_norm_eps == 1e-3
    assert run.config.block_size == 48 and run.config.n_layer == 2
    ids = torch.tensor([run.tokenizer.encode("ROMEO: café 🙂 But, soft! what light")[:48]])
    with torch.no_grad():
        ours = run.model(ids)[0]
    theirs = hf_logits(gpt2_folder, ids)
    assert ours.abs().max() > 1.0
    assert torch.allclose(ours, theirs, atol=1e-4)
    with pytest.raises(hf.HFError, match="not empty"):
        hf.import_gpt2(gpt2_folder, run_dir)


def make_run(folder, cfg: GPTConfig, tokenizer, seed=0):
    folder.mkdir(parents=True)
    model = GPT(cfg)
    perturb_(model.parameters(), seed=seed)
    runs.write_config(folder, cfg, TrainConfig(), tokenizer=tokenizer.kind)
    save_tokenizer(tokenizer, folder / runs.TOKENIZER)
    runs.atomic_save_model(model, folder / runs.WEIGHTS, {"step": "7"})
    return model.eval()


@pytest.mark.parametrize("variant", [dict(), dict(bias=False, activation="gelu"), dict(arch="multi_head")])
def test_export_bpe_run_loads_in_transformers(bpe_tokenizer, tmp_path, variant):
    cfg = GPTConfig(vocab_size=bpe_tokenizer.vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=32,
                    **{"activation": "gelu_tanh", **variant})
    model = make_run(tmp_path / "run", cfg, bpe_tokenizer)
    out = hf.export_gpt2(tmp_path / "run", tmp_path / "hf")
    text = "café 🙂 it's ROMEO: hello"
    ids = torch.tensor([bpe_tokenizer.encode(text)])
    with torch.no_grad():
        ours = model(ids)[0]
    assert torch.allclose(hf_logits(out, ids), ours, atol=1e-4)
    theirs = transformers.AutoTokenizer.from_pretrained(str(out))
    assert theirs.encode(text) == ids[0].tolist()
    assert hf.load_gpt2(out)[1].encode(text) == ids[0].tolist()  # and back through our importer


def test_export_ascii_char_run_gives_same_ids_and_logits(tiny_run, tmp_path):
    out = hf.export_gpt2(tiny_run, tmp_path / "hf")
    run = runs.load_run(tiny_run)
    text = "ROMEO:\nBut soft, what light?"
    ids = run.tokenizer.encode(text)
    theirs = transformers.AutoTokenizer.from_pretrained(str(out))
    assert theirs.encode(text) == ids
    x = torch.tensor([ids])
    with torch.no_grad():
        assert torch.allclose(hf_logits(out, x), run.model(x)[0], atol=1e-4)


def test_export_unicode_char_run_writes_id_map(tmp_path):
    tok = CharTokenizer(list("abc é日\n"))
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16)
    model = make_run(tmp_path / "run", cfg, tok)
    out = hf.export_gpt2(tmp_path / "run", tmp_path / "hf")
    assert not (out / "vocab.json").exists()
    assert json.loads((out / "chars.json").read_text(encoding="utf-8"))["5"] == "日"
    x = torch.tensor([tok.encode("日é ab\nc")])
    with torch.no_grad():
        assert torch.allclose(hf_logits(out, x), model(x)[0], atol=1e-4)


def test_bad_inputs_are_refused(tmp_path, gpt2_folder, bpe_tokenizer):
    with pytest.raises(hf.HFError, match="no config.json"):
        hf.load_gpt2(tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("vocab.json", "merges.txt", "model.safetensors"):
        (bad / name).write_bytes((gpt2_folder / name).read_bytes())
    config = json.loads((gpt2_folder / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**config, "n_inner": 7}))
    with pytest.raises(hf.HFError, match="n_inner"):
        hf.load_gpt2(bad)
    (bad / "config.json").write_text(json.dumps({**config, "vocab_size": 999}))
    with pytest.raises(hf.HFError, match="do not belong together"):
        hf.load_gpt2(bad)
    (bad / "config.json").write_text(json.dumps({**config, "n_layer": 3}))
    with pytest.raises(hf.HFError, match="does not match"):
        hf.load_gpt2(bad)
    bigram = GPTConfig(vocab_size=bpe_tokenizer.vocab_size, arch="bigram", n_embd=16)
    make_run(tmp_path / "bigram", bigram, bpe_tokenizer)
    with pytest.raises(hf.HFError, match="bigram"):
        hf.export_gpt2(tmp_path / "bigram", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_cli_import_then_export(gpt2_folder, tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_cli("-m", "gpt.hf.gpt2", "import", str(gpt2_folder), str(run_dir))
    assert hf.main(["export", str(run_dir), str(tmp_path / "back")]) == 0
    back = hf.load_gpt2(tmp_path / "back")[0]
    x = torch.tensor([[1, 5, 300, 400]])
    with torch.no_grad():
        assert torch.allclose(back(x)[0], runs.load_run(run_dir).model(x)[0])
    assert hf.main(["import", str(tmp_path / "missing"), str(tmp_path / "x")]) == 2
    assert "error:" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_import_reads_openai_style_keys(gpt2_folder, tmp_path):
    """The hub's original gpt2 checkpoint: keys without 'transformer.' and causal-mask buffers .attn.bias."""
    from safetensors.torch import load_file, save_file
    folder = tmp_path / "openai-style"
    folder.mkdir()
    for name in ("config.json", "vocab.json", "merges.txt"):
        (folder / name).write_bytes((gpt2_folder / name).read_bytes())
    tensors = {k.removeprefix("transformer."): v for k, v in load_file(gpt2_folder / "model.safetensors").items()}
    tensors.update({f"h.{i}.attn.bias": torch.ones(1, 1, 48, 48).tril() for i in range(2)})
    save_file(tensors, str(folder / "model.safetensors"))
    ids = torch.tensor([[3, 17, 255, 300, 400]])
    with torch.no_grad():
        assert torch.allclose(hf.load_gpt2(folder)[0](ids)[0], hf_logits(gpt2_folder, ids), atol=1e-4)
