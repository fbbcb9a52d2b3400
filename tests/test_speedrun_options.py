"""The architecture options of GPTConfig (issue 14): each one trains, saves, loads, resumes exactly, keeps the two
attention paths and the one-token decoder in agreement, counts its parameters right, and is refused by GPT-2
export with its name."""
import pytest
import torch
from conftest import TINY_TRAIN, run_cli

from gpt import runs
from gpt.config import ConfigError, GPTConfig, TrainConfig
from gpt.hf import gpt2 as hf
from gpt.model import GPT, Trace, capture_names
from gpt.sizing import count_params, flops_per_token
from gpt.tokenizers import CharTokenizer, save_tokenizer

OPTIONS = {
    "rotary": dict(pos_embedding="rotary"),
    "rmsnorm": dict(norm="rmsnorm"),
    "no-norm": dict(norm="none"),
    "relu": dict(activation="relu"),
    "relu2": dict(activation="relu2"),
    "qk-norm": dict(qk_norm=True),
    "untied": dict(tie_embeddings=False),
    "zero-init": dict(zero_init_proj=True),
    "softcap": dict(logit_softcap=10.0),
}
ALL_ON = dict(pos_embedding="rotary", norm="rmsnorm", activation="relu2", qk_norm=True, tie_embeddings=False,
              zero_init_proj=True, logit_softcap=10.0)
CASES = {**OPTIONS, "all": ALL_ON}
CLI_FLAGS = ("--pos-embedding", "rotary", "--norm", "rmsnorm", "--activation", "relu2", "--qk-norm",
             "--no-tie-embeddings", "--zero-init-proj", "--logit-softcap", "10")


def small(arch="gpt", **options) -> GPTConfig:
    shape = dict(vocab_size=30, block_size=10, n_layer=2, n_head=2, n_embd=16)
    return GPTConfig(**{**shape, "arch": arch, **options})


@pytest.mark.parametrize("arch", ["gpt", "multi_head", "single_head", "bigram"])
@pytest.mark.parametrize("case", CASES)
def test_paths_agree_and_params_are_counted(case, arch):
    """SDPA forward, the traced explicit path and decode_next give the same logits; count_params is exact; the
    trace records exactly capture_names."""
    cfg = small(arch, **CASES[case])
    torch.manual_seed(0)
    model = GPT(cfg).eval()
    for p in model.parameters():  # zero-init projections would make every block an identity
        p.data.add_(0.05 * torch.randn_like(p))
    assert model.num_params() == count_params(cfg) and flops_per_token(cfg) > 0
    idx = torch.randint(0, 30, (3, 10))
    fast, _ = model(idx)
    trace = Trace()
    explicit, _ = model(idx, trace=trace)
    assert torch.allclose(fast, explicit, atol=1e-5)
    assert list(trace.acts) == capture_names(cfg)
    assert ("embed.pos" in trace.acts) == cfg.has_position_table
    cache = model.new_kv_cache()
    model(idx[:, :3], kv_cache=cache)
    for t in range(3, 10):
        assert torch.allclose(model.decode_next(idx[:, t:t + 1], cache), fast[:, t], atol=1e-5), t
    if cfg.logit_softcap:
        assert fast.abs().max() < cfg.logit_softcap


def test_each_option_does_what_it_says():
    assert GPT(small(pos_embedding="rotary")).wpe is None
    untied = GPT(small(tie_embeddings=False))
    assert untied.lm_head.weight is not untied.wte.weight
    assert all(isinstance(b.ln_1, torch.nn.RMSNorm) for b in GPT(small(norm="rmsnorm")).blocks)
    assert all(isinstance(b.ln_2, torch.nn.Identity) for b in GPT(small(norm="none")).blocks)
    zero = GPT(small(zero_init_proj=True))
    assert all(float(p.detach().abs().sum()) == 0 for n, p in zero.named_parameters() if n.endswith("c_proj.weight"))
    # rotary attention depends on relative position only: shifting the whole sequence keeps the scores
    model = GPT(small(pos_embedding="rotary", n_layer=1)).eval()
    attn = model.blocks[0].attn
    q, k = torch.randn(1, 2, 3, 8), torch.randn(1, 2, 3, 8)
    s0 = attn.rotary(q, 0) @ attn.rotary(k, 0).transpose(-1, -2)
    s4 = attn.rotary(q, 4) @ attn.rotary(k, 4).transpose(-1, -2)
    assert torch.allclose(s0, s4, atol=1e-5)


