"""Tests for aalr.harness.data: readers on small files written here, search paths, downloads (faked)."""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import random
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from aalr.harness import data
from aalr.harness.data import (
    Dataset,
    data_search_paths,
    download_file,
    load_dataset,
    read_cifar_binary,
    read_idx,
    split_validation,
)

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No test reads the user's cache or the system folder unless it says so, and none downloads."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    monkeypatch.delenv("AALR_DATA", raising=False)
    monkeypatch.setattr(data, "SYSTEM_DATA_DIR", tmp_path / "system")

    def no_network(url):
        raise urllib.error.URLError(f"tests never download ({url})")

    monkeypatch.setattr(data, "_open_url", no_network)


# --------------------------------------------------------------------------- writers for test files

_IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D}


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode an array in the IDX format (independently of the reader under test)."""
    code = _IDX_CODES[array.dtype]
    header = bytes([0, 0, code, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool) -> Path:
    raw = idx_bytes(array)
    path = path.with_name(path.name + ".gz") if gz else path
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def fake_idx_set(folder: Path, n_train=7, n_test=4, hw=(5, 6), seed=0, gz_pattern=(True, False, False, True)):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, *hw), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, *hw), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for (stem, array), gz in zip(arrays.items(), gz_pattern, strict=True):
        write_idx(folder / stem, array, gz)
    return arrays


def cifar_records(images: np.ndarray, labels: list[tuple[int, ...]]) -> bytes:
    """CIFAR binary records: label byte(s), then the red, green and blue 32x32 planes."""
    return b"".join(bytes(lab) + img.tobytes() for lab, img in zip(labels, images, strict=True))


def reference_stats(x: torch.Tensor) -> tuple[list[float], list[float]]:
    values = x.to(torch.float64) / (255.0 if x.dtype == torch.uint8 else 1.0)
    dims = [0, *range(2, x.dim())]
    return values.mean(dims).tolist(), values.std(dims, correction=0).tolist()


# --------------------------------------------------------------------------- names and paths


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(
        ValueError, match=r"unknown data set 'imagenet'; known: mnist1d, digits, fashion-mnist"
    ):
        load_dataset("imagenet")


def test_search_paths_in_documented_order(tmp_path, monkeypatch):
    monkeypatch.setenv("AALR_DATA", str(tmp_path / "env"))
    paths = data_search_paths("Fashion_MNIST", tmp_path / "mine")
    assert paths == [
        tmp_path / "mine",
        tmp_path / "mine" / "fashion-mnist",
        tmp_path / "env" / "fashion-mnist",
        tmp_path / "system" / "fashion-mnist",
        tmp_path / "user-cache" / "aalr" / "fashion-mnist",
    ]
    monkeypatch.delenv("AALR_DATA")
    assert data_search_paths("mnist", None) == [
        tmp_path / "system" / "mnist",
        tmp_path / "user-cache" / "aalr" / "mnist",
    ]


# --------------------------------------------------------------------------- MNIST-1D and digits


def test_mnist1d_has_the_documented_shapes():
    ds = load_dataset("mnist1d")
    assert ds.name == "mnist1d" and ds.num_classes == 10
    assert ds.x_train.shape == (4000, 1, 40) and ds.x_test.shape == (1000, 1, 40)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert ds.input_shape == (1, 40) and not ds.is_image
    assert ds.x_train.is_contiguous() and ds.x_test.is_contiguous()
    assert set(ds.y_train.tolist()) == set(range(10)) == set(ds.y_test.tolist())
    mean, std = reference_stats(ds.x_train)
    assert ds.mean == pytest.approx(mean) and ds.std == pytest.approx(std)


def test_mnist1d_returns_fresh_tensors_from_the_memory_cache():
    first = load_dataset("mnist1d")
    first.x_train.zero_()
    assert load_dataset("mnist1d").x_train.abs().sum() > 0


def test_mnist1d_generation_leaves_global_random_state_alone():
    random.seed(123)
    np.random.seed(123)
    expected_py, expected_np = random.random(), np.random.random()
    random.seed(123)
    np.random.seed(123)
    arrays = data._generate_mnist1d.__wrapped__()  # uncached: really generate
    assert (random.random(), np.random.random()) == (expected_py, expected_np)
    # Same package defaults, same data as the cached generation.
    assert all(np.array_equal(a, b) for a, b in zip(arrays, data._generate_mnist1d(), strict=True))


def test_mnist1d_disk_cache_is_written_and_then_read(tmp_path, monkeypatch):
    ds = load_dataset("mnist1d", tmp_path)
    cache = tmp_path / "mnist1d" / "mnist1d.npz"
    assert cache.is_file()
    assert not list(cache.parent.glob("*.part"))

    @functools.lru_cache(maxsize=1)
    def must_not_generate():
        raise AssertionError("generated although a cache file exists")

    monkeypatch.setattr(data, "_generate_mnist1d", must_not_generate)
    again = load_dataset("mnist1d", tmp_path)
    assert torch.equal(again.x_train, ds.x_train) and torch.equal(again.y_test, ds.y_test)


def test_mnist1d_cache_of_another_version_or_damaged_is_ignored(tmp_path, monkeypatch):
    path = tmp_path / "mnist1d.npz"
    arrays = data._generate_mnist1d()
    data._write_mnist1d_cache(path, arrays)
    assert data._read_mnist1d_cache(path) is not None
    monkeypatch.setattr(data, "_mnist1d_version", lambda: "mnist1d==0.0.0-other")
    assert data._read_mnist1d_cache(path) is None
    path.write_bytes(b"not a zip file")
    with pytest.warns(UserWarning, match="ignoring unreadable MNIST-1D cache"):
        assert data._read_mnist1d_cache(path) is None


def test_digits_split_is_deterministic_stratified_and_complete():
    from sklearn.datasets import load_digits

    ds = load_dataset("digits")
    full = load_digits()
    assert ds.x_train.shape == (1437, 1, 8, 8) and ds.x_test.shape == (360, 1, 8, 8)
    assert ds.x_train.dtype == torch.float32 and not ds.is_image
    assert 0.0 <= float(ds.x_train.min()) and float(ds.x_train.max()) <= 1.0
    both = torch.cat([ds.x_train, ds.x_test]).reshape(len(full.images), -1).numpy()
    expected = (full.images / 16.0).reshape(len(full.images), -1).astype(np.float32)
    assert np.array_equal(np.unique(both, axis=0), np.unique(expected, axis=0))
    assert np.bincount(ds.y_test.numpy()).min() >= 35  # stratified: every class about 36 of 360
    again = load_dataset("digits")
    assert torch.equal(again.x_train, ds.x_train) and torch.equal(again.y_test, ds.y_test)


# --------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
        np.array([1, -2, 70000], dtype=">i4"),
        np.array([[0.5, -1.25]], dtype=">f4"),
    ],
    ids=["uint8", "int32", "float32"],
)
def test_read_idx_round_trips(tmp_path, array, gz):
    path = write_idx(tmp_path / "file-idx", array, gz)
    read = read_idx(path)
    assert read.dtype.isnative and read.shape == array.shape
    assert np.array_equal(read, array)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"\x00\x00", r"bad-idx: 2 bytes is too short for an IDX magic number"),
        (
            b"\x01\x00\x08\x01" + (3).to_bytes(4, "big") + b"abc",
            r"bad-idx: not an IDX file: magic number 01000801",
        ),
        (b"\x00\x00\x07\x01" + (3).to_bytes(4, "big") + b"abc", r"bad-idx: unknown IDX data type code 0x07"),
        (b"\x00\x00\x08\x00", r"bad-idx: IDX header declares 0 dimensions"),
        (
            b"\x00\x00\x08\x02" + (3).to_bytes(4, "big"),
            r"bad-idx: truncated IDX header: 2 dimensions need 12",
        ),
        (
            b"\x00\x00\x08\x02" + (2).to_bytes(4, "big") + (3).to_bytes(4, "big") + b"abcde",
            r"bad-idx: IDX dimensions \(2, 3\) of uint8 need 6 data bytes, the file has 5 \(truncated",
        ),
        (
            b"\x00\x00\x08\x01" + (2).to_bytes(4, "big") + b"abc",
            r"need 2 data bytes, the file has 3",
        ),
    ],
    ids=["short", "magic", "dtype", "no-dims", "header", "truncated", "too-long"],
)
def test_read_idx_rejects_malformed_files(tmp_path, raw, match):
    path = tmp_path / "bad-idx"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match=match):
        read_idx(path)


def test_read_idx_rejects_damaged_gzip(tmp_path):
    path = write_idx(tmp_path / "images-idx", np.zeros((50, 4, 4), np.uint8), gz=True)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match=r"images-idx\.gz: damaged gzip data"):
        read_idx(path)


def test_load_idx_set_from_data_dir(tmp_path):
    arrays = fake_idx_set(tmp_path / "files")
    ds = load_dataset("mnist", tmp_path / "files", download=False)
    assert ds.name == "mnist" and ds.num_classes == 10 and ds.is_image
    assert ds.x_train.shape == (7, 1, 5, 6) and ds.x_test.shape == (4, 1, 5, 6)
    assert ds.x_train.dtype == torch.uint8 and ds.y_train.dtype == torch.int64
    assert np.array_equal(ds.x_train[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    assert np.array_equal(ds.y_test.numpy(), arrays["t10k-labels-idx1-ubyte"])
    mean, std = reference_stats(ds.x_train)
    assert ds.mean == pytest.approx(mean) and ds.std == pytest.approx(std)


def test_idx_set_is_found_in_the_per_name_subfolder_and_in_aalr_data(tmp_path, monkeypatch):
    fake_idx_set(tmp_path / "root" / "fashion-mnist", seed=1)
    assert load_dataset("fashion-mnist", tmp_path / "root", download=False).x_train.shape[0] == 7
    monkeypatch.setenv("AALR_DATA", str(tmp_path / "root"))
    assert load_dataset("fashion-mnist", download=False).x_test.shape[0] == 4


def test_first_complete_folder_wins(tmp_path):
    fake_idx_set(tmp_path / "mine", n_train=3)
    (tmp_path / "mine" / "t10k-labels-idx1-ubyte.gz").unlink()  # incomplete: skipped
    fake_idx_set(tmp_path / "mine" / "mnist", n_train=9)
    assert load_dataset("mnist", tmp_path / "mine", download=False).x_train.shape[0] == 9


def test_idx_set_with_mismatched_counts_or_labels_is_refused(tmp_path):
    folder = tmp_path / "f"
    fake_idx_set(folder, gz_pattern=(False,) * 4)
    write_idx(folder / "train-labels-idx1-ubyte", np.zeros(6, np.uint8), gz=False)
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte holds 7 images but .* 6 labels"):
        load_dataset("mnist", folder, download=False)
    write_idx(folder / "train-labels-idx1-ubyte", np.full(7, 10, np.uint8), gz=False)
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte: label 10 is outside 0\.\.9"):
        load_dataset("mnist", folder, download=False)
    write_idx(folder / "train-labels-idx1-ubyte", np.zeros((7, 1), np.uint8), gz=False)
    with pytest.raises(ValueError, match=r"expected uint8 labels of shape \(N,\), found uint8 \(7, 1\)"):
        load_dataset("mnist", folder, download=False)


@pytest.mark.parametrize("name", ["fashion-mnist", "mnist", "cifar10", "cifar100"])
def test_missing_files_list_every_searched_path(tmp_path, monkeypatch, name):
    monkeypatch.setenv("AALR_DATA", str(tmp_path / "env"))
    with pytest.raises(FileNotFoundError) as info:
        load_dataset(name, tmp_path / "mine", download=False)
    message = str(info.value)
    for path in data_search_paths(name, tmp_path / "mine"):
        assert f"  {path}\n" in message
    assert "download=False" in message
    assert ("apt-get install dataset-fashion-mnist" in message) == (name == "fashion-mnist")


# --------------------------------------------------------------------------- downloads (faked)


def _serve(monkeypatch, files: dict[str, bytes]) -> list[str]:
    """Replace the network with ``files`` (keyed by URL); returns the URLs asked for."""
    asked: list[str] = []

    def fake_open(url):
        asked.append(url)
        if url not in files:
            raise urllib.error.URLError(f"no route to {url}")
        return io.BytesIO(files[url])

    monkeypatch.setattr(data, "_open_url", fake_open)
    return asked


def test_download_file_checks_the_checksum_and_writes_atomically(tmp_path, monkeypatch):
    payload = b"some bytes" * 1000
    _serve(monkeypatch, {"https://b/x.gz": payload})
    md5 = hashlib.md5(payload).hexdigest()
    dest = download_file(["https://a/x.gz", "https://b/x.gz"], tmp_path / "d" / "x.gz", ("md5", md5))
    assert dest.read_bytes() == payload
    sha = hashlib.sha256(payload).hexdigest()
    assert download_file(["https://b/x.gz"], tmp_path / "y.gz", ("sha256", sha)).read_bytes() == payload


def test_download_checksum_mismatch_deletes_the_download(tmp_path, monkeypatch):
    _serve(monkeypatch, {"https://a/x.gz": b"tampered"})
    with pytest.raises(
        ValueError, match=r"checksum mismatch for x\.gz downloaded from https://a/x\.gz: md5 "
    ):
        download_file(["https://a/x.gz"], tmp_path / "x.gz", ("md5", "0" * 32))
    assert list(tmp_path.iterdir()) == []


def test_download_interrupted_leaves_nothing_and_reports_every_url(tmp_path, monkeypatch):
    class Broken(io.BytesIO):
        def read(self, size=-1):
            raise ConnectionResetError("reset by peer")

    monkeypatch.setattr(data, "_open_url", lambda url: Broken())
    with pytest.raises(
        ConnectionError, match=r"could not download x\.gz: https://a/x\.gz: reset by peer; https://b"
    ):
        download_file(["https://a/x.gz", "https://b/x.gz"], tmp_path / "x.gz", ("md5", "0" * 32))
    assert list(tmp_path.iterdir()) == []


def test_load_idx_set_downloads_missing_files(tmp_path, monkeypatch):
    served = {}
    remotes = []
    rng = np.random.default_rng(0)
    for stem, array in [
        ("train-images-idx3-ubyte", rng.integers(0, 256, (5, 3, 3), dtype=np.uint8)),
        ("train-labels-idx1-ubyte", rng.integers(0, 10, 5, dtype=np.uint8)),
        ("t10k-images-idx3-ubyte", rng.integers(0, 256, (2, 3, 3), dtype=np.uint8)),
        ("t10k-labels-idx1-ubyte", rng.integers(0, 10, 2, dtype=np.uint8)),
    ]:
        blob = gzip.compress(idx_bytes(array))
        served[f"https://mirror-2/{stem}.gz"] = blob
        remotes.append(
            data._Remote(
                f"{stem}.gz",
                ("md5", hashlib.md5(blob).hexdigest()),
                ("https://mirror-1/", "https://mirror-2/"),
            )
        )
    monkeypatch.setitem(data._REMOTES, "mnist", tuple(remotes))
    asked = _serve(monkeypatch, served)
    ds = load_dataset("mnist", tmp_path / "mine")
    assert ds.x_train.shape == (5, 1, 3, 3)
    assert sorted(p.name for p in (tmp_path / "mine" / "mnist").iterdir()) == sorted(
        r.filename for r in remotes
    )
    assert asked[:2] == [
        "https://mirror-1/train-images-idx3-ubyte.gz",
        "https://mirror-2/train-images-idx3-ubyte.gz",
    ]
    asked.clear()
    load_dataset("mnist", tmp_path / "mine")  # now found on disk
    assert asked == []


def test_offline_download_becomes_file_not_found_with_the_reason(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"(?s)fashion-mnist: data files not found.*tests never download"
    ):
        load_dataset("fashion-mnist", tmp_path / "mine")


def test_cifar_download_extracts_only_the_needed_files(tmp_path, monkeypatch):
    layout = data._CIFAR["cifar100"]
    rng = np.random.default_rng(0)
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        for name, n in (("train.bin", 3), ("test.bin", 2), ("meta.txt", 0)):
            images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
            blob = cifar_records(images, [(1, 2)] * n) if n else b"fine_label_names"
            info = tarfile.TarInfo(f"{layout.folder}/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    blob = archive.getvalue()
    remote = data._Remote("cifar-100-binary.tar.gz", ("md5", hashlib.md5(blob).hexdigest()), ("https://m/",))
    monkeypatch.setitem(data._REMOTES, "cifar100", (remote,))
    _serve(monkeypatch, {"https://m/cifar-100-binary.tar.gz": blob})
    ds = load_dataset("cifar100", tmp_path)
    assert ds.x_train.shape == (3, 3, 32, 32) and ds.num_classes == 100
    assert set(ds.y_train.tolist()) == {2}
    target = tmp_path / "cifar100"
    assert sorted(p.name for p in (target / layout.folder).iterdir()) == ["test.bin", "train.bin"]
    assert not (target / "cifar-100-binary.tar.gz").exists()


def test_cifar_archive_without_a_member_is_refused(tmp_path, monkeypatch):
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-bin/test_batch.bin")
        tar.addfile(info, io.BytesIO(b""))
    blob = archive.getvalue()
    remote = data._Remote("cifar-10-binary.tar.gz", ("md5", hashlib.md5(blob).hexdigest()), ("https://m/",))
    monkeypatch.setitem(data._REMOTES, "cifar10", (remote,))
    _serve(monkeypatch, {"https://m/cifar-10-binary.tar.gz": blob})
    with pytest.raises(
        ValueError, match=r"cifar-10-binary\.tar\.gz: has no member cifar-10-batches-bin/data_batch_1"
    ):
        load_dataset("cifar10", tmp_path)


# --------------------------------------------------------------------------- CIFAR binary


def test_cifar10_round_trips_labels_and_chw_pixels(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    expected_images, expected_labels = [], []
    for name in [*(f"data_batch_{i}.bin" for i in range(1, 6)), "test_batch.bin"]:
        n = int(rng.integers(1, 4))
        images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, n).tolist()
        (folder / name).write_bytes(cifar_records(images, [(lab,) for lab in labels]))
        expected_images.append(images)
        expected_labels.append(labels)
    ds = load_dataset("cifar10", tmp_path, download=False)
    assert ds.x_train.dtype == torch.uint8 and ds.input_shape == (3, 32, 32) and ds.num_classes == 10
    assert np.array_equal(ds.x_train.numpy(), np.concatenate(expected_images[:5]))
    assert ds.y_train.tolist() == [lab for labels in expected_labels[:5] for lab in labels]
    assert np.array_equal(ds.x_test.numpy(), expected_images[5]) and ds.y_test.tolist() == expected_labels[5]
    mean, std = reference_stats(ds.x_train)
    assert ds.mean == pytest.approx(mean) and ds.std == pytest.approx(std)


def test_cifar_pixel_bytes_are_red_then_green_then_blue_planes(tmp_path):
    pixels = np.concatenate([np.full(1024, 10), np.full(1024, 20), np.arange(1024) % 256]).astype(np.uint8)
    path = tmp_path / "one.bin"
    path.write_bytes(bytes([7]) + pixels.tobytes())
    images, labels = read_cifar_binary(path, label_bytes=1, label_index=0, num_classes=10)
    assert labels.tolist() == [7] and images.shape == (1, 3, 32, 32)
    assert (images[0, 0] == 10).all() and (images[0, 1] == 20).all()
    assert images[0, 2, 1, 3] == (1 * 32 + 3) % 256  # row-major within a plane


def test_cifar100_uses_the_fine_label_and_files_directly_in_the_folder(tmp_path):
    rng = np.random.default_rng(1)
    train = rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
    test = rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8)
    (tmp_path / "train.bin").write_bytes(cifar_records(train, [(19, 99), (0, 5), (3, 42), (1, 0)]))
    (tmp_path / "test.bin").write_bytes(cifar_records(test, [(7, 61), (2, 13)]))
    ds = load_dataset("cifar100", tmp_path, download=False)
    assert ds.y_train.tolist() == [99, 5, 42, 0] and ds.y_test.tolist() == [61, 13]
    assert np.array_equal(ds.x_train.numpy(), train) and np.array_equal(ds.x_test.numpy(), test)


@pytest.mark.parametrize("size", [3072, 3074, 0])
def test_cifar_file_of_partial_records_is_refused(tmp_path, size):
    path = tmp_path / "data_batch_1.bin"
    path.write_bytes(bytes(size))
    with pytest.raises(
        ValueError, match=rf"data_batch_1\.bin: size {size} bytes is not a whole, non-zero number of 3073"
    ):
        read_cifar_binary(path, label_bytes=1, label_index=0, num_classes=10)


def test_cifar_label_out_of_range_is_refused(tmp_path):
    path = tmp_path / "test_batch.bin"
    path.write_bytes(cifar_records(np.zeros((1, 3, 32, 32), np.uint8), [(10,)]))
    with pytest.raises(ValueError, match=r"test_batch\.bin: label 10 is outside 0\.\.9"):
        read_cifar_binary(path, label_bytes=1, label_index=0, num_classes=10)


# --------------------------------------------------------------------------- Dataset and splitting


def _toy(n_train=50, channels=2, dtype=torch.uint8) -> Dataset:
    # Pixel (0, 0, 0) of sample i holds i, so samples can be traced through a split.
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n_train, channels, 3, 3), generator=g).to(dtype)
    x[:, 0, 0, 0] = torch.arange(n_train).to(dtype)
    x_test = torch.zeros(5, channels, 3, 3, dtype=dtype)
    mean, std = data._channel_stats(x)
    return Dataset(
        "toy", x, torch.arange(n_train) % 3, x_test, torch.zeros(5, dtype=torch.long), 3, mean, std
    )


def test_channel_stats_match_a_direct_computation():
    for dtype in (torch.uint8, torch.float32):
        x = torch.randint(0, 256, (40, 3, 4, 5)).to(dtype)
        mean, std = data._channel_stats(x)
        ref_mean, ref_std = reference_stats(x)
        assert list(mean) == pytest.approx(ref_mean, rel=1e-12) and list(std) == pytest.approx(
            ref_std, rel=1e-12
        )


def test_split_validation_partitions_the_training_data():
    ds = _toy()
    train_part, val_part = split_validation(ds, 0.2, seed=0)
    train_ids = train_part.x_train[:, 0, 0, 0].tolist()
    val_ids = val_part.x_test[:, 0, 0, 0].tolist()
    assert len(val_ids) == 10 and len(train_ids) == 40
    assert sorted(train_ids + val_ids) == list(range(50))
    assert torch.equal(val_part.x_train, train_part.x_train)
    assert torch.equal(val_part.y_test, ds.y_train[val_part.x_test[:, 0, 0, 0].long()])
    assert train_part.x_test is ds.x_test and train_part.name == ds.name
    mean, std = reference_stats(train_part.x_train)
    assert train_part.mean == pytest.approx(mean) and val_part.std == pytest.approx(std)


def test_split_validation_is_deterministic_by_seed():
    ds = _toy()
    a, b, c = (split_validation(ds, 0.3, seed=s)[1].x_test for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5, True, "0.1"])
def test_split_validation_refuses_bad_fractions(fraction):
    with pytest.raises(ValueError, match=rf"fraction must be a number in \(0, 1\), got {fraction!r}"):
        split_validation(_toy(), fraction, seed=0)


def test_split_validation_refuses_an_empty_side():
    with pytest.raises(ValueError, match=r"fraction 0\.001 of 50 training samples holds out 0"):
        split_validation(_toy(), 0.001, seed=0)


def test_dataset_helpers():
    ds = _toy()
    assert ds.is_image and ds.input_shape == (2, 3, 3)
    batch = ds.x_train[:4]
    assert torch.equal(ds.as_float(batch), batch.float() / 255)
    floats = torch.rand(2, 2)
    assert ds.as_float(floats) is floats
    with pytest.raises(TypeError, match=r"as_float takes a uint8 or floating-point batch, got torch\.int64"):
        ds.as_float(torch.zeros(2, dtype=torch.long))
    moved = ds.to("cpu")
    assert torch.equal(moved.x_train, ds.x_train) and moved.mean == ds.mean


def test_dataset_refuses_inconsistent_tensors():
    ds = _toy()
    with pytest.raises(ValueError, match=r"x_train \(50, 2, 3, 3\) and y_train \(49,\) must be"):
        Dataset("toy", ds.x_train, ds.y_train[:-1], ds.x_test, ds.y_test, 3, ds.mean, ds.std)
    with pytest.raises(
        ValueError, match=r"x_test samples \(2, 4, 4\) differ from x_train samples \(2, 3, 3\)"
    ):
        Dataset("toy", ds.x_train, ds.y_train, torch.zeros(5, 2, 4, 4), ds.y_test, 3, ds.mean, ds.std)
    with pytest.raises(ValueError, match=r"need one value per channel \(2\)"):
        Dataset("toy", ds.x_train, ds.y_train, ds.x_test, ds.y_test, 3, (0.5,), (0.5,))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_load_and_split_on_cuda():
    ds = load_dataset("mnist1d", device="cuda")
    assert ds.x_train.is_cuda and ds.y_test.is_cuda
    train_part, val_part = split_validation(ds, 0.1, seed=0)
    assert train_part.x_train.is_cuda and val_part.x_test.is_cuda and len(val_part.y_test) == 400


# --------------------------------------------------------------------------- the real Fashion-MNIST


@pytest.mark.skipif(
    not FASHION_DIR.is_dir(),
    reason=f"{FASHION_DIR} is missing (install it with `apt-get install dataset-fashion-mnist`)",
)
def test_real_fashion_mnist_from_the_debian_package(monkeypatch):
    monkeypatch.setattr(data, "SYSTEM_DATA_DIR", FASHION_DIR.parent)
    ds = load_dataset("fashion-mnist", download=False)
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert ds.x_train.dtype == torch.uint8 and ds.is_image
    # Fashion-MNIST is balanced by construction: 6000 training and 1000 test images per class.
    assert ds.y_train.bincount().tolist() == [6000] * 10 and ds.y_test.bincount().tolist() == [1000] * 10
    assert len(ds.mean) == len(ds.std) == 1 and 0.0 < ds.mean[0] < 1.0
