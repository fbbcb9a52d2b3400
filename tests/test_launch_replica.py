"""gpt-explorer --classroom --replica (issue 30): a second server of a class keeps the first one's settings and token."""
import pytest

from explorer import launch
from explorer.classroom import policy


@pytest.fixture
def class_root(tmp_path, monkeypatch):
    monkeypatch.setenv("GPT_EXPLORER_CHECKPOINTS", str(tmp_path))
    # start_classroom switches classroom mode on in os.environ: setenv first, so the test's end restores it
    monkeypatch.setenv(policy.ENV, "0")
    monkeypatch.setenv("GPT_EXPLORER_MAX_JOBS", "")
    return tmp_path


def test_a_replica_keeps_the_first_servers_settings_and_token(class_root, capsys):
    launch.start_classroom(["--classroom", "--max-steps", "500", "--server.port", "8601"])
    first = policy.load_settings()
    assert "Teacher token:" in capsys.readouterr().out
    flags = launch.start_classroom(["--classroom", "--replica", "--server.port", "8602"])
    assert policy.load_settings() == first and first.max_steps == 500   # unchanged: same limits, same token digest
    assert "Teacher token:" not in capsys.readouterr().out
    assert flags[:2] == ["--server.port", "8602"] and "--server.enableXsrfProtection" in flags


def test_a_replica_without_a_class_or_with_its_own_limits_is_refused_and_writes_nothing(class_root):
    with pytest.raises(launch.LaunchError, match="start the first server without it"):
        launch.start_classroom(["--classroom", "--replica"])
    assert not (policy.class_dir() / policy.SETTINGS).exists()
    launch.start_classroom(["--classroom"])
    before = (policy.class_dir() / policy.SETTINGS).read_text()
    with pytest.raises(launch.LaunchError, match="--replica"):
        launch.start_classroom(["--classroom", "--replica", "--max-steps", "5"])
    assert (policy.class_dir() / policy.SETTINGS).read_text() == before
