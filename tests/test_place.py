"""The learner's place (explorer/ui/state.py): prompt, layer, head and generation settings survive page switches,
and the URL's query parameters bring them back in a new session (a reload or a shared link)."""
import pytest
from conftest import new_app, open_page, placed


@pytest.mark.slow
def test_attention_choices_survive_a_trip_to_generate_and_back(root):
    at = open_page("attention")
    placed(at, "text_area", "prompt").set_value("to be or not to be").run()
    placed(at, "selectbox", "layer").set_value(1).run()
    placed(at, "selectbox", "head").set_value(1).run()
    assert not at.exception
    assert at.query_params["layer"] in ("1", ["1"]) and at.query_params["head"] in ("1", ["1"])
    at.switch_page("views/generate.py").run()
    assert placed(at, "text_area", "prompt").value == "to be or not to be"  # the same prompt on Generate
    placed(at, "slider", "temperature").set_value(1.3).run()
    at.switch_page("views/attention.py").run()
    assert placed(at, "selectbox", "layer").value == 1 and placed(at, "selectbox", "head").value == 1
    assert placed(at, "text_area", "prompt").value == "to be or not to be"
    at.switch_page("views/generate.py").run()
    assert placed(at, "slider", "temperature").value == 1.3


def test_a_link_with_query_parameters_opens_the_same_view(root):
    at = new_app(run="tiny", layer=1, head=1, prompt="to be")   # the run named in the link, not chosen in the sidebar
    at.run()
    at.switch_page("views/attention.py").run()
    assert not at.exception
    assert placed(at, "selectbox", "layer").value == 1 and placed(at, "selectbox", "head").value == 1
    assert placed(at, "text_area", "prompt").value == "to be"
    assert at.sidebar.selectbox(key="selected_run").value == "tiny"


def test_a_stale_layer_from_a_bigger_model_falls_back(root):
    at = open_page("attention", layer=7, head="nonsense")
    assert not at.exception
    assert placed(at, "selectbox", "layer").value == 0 and placed(at, "selectbox", "head").value == 0


@pytest.mark.slow
def test_a_rerun_that_carries_an_earlier_pages_widget_is_no_error(root):
    """A quick click: the learner changes a sidebar choice on page A and the next rerun already runs page C. The
    request still carries A's widget, so its on_change runs at the start of C's run, where A's widget key means
    nothing; that once raised KeyError (a red traceback instead of the page)."""
    at = open_page("tokenizer")
    picker = next(w for w in at.sidebar.selectbox if w.label == "Evaluation text")
    assert len(picker.options) > 1
    picker.select_index(1 if picker.index == 0 else 0)
    at.switch_page("views/why_token.py").run()  # the changed widget and the new page in one rerun request
    assert not at.exception, [e.value for e in at.exception]
