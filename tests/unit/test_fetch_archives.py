"""Unpacking: archives recognised by content, members that would escape the destination (paths, links,
devices), the member and byte caps, the free-space check before unpacking."""

from __future__ import annotations

import io
import os
import shutil
import stat
import tarfile
import zipfile

import pytest

from tests.unit import fetch_support
from tests.unit.fetch_support import assert_nothing_left, error_line, run_cli, tar_bytes, tiny_disk, write
from tfos_facecnn import fetch

images = fetch_support.images  # pytest fixture
serve = fetch_support.serve  # pytest fixture


# ---------------------------------------------------------------------------------------------- not an archive


@pytest.mark.timeout(60)
def test_html_page_instead_of_archive(tmp_path, serve, capsys) -> None:
    server = serve({"f2c.tar": b"<!DOCTYPE html><html><body>Sign in</body></html>"})
    code, _, err = run_cli(capsys, "--from", server.url("f2c.tar"), "--dest", str(tmp_path / "d"))
    assert code == 1
    assert "neither a tar nor a zip" in error_line(err) and "HTML" in error_line(err)
    assert_nothing_left(tmp_path / "d")


@pytest.mark.timeout(60)
def test_damaged_download_is_deleted(tmp_path, serve, images, capsys) -> None:
    server = serve({"f2c.tar.gz": b"\x1f\x8b" + b"\x00" * 100})  # gzip magic, then garbage
    cache = tmp_path / "cache"
    code, _, err = run_cli(capsys, "--from", server.url("f2c.tar.gz"), "--dest", str(tmp_path / "d"),
                           "--cache-dir", str(cache), "--keep-archives")
    assert code == 1
    # tarfile's message spans lines ('- method gz: ...'): the hint ends the last one
    assert "error: f2c.tar.gz is damaged" in err and "the downloaded file was deleted: run again" in err
    assert not os.path.exists(cache / "f2c.tar.gz")
    assert_nothing_left(tmp_path / "d")


@pytest.mark.timeout(60)
def test_damaged_local_file_is_kept(tmp_path, capsys) -> None:
    archive = write(tmp_path / "f2c.zip", b"PK\x03\x04" + b"\x00" * 100)
    code, _, err = run_cli(capsys, "--from", archive, "--dest", str(tmp_path / "d"))
    assert code == 1
    assert error_line(err).endswith("; check the file given to --from") and "f2c.zip is damaged" in err
    assert os.path.exists(archive)
    assert_nothing_left(tmp_path / "d")


# ---------------------------------------------------------------------------------------------- unsafe archives


def _tar_with(tmp_path, images: dict[str, bytes], evil: tarfile.TarInfo, data: bytes = b"") -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, content in images.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tf.addfile(info, io.BytesIO(content))
        evil.size = len(data) if evil.isreg() else 0
        tf.addfile(evil, io.BytesIO(data) if evil.isreg() else None)
    return write(tmp_path / "evil.tar", buf.getvalue())


def _member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


@pytest.mark.timeout(60)
@pytest.mark.parametrize("make_member, why", [
    (lambda outside: _member("faces/../../evil"), "'..' in its path"),
    (lambda outside: _member(str(outside / "abs_evil")), "absolute path"),
    (lambda outside: _member("faces/link", tarfile.SYMTYPE, str(outside / "evil_target")), "links are refused"),
    (lambda outside: _member("faces/up", tarfile.SYMTYPE, "../../.."), "links are refused"),
    (lambda outside: _member("faces/hard", tarfile.LNKTYPE, "/etc/passwd"), "links are refused"),
    (lambda outside: _member("faces/dev", tarfile.CHRTYPE), "device or fifo"),
    (lambda outside: _member("faces/pipe", tarfile.FIFOTYPE), "device or fifo"),
], ids=["dotdot", "absolute", "symlink-out", "symlink-up", "hardlink", "device", "fifo"])
def test_malicious_tar_is_refused_with_the_member_named(tmp_path, images, capsys, make_member, why) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    member = make_member(outside)
    archive = _tar_with(work, images, member, b"pwned")
    dest = work / "f2c"
    before = sorted(os.listdir(tmp_path))

    code, _, err = run_cli(capsys, "--from", archive, "--dest", str(dest))

    assert code == 1
    line = error_line(err)
    assert f"refused member {member.name!r}" in line and why in line
    assert_nothing_left(dest)
    assert os.listdir(outside) == []
    assert sorted(os.listdir(tmp_path)) == before
    assert not os.path.exists(tmp_path / "evil")


