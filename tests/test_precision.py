"""Precision and memory: the 124M gpt2 preset runs a step on CPU, honest size estimates, bf16 and gradient
checkpointing change speed/memory but not what is learned, fp16 refused without CUDA, the benchmark runs."""
import math

import pytest
import torch
from conftest import run_cli

from gpt.config import GPTConfig, TrainConfig, preset
from gpt.model import GPT
from gpt.sizing import count_params, memory_estimate
from gpt.training.trainer import Trainer, TrainError, resolve_dtype

GPT2_SMALL_PARAMS = 124_439_808  # OpenAI's GPT-2 small with tied embeddings (wte + wpe + 12 blocks + ln_f)


@pytest.mark.slow
def test_gpt2_preset_builds_and_takes_a_cpu_step():
    cfg, train_cfg = preset("gpt2")
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.block_size, cfg.vocab_size) == (12, 12, 768, 1024, 50257)
    assert cfg.activation == "gelu_tanh"
    torch.manual_seed(0)
    model = GPT(cfg)
    assert model.num_params() == count_params(cfg) == GPT2_SMALL_PARAMS
    x = torch.randint(cfg.vocab_size, (1, 16))
    logits, loss = model(x, torch.roll(x, -1, 1))
    assert logits.shape == (1, 16, cfg.vocab_size)
    assert abs(loss.item() - math.log(cfg.vocab_size)) < 0.5  # untrained: about uniform
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.blocks[11].mlp.c_proj.weight.grad.abs().sum() > 0  # the last block learns too
    est = memory_estimate(cfg, train_cfg.batch_size)
    assert est["parameters"] == GPT2_SMALL_PARAMS
    assert est["states_bytes"] == 16 * GPT2_SMALL_PARAMS  # fp32 weights + grads + two AdamW moments
    assert est["total_bytes"] > est["states_bytes"]


def test_memory_estimate_responds_to_checkpointing_and_precision():
    cfg = GPTConfig(vocab_size=65, block_size=256, n_layer=6, n_head=6, n_embd=384)
    full = memory_estimate(cfg, 8)
    ckpt = memory_estimate(cfg, 8, grad_checkpoint=True)
    half = memory_estimate(cfg, 8, bytes_per_elem=2)
    assert ckpt["activation_bytes"] < full["activation_bytes"] / 3
    assert half["activation_bytes"] < full["activation_bytes"]
    assert full["states_bytes"] == ckpt["states_bytes"] == half["states_bytes"]


def small_trainer(dtype, ckpt=False, seed=0):
    cfg = GPTConfig(vocab_size=50, block_size=32, n_layer=2, n_head=2, n_embd=32)
    torch.manual_seed(seed)
    model = GPT(cfg)
    ids = (torch.arange(4000) * 7 + torch.arange(4000) // 400) % 50  # learnable: mostly next = this + 7
    train_cfg = TrainConfig(batch_size=8, max_iters=10, warmup_iters=0, lr=1e-2, grad_checkpoint=ckpt, eval_iters=2)
    return Trainer(model, None, ids[:3600], ids[3600:], train_cfg, None, torch.device("cpu"), dtype)


def test_gradient_checkpointing_gives_the_same_training():
    plain, ckpt = small_trainer(torch.float32), small_trainer(torch.float32, ckpt=True)
    assert ckpt.model.grad_checkpoint and not plain.model.grad_checkpoint
    losses_plain = [plain.train_step()[0] for _ in range(4)]
    losses_ckpt = [ckpt.train_step()[0] for _ in range(4)]
    assert losses_ckpt == pytest.approx(losses_plain, abs=1e-5)
    for a, b in zip(plain.model.parameters(), ckpt.model.parameters()):
        assert torch.allclose(a, b, atol=1e-5)


def test_bf16_on_cpu_trains_like_fp32():
    fp32, bf16 = small_trainer(torch.float32), small_trainer(torch.bfloat16)
    with bf16.autocast():
        assert torch.is_autocast_enabled("cpu")  # autocast follows the device type
    losses_32 = [fp32.train_step()[0] for _ in range(6)]
    losses_16 = [bf16.train_step()[0] for _ in range(6)]
    assert losses_16[-1] < losses_16[0] - 0.05  # it learns
    assert losses_16 == pytest.approx(losses_32, abs=0.05)  # and about the same as fp32
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())  # master weights stay fp32


def test_float16_needs_cuda():
    with pytest.raises(TrainError, match="CUDA"):
        resolve_dtype("float16", torch.device("cpu"))
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16


@pytest.mark.slow
def test_benchmark_runs_and_reports_both_comparisons():
    out = run_cli("bench/precision_memory.py", "--steps", "2", "--batch-size", "1", "--eval-iters", "1",
                  "--configs", "fp32,fp32+ckpt,bf16", "--threads", "1", timeout=600).stdout
    assert "checkpointing takes" in out and "bf16 vs fp32" in out
    rows = [line.split() for line in out.splitlines()
            if line.split()[:1] in (["fp32"], ["fp32+ckpt"], ["bf16"]) and "vs" not in line]
    assert len(rows) == 3 and all(float(r[1]) > 0 and float(r[2]) > 100 for r in rows)  # step s, peak MB
