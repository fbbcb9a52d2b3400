"""The Circuit page with a cross-layer transcoder in the run: a selector between the run's per-layer transcoders and
the CLT, and with the CLT chosen the page's numbers are the library's graph from the CLT."""
from __future__ import annotations

import shutil

import pytest
import torch
from circuit_page_support import assert_page_shows_the_graph
from conftest import ROOT, checkpoints_env, open_page

pytestmark = pytest.mark.usefixtures("fresh_caches")
SHIPPED = ROOT / "checkpoints" / "shakespeare-char"
PROMPT = "Where is Quintex? Good Quinte"


@pytest.fixture(scope="module")
def run_with_clt(tmp_path_factory):
    from gpt.interp.features.crosslayer import CrossLayerConfig, CrossLayerTranscoder, save_crosslayer
    from gpt.interp.features.dictionary import weights_digest
    root = tmp_path_factory.mktemp("checkpoints")
    run = root / "shakespeare-char"
    shutil.copytree(SHIPPED, run, ignore=shutil.ignore_patterns("snapshots", "interp", "cards-*", "layer-*"))
    clt = CrossLayerTranscoder(CrossLayerConfig(4, "topk", 64, 192, 192, weights_digest(run / "model.safetensors"), 4))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in clt.parameters():
            p.copy_(torch.randn(p.shape, generator=g) / 192 ** 0.5)
        clt.normalise_decoder()
    save_crosslayer(run / "features" / "clt", clt)
    with checkpoints_env(root):
        yield run


@pytest.mark.slow
def test_the_page_offers_the_clt_and_its_numbers_are_the_library_numbers(run_with_clt):
    from gpt.interp.circuits import attribution_graph, load_crosslayer_transcoder
    from gpt.runs import load_run
    at = open_page("circuit", run="shakespeare-char", timeout=240, prompt=PROMPT, pos=28)
    radio = next(r for r in at.radio if r.label == "Replace the MLPs with")
    assert radio.options == ["per-layer transcoders", "cross-layer transcoder clt"]
    assert radio.value == "per-layer transcoders"
    radio.set_value("cross-layer transcoder clt").run()
    assert not at.exception and not at.error, [e.value for e in at.exception] + [e.value for e in at.error]
    run = load_run(run_with_clt)
    clt = load_crosslayer_transcoder(run_with_clt, run.model)
    graph = attribution_graph(run.model, run.tokenizer.encode(PROMPT), clt)
    pruned = graph.prune(0.8, 0.98)
    assert_page_shows_the_graph(at, graph, pruned)
    assert any(m.value.startswith("With 1 feature switched off") for m in at.markdown)