@pytest.mark.timeout(60)
def test_malicious_zip_is_refused(tmp_path, images, capsys) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in images.items():
            zf.writestr(name, data)
        zf.writestr("../evil", b"pwned")
    archive = write(tmp_path / "evil.zip", buf.getvalue())
    (tmp_path / "w").mkdir()
    code, _, err = run_cli(capsys, "--from", archive, "--dest", str(tmp_path / "w" / "d"))
    assert code == 1
    assert "refused member '../evil'" in error_line(err)
    assert not os.path.exists(tmp_path / "evil")
    assert_nothing_left(tmp_path / "w" / "d")


@pytest.mark.timeout(60)
def test_zip_symlink_is_refused(tmp_path, images, capsys) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in images.items():
            zf.writestr(name, data)
        link = zipfile.ZipInfo("faces/link")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    archive = write(tmp_path / "evil.zip", buf.getvalue())
    code, _, err = run_cli(capsys, "--from", archive, "--dest", str(tmp_path / "d"))
    assert code == 1
    assert "refused member 'faces/link': symlink" in error_line(err)
    assert_nothing_left(tmp_path / "d")


def test_safe_member_path() -> None:
    assert fetch.safe_member_path("a.tar", "./x/faces/1.jpg") == "x/faces/1.jpg"
    assert fetch.safe_member_path("a.tar", "./") == ""
    for bad in ("/etc/passwd", "C:/x", "a/../../b", "..\\evil", "a\x00b"):
        with pytest.raises(fetch.DownloadError, match="refused member"):
            fetch.safe_member_path("a.tar", bad)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_member_written_twice_is_refused(tmp_path, images, capsys, kind) -> None:
    members = [*images.items(), ("faces/0.jpg", b"again")]  # a dict cannot hold a name twice
    buf = io.BytesIO()
    if kind == "tar":
        with tarfile.open(fileobj=buf, mode="w") as tf:
            for name, content in members:
                info = tarfile.TarInfo(name)
                info.size = len(content)
                tf.addfile(info, io.BytesIO(content))
    else:
        with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(buf, "w") as zf:
            for name, content in members:
                zf.writestr(name, content)
    archive = write(tmp_path / "twice.bin", buf.getvalue())
    code, _, err = run_cli(capsys, "--from", archive, "--dest", str(tmp_path / "d"))
    assert code == 1
    line = error_line(err)
    assert "twice.bin holds" in line and "0.jpg' twice; refusing an ambiguous archive" in line
    assert_nothing_left(tmp_path / "d")


# ---------------------------------------------------------------------------------------------- caps


@pytest.mark.timeout(60)
def test_size_cap_exceeded_leaves_nothing(tmp_path, images, capsys) -> None:
    archive = write(tmp_path / "f2c.tar", tar_bytes(images))
    dest = tmp_path / "f2c"
    code, _, err = run_cli(capsys, "--from", archive, "--dest", str(dest), "--max-bytes", "10000")
    assert code == 1
    line = error_line(err)
    assert "--max-bytes 10000" in line and "reached at member" in line
    assert_nothing_left(dest)


@pytest.mark.timeout(60)
def test_member_cap_exceeded(tmp_path, images, capsys) -> None:
    archive = write(tmp_path / "f2c.tar", tar_bytes(images))
    code, _, err = run_cli(capsys, "--from", archive, "--dest", str(tmp_path / "d"), "--max-members", "3")
    assert code == 1
    assert "more than 3 members" in error_line(err)
    assert_nothing_left(tmp_path / "d")


@pytest.mark.timeout(60)
def test_full_disk_detected_before_unpacking(tmp_path, images, capsys, monkeypatch) -> None:
    archive = write(tmp_path / "f2c.tar", tar_bytes(images))
    monkeypatch.setattr(shutil, "disk_usage", tiny_disk)
    code, _, err = run_cli(capsys, "--from", archive, "--dest", str(tmp_path / "d"))
    assert code == 1
    assert "only 100 B is free" in error_line(err)
    assert_nothing_left(tmp_path / "d")
