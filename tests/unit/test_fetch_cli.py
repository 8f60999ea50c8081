"""The command as a whole: a release download end to end, --version, argument errors and exit codes."""

from __future__ import annotations

import os
import re

import pytest

from tests.unit import fetch_support
from tests.unit.fetch_support import (
    V2_COMICS,
    V2_FACES,
    assert_layout,
    assert_nothing_left,
    error_line,
    fake_release,
    only,
    run_cli,
    tar_bytes,
    write,
)
from tfos_facecnn import fetch
from tfos_facecnn.__main__ import main

images = fetch_support.images  # pytest fixture
serve = fetch_support.serve  # pytest fixture


# ---------------------------------------------------------------------------------------------- the release


@pytest.mark.timeout(60)
def test_v2_release_download_unpacks_faces_and_comics(tmp_path, serve, images, capsys, monkeypatch) -> None:
    server = serve({
        V2_FACES: tar_bytes(only(images, "faces"), prefix="face2comics_v2.0.0_by_Sxela/"),
        V2_COMICS: tar_bytes(only(images, "comics"), prefix="face2comics_v2.0.0_by_Sxela/"),
    })
    monkeypatch.setitem(fetch.RELEASES, "v2", fake_release(server, [V2_FACES, V2_COMICS]))
    dest = tmp_path / "data" / "face2comics"

    code, out, err = run_cli(capsys, "--version", "v2", "--dest", str(dest))

    assert code == 0, err
    assert_layout(dest, images)
    assert f"--input-mode spark --data-dir {dest}" in out
    assert ("spark-submit --properties-file conf/spark-defaults.conf jobs/train.py --input-mode spark "
            f"--data-dir {dest}") in out
    assert re.search(rf"sha256 [0-9a-f]{{64}}  {V2_FACES}", out)  # printed for maintainers to record
    assert "MiB/s" in err or "B/s" in err  # progress lines (stderr is not a tty here)
    assert not os.path.exists(str(dest) + ".download")  # downloaded tars are removed after success
    assert [r["path"] for r in server.requests] == [f"/{V2_FACES}", f"/{V2_COMICS}"]


def test_resolve_version_aliases() -> None:
    assert fetch.resolve_version("v2.0.0").tag == "v2.0.0"
    assert fetch.resolve_version("1").tag == "v1.0.0"
    assert [f.url for f in fetch.RELEASES["v2"].files] == [
        "https://github.com/Sxela/face2comics/releases/download/v2.0.0/face2comics_v2.0.0_by_Sxela_faces.tar",
        "https://github.com/Sxela/face2comics/releases/download/v2.0.0/face2comics_v2.0.0_by_Sxela_comics.tar",
    ]


# ---------------------------------------------------------------------------------------------- bad arguments


@pytest.mark.timeout(60)
def test_unknown_version(tmp_path, capsys) -> None:
    code, _, err = run_cli(capsys, "--version", "v3", "--dest", str(tmp_path / "d"))
    assert code == 2
    assert error_line(err) == "error: unknown --version 'v3'; choose one of v1, v2"
    assert_nothing_left(tmp_path / "d")


@pytest.mark.timeout(60)
def test_missing_from_file_and_sha_count(tmp_path, capsys) -> None:
    code, _, err = run_cli(capsys, "--from", str(tmp_path / "nope.tar"), "--dest", str(tmp_path / "d"))
    assert code == 2 and "no such file" in error_line(err)
    archive = write(tmp_path / "a.tar", b"")
    code, _, err = run_cli(capsys, "--from", archive, "--sha256", "a" * 64, "--sha256", "b" * 64,
                           "--dest", str(tmp_path / "d"))
    assert code == 2 and "2 --sha256 value(s) for 1 archive(s)" in error_line(err)
    code, _, err = run_cli(capsys, "--from", archive, "--sha256", "xyz", "--dest", str(tmp_path / "d"))
    assert code == 2 and "is not a sha256" in error_line(err)


@pytest.mark.timeout(60)
def test_argparse_errors_and_help_return_codes(capsys) -> None:
    assert main(["download", "--no-such-option"]) == 2
    assert main(["download", "--max-bytes", "lots"]) == 2
    assert main([]) == 2
    assert main(["download", "--help"]) == 0
    assert "--from FILE_OR_URL" in capsys.readouterr().out
