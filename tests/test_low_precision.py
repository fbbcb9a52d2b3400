"""The bf16 working-copy training path (gpt/training/precision.py): same gradients as the model up to bf16 rounding,
clipping as torch's, gradient accumulation, and exact resume through the Trainer's checkpoint."""
import pytest
import torch

from gpt.config import GPTConfig, TrainConfig
from gpt.model import GPT
from gpt.training.precision import LowPrecisionCopy
from gpt.training.trainer import Trainer

CFG = GPTConfig(vocab_size=40, block_size=16, n_layer=2, n_head=2, n_embd=32)


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, CFG.vocab_size, (4, CFG.block_size), generator=g)
    return x, torch.roll(x, -1, 1)


def test_working_copy_gradients_match_fp32_and_clip_like_torch():
    torch.manual_seed(0)
    model = GPT(CFG)
    x, y = batch()
    model(x, y)[1].backward()
    reference = [p.grad.clone() for p in model.parameters()]
    ref_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5).item()
    clipped = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    lowp = LowPrecisionCopy(model)
    assert model.wte.weight.grad is None and lowp.work.lm_head.weight is lowp.work.wte.weight  # tying kept
    lowp.begin_step()
    lowp.forward_backward(x, y)
    for p, ref in zip(model.parameters(), reference):
        assert p.grad.dtype == torch.float32
        assert torch.allclose(p.grad, ref, atol=2e-3, rtol=0.1)
    norm = lowp.clip_grad_norm_(0.5)
    assert norm == pytest.approx(ref_norm, rel=0.02)
    total = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in model.parameters()])).item()
    assert total == pytest.approx(0.5, rel=1e-3) and ref_norm > 0.5
    for p, ref in zip(model.parameters(), clipped):
        assert torch.allclose(p.grad, ref, atol=2e-3, rtol=0.1)


def test_accumulation_adds_micro_batches_and_begin_step_zeroes():
    torch.manual_seed(0)
    model = GPT(CFG)
    lowp = LowPrecisionCopy(model)
    lowp.begin_step()
    lowp.forward_backward(*batch(1), 0.5)
    lowp.forward_backward(*batch(2), 0.5)
    both = lowp.flat_grad.clone()
    lowp.begin_step()
    lowp.forward_backward(*batch(1), 0.5)
    first = lowp.flat_grad.clone()
    lowp.begin_step()
    lowp.forward_backward(*batch(2), 0.5)
    assert torch.allclose(both, first + lowp.flat_grad, atol=1e-6)


def make_trainer(out_dir=None):
    torch.manual_seed(0)
    ids = (torch.arange(3000) * 7) % CFG.vocab_size
    cfg = TrainConfig(batch_size=4, max_iters=8, warmup_iters=2, lr=1e-2, eval_iters=1, grad_accum=2)
    return Trainer(GPT(CFG), None, ids[:2700], ids[2700:], cfg, out_dir, torch.device("cpu"), torch.bfloat16)


def test_bf16_trainer_uses_the_working_copy_and_resumes_exactly(tmp_path):
    straight = make_trainer()
    assert straight.low_precision is not None
    for _ in range(6):
        straight.train_step()
    first = make_trainer(tmp_path)
    for _ in range(3):
        first.train_step()
    first.save_checkpoint()
    resumed = make_trainer(tmp_path)
    resumed.load_checkpoint(tmp_path / "resume.safetensors")
    assert resumed.step == 3
    for _ in range(3):
        resumed.train_step()
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
