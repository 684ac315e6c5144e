"""Downloads against a local HTTP server on 127.0.0.1 only: verified, atomic, clear errors."""

import gzip
import hashlib
import http.server
import pickle
import tarfile
import threading
from pathlib import Path

import pytest
import torch
from datafiles import write_cifar, write_mnist

from litlab.data import CIFAR10DataModule, DownloadError, MNISTDataModule, download
from litlab.data.cifar import read_batch

#: What a proxy or a moved dataset's host sends instead of the file, with status 200.
HTML = b"<!DOCTYPE html><html><body>Please sign in to continue</body></html>"


class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the test's folder; ``/truncated/<file>`` promises the whole file but sends half, then hangs up.

    ``/unsized/<file>`` sends half of it without a Content-Length (the end of the connection is the end of
    the body, as HTTP/1.0 allows); ``/html/<file>`` sends an HTML page instead.
    """

    def do_GET(self) -> None:
        if self.path.startswith("/html/"):
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(HTML)))
            self.end_headers()
            self.wfile.write(HTML)
            return
        if self.path.startswith("/unsized/"):
            data = (Path(self.directory) / self.path.removeprefix("/unsized/")).read_bytes()
            self.send_response(200)
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.close_connection = True
            return
        if self.path.startswith("/truncated/"):
            data = (Path(self.directory) / self.path.removeprefix("/truncated/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server(tmp_path):
    """``(folder it serves, base URL)`` on 127.0.0.1 and a free port."""
    served = tmp_path / "served"
    served.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: Handler(*a, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_download_verifies_and_writes_atomically(server, tmp_path):
    served, url = server
    (served / "blob.bin").write_bytes(b"x" * 5000)
    dest = tmp_path / "out" / "blob.bin"
    sha = hashlib.sha256(b"x" * 5000).hexdigest()
    assert download(url + "blob.bin", dest, md5=md5(served / "blob.bin"), sha256=sha) == dest
    assert dest.read_bytes() == b"x" * 5000 and leftovers(dest.parent) == ["blob.bin"]


def test_bad_checksum_leaves_no_file(server, tmp_path):
    served, url = server
    (served / "blob.bin").write_bytes(b"payload")
    with pytest.raises(DownloadError, match=rf"{url}blob.bin to .*blob.bin failed its md5 check: expected 0+, got"):
        download(url + "blob.bin", tmp_path / "out" / "blob.bin", md5="0" * 32)
    assert leftovers(tmp_path / "out") == []


def test_404_names_the_url(server, tmp_path):
    _, url = server
    with pytest.raises(DownloadError, match=rf"{url}missing.gz to .*missing.gz failed: HTTP 404"):
        download(url + "missing.gz", tmp_path / "out" / "missing.gz")
    assert leftovers(tmp_path / "out") == []


def test_truncated_transfer_leaves_no_file(server, tmp_path):
    served, url = server
    (served / "big.bin").write_bytes(bytes(range(256)) * 400)
    with pytest.raises(DownloadError, match=r"truncated/big.bin to .*big.bin was truncated"):
        download(url + "truncated/big.bin", tmp_path / "out" / "big.bin")
    assert leftovers(tmp_path / "out") == []


def test_mnist_downloads_into_raw_and_loads(server, tmp_path):
    served, url = server
    files = write_mnist(served, n_train=40, n_test=10)
    sums = {p.name: md5(p) for p in files.values()}
    data_dir = tmp_path / "data"
    dm = MNISTDataModule(data_dir=str(data_dir), url=url, md5=sums, val_split=10, num_classes=10)
    dm.setup("fit")
    assert sorted(leftovers(data_dir / "MNIST" / "raw")) == sorted(sums)
    assert [len(dm.splits[s]) for s in ("train", "val", "test")] == [30, 10, 10]
    # Standardised by the training split alone: the validation images do not shape the statistics.
    train_x = dm.splits["train"].tensors[0]
    assert abs(float(train_x.mean())) < 1e-5 and abs(float(train_x.std()) - 1) < 1e-5
    # A second run reads the files and downloads nothing.
    (served / "train-images-idx3-ubyte.gz").unlink()
    MNISTDataModule(data_dir=str(data_dir), url=url, md5=sums, val_split=10, num_classes=10).setup("fit")


def test_mnist_download_with_a_wrong_checksum_fails_clearly(server, tmp_path):
    served, url = server
    files = write_mnist(served)
    sums = {p.name: md5(p) for p in files.values()} | {"t10k-images-idx3-ubyte.gz": "f" * 32}
    dm = MNISTDataModule(data_dir=str(tmp_path / "data"), url=url, md5=sums, val_split=10, num_classes=10)
    with pytest.raises(DownloadError, match=r"t10k-images-idx3-ubyte.gz failed its md5 check"):
        dm.setup("fit")
    assert "t10k-images-idx3-ubyte.gz" not in leftovers(tmp_path / "data")


@pytest.mark.parametrize("md5s", [None, {"train-images-idx3-ubyte": "misspelled: no .gz"}])
def test_mnist_download_without_a_checksum_keeps_only_what_reads(server, tmp_path, md5s):
    """Kept under its final name, an HTML page or a cut body failed every later run ("corrupt") until deleted."""
    served, url = server
    write_mnist(served, n_train=40, n_test=10)
    data_dir = tmp_path / "data"
    raw = data_dir / "MNIST" / "raw"
    for bad, why in (("html/", r"is corrupt or truncated: .*\(the server sent text/html\)"), ("unsized/", "truncated")):
        dm = MNISTDataModule(data_dir=str(data_dir), url=url + bad, md5=md5s, val_split=10, num_classes=10)
        with pytest.raises(DownloadError, match=rf"download of {url}{bad}train-images-idx3-ubyte\.gz to .* {why}"):
            dm.setup("fit")
        assert leftovers(raw) == []
    # The next run downloads again, and a good file passes the check.
    dm = MNISTDataModule(data_dir=str(data_dir), url=url, md5=md5s, val_split=10, num_classes=10)
    dm.setup("fit")
    assert [len(dm.splits[s]) for s in ("train", "val", "test")] == [30, 10, 10]


def test_an_unreadable_idx_file_in_gzip_is_named(server, tmp_path):
    """Whole gzip streams, but not what the reader expects: the IDX header is checked as well."""
    served, url = server
    files = write_mnist(served / "x", n_train=40, n_test=10)
    files["train-images-idx3-ubyte"].write_bytes(gzip.compress(b"\x00\x00\x09\x01"))  # 9: not unsigned bytes
    dm = MNISTDataModule(data_dir=str(tmp_path / "data"), url=url + "x/", val_split=10, num_classes=10)
    with pytest.raises(
        DownloadError, match=r"x/train-images-idx3-ubyte\.gz to .* is not an IDX file of unsigned bytes"
    ):
        dm.setup("fit")
    assert leftovers(tmp_path / "data") == []


def cifar_archive(served: Path, work: Path) -> Path:
    folder = write_cifar(work, n_per_batch=4)
    archive = served / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return archive


def test_cifar_downloads_extracts_and_loads(server, tmp_path):
    served, url = server
    archive = cifar_archive(served, tmp_path / "src")
    data_dir = tmp_path / "data"
    dm = CIFAR10DataModule(
        data_dir=str(data_dir), url=url + archive.name, md5=md5(archive), val_split=4, num_classes=10
    )
    dm.setup("fit")
    assert [len(dm.splits[s]) for s in ("train", "val", "test")] == [16, 4, 4]
    x = dm.splits["train"].tensors[0]
    assert x.dtype == torch.uint8 and x.shape == (16, 3, 32, 32)
    assert (data_dir / "cifar-10-batches-py" / "test_batch").is_file()


def test_cifar_bad_checksum_and_404(server, tmp_path):
    served, url = server
    archive = cifar_archive(served, tmp_path / "src")
    dm = CIFAR10DataModule(data_dir=str(tmp_path / "d1"), url=url + archive.name, md5="0" * 32, num_classes=10)
    with pytest.raises(DownloadError, match=r"cifar-10-python\.tar\.gz failed its md5 check"):
        dm.setup("fit")
    dm = CIFAR10DataModule(data_dir=str(tmp_path / "d2"), url=url + "nope.tar.gz", num_classes=10)
    with pytest.raises(DownloadError, match=r"nope\.tar\.gz .*HTTP 404"):
        dm.setup("fit")
    assert leftovers(tmp_path / "d1") == [] and leftovers(tmp_path / "d2") == []


def test_cifar_download_without_a_checksum_keeps_only_a_whole_archive(server, tmp_path):
    """An HTML page or a cut archive was kept and failed every later run ("not a readable tar archive")."""
    served, url = server
    archive = cifar_archive(served, tmp_path / "src")
    data_dir = tmp_path / "data"
    for bad, why in (("html/", r"is not a readable tar archive: .*\(the server sent text/html\)"), ("unsized/", "")):
        dm = CIFAR10DataModule(data_dir=str(data_dir), url=f"{url}{bad}{archive.name}", md5=None, num_classes=10)
        with pytest.raises(DownloadError, match=rf"download of {url}{bad}cifar-10-python\.tar\.gz to .* {why}"):
            dm.setup("fit")
        assert leftovers(data_dir) == []
    dm = CIFAR10DataModule(data_dir=str(data_dir), url=url + archive.name, val_split=4, num_classes=10)
    dm.setup("fit")
    assert [len(dm.splits[s]) for s in ("train", "val", "test")] == [16, 4, 4]


def test_cifar_missing_and_corrupt_batches(tmp_path):
    dm = CIFAR10DataModule(data_dir=str(tmp_path), download=False, num_classes=10)
    with pytest.raises(FileNotFoundError, match="data_batch_1"):
        dm.setup("fit")
    folder = write_cifar(tmp_path)
    bad = folder / "data_batch_3"
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"data_batch_3 is not a readable CIFAR batch"):
        CIFAR10DataModule(data_dir=str(tmp_path), download=False, num_classes=10, val_split=5).setup("fit")


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_cifar_refuses_pickled_code(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({"data": Evil()}))
    with pytest.raises(ValueError, match=r"refusing to load builtins.print"):
        read_batch(path)


def test_truncated_archive_is_named(tmp_path):
    from litlab.data.cifar import extract

    archive = cifar_archive(tmp_path, tmp_path / "src")
    archive.write_bytes(archive.read_bytes()[:-500])
    with pytest.raises(ValueError, match=r"cifar-10-python.tar.gz is not a readable tar archive"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
