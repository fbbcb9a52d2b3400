"""The Train page's defaults and guards (issue 11, section 3): the form opens on a named preset, shows an expected
wall time measured on this machine, refuses a run that cannot fit in memory with the numbers, asks before a run
of hours, and refuses a value typed out of range visibly instead of replacing it; the ladder's rungs are set up
to show the seed's ordering."""
from __future__ import annotations

import pytest
from conftest import open_page
from streamlit.proto.NumberInput_pb2 import NumberInput as NumberInputProto
from streamlit.testing.v1 import AppTest

from explorer.jobs import train_form
from explorer.jobs.train_form import (
    DEFAULT_PRESET,
    LADDER_RUNGS,
    LADDER_SHARED,
    FormValues,
    configs,
    expected_seconds,
    ladder_options,
    needs_confirmation,
    preset_form_values,
    problems,
    timing_for,
    train_options,
)
from gpt.config import ARCHS, PRESETS, GPTConfig, TrainConfig

FAST = {"step_s": 0.01, "eval_batch_s": 0.003, "startup_s": 3.0, "measured": True, "at": 0}


@pytest.fixture
def train_root(empty_root, monkeypatch):
    """No runs at all (a fresh clone without the shipped model is not needed: the Train page is what we test);
    the wall-time measurement replaced by a fixed one so each test controls what the machine 'measured'."""
    monkeypatch.setattr(train_form, "measure_timing", lambda model, train, threads: dict(FAST))
    return empty_root


def start_button(at: AppTest):
    return next(b for b in at.button if b.label == "Start training")


def errors(at: AppTest) -> str:
    return "\n".join(e.value for e in at.error)


# ---- the form's logic, without streamlit ----
def test_default_preset_fills_the_form_and_keeps_its_hidden_settings():
    assert DEFAULT_PRESET in PRESETS
    values = FormValues(corpus="tiny-shakespeare", **preset_form_values(DEFAULT_PRESET), preset=DEFAULT_PRESET)
    model, train = configs(values)
    preset_model, preset_train = PRESETS[DEFAULT_PRESET][0], PRESETS[DEFAULT_PRESET][1]
    for key, value in {**preset_model, **preset_train}.items():   # the form trains exactly the preset
        if key not in ("snapshot_interval", "dtype"):
            expected = pytest.approx(value) if isinstance(value, float) else value
            assert getattr(model if key in preset_model else train, key) == expected, key
    # bf16 where this machine runs it natively; emulated elsewhere (many times slower), so fp32 there
    assert train.dtype == ("bfloat16" if train_form.bf16_is_native() else "float32")
    assert train_options(values)["preset"] == DEFAULT_PRESET  # the trainer starts from it: nothing is lost
    assert (model.n_layer, model.n_embd, train.max_iters) != (2, 32, 200)   # not the old 200 steps of noise


def test_out_of_range_values_are_refused_by_name_not_replaced():
    found = problems(FormValues(corpus="python-docs", block_size=1))
    assert found == ["Block size must be at least 2 (you typed 1)"]
    assert problems(FormValues(corpus="python-docs", lr=2.0)) == ["Learning rate must be at most 1 (you typed 2)"]
    assert any("BPE vocab size" in p for p in problems(FormValues(tokenizer="bpe", vocab_size=100)))


def test_memory_beyond_the_machine_is_refused_with_both_numbers():
    huge = FormValues(corpus="python-docs", n_layer=48, n_embd=2048, n_head=32, block_size=1024, batch_size=512)
    found = problems(huge, available_bytes=16 * 2**30)
    assert len(found) == 1 and "GB of memory" in found[0] and "16.0 GB available" in found[0]
    assert problems(FormValues(corpus="python-docs"), available_bytes=16 * 2**30) == []


def test_expected_time_counts_steps_evaluations_and_start_up():
    v = FormValues(corpus="python-docs", max_iters=1000, eval_interval=100)
    seconds = expected_seconds(v, FAST)
    assert 3.0 + 1000 * 0.01 < seconds < 3.0 + 1000 * 0.01 + 11 * 2.0
    assert not needs_confirmation(seconds) and needs_confirmation(2 * 3600 + 1)


def test_big_shapes_are_extrapolated_not_timed():
    calls = []

    def measure(model, train, threads):
        calls.append(model.n_embd)
        return dict(FAST)
    big = FormValues(corpus="python-docs", n_layer=48, n_embd=2048, n_head=32, block_size=1024, batch_size=64)
    timing = timing_for(big, measure, 1)
    assert not timing["measured"] and timing["step_s"] > 100 * FAST["step_s"]
    assert calls == [preset_form_values(DEFAULT_PRESET)["n_embd"]]   # timed the reference shape only