@pytest.mark.parametrize("bad,message", [
    (dict(pos_embedding="alibi"), "pos_embedding must be one of learned, rotary"),
    (dict(norm="batchnorm"), "norm must be one of layernorm, rmsnorm, none"),
    (dict(activation="swish"), "activation must be one of"),
    (dict(qk_norm="yes"), "qk_norm must be true or false"),
    (dict(logit_softcap=-1.0), "logit_softcap must be 0"),
    (dict(pos_embedding="rotary", n_embd=18, n_head=6), "head size n_embd/n_head must be even"),
])
def test_bad_options_are_explained(bad, message):
    with pytest.raises(ConfigError, match=message):
        small(**bad).validate()


def test_old_configs_without_the_options_still_load():
    old = {k: v for k, v in small().to_dict().items() if k in ("vocab_size", "block_size", "n_layer", "arch")}
    cfg = GPTConfig.from_dict(old)
    assert cfg.pos_embedding == "learned" and cfg.norm == "layernorm" and cfg.tie_embeddings
    assert GPTConfig.from_dict(small(**ALL_ON).to_dict()) == small(**ALL_ON)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["all", "rotary"])
def test_option_trains_saves_and_resumes_exactly(case, tmp_path, corpus_file):
    """Loss falls; config.json and the weights' metadata carry the options; load_run rebuilds the model; a run
    stopped half-way and resumed logs the same losses as one run straight through."""
    flags = {"all": CLI_FLAGS, "rotary": ("--pos-embedding", "rotary")}[case]
    common = ("--corpus", str(corpus_file), "--max-iters", "30", "--eval-interval", "15", "--lr", "3e-3",
              *TINY_TRAIN, *flags)
    straight, split = tmp_path / "straight", tmp_path / "split"
    run_cli("-m", "gpt.train", "--out", str(straight), *common)
    run_cli("-m", "gpt.train", "--out", str(split), "--stop-after", "15", *common)
    run_cli("-m", "gpt.train", "--out", str(split), "--resume", "--quiet")
    a, b = runs.read_jsonl(straight / runs.METRICS), runs.read_jsonl(split / runs.METRICS)
    vals = [m["val_loss"] for m in a if "val_loss" in m]
    assert vals[-1] < vals[0] - 0.3, vals
    assert vals == pytest.approx([m["val_loss"] for m in b if "val_loss" in m], abs=1e-4)
    assert [m["train_loss"] for m in a if "train_loss" in m] == \
        pytest.approx([m["train_loss"] for m in b if "train_loss" in m], abs=1e-4)
    run = runs.load_run(split)
    expected = {"all": ALL_ON, "rotary": OPTIONS["rotary"]}[case]
    assert {k: getattr(run.config, k) for k in expected} == expected
    _, metadata = runs.read_header(split / runs.WEIGHTS)
    assert all(f'"{k}"' in metadata[runs.CONFIG_META] for k in expected)
    runs.check_weights_fit(run.config, split / runs.WEIGHTS)
    x = torch.randint(0, run.config.vocab_size, (1, 16))
    assert torch.equal(run.model(x)[0], runs.load_run(straight).model(x)[0])


