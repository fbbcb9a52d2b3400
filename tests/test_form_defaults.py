"""The Train form's values are built from gpt/config.py's defaults, not a second copy of them."""
from __future__ import annotations

import dataclasses

from explorer.jobs.train_form import DEFAULT_PRESET, FORM_MODEL_FIELDS, FORM_TRAIN_FIELDS, FormValues, preset_form_values
from gpt.config import GPTConfig, TrainConfig
from gpt.tokenizers import BPE_DEFAULT_VOCAB


def test_every_form_default_is_the_configs():
    form, model, train = FormValues(), GPTConfig(), TrainConfig()
    for name in FORM_MODEL_FIELDS:
        assert getattr(form, name) == getattr(model, name), name
    for name in FORM_TRAIN_FIELDS:
        assert getattr(form, name) == getattr(train, name), name
    assert form.char_vocab == model.vocab_size and form.vocab_size == BPE_DEFAULT_VOCAB
    # every field the form shares with a config by name has that config's default
    shared = {f.name for f in dataclasses.fields(FormValues)} & ({f.name for f in dataclasses.fields(GPTConfig)}
                                                                 | {f.name for f in dataclasses.fields(TrainConfig)})
    for name in shared - {"vocab_size"}:  # the form's vocab_size is the BPE vocabulary it asks for
        config = model if hasattr(model, name) else train
        assert getattr(form, name) == getattr(config, name), name


def test_the_page_opens_on_the_presets_values():
    form = FormValues(**preset_form_values(DEFAULT_PRESET), preset=DEFAULT_PRESET)
    from gpt.config import PRESETS
    model_kw, train_kw, _ = PRESETS[DEFAULT_PRESET]
    model, train = GPTConfig(**model_kw), TrainConfig(**train_kw)
    for name in FORM_MODEL_FIELDS:
        assert getattr(form, name) == getattr(model, name), name
    for name in FORM_TRAIN_FIELDS:
        assert getattr(form, name) == getattr(train, name), name