@pytest.mark.slow
def test_a_real_measurement_times_training_steps(monkeypatch, tmp_path):
    monkeypatch.setenv("GPT_EXPLORER_CACHE", str(tmp_path))
    model = GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=16)
    train = TrainConfig(batch_size=4, dtype="float32")
    timing = train_form.measure_timing(model, train, threads=1)
    assert timing["measured"] and 0 < timing["step_s"] < 5 and timing["startup_s"] >= 0
    assert train_form.measure_timing(model, train, threads=1) == timing   # remembered, not measured again


def test_bf16_is_ticked_only_where_it_is_native(monkeypatch):
    """A preset in bf16 (or auto) ticks the box only on hardware that runs bf16 natively."""
    assert PRESETS[DEFAULT_PRESET][1]["dtype"] == "auto" and "dtype" not in PRESETS["shakespeare-char"][1]
    for native in (True, False):
        monkeypatch.setattr(train_form, "bf16_is_native", lambda native=native: native)
        assert preset_form_values(DEFAULT_PRESET)["bf16"] is native
        assert preset_form_values("shakespeare-char")["bf16"] is native   # TrainConfig's dtype: auto


class FakeClock:
    """time.perf_counter for gpt.training.calibrate that moves only when a (faked) training step says so."""
    def __init__(self):
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


@pytest.mark.parametrize("durations, step_s, steps_run", [
    ([5.0, 4.0, 1.0, 1.2, 9.0, 0.8, 1.1], 1.1, 7),  # warm-up steps skipped; one step slowed by a neighbour ignored
    ([0.5, 0.5] + [0.125] * 30, 0.125, 2 + 8),       # quick steps: timed until a second has passed
    ([0.5, 0.5] + [0.01] * 30, 0.01, 2 + 20),        # ... but never more than max_steps
])
def test_calibration_takes_the_median_step_after_warm_up(monkeypatch, durations, step_s, steps_run):
    from gpt.training import calibrate
    from gpt.training.trainer import Trainer
    clock, scripted = FakeClock(), iter(durations)

    def step(self):
        clock.now += next(scripted)
        return 0.0, 0.0
    monkeypatch.setattr(calibrate, "time", clock)
    monkeypatch.setattr(Trainer, "train_step", step)
    result = calibrate.time_training(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=16),
                                     TrainConfig(batch_size=2, dtype="float32"), steps=5, warmup=2, max_steps=20)
    assert result["step_s"] == pytest.approx(step_s) and result["steps_run"] == steps_run


def test_start_up_is_the_calibrations_wall_time_beyond_its_steady_work():
    result = {"step_s": 0.5, "eval_batch_s": 0.25, "steps_run": 10}
    assert train_form.startup_seconds(9.0, result) == pytest.approx(9.0 - 10 * 0.5 - 2 * 0.25)
    assert train_form.startup_seconds(4.0, result) == 0.0   # never negative


# ---- the ladder ----
def test_ladder_rungs_add_one_idea_each_on_the_same_data():
    rungs = ladder_options(FormValues(corpus="python-docs", seed=7))
    assert [arch for arch, _ in rungs] == list(ARCHS) == list(LADDER_RUNGS)
    for _, opts in rungs:
        assert opts["corpus"] == "python-docs" and opts["seed"] == 7
        assert {k: opts[k] for k in LADDER_SHARED} == LADDER_SHARED   # same text, context, batch, width
    single, multi, gpt = (dict(o) for _, o in rungs[1:])
    assert single["n_layer"] == multi["n_layer"] == gpt["n_layer"]
    assert single["n_head"] == 1 < multi["n_head"] == gpt["n_head"]
    assert single["max_iters"] == multi["max_iters"] == gpt["max_iters"] and single["lr"] == multi["lr"] == gpt["lr"]
    # the bigram converges only with a bigger lr; a half-trained bigram would beat half-trained attention
    assert rungs[0][1]["lr"] > gpt["lr"]
    for _, opts in rungs:
        GPTConfig(**{k: opts[k] for k in ("arch", "n_embd", "block_size") if k in opts},
                  **{k: opts[k] for k in ("n_layer", "n_head") if k in opts}).validate()
        TrainConfig(**{k: opts[k] for k in ("max_iters", "lr", "min_lr", "warmup_iters", "eval_interval",
                                            "batch_size")}).validate()


# ---- the page ----
def test_train_page_opens_on_the_default_preset_with_an_expected_time(train_root):
    at = open_page("train")
    assert at.selectbox(key="tf_preset").value == DEFAULT_PRESET
    for key, value in preset_form_values(DEFAULT_PRESET).items():
        if key == "bf16":
            assert at.checkbox(key="tf_bf16").value == value
        elif key == "arch":
            assert at.radio(key="tf_arch").value == value
        else:
            assert at.number_input(key=f"tf_{key}").value == value, key
    labels = [m.label for m in at.metric]
    assert labels[:2] == ["Parameters", "FLOPs per step"] and "Expected wall time" in labels
    expected = next(m for m in at.metric if m.label == "Expected wall time").value
    assert expected not in ("—", "") and not start_button(at).disabled


