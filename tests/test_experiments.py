from types import SimpleNamespace

import pytest

from gpt.config import GPTConfig, TrainConfig
from gpt.interp.experiments import (
    ALPHABET,
    SEP,
    TASKS,
    build_probe,
    get_task,
    make_lines,
    task_of_run,
    train_command,
    write_corpus,
)
from gpt.tokenizers import CharTokenizer
from gpt.train import build_parser, configs_from_args


@pytest.mark.parametrize("name", list(TASKS))
def test_lines_hold_the_right_answers(name):
    task = TASKS[name]
    for line in make_lines(task, 200, seed=1):
        source, answer = line[:-1].split(SEP)
        assert task.min_len <= len(source) <= task.max_len
        assert len(set(source)) == len(source) and set(source) <= set(ALPHABET)
        expected = {"copy": source, "reverse": source[::-1], "sort": "".join(sorted(source))}[name]
        assert answer == expected


def test_corpus_files_are_reproducible(tmp_path):
    a = write_corpus(TASKS["sort"], n_lines=50, folder=tmp_path)
    b = write_corpus(TASKS["sort"], n_lines=50, folder=tmp_path)
    assert a == b and a.read_text().count("\n") == 50
    assert write_corpus(TASKS["sort"], n_lines=50, seed=2, folder=tmp_path) != a


@pytest.mark.parametrize("name", list(TASKS))
def test_the_training_command_is_one_the_trainer_accepts(name, tmp_path):
    task = TASKS[name]
    cmd = train_command(task, tmp_path / "c.txt", tmp_path / "out")
    args = build_parser().parse_args(cmd[3:])
    assert args.arch == "multi_head" and args.n_layer >= 1 and args.threads == 1
    # the parsed command builds configs the trainer validates, carrying every option the task asks for
    model_cfg, train_cfg = configs_from_args(args, GPTConfig(), TrainConfig())
    model_cfg.validate(), train_cfg.validate()
    built = {**model_cfg.to_dict(), **train_cfg.to_dict(), **vars(args)}  # process options (threads) are args
    for option, value in task.options:
        assert built[option] == value, option


@pytest.mark.parametrize("name", list(TASKS))
def test_probe_queries_point_at_the_letter_to_output(name):
    tok = CharTokenizer.train(ALPHABET + SEP + "\n")
    probe = build_probe(TASKS[name], tok, block_size=40, n_lines=30, seed=3)
    assert probe.ids.shape[1] <= 40
    n = 0
    for b, queries in enumerate(probe.queries):
        for q, s, target in queries:
            assert probe.ids[b, s] == target  # the source holds the letter that must come next
            assert probe.ids[b, q + 1] == target  # ... and it is the token after the query
            assert s < q
            n += 1
    assert n > 30


def test_unknown_task_and_task_of_run():
    with pytest.raises(ValueError, match="unknown task"):
        get_task("juggle")
    run = SimpleNamespace(extra={"corpus": "/cache/experiments/reverse-abc123.txt"})
    assert task_of_run(run) is TASKS["reverse"]
    assert task_of_run(SimpleNamespace(extra={"corpus": "tiny-shakespeare"})) is None
    tok = CharTokenizer.train(ALPHABET + SEP + "\n")
    with pytest.raises(ValueError, match="cannot hold"):
        build_probe(TASKS["copy"], tok, block_size=8)
