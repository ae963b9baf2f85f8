"""Photos of other bands than 8-bit RGB (``segkit.data.geotiff``, ``segkit.data.band_stats``): 4-band
16-bit TIFFs keep their bands through the folder dataset, training, the checkpoint and predict, with
per-band statistics checked against numpy; 8-bit RGB photos keep ImageNet's. Every file here is written
by tifffile or rasterio, never by segkit."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from fixtures import error_line, invoke, only_run_dir, tiny_run
from PIL import Image

import segkit
from segkit.components import get_component
from segkit.data import band_stats
from segkit.data.geotiff import Raster, tiff_facts
from segkit.data.imageio import check_image_file, read_image
from segkit.data.sampling import Sampling
from segkit.data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_sample_transform
from segkit.errors import DataError

SIZE = (40, 48)


def write_bands(path: Path, bands: np.ndarray, **options) -> Path:
    """A ``(C, H, W)`` array as a TIFF of C samples (tifffile; separate planes unless told)."""
    tifffile.imwrite(
        path, bands, photometric="minisblack", planarconfig=options.pop("planar", "separate"), **options
    )
    return path


def four_band_folder(root: Path, count: int = 8, seed: int = 0) -> list[np.ndarray]:
    """``root/images/*.tif`` (4 bands of 16 bits, each band with its own level) and binary masks."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    photos = []
    for index in range(count):
        levels = np.array([1000, 9000, 30000, 52000])[:, None, None]
        bands = (levels + rng.integers(0, 8000, (4, *SIZE))).astype(np.uint16)
        write_bands(root / "images" / f"p{index}.tif", bands)
        mask = np.zeros(SIZE, np.uint8)
        mask[10:30, 12 + index : 30 + index] = 255
        Image.fromarray(mask).save(root / "masks" / f"p{index}.png")
        photos.append(bands)
    return photos


def folder(root: Path, split: str = "train", **options):
    return get_component("dataset", "folder").factory(root=root, split=split, image_size=32, **options)


def numpy_statistics(photos: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Each band's mean and population std over every pixel, in the units of values / 65535."""
    pixels = np.concatenate([photo.reshape(4, -1) for photo in photos], axis=1) / 65535.0
    return pixels.mean(axis=1), pixels.std(axis=1)


# -- which photos keep their bands ---------------------------------------------------------------------


def test_band_photos_are_told_from_rgb_ones_by_their_header(tmp_path):
    rgb = np.zeros((8, 9, 3), np.uint8)
    cases = {
        "rgb.tif": (lambda p: tifffile.imwrite(p, rgb, photometric="rgb"), False),
        "rgba.tif": (lambda p: tifffile.imwrite(p, np.zeros((8, 9, 4), np.uint8), photometric="rgb"), False),
        "grey16.tif": (lambda p: tifffile.imwrite(p, np.zeros((8, 9), np.uint16)), False),
        "rgbn8.tif": (lambda p: write_bands(p, np.zeros((4, 8, 9), np.uint8)), True),
        "rgb16.tif": (lambda p: tifffile.imwrite(p, np.zeros((8, 9, 3), np.uint16), photometric="rgb"), True),
        "five.tif": (lambda p: write_bands(p, np.zeros((5, 8, 9), np.float32)), True),
    }
    for name, (write, keeps_bands) in cases.items():
        write(tmp_path / name)
        assert tiff_facts(tmp_path / name).bands is keeps_bands, name
        assert isinstance(read_image(tmp_path / name), Raster) is keeps_bands, name
    assert tiff_facts(tmp_path / "rgb.tif").bands is False


def test_a_band_photo_reads_as_tifffile_stores_it_and_is_checked_from_its_header(tmp_path):
    bands = np.random.default_rng(1).integers(0, 65536, (4, *SIZE), dtype=np.uint16)
    for planar in ("separate", "contig"):
        path = tmp_path / f"{planar}.tif"
        write_bands(
            path, bands if planar == "separate" else np.moveaxis(bands, 0, -1), planar=planar, tile=(16, 16)
        )
        raster = read_image(path)
        assert np.array_equal(raster.read(), bands)
        assert np.allclose(raster.pixels().numpy(), bands / 65535.0, atol=1e-7)
        assert np.array_equal(raster.read(5, 7, 10, 20), bands[:, 5:15, 7:27])
        assert check_image_file(path) == SIZE


# -- per-band statistics --------------------------------------------------------------------------------


def test_band_statistics_equal_a_numpy_computation_and_are_cached_by_the_files(tmp_path, monkeypatch):
    photos = four_band_folder(tmp_path / "data", count=3)
    paths = sorted((tmp_path / "data" / "images").glob("*.tif"))
    monkeypatch.setattr(band_stats, "ROWS_AT_A_TIME", 7)  # several chunks a photo: the merge is tested
    statistics = band_stats.band_statistics(paths, tmp_path / "data")
    mean, std = numpy_statistics(photos)
    assert np.allclose(statistics["mean"], mean, rtol=1e-9) and np.allclose(statistics["std"], std, rtol=1e-9)
    computed = []
    monkeypatch.setattr(band_stats, "compute_band_statistics", lambda paths: computed.append(paths) or {})
    assert band_stats.band_statistics(paths, tmp_path / "data") == statistics, "read from the cache"
    assert computed == []
    write_bands(paths[0], np.zeros((4, *SIZE), np.uint16) + 7)  # a changed photo computes them again
    band_stats.band_statistics(paths, tmp_path / "data")
    assert len(computed) == 1


def test_photos_of_different_bands_are_one_line_naming_them(tmp_path):
    four_band_folder(tmp_path / "data", count=2)
    odd = write_bands(tmp_path / "data" / "images" / "p1.tif", np.zeros((3, *SIZE), np.uint16))
    with pytest.raises(DataError, match=rf"same bands.*{odd.name} \(3 bands of uint16\)"):
        band_stats.band_statistics(sorted((tmp_path / "data" / "images").glob("*.tif")))


def test_rgb_photos_keep_imagenet_statistics(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for index in range(4):
        tifffile.imwrite(
            tmp_path / "images" / f"p{index}.tif", np.full((*SIZE, 3), 90, np.uint8), photometric="rgb"
        )
        Image.fromarray(np.zeros(SIZE, np.uint8)).save(tmp_path / "masks" / f"p{index}.png")
    dataset = folder(tmp_path, augment="none")
    assert dataset.normalization == {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    assert dataset.transform.normalization is None
    expected = (90 / 255 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    assert np.allclose(dataset[0]["image"].mean(dim=(1, 2)).numpy(), expected, atol=1e-6)


# -- the folder dataset and its transforms --------------------------------------------------------------


def test_folder_items_keep_four_bands_normalised_with_the_training_statistics(tmp_path):
    photos = four_band_folder(tmp_path)
    train, valid = folder(tmp_path, augment="none"), folder(tmp_path, "valid")
    mean, std = numpy_statistics([photos[int(pair.name[1:])] for pair in train.pairs])
    assert np.allclose(train.normalization["mean"], mean) and np.allclose(train.normalization["std"], std)
    assert valid.normalization == train.normalization, "every split normalises with the training photos'"
    item = train[0]
    assert item["image"].shape == (4, 32, 32) and item["image"].dtype == torch.float32
    photo = photos[int(train.pairs[0].name[1:])] / 65535.0
    assert np.allclose(
        item["image"].mean(dim=(1, 2)).numpy(), (photo.mean(axis=(1, 2)) - mean) / std, atol=0.02
    )


def test_predict_prepares_a_band_photo_as_the_dataset_does(tmp_path):
    from segkit.inference.predictor import image_to_tensor

    four_band_folder(tmp_path)
    valid = folder(tmp_path, "valid")
    prepared = image_to_tensor(read_image(valid.image_path(0)), 32, valid.normalization)
    assert prepared.shape == (4, 32, 32)
    assert torch.allclose(prepared, valid[0]["image"], atol=1e-4)


@pytest.mark.parametrize("augment", ["default", "strong"])
@pytest.mark.parametrize("bands", [3, 4])
def test_augmentations_move_bands_and_leave_their_values(tmp_path, augment, bands):
    """Geometric transforms move every band alike; colour transforms and the pipeline's ImageNet
    normalisation leave them alone. Each photo is one level per band, the levels chosen so that the
    normalised photo is one constant in every band: any transform touching bands unalike (colour jitter,
    greyscale, ImageNet's mean) makes them differ; moving them mixes the constant with 0, the fill."""
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for index in range(3):
        levels = np.array([10000, 20000, 30000, 40000][:bands])[:, None, None] + 1000 * index
        write_bands(
            tmp_path / "images" / f"p{index}.tif", np.broadcast_to(levels, (bands, *SIZE)).astype(np.uint16)
        )
        Image.fromarray(np.zeros(SIZE, np.uint8)).save(tmp_path / "masks" / f"p{index}.png")
    dataset = folder(tmp_path, augment=augment, valid_fraction=0, test_fraction=0)
    constant = -1000 / np.std([0, 1000, 2000])  # photo p0's normalised value, in every band
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning either
        images = [dataset[0]["image"] for _ in range(8)]
    for image in images:
        assert image.shape == (bands, 32, 32)
        assert torch.allclose(image, image[:1].expand_as(image), atol=1e-4), "every band moved alike"
        assert image.min() >= constant - 1e-3 and image.max() <= 1e-4, "the constant mixed with the fill 0"
        assert image.min() < constant + 0.05, "the photo is there"


def test_a_crop_reads_only_its_window_of_the_photo(tmp_path, monkeypatch):
    four_band_folder(tmp_path, count=3)
    dataset = folder(tmp_path, sampling=Sampling.crops(16), valid_fraction=0, test_fraction=0)
    windows = []
    original = Raster.read

    def spy(self, top=0, left=0, rows=None, columns=None):
        values = original(self, top, left, rows, columns)
        windows.append(values.shape)
        return values

    monkeypatch.setattr(Raster, "read", spy)
    for index in range(6):
        assert dataset[index % 3]["image"].shape == (4, 16, 16)
    assert windows == [(4, 16, 16)] * 6, "each crop reads its own 16x16 window, never the photo"


def test_a_dataset_mixing_rgb_and_band_photos_is_one_line(tmp_path):
    four_band_folder(tmp_path, count=4)
    rgb = tmp_path / "images" / "p0.tif"
    tifffile.imwrite(rgb, np.zeros((*SIZE, 3), np.uint8), photometric="rgb")
    with pytest.raises(DataError, match="same bands") as raised:
        for split in ("train", "valid", "test"):
            folder(tmp_path, split)
    assert "p0.tif" in str(raised.value) and "\n" not in str(raised.value)


def test_a_band_photo_in_a_dataset_without_statistics_is_named(tmp_path):
    path = write_bands(tmp_path / "photo.tif", np.zeros((4, *SIZE), np.uint16))
    transform = build_sample_transform("none", 32, train=False)
    with pytest.raises(DataError, match=r"photo\.tif has 4 bands of uint16.*per-band statistics"):
        transform(read_image(path), np.zeros(SIZE, np.uint8))


# -- trained, stored, predicted -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def four_band_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("bands")
    photos = four_band_folder(root / "data")
    out = root / "runs"
    result = invoke(
        "run", *tiny_run(batch_size=2, epochs=1, callbacks=("csv",)),
        "--dataset", "folder", "--data-path", root / "data", "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return root, photos, only_run_dir(out)


def test_a_four_band_run_stores_the_numpy_statistics_of_its_training_photos(four_band_run):
    root, photos, run_dir = four_band_run
    checkpoint = torch.load(run_dir / "best.pt", weights_only=False)
    assert checkpoint["in_channels"] == 4
    train = folder(root / "data")
    mean, std = numpy_statistics([photos[int(pair.name[1:])] for pair in train.pairs])
    assert np.allclose(checkpoint["normalization"]["mean"], mean, rtol=1e-9)
    assert np.allclose(checkpoint["normalization"]["std"], std, rtol=1e-9)


def test_predict_on_a_four_band_photo_and_an_rgb_photo_refused(four_band_run, tmp_path):
    root, _, run_dir = four_band_run
    photo = root / "data" / "images" / "p0.tif"
    result = invoke("predict", run_dir, photo, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    mask = np.asarray(Image.open(tmp_path / "out" / "p0_mask.png"))
    assert mask.shape == SIZE and set(np.unique(mask)) <= {0, 255}
    assert "no overlay" in result.output and not (tmp_path / "out" / "p0_overlay.png").exists()
    model = segkit.load_model(run_dir)
    assert np.array_equal(model.predict(photo), mask > 0), "Python's predict agrees with segkit predict"

    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((*SIZE, 3), np.uint8)).save(rgb)
    refused = invoke("predict", run_dir, rgb, "-o", tmp_path / "rgb")
    assert refused.exit_code == 1
    (line,) = [line for line in refused.output.splitlines() if line.startswith("skipped")]
    assert f"{rgb} is a 8-bit RGB photo (3 bands), but" in line and "photos of 4 bands" in line
    with pytest.raises(DataError, match=r"8-bit RGB photo \(3 bands\).*photos of 4 bands"):
        model.predict(rgb)


def test_a_four_band_photo_given_to_an_rgb_model_is_refused(trained_run, tmp_path):
    photo = write_bands(tmp_path / "nir.tif", np.zeros((4, *SIZE), np.uint16))
    result = invoke("predict", trained_run, photo, "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert "nir.tif is a 4-band uint16 photo (4 bands), but" in result.output and "8-bit RGB" in result.output


def test_the_checkpoint_normalization_must_have_a_number_per_input_channel(four_band_run, tmp_path):
    from segkit.inference.predictor import inference_settings

    payload = {"image_size": 32, "in_channels": 4, "normalization": {"mean": [0.5] * 4, "std": [0.2] * 4}}
    assert inference_settings(payload)[2]["mean"] == [0.5] * 4
    with pytest.raises(ValueError, match="not as many finite numbers each"):
        inference_settings({**payload, "normalization": {"mean": [0.5] * 4, "std": [0.2] * 3}})
    root, _, run_dir = four_band_run
    checkpoint = torch.load(run_dir / "best.pt", weights_only=False)
    checkpoint["normalization"] = {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    torch.save(checkpoint, tmp_path / "crafted.pt")
    result = invoke("predict", tmp_path / "crafted.pt", root / "data" / "images" / "p0.tif", "-o", tmp_path)
    assert result.exit_code != 0
    assert error_line(result).endswith("crafted.pt normalises 3 channels for a model of 4 input channels")


def test_evaluating_on_another_folder_normalises_with_the_checkpoints_statistics(four_band_run, tmp_path):
    """A folder of other levels would get statistics of its own: evaluation uses the model's."""
    from segkit.data.splits import evaluation_split
    from segkit.inference.predictor import load_trained_model

    _, _, run_dir = four_band_run
    four_band_folder(tmp_path / "other", seed=5)
    for path in (tmp_path / "other" / "images").iterdir():  # brighter photos: other statistics
        write_bands(path, (tifffile.imread(path).astype(np.int64) // 2 + 20000).astype(np.uint16))
    trained = load_trained_model(run_dir)
    _, data = evaluation_split(trained, "valid", None, tmp_path / "other", ())
    own = folder(tmp_path / "other", split="valid").normalization
    assert not np.allclose(own["mean"], trained.normalization["mean"])
    assert data.transform.normalization == data.normalization == trained.normalization
