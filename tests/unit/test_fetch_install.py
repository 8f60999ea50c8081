"""From unpacked archives to --dest: the layouts faces/ and comics/ are found in (--from tars, the Kaggle zip),
archives that lack a class or hold two, and which --dest folders may be written or replaced."""

from __future__ import annotations

import os

import pytest

from tests.unit import fetch_support
from tests.unit.fetch_support import (
    V2_COMICS,
    V2_FACES,
    assert_layout,
    assert_nothing_left,
    error_line,
    only,
    run_cli,
    tar_bytes,
    write,
    zip_bytes,
)

images = fetch_support.images  # pytest fixture


# ---------------------------------------------------------------------------------------------- --from, layouts


@pytest.mark.timeout(60)
def test_from_local_tar(tmp_path, images, capsys) -> None:
    archive = write(tmp_path / "face2comics_v1.0.0_by_Sxela.tar", tar_bytes(images, prefix="a/b/"))
    dest = tmp_path / "f2c"

    code, out, err = run_cli(capsys, "--version", "v1", "--from", archive, "--dest", str(dest))

    assert code == 0, err
    assert_layout(dest, images)
    assert os.path.exists(archive)  # the user's own file is never deleted
    assert not os.path.exists(str(dest) + ".download")  # nothing downloaded, no cache made
    assert f"--data-dir {dest}" in out


@pytest.mark.timeout(60)
def test_from_two_local_v2_tars(tmp_path, images, capsys) -> None:
    faces = write(tmp_path / V2_FACES, tar_bytes(only(images, "faces"), prefix="face2comics_v2.0.0_by_Sxela/"))
    comics = write(tmp_path / V2_COMICS, tar_bytes(only(images, "comics"), prefix="face2comics_v2.0.0_by_Sxela/"))
    code, _, err = run_cli(capsys, "--from", faces, "--from", comics, "--dest", str(tmp_path / "d"))
    assert code == 0, err
    assert_layout(tmp_path / "d", images)


@pytest.mark.timeout(60)
def test_kaggle_nested_zip_recognised_by_content(tmp_path, images, capsys) -> None:
    files = dict(images)
    files["__MACOSX/x/faces/._0.jpg"] = b"junk"  # macOS shadow tree: must not count as a second faces/
    data = zip_bytes(files, prefix="face2comics_v2.0.0_by_Sxela/face2comics_v2.0.0_by_Sxela/")
    archive = write(tmp_path / "download", data)  # no .zip suffix: recognised by its content
    dest = tmp_path / "f2c"

    code, _, err = run_cli(capsys, "--from", archive, "--dest", str(dest))

    assert code == 0, err
    assert_layout(dest, images)


@pytest.mark.timeout(60)
def test_archive_named_after_its_class_without_class_folder(tmp_path, images, capsys) -> None:
    # If a v2 tar holds its images in a folder not called faces/ (or comics/), its name says which class.
    faces = write(tmp_path / V2_FACES, tar_bytes({k.split("/")[1]: v for k, v in only(images, "faces").items()},
                                                 prefix="face2comics_v2.0.0_by_Sxela_faces/"))
    comics = write(tmp_path / V2_COMICS, tar_bytes(only(images, "comics")))
    code, _, err = run_cli(capsys, "--from", faces, "--from", comics, "--dest", str(tmp_path / "d"))
    assert code == 0, err
    assert_layout(tmp_path / "d", images)


@pytest.mark.timeout(60)
def test_archive_without_comics_is_refused(tmp_path, images, capsys) -> None:
    archive = write(tmp_path / "half.tar", tar_bytes(only(images, "faces")))
    code, _, err = run_cli(capsys, "--from", archive, "--dest", str(tmp_path / "d"))
    assert code == 1
    assert "comics/ is missing in half.tar" in error_line(err)
    assert_nothing_left(tmp_path / "d")


@pytest.mark.timeout(60)
def test_two_faces_folders_are_ambiguous(tmp_path, images, capsys) -> None:
    data = tar_bytes({**{f"v1/{k}": v for k, v in images.items()}, **{f"v2/{k}": v for k, v in images.items()}})
    archive = write(tmp_path / "both.tar", data)
    code, _, err = run_cli(capsys, "--from", archive, "--dest", str(tmp_path / "d"))
    assert code == 1
    assert "several faces/ folders (archive-0/v1/faces, archive-0/v2/faces)" in error_line(err)
    assert_nothing_left(tmp_path / "d")


# ---------------------------------------------------------------------------------------------- --dest


@pytest.mark.timeout(60)
def test_dest_is_a_file(tmp_path, capsys) -> None:
    dest = write(tmp_path / "f2c", b"not a folder")
    code, _, err = run_cli(capsys, "--dest", dest)
    assert code == 2
    assert f"--dest {dest!r} is a file" in error_line(err)
    with open(dest, "rb") as f:
        assert f.read() == b"not a folder"


@pytest.mark.timeout(60)
def test_dest_under_a_file_is_not_writable(tmp_path, capsys) -> None:
    blocker = write(tmp_path / "blocker", b"")
    code, _, err = run_cli(capsys, "--dest", os.path.join(blocker, "f2c"))
    assert code == 2
    assert "cannot be created" in error_line(err) and repr(blocker) in error_line(err)


@pytest.mark.timeout(60)
def test_dest_holding_a_data_set_needs_overwrite(tmp_path, images, capsys) -> None:
    dest = tmp_path / "f2c"
    (dest / "faces").mkdir(parents=True)
    (dest / "comics").mkdir()
    write(dest / "faces" / "old.jpg", b"old")
    archive = write(tmp_path / "f2c.tar", tar_bytes(images))

    code, _, err = run_cli(capsys, "--from", archive, "--dest", str(dest))
    assert code == 2
    assert "already holds a data set; pass --overwrite" in error_line(err)
    assert os.listdir(dest / "faces") == ["old.jpg"]

    code, _, err = run_cli(capsys, "--from", archive, "--dest", str(dest), "--overwrite")
    assert code == 0, err
    assert_layout(dest, images)
    assert [e for e in os.listdir(tmp_path) if ".unpack-" in e] == []


@pytest.mark.timeout(60)
def test_overwrite_never_replaces_a_folder_with_other_files(tmp_path, images, capsys) -> None:
    dest = tmp_path / "home"
    dest.mkdir()
    write(dest / "thesis.tex", b"precious")
    archive = write(tmp_path / "f2c.tar", tar_bytes(images))
    code, _, err = run_cli(capsys, "--from", archive, "--dest", str(dest), "--overwrite")
    assert code == 2
    assert "holds other files (thesis.tex)" in error_line(err)
    assert os.listdir(dest) == ["thesis.tex"]
    code, _, err = run_cli(capsys, "--from", archive, "--dest", str(dest))
    assert code == 2 and "holds other files (thesis.tex)" in error_line(err)


@pytest.mark.timeout(60)
def test_empty_dest_folder_is_filled(tmp_path, images, capsys) -> None:
    dest = tmp_path / "f2c"
    dest.mkdir()
    archive = write(tmp_path / "f2c.tar", tar_bytes(images))
    code, _, err = run_cli(capsys, "--from", archive, "--dest", str(dest))
    assert code == 0, err
    assert_layout(dest, images)