# the form's whole-number fields (FormValues' int fields that have a box)
INTEGER_BOXES = ("vocab_size", "n_layer", "n_head", "n_embd", "block_size", "batch_size", "max_iters", "warmup_iters",
                 "eval_interval", "seed")


def assert_integer_boxes(at: AppTest) -> None:
    for key in INTEGER_BOXES:
        box = at.number_input(key=f"tf_{key}")
        assert box.proto.data_type == NumberInputProto.INT, key   # the browser shows "3", not "3.00"
        assert type(box.value) is int, (key, box.value)
    for key in ("dropout", "lr"):
        assert at.number_input(key=f"tf_{key}").proto.data_type == NumberInputProto.FLOAT, key


def test_whole_number_fields_are_integers_on_screen(train_root):
    """Issue 22 saw "3.00" layers, "16.00" batch and "250.00" eval interval: st.number_input is a float box
    unless its value, step and bounds are all ints. Whole numbers stay whole after a preset change and a typed value."""
    at = open_page("train")
    assert_integer_boxes(at)
    at.selectbox(key="tf_preset").set_value("nanogpt-cpu").run()
    assert at.number_input(key="tf_n_layer").value == PRESETS["nanogpt-cpu"][0]["n_layer"]
    at.number_input(key="tf_seed").set_value(7).run()
    assert_integer_boxes(at)
    assert at.number_input(key="tf_seed").value == 7


def test_typed_block_size_one_is_refused_visibly(train_root):
    at = open_page("train")
    at.number_input(key="tf_block_size").set_value(1).run()
    assert "Block size must be at least 2 (you typed 1)" in errors(at)
    assert at.number_input(key="tf_block_size").value == 1   # what the user typed stays, with the reason
    assert start_button(at).disabled


def test_a_model_too_big_for_memory_cannot_start(train_root):
    at = open_page("train")
    at.number_input(key="tf_n_layer").set_value(48).run()
    at.number_input(key="tf_n_embd").set_value(2048).run()
    at.number_input(key="tf_n_head").set_value(32).run()
    at.number_input(key="tf_block_size").set_value(1024).run()
    at.number_input(key="tf_batch_size").set_value(512).run()
    assert "GB of memory" in errors(at) and "available" in errors(at), errors(at)
    assert start_button(at).disabled


def test_a_run_of_hours_asks_for_confirmation(train_root, monkeypatch):
    slow = {**FAST, "step_s": 10.0}
    monkeypatch.setattr(train_form, "measure_timing", lambda model, train, threads: dict(slow))
    at = open_page("train")
    at.number_input(key="tf_max_iters").set_value(100_000).run()
    assert start_button(at).disabled
    confirm = at.checkbox(key="tf_confirm_long")
    assert "Yes, start a run expected to take about" in confirm.label
    confirm.check().run()
    assert not start_button(at).disabled


def test_ladder_view_shows_each_rungs_sample_beside_its_curve(train_root):
    """Four finished rungs (their metrics, samples and status: what the page reads) -> one row per rung, in
    ladder order, with its own curve, validation loss and sample."""
    from gpt import runs
    losses = {"bigram": 2.49, "single_head": 2.25, "multi_head": 2.09, "gpt": 1.99}
    for arch, loss in losses.items():
        rung = train_root / f"ladder-0101-000000-{arch}"
        rung.mkdir()
        for step in (0, 10):
            runs.append_jsonl(rung / runs.METRICS, {"step": step, "train_loss": loss + 1 - step / 10})
            runs.append_jsonl(rung / runs.METRICS, {"step": step, "val_loss": loss + 1 - step / 10})
        runs.append_jsonl(rung / runs.SAMPLES, {"step": 10, "text": f"sample of {arch}"})
        runs.write_status(rung, state="finished", pid=None, step=10, max_iters=10)
    at = open_page("train", state={"train_watch": "ladder-0101-000000-bigram"})
    codes = [c.value for c in at.code]
    assert codes[:4] == [f"sample of {arch}" for arch in losses]
    rows = [m.value for m in at.markdown if "validation loss" in m.value]
    assert [f"{loss:.3f}" in row for row, loss in zip(rows, losses.values())] == [True] * 4
    charts = [c for c in at.get("plotly_chart")]
    assert len(charts) >= 1 + 4   # the overlaid curves, then one per rung


def test_counts_keep_three_figures_so_a_metric_column_shows_them_whole():
    from explorer.jobs.train_form import human_count
    assert human_count(563.3e9, "FLOP") == "563 GFLOP"
    assert human_count(3.14e9, "FLOP") == "3.1 GFLOP"
    assert human_count(230_100) == "230 k" and human_count(12_345) == "12.3 k" and human_count(512) == "512"
