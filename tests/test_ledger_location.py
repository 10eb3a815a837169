"""Defaults that leave no litter: a ledger nobody names lives in the user's data folder, for the
library as for the command line; nothing is created in the current folder. A ledger that earlier
versions left in `.reportexport/` of the current folder is still used, with a note."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from reportexport_async import Client, ClientConfig
from reportexport_async.ledger import DEFAULT_LEDGER_PATH, Ledger
from reportexport_async.ledger.location import default_ledger


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def data_file() -> Path:
    return Path(os.environ["XDG_DATA_HOME"]) / "reportexport" / "ledger.sqlite"


async def test_a_bare_ledger_lives_in_the_data_folder(cwd: Path) -> None:
    async with Ledger() as ledger:
        assert ledger.path == data_file()
    assert data_file().is_file()
    assert list(cwd.iterdir()) == []


async def test_a_client_without_a_ledger_leaves_nothing_in_the_current_folder(cwd: Path) -> None:
    config = ClientConfig(
        account_sid="IRdocs0000000000000000000000001",
        auth_token="not-a-real-token",
        account_type="Mediapartners",
        base_url="http://127.0.0.1:9",  # opening a client makes no call
    )
    async with Client(config) as client:
        assert isinstance(client.ledger, Ledger)
        assert client.ledger.path == data_file()
    assert list(cwd.iterdir()) == []


async def test_a_named_ledger_is_where_it_is_named(cwd: Path) -> None:
    async with Ledger("mine.sqlite") as ledger:
        assert ledger.path == Path("mine.sqlite")
    assert (cwd / "mine.sqlite").is_file()
    assert not data_file().exists()


async def test_an_older_ledger_in_the_current_folder_is_still_used_with_a_note(
    cwd: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with Ledger(".reportexport/ledger.sqlite"):  # as earlier versions made it
        pass
    with caplog.at_level(logging.WARNING, logger="reportexport_async.ledger"):
        async with Ledger() as ledger:
            assert ledger.path == Path(".reportexport/ledger.sqlite")
        async with Ledger(DEFAULT_LEDGER_PATH) as same:  # the marker of the default, too
            assert same.path == ledger.path
    notes = [r.getMessage() for r in caplog.records]
    assert len(notes) == 2
    assert str(data_file()) in notes[0]
    assert "ledger='.reportexport/ledger.sqlite'" in notes[0]
    assert not data_file().exists()
    # Once moved to the data folder, the note goes away.
    found = default_ledger()
    assert found.moved_to == data_file()
    data_file().parent.mkdir(parents=True)
    (cwd / ".reportexport" / "ledger.sqlite").replace(data_file())
    assert default_ledger().path == data_file()
    assert default_ledger().notice("--ledger {}") is None
