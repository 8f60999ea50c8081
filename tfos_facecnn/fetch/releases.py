"""The face2comics release table (which files make up v1 and v2, where GitHub serves them, their sizes and
checksums once recorded) and the lookups on it: --version aliases and the entry of a --from file name."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UsageError

RELEASE_BASE = "https://github.com/Sxela/face2comics/releases/download"


@dataclass(frozen=True)
class ReleaseFile:
    name: str
    url: str
    size: int | None = None  # bytes, when recorded: lets the free-space check run before the first byte
    sha256: str = ""  # hex, when recorded: "" means "print it after the download so it can be recorded"


@dataclass(frozen=True)
class Release:
    tag: str
    pixels: int
    pairs: int
    files: tuple[ReleaseFile, ...]


def _release_file(tag: str, name: str, size: int | None = None, sha256: str = "") -> ReleaseFile:
    return ReleaseFile(name, f"{RELEASE_BASE}/{tag}/{name}", size, sha256)


# The one table of release files. URLs follow GitHub's release-download pattern and the file names in the
# author's README; they could not be fetched from the machine this was written on (no internet), so sizes
# and checksums are still unknown: fill them in from the sha256 line a first real download prints.
RELEASES: dict[str, Release] = {
    "v2": Release("v2.0.0", 1024, 10_000, (
        _release_file("v2.0.0", "face2comics_v2.0.0_by_Sxela_faces.tar"),  # ~1 GB
        _release_file("v2.0.0", "face2comics_v2.0.0_by_Sxela_comics.tar"),  # ~1 GB
    )),
    "v1": Release("v1.0.0", 512, 10_000, (
        _release_file("v1.0.0", "face2comics_v1.0.0_by_Sxela.tar"),  # ~700 MB
    )),
}


def resolve_version(version: str) -> Release:
    """'v2', '2', 'v2.0.0' -> the v2 release; anything else is a usage error."""
    key = version.strip().lower()
    key = key if key.startswith("v") else "v" + key
    key = key.split(".")[0]
    if key not in RELEASES:
        raise UsageError(f"unknown --version {version!r}; choose one of {', '.join(sorted(RELEASES))}")
    return RELEASES[key]


def known_file(name: str) -> ReleaseFile | None:
    """The table entry of a release file name, so a --from copy is checked against the recorded checksum."""
    for release in RELEASES.values():
        for f in release.files:
            if f.name == name:
                return f
    return None
