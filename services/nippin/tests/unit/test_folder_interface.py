"""The FILE_SYSTEM interface: a message appears whole under its id (never half a file), the
gateway's answers are read back parsed (a broken one says why), and an unwritable folder is
'unreachable'."""

from __future__ import annotations

from pathlib import Path

import pytest

from hdhub.common.tack import SUCCESS, render
from hdhub.nippin.mycarenet import Folder, Unreachable


async def test_a_message_is_written_whole_under_its_id_and_again_in_place(tmp_path: Path) -> None:
    folder = Folder(tmp_path / "mycarenet")
    await folder.deliver("m-1", b"<message/>")
    await folder.deliver("m-1", b"<message/>")  # sent again after a crash: same file, no second one
    assert sorted(p.name for p in (tmp_path / "mycarenet" / "out").iterdir()) == ["m-1.xml"]
    assert (tmp_path / "mycarenet" / "out" / "m-1.xml").read_bytes() == b"<message/>"


async def test_answers_are_parsed_and_a_broken_one_says_why(tmp_path: Path) -> None:
    folder = Folder(tmp_path)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "m-1.tack.xml").write_bytes(render("m-1", SUCCESS))
    (tmp_path / "in" / "m-2.tack.xml").write_bytes(b"<html>gateway error</html>")
    (tmp_path / "in" / ".m-3.part").write_bytes(b"half")  # still being written: not an answer
    answers = {a.message_id: a for a in await folder.answers()}
    assert set(answers) == {"m-1", "m-2"}
    assert answers["m-1"].tack is not None and answers["m-1"].tack.major == SUCCESS
    assert answers["m-2"].tack is None and "no TAck" in answers["m-2"].problem
    Folder.done(answers["m-1"])
    assert not (tmp_path / "in" / "m-1.tack.xml").exists()


async def test_a_folder_that_cannot_be_written_is_unreachable(tmp_path: Path) -> None:
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("x")
    with pytest.raises(Unreachable, match="the MyCareNet folder cannot be written"):
        await Folder(blocked).deliver("m-1", b"<message/>")
