"""Downloading: Range resume after a cut (in the run and in a later one), servers that ignore Range or answer
416, sha256 checks, HTTP and network errors, the free-space check, the progress display."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import socket

import pytest

from tests.unit import fetch_support
from tests.unit.fetch_support import (
    assert_layout,
    assert_nothing_left,
    error_line,
    run_cli,
    tar_bytes,
    tiny_disk,
    write,
)
from tfos_facecnn import fetch

images = fetch_support.images  # pytest fixture
serve = fetch_support.serve  # pytest fixture


# ---------------------------------------------------------------------------------------------- resuming


@pytest.mark.timeout(60)
def test_resume_after_connection_cut_uses_range(tmp_path, serve, images, capsys) -> None:
    archive = tar_bytes(images, prefix="face2comics_v1.0.0_by_Sxela/")
    server = serve({"f2c.tar": archive}, cut_after=3000)
    dest = tmp_path / "f2c"
    cache = tmp_path / "cache"

    code, out, err = run_cli(capsys, "--from", server.url("f2c.tar"), "--dest", str(dest),
                             "--cache-dir", str(cache), "--keep-archives")

    assert code == 0, err
    assert [r["range"] for r in server.requests] == [None, "bytes=3000-"]
    assert "resuming from byte 3000" in err
    with open(cache / "f2c.tar", "rb") as f:
        assert f.read() == archive  # byte-identical after the resume
    assert_layout(dest, images)


@pytest.mark.timeout(60)
def test_resume_in_a_later_run_from_the_part_file(tmp_path, serve, images, capsys) -> None:
    archive = tar_bytes(images)
    server = serve({"f2c.tar": archive}, cut_after=5000)
    dest = tmp_path / "f2c"
    cache = tmp_path / "cache"
    argv = ["--from", server.url("f2c.tar"), "--dest", str(dest), "--cache-dir", str(cache), "--retries", "0"]

    code, _, err = run_cli(capsys, *argv)
    assert code == 1
    assert "run the same command again to resume" in error_line(err)
    assert os.path.getsize(cache / "f2c.tar.part") == 5000
    assert_nothing_left(dest)

    code, _, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert server.requests[-1]["range"] == "bytes=5000-"
    assert_layout(dest, images)


@pytest.mark.timeout(60)
def test_server_ignoring_range_restarts_from_zero(tmp_path, serve, images, capsys) -> None:
    archive = tar_bytes(images)
    server = serve({"f2c.tar": archive}, cut_after=4000, ignore_range=True)
    cache = tmp_path / "cache"

    code, _, err = run_cli(capsys, "--from", server.url("f2c.tar"), "--dest", str(tmp_path / "d"),
                           "--cache-dir", str(cache), "--keep-archives")

    assert code == 0, err
    assert server.requests[1]["range"] == "bytes=4000-"
    assert "ignored the resume request" in err
    with open(cache / "f2c.tar", "rb") as f:
        assert f.read() == archive  # not the first 4000 bytes twice
    assert_layout(tmp_path / "d", images)


@pytest.mark.timeout(60)
def test_complete_part_file_answered_416_is_used(tmp_path, serve, images, capsys) -> None:
    archive = tar_bytes(images)
    server = serve({"f2c.tar": archive})
    cache = tmp_path / "cache"
    cache.mkdir()
    write(cache / "f2c.tar.part", archive)  # a run interrupted after the last byte, before the rename

    code, _, err = run_cli(capsys, "--from", server.url("f2c.tar"), "--dest", str(tmp_path / "d"),
                           "--cache-dir", str(cache))

    assert code == 0, err
    assert server.requests == [{"path": "/f2c.tar", "range": f"bytes={len(archive)}-"}]
    assert_layout(tmp_path / "d", images)


# ---------------------------------------------------------------------------------------------- checksums


@pytest.mark.timeout(60)
def test_checksum_mismatch_deletes_the_file_and_leaves_no_dest(tmp_path, serve, images, capsys) -> None:
    server = serve({"f2c.tar": tar_bytes(images)})
    dest = tmp_path / "f2c"
    cache = tmp_path / "cache"

    code, _, err = run_cli(capsys, "--from", server.url("f2c.tar"), "--dest", str(dest), "--cache-dir",
                           str(cache), "--sha256", "0" * 64)

    assert code == 1
    line = error_line(err)
    assert "sha256 mismatch for f2c.tar" in line and "deleted" in line
    assert not os.path.exists(cache / "f2c.tar") and not os.path.exists(cache / "f2c.tar.part")
    assert_nothing_left(dest)


@pytest.mark.timeout(60)
def test_checksum_match_is_accepted(tmp_path, images, capsys) -> None:
    data = tar_bytes(images)
    archive = write(tmp_path / "f2c.tar", data)
    code, _, err = run_cli(capsys, "--from", archive, "--dest", str(tmp_path / "d"),
                           "--sha256", hashlib.sha256(data).hexdigest().upper())
    assert code == 0, err
    assert_layout(tmp_path / "d", images)


# ---------------------------------------------------------------------------------------------- failures


@pytest.mark.timeout(60)
def test_http_404_names_the_url(tmp_path, serve, capsys) -> None:
    server = serve({})
    dest = tmp_path / "f2c"
    code, _, err = run_cli(capsys, "--from", server.url("missing.tar"), "--dest", str(dest))
    assert code == 1
    line = error_line(err)
    assert server.url("missing.tar") in line and "HTTP 404" in line and "--from" in line
    assert_nothing_left(dest)


@pytest.mark.timeout(60)
def test_connection_refused_is_one_clear_line(tmp_path, capsys) -> None:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dest = tmp_path / "f2c"
    code, _, err = run_cli(capsys, "--from", f"http://127.0.0.1:{port}/f2c.tar", "--dest", str(dest),
                           "--timeout", "5")
    assert code == 1
    line = error_line(err)
    assert f"cannot reach 127.0.0.1:{port}" in line and "--from FILE" in line
    assert_nothing_left(dest)


@pytest.mark.timeout(60)
def test_full_disk_detected_before_downloading(tmp_path, serve, images, capsys, monkeypatch) -> None:
    server = serve({"f2c.tar": tar_bytes(images)})
    monkeypatch.setattr(shutil, "disk_usage", tiny_disk)
    code, _, err = run_cli(capsys, "--from", server.url("f2c.tar"), "--dest", str(tmp_path / "d"))
    assert code == 1
    assert "downloading f2c.tar.part needs" in error_line(err)
    assert_nothing_left(tmp_path / "d")


# ---------------------------------------------------------------------------------------------- progress and sizes


@pytest.mark.timeout(60)
def test_progress_lines_when_not_a_tty() -> None:
    now = [0.0]
    stream = io.StringIO()
    p = fetch.Progress("f2c.tar", total=100 * 1024**2, stream=stream, clock=lambda: now[0], line_interval=10)
    for second in range(1, 31):
        now[0] = float(second)
        p.update(second * 2 * 1024**2)  # 2 MiB/s
    p.finish()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4 and "\r" not in stream.getvalue()  # t=10, 20, 30 and the final line
    assert "60.0 MiB / 100.0 MiB" in lines[-1] and "2.0 MiB/s" in lines[-1] and "0:20 left" in lines[-1]


@pytest.mark.timeout(60)
def test_progress_redraws_in_place_on_a_tty() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    now = [0.0]
    stream = Tty()
    p = fetch.Progress("x", total=None, stream=stream, clock=lambda: now[0])
    now[0] = 1.0
    p.update(1024)
    p.finish()
    assert stream.getvalue().startswith("\rx  1.0 KiB  1.0 KiB/s") and stream.getvalue().endswith("\n")


def test_parse_size_and_formats() -> None:
    assert fetch.parse_size("8GiB") == 8 * 1024**3
    assert fetch.parse_size("500M") == 500 * 1024**2
    assert fetch.parse_size("1000") == 1000
    with pytest.raises(ValueError):
        fetch.parse_size("lots")
    assert fetch.format_duration(3700) == "1:01:40"
    assert fetch.format_bytes(1536) == "1.5 KiB"
