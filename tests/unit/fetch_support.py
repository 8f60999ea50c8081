"""Shared helpers of the `python -m tfos_facecnn download` tests (tests/unit/test_fetch_*.py): every server is a
local http.server on 127.0.0.1, every archive is built here from a handful of images of the embedded sample.
A test module uses the fixtures by naming them at module level (`serve = fetch_support.serve`)."""

from __future__ import annotations

import collections
import io
import os
import re
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tfos_facecnn import fetch, sample_data_dir
from tfos_facecnn.__main__ import main

N_IMAGES = 4  # per class: enough to check names and bytes, small enough to keep the tests fast


def sample_images(n: int = N_IMAGES) -> dict[str, bytes]:
    """{'faces/0.jpg': bytes, ..., 'comics/0.jpg': bytes, ...} from the embedded sample."""
    images = {}
    for cls in ("faces", "comics"):
        for i in range(n):
            with open(os.path.join(sample_data_dir(), cls, f"{i}.jpg"), "rb") as f:
                images[f"{cls}/{i}.jpg"] = f.read()
    return images


def tar_bytes(files: dict[str, bytes], prefix: str = "") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(prefix + name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def zip_bytes(files: dict[str, bytes], prefix: str = "") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(prefix + name, data)
    return buf.getvalue()


def write(path, data: bytes) -> str:
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


def only(files: dict[str, bytes], cls: str) -> dict[str, bytes]:
    return {k: v for k, v in files.items() if k.startswith(cls + "/")}


class FileServer:
    """Serves `files` by path; optionally cuts the connection once after `cut_after` bytes of a body, or
    ignores Range headers (answering 200 with the whole file)."""

    def __init__(self, files: dict[str, bytes], cut_after: int | None = None, ignore_range: bool = False) -> None:
        self.files, self.cut_after, self.ignore_range = files, cut_after, ignore_range
        self.requests: list[dict[str, str | None]] = []
        state = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                state.handle(self)

            def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        rng = h.headers.get("Range")
        self.requests.append({"path": h.path, "range": rng})
        body = self.files.get(h.path.lstrip("/"))
        if body is None:
            h.send_error(404, "Not Found")
            return
        start = 0
        if rng and not self.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
            if start >= len(body):
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{len(body)}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            h.send_response(206)
            h.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            h.send_response(200)
        h.send_header("Content-Length", str(len(body) - start))
        h.end_headers()
        payload = body[start:]
        if self.cut_after is not None:
            payload, self.cut_after = payload[:self.cut_after], None  # once: the retry gets the rest
            h.close_connection = True
        h.wfile.write(payload)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def serve() -> Iterator:
    servers: list[FileServer] = []

    def start(files: dict[str, bytes], **kwargs: object) -> FileServer:
        servers.append(FileServer(files, **kwargs))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


@pytest.fixture
def images() -> dict[str, bytes]:
    return sample_images()


def assert_layout(dest, images: dict[str, bytes]) -> None:
    for cls in ("faces", "comics"):
        assert sorted(os.listdir(os.path.join(dest, cls))) == sorted(k.split("/")[1] for k in only(images, cls))
    for name, data in images.items():
        with open(os.path.join(dest, name), "rb") as f:
            assert f.read() == data, name
    assert sorted(os.listdir(dest)) == ["comics", "faces"]


def assert_nothing_left(dest) -> None:
    """No --dest and no half-unpacked stage folder beside it."""
    dest = str(dest)
    assert not os.path.exists(dest)
    parent, base = os.path.split(dest)
    assert [e for e in os.listdir(parent) if e.startswith(f".{base}.unpack-")] == []
    assert not os.path.exists(dest + ".download")  # no empty default cache folder either


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["download", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


def fake_release(server: FileServer, names: list[str]) -> fetch.Release:
    return fetch.Release("v2.0.0", 1024, 10_000, tuple(fetch.ReleaseFile(n, server.url(n)) for n in names))


V2_FACES = "face2comics_v2.0.0_by_Sxela_faces.tar"
V2_COMICS = "face2comics_v2.0.0_by_Sxela_comics.tar"


DiskUsage = collections.namedtuple("DiskUsage", "total used free")


def tiny_disk(path: str) -> DiskUsage:
    return DiskUsage(total=1000, used=900, free=100)