@pytest.mark.parametrize("case", ["rotary", "rmsnorm", "relu2", "qk-norm", "untied", "softcap"])
def test_gpt2_export_refuses_what_gpt2_cannot_represent(case, tmp_path):
    tok = CharTokenizer(list("abcdefgh \n"))
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16, **CASES[case])
    folder = tmp_path / "run"
    folder.mkdir()
    runs.write_config(folder, cfg, TrainConfig(), tokenizer=tok.kind)
    save_tokenizer(tok, folder / runs.TOKENIZER)
    runs.atomic_save_model(GPT(cfg), folder / runs.WEIGHTS, {"step": "0"})
    name = next(iter(CASES[case]))
    with pytest.raises(hf.HFError, match=f"cannot represent this model's {name}="):
        hf.export_gpt2(folder, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
    # zero-initialised projections are only an initialisation: such a model is a plain GPT-2
    assert not GPTConfig(zero_init_proj=True).gpt2_incompatible


# ---- Muon and the warmup-stable-decay schedule ----

def test_batched_muon_matches_torch_muon(monkeypatch):
    from gpt.training import optim
    from gpt.training.optim import BatchedMuon
    # torch.optim.Muon always iterates in bf16: compare like with like
    monkeypatch.setattr(optim, "fast_matmul_dtype", lambda device: torch.bfloat16)
    torch.manual_seed(0)
    shapes = [(48, 16), (16, 16), (64, 16), (16, 64)] * 2
    ours = [torch.nn.Parameter(0.02 * torch.randn(*s)) for s in shapes]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    opt_ours, opt_theirs = BatchedMuon(ours, lr=0.02), torch.optim.Muon(theirs, lr=0.02)
    for _ in range(3):
        for a, b in zip(ours, theirs):
            a.grad = torch.randn_like(a)
            b.grad = a.grad.clone()
        opt_ours.step()
        opt_theirs.step()
    for a, b in zip(ours, theirs):
        assert torch.allclose(a, b, atol=1e-6)
    assert opt_ours.state_dict()["state"].keys() == opt_theirs.state_dict()["state"].keys()


@pytest.mark.parametrize("native_bf16", [False, True])
def test_newton_schulz_runs_in_bf16_only_where_bf16_is_native(monkeypatch, native_bf16):
    """Emulated bf16 (an AVX2-only CPU) made every Muon step ~40x slower: there it iterates in fp32."""
    from gpt.training import optim, precision
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: native_bf16)
    G = torch.randn(3, 32, 96)
    X = optim.orthogonalise(G)
    assert X.dtype == (torch.bfloat16 if native_bf16 else torch.float32)
    # either way close to U V^T: singular values near 1 (the quintic iteration leaves them in ~[0.7, 1.2])
    s = torch.linalg.svdvals(X.float())
    assert s.min() > 0.6 and s.max() < 1.3


def test_muon_takes_the_hidden_matrices_and_adamw_the_rest():
    from gpt.training.optim import make_optimizer
    model = GPT(small(tie_embeddings=False))
    opt = make_optimizer(model, TrainConfig(optimizer="muon", lr=1e-3, muon_lr=0.02), torch.device("cpu"))
    muon = {id(p) for g in opt.muon.param_groups for p in g["params"]}
    names = {n for n, p in model.named_parameters() if id(p) in muon}
    assert names == {n for n, p in model.named_parameters() if n.startswith("blocks.") and p.dim() == 2}
    assert all(g["lr_scale"] == pytest.approx(20.0) for g in opt.muon.param_groups)
    assert len(opt.param_groups) == len(opt.adamw.param_groups) + len(opt.muon.param_groups)


def test_wsd_schedule_is_flat_then_linear():
    from gpt.training.trainer import lr_at
    cfg = TrainConfig(max_iters=100, warmup_iters=10, lr=1e-2, min_lr=1e-3, schedule="wsd", cooldown_frac=0.4)
    lrs = [lr_at(s, cfg) for s in range(101)]
    assert lrs[5] < lrs[9] < 1e-2 and all(lr == 1e-2 for lr in lrs[10:60])
    assert lrs[80] == pytest.approx(1e-2 + 0.5 * (1e-3 - 1e-2)) and lrs[100] == 1e-3
    with pytest.raises(ConfigError, match="schedule must be one of cosine, wsd"):
        TrainConfig(schedule="linear").validate()
    with pytest.raises(ConfigError, match="optimizer must be one of adamw, muon"):
        TrainConfig(optimizer="sgd").validate()


@pytest.mark.slow
def test_muon_resume_continues_exactly(tmp_path, corpus_file):
    common = ("--corpus", str(corpus_file), "--max-iters", "30", "--eval-interval", "15", "--optimizer", "muon",
              "--schedule", "wsd", "--dropout", "0.1", *TINY_TRAIN)
    straight, split = tmp_path / "straight", tmp_path / "split"
    run_cli("-m", "gpt.train", "--out", str(straight), *common)
    run_cli("-m", "gpt.train", "--out", str(split), "--stop-after", "15", *common)
    run_cli("-m", "gpt.train", "--out", str(split), "--resume", "--quiet")
    a, b = runs.read_jsonl(straight / runs.METRICS), runs.read_jsonl(split / runs.METRICS)
    assert [m["step"] for m in a] == [m["step"] for m in b]
    assert [m.get("val_loss") for m in a] == pytest.approx([m.get("val_loss") for m in b], abs=1e-4)
    assert [m.get("train_loss") for m in a] == pytest.approx([m.get("train_loss") for m in b], abs=1e-4)
    assert runs.read_config(split)["train"].optimizer == "muon"
    x = torch.randint(0, 30, (1, 16))
    assert torch.equal(runs.load_run(split).model(x)[0], runs.load_run(straight).model(x)[0])


