"""The bot's own environment (rehearsal): built once from the checkout's requirements.txt, reused by the
file's hash, and pip's own words when it cannot be built."""
from __future__ import annotations

import pytest

from deploycheck.rehearsal import botenv


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setattr(botenv, "CACHE", tmp_path / "venvs")
    return tmp_path / "venvs"


def test_environment_is_built_once_and_reused(tmp_path, cache):
    checkout = tmp_path / "bot"
    checkout.mkdir()
    (checkout / "requirements.txt").write_text("# nothing to install\n")
    said: list[str] = []
    first = botenv.ensure(checkout, said.append)
    assert first.exists() and first.parent.parent.parent == cache and any("building" in s for s in said)
    said.clear()
    assert botenv.ensure(checkout, said.append) == first and not said       # cached: no second build
    (checkout / "requirements.txt").write_text("# changed\n")
    assert botenv.ensure(checkout, said.append) != first                    # another file, another environment


def test_requirements_pip_cannot_install_fail_with_pips_words(tmp_path, cache):
    checkout = tmp_path / "bot"
    checkout.mkdir()
    (checkout / "requirements.txt").write_text("deploycheck-no-such-package-xyz==1.0\n")
    with pytest.raises(botenv.BotEnvError, match=r"(?s)pip could not install.*deploycheck-no-such-package-xyz.*"
                                                 r"--bot-python"):
        botenv.ensure(checkout, lambda line: None)
    assert not any(cache.iterdir()), "a half-built environment was left behind"


def test_missing_requirements_is_a_clear_error(tmp_path, cache):
    with pytest.raises(botenv.BotEnvError, match="requirements.txt not found"):
        botenv.ensure(tmp_path, lambda line: None)


def test_pip_errors_keep_pips_own_lines():
    output = "Collecting x\n  Downloading ...\nERROR: Could not find a version that satisfies the requirement x==9\n" \
             "ERROR: No matching distribution found for x==9\n"
    assert botenv.pip_errors(output).splitlines() == [
        "ERROR: Could not find a version that satisfies the requirement x==9",
        "ERROR: No matching distribution found for x==9"]


def test_bot_env_file_is_read_as_compose_reads_it_and_a_bad_line_is_named_not_shown(tmp_path):
    from deploycheck.infra import envfile
    good = tmp_path / "bot.env"
    good.write_text("# tenant\nTELEGRAM_ADMIN_IDS=[1]\nexport BOT_STORE_NAME=Toko Uji\n\nLOG_LEVEL=INFO\nLOG_LEVEL=DEBUG\n")
    assert envfile.read(good) == {"TELEGRAM_ADMIN_IDS": "[1]", "BOT_STORE_NAME": "Toko Uji", "LOG_LEVEL": "DEBUG"}
    bad = tmp_path / "bad.env"
    bad.write_text("DATABASE_URL=postgresql://x\nsup3r-s3cret-token\n")
    with pytest.raises(envfile.EnvFileError, match="line 2 is not KEY=VALUE") as caught:
        envfile.read(bad)
    assert "sup3r" not in str(caught.value)
    with pytest.raises(envfile.EnvFileError, match="cannot be read"):
        envfile.read(tmp_path / "missing.env")
