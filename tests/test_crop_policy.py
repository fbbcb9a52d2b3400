"""One crop policy for a prompt longer than the context (gpt.generate.crop_prompt: keep the last block_size tokens),
and every page that crops says so, with how many tokens it left out."""
from __future__ import annotations

import pytest
from conftest import open_page, placed


@pytest.mark.slow
@pytest.mark.parametrize("page", ["why_token", "steering", "attention"])
def test_a_page_that_crops_says_it_kept_the_last_block(root, page):
    at = open_page(page, run="tiny")
    box = next(t for t in at.text_area if "prompt" in str(t.key)) if page == "steering" else \
        placed(at, "text_area", "prompt")
    box.set_value("ab" * 50).run()  # 100 tokens, block_size 32
    assert not at.exception, [e.message for e in at.exception]
    notes = [w.value for w in at.warning if "left out" in w.value]
    assert notes and "last 32 are used and the first 68 left out" in notes[0], [w.value for w in at.warning]