def test_speedrun_presets_and_flags_that_switch_each_part_off():
    from gpt.config import preset
    from gpt.train import build_parser, configs_from_args
    for name in ("speedrun", "speedrun-long"):
        model_cfg, train_cfg = preset(name)
        assert model_cfg.validate().pos_embedding == "rotary" and train_cfg.validate().optimizer == "muon"
        assert model_cfg.qk_norm is (name == "speedrun-long")
    args = build_parser().parse_args(["--out", "x", "--preset", "speedrun", "--no-qk-norm", "--tie-embeddings",
                                      "--pos-embedding", "learned", "--logit-softcap", "0", "--optimizer", "adamw",
                                      "--schedule", "cosine", "--norm", "rmsnorm"])
    model_cfg, train_cfg = configs_from_args(args, *preset("speedrun"))
    assert (model_cfg.qk_norm, model_cfg.tie_embeddings, model_cfg.pos_embedding, model_cfg.logit_softcap,
            model_cfg.norm) == (False, True, "learned", 0.0, "rmsnorm")
    assert (train_cfg.optimizer, train_cfg.schedule) == ("adamw", "cosine")
    assert (train_cfg.beta1, train_cfg.muon_momentum) == (0.8, 0.9)  # the preset's
    args = build_parser().parse_args(["--out", "x", "--beta1", "0.9", "--muon-momentum", "0.95"])
    _, flagged = configs_from_args(args, *preset("speedrun"))
    assert (flagged.beta1, flagged.muon_momentum) == (0.9, 0.95)
    assert model_cfg.zero_init_proj and train_cfg.max_iters == 180  # what no flag named stays as the preset has it


def test_our_adamw_is_torch_fused_adamw_and_its_state_loads_both_ways():
    from gpt.training.optim import AdamW
    torch.manual_seed(0)
    ours = [torch.nn.Parameter(torch.randn(8, 4)), torch.nn.Parameter(torch.randn(4))]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    groups = lambda ps: [{"params": [ps[0]], "weight_decay": 0.1}, {"params": [ps[1]], "weight_decay": 0.0}]
    opt_ours = AdamW(groups(ours), lr=3e-3, betas=(0.8, 0.95))
    opt_theirs = torch.optim.AdamW(groups(theirs), lr=3e-3, betas=(0.8, 0.95), fused=True)
    plain = AdamW(groups([torch.nn.Parameter(p.detach().clone()) for p in ours]), lr=3e-3, betas=(0.8, 0.95))
    plain.fused = False  # the loop for devices without the fused kernel
    for _ in range(4):
        for a, b, c in zip(ours, theirs, [p for g in plain.param_groups for p in g["params"]]):
            a.grad = torch.randn_like(a)
            b.grad, c.grad = a.grad.clone(), a.grad.clone()
        for opt in (opt_ours, opt_theirs, plain):
            opt.step()
    for a, b, c in zip(ours, theirs, [p for g in plain.param_groups for p in g["params"]]):
        assert torch.equal(a, b)
        assert torch.allclose(a, c, atol=1e-6)
    # a resume file written by either optimizer restores the other exactly
    sd = opt_theirs.state_dict()
    fresh = AdamW(groups([torch.nn.Parameter(p.detach().clone()) for p in theirs]), lr=3e-3, betas=(0.8, 0.95))
    fresh.load_state_dict(sd)
    for pid, state in sd["state"].items():
        got = fresh.state_dict()["state"][pid]
        assert got.keys() == state.keys() and all(torch.equal(got[k], state[k]) for k in state)
    back = torch.optim.AdamW(groups([torch.nn.Parameter(p.detach().clone()) for p in ours]), lr=3e-3, fused=True)
    back.load_state_dict(opt_ours.state_dict())
    with pytest.raises(ValueError, match="different number of parameters"):
        AdamW([torch.nn.Parameter(torch.randn(3))]).load_state_dict(sd)


def test_training_never_imports_torch_dynamo(corpus_file, tmp_path):
    """torch.optim's first call imports torch._dynamo (1.35 s); a training command must not pay it."""
    import subprocess
    import sys
    code = ("import sys; from gpt.train import main; "
            f"rc = main(['--corpus', {str(corpus_file)!r}, '--out', {str(tmp_path / 'run')!r}, '--preset', 'speedrun', "
            "'--max-iters', '2', '--quiet']); "
            "print('dynamo' if 'torch._dynamo' in sys.modules else 'no dynamo'); sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "no dynamo"
