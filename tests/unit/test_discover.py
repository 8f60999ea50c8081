import pytest

from tests.conftest import SAMPLE, make_dataset, write_image
from tfos_facecnn.config import ConfigError
from tfos_facecnn.data.discover import CLASS_LABELS, discover, label_files
from tfos_facecnn.data.records import assign_splits, count_by_split


@pytest.mark.parametrize("nest", [(), ("archive",), ("face2comics_v2", "face2comics_v2")])
def test_finds_class_folders_nested_up_to_two_levels(tmp_path, nest):
    root = make_dataset(tmp_path, pairs=3, nest=nest)
    found = discover(str(tmp_path))
    assert found.root == str(root)
    assert len(found.files) == 6
    assert {f.label for f in found.files if "/faces/" in f.path} == {1}
    assert {f.label for f in found.files if "/comics/" in f.path} == {0}


def test_three_levels_down_is_not_searched(tmp_path):
    make_dataset(tmp_path, nest=("a", "b", "c"))
    with pytest.raises(ConfigError, match="no faces/ and comics/"):
        discover(str(tmp_path))


def test_missing_class_folder_is_named(tmp_path):
    write_image(tmp_path / "faces" / "0.jpg")
    with pytest.raises(ConfigError, match="class folder 'comics/' is missing"):
        discover(str(tmp_path))


def test_empty_class_folder_is_an_error(tmp_path):
    write_image(tmp_path / "faces" / "0.jpg")
    (tmp_path / "comics").mkdir()
    with pytest.raises(ConfigError, match="holds no .jpg/.jpeg/.png files"):
        discover(str(tmp_path))


def test_missing_data_dir(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        discover(str(tmp_path / "nope"))


def test_labels_and_ignored_files():
    found = label_files("/d", ["faces/1.jpg", "comics/1.PNG", "faces/notes.txt", "faces/.hidden.jpg",
                               "other/2.jpg", "comics/sub/3.jpeg"])
    assert [(f.key, f.label) for f in found.files] == [("1.jpg", 1), ("1.PNG", 0), ("sub/3.jpeg", 0)]
    assert found.ignored == ("faces/notes.txt", "faces/.hidden.jpg")
    assert CLASS_LABELS == {"faces": 1, "comics": 0}


def test_embedded_sample_counts():
    found = discover(str(SAMPLE))
    assert len(found.files) == 70
    counts = count_by_split(assign_splits(found, 17, 0.3, 0.2))
    assert counts["train"] == {"faces": 25, "comics": 25, "total": 50}
    assert counts["test"]["total"] == 4


def test_pairs_share_a_split():
    found = discover(str(SAMPLE))
    splits = {}
    for record, f in zip(assign_splits(found, 3, 0.3, 0.2), found.files, strict=True):
        splits.setdefault(f.key, set()).add(record.split)
    assert all(len(s) == 1 for s in splits.values())
