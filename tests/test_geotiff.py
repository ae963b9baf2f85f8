"""GeoTIFFs (``segkit.data.geotiff``): ``segkit predict`` writes a georeferenced photo's mask as a
Cloud-Optimized GeoTIFF with the photo's CRS and transform, read back here by rasterio pixel for pixel;
training crops of a GeoTIFF read only their window; without rasterio, one line says what to install.
Every photo here is written by rasterio, never by segkit."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import tifffile
from fixtures import error_line, invoke
from PIL import Image

from segkit.components import get_component
from segkit.data import imageio
from segkit.data.geotiff import Raster, georeferenced
from segkit.data.imageio import check_image_file, read_image
from segkit.data.sampling import Sampling
from segkit.data.tiff import write_mask_tiffs
from segkit.errors import DataError
from segkit.task import MulticlassTask, MultilabelTask

CRS = "EPSG:32633"  # WGS 84 / UTM zone 33N: a projected CRS, in metres
TRANSFORM = rasterio.Affine(0.5, 0.0, 500_000.0, 0.0, -0.5, 4_650_000.0)  # 50 cm pixels, north up
HEIGHT, WIDTH = 70, 90  # not a multiple of the tiles or of the network's input


def write_geotiff(path: Path, seed: int = 0, height: int = HEIGHT, width: int = WIDTH, **profile) -> Path:
    """An 8-bit RGB GeoTIFF written by rasterio: a bright square on a dark, noisy ground."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 60, (profile.get("count", 3), height, width), dtype=np.uint8)
    pixels[:, height // 4 : height // 2, width // 3 : width // 2] = 220
    options = {"driver": "GTiff", "count": 3, "dtype": "uint8", "crs": CRS, "transform": TRANSFORM}
    with rasterio.open(path, "w", height=height, width=width, **{**options, **profile}) as target:
        target.write(pixels)
    return path


def test_a_predicted_mask_is_a_cloud_optimized_geotiff_on_the_photo_grid(trained_run, tmp_path):
    photo = write_geotiff(tmp_path / "scene.tif")
    result = invoke("predict", trained_run, photo, "-o", tmp_path / "geo", "--mask-format", "tiff")
    assert result.exit_code == 0, result.output
    assert "1 as GeoTIFF with their photo's CRS and transform" in result.output
    with rasterio.open(photo) as source, rasterio.open(tmp_path / "geo" / "scene_mask.tif") as mask:
        assert mask.crs == source.crs and mask.crs.to_epsg() == 32633
        assert mask.transform == source.transform and mask.bounds == source.bounds
        assert (mask.height, mask.width, mask.count) == (HEIGHT, WIDTH, 1)
        assert mask.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        values = mask.read(1)
    png = invoke("predict", trained_run, photo, "-o", tmp_path / "png")
    assert png.exit_code == 0, png.output
    assert np.array_equal(values, np.asarray(Image.open(tmp_path / "png" / "scene_mask.png")))
    assert "is georeferenced; --mask-format tiff writes its mask as a GeoTIFF" in png.output


def test_a_tiled_prediction_streams_the_geotiff_and_keeps_its_grid(trained_run, tmp_path):
    photo = write_geotiff(tmp_path / "scene.tif", tiled=True, blockxsize=32, blockysize=32)
    tiled = ("--tile", 64, "--overlap", 0.25, "--mask-format", "tiff")
    result = invoke("predict", trained_run, photo, "-o", tmp_path / "geo", *tiled)
    assert result.exit_code == 0, result.output
    assert "no overlay" in result.output, "read band by band (TiffRows), so no overlay"
    with rasterio.open(tmp_path / "geo" / "scene_mask.tif") as mask:
        assert mask.crs.to_epsg() == 32633 and mask.transform == TRANSFORM
        values = mask.read(1)
    plain = tmp_path / "plain.tif"
    with rasterio.open(photo) as source:
        Image.fromarray(np.moveaxis(source.read(), 0, -1)).save(plain)  # the same pixels, no coordinates
    result = invoke("predict", trained_run, plain, "-o", tmp_path / "plain", *tiled)
    assert np.array_equal(values, np.asarray(Image.open(tmp_path / "plain" / "plain_mask.tif")))


def test_every_task_writes_georeferenced_masks(tmp_path):
    photo = write_geotiff(tmp_path / "scene.tif")
    ids = np.random.default_rng(3).integers(0, 3, (HEIGHT, WIDTH)).astype(np.uint8)
    write_mask_tiffs(tmp_path, "multi", MulticlassTask(("ground", "roof", "tree")), ids, georeference=photo)
    with rasterio.open(tmp_path / "multi_mask.tif") as mask:
        assert np.array_equal(mask.read(1), ids) and mask.transform == TRANSFORM
        assert mask.colormap(1)[1][:3] == MulticlassTask(("ground", "roof", "tree")).palette[1]
    labels = np.random.default_rng(4).random((2, HEIGHT, WIDTH)) > 0.5
    write_mask_tiffs(tmp_path, "labels", MultilabelTask(("roof", "tree")), labels, georeference=photo)
    for index, name in enumerate(("roof", "tree")):
        with rasterio.open(tmp_path / f"labels_mask_{name}.tif") as mask:
            assert np.array_equal(mask.read(1), labels[index].astype(np.uint8) * 255)
            assert mask.crs.to_epsg() == 32633 and mask.bounds == rasterio.open(photo).bounds


def test_an_rgb_geotiff_reads_as_pillow_reads_it_and_is_checked_without_decoding(tmp_path, monkeypatch):
    photo = write_geotiff(tmp_path / "scene.tif", tiled=True, blockxsize=32, blockysize=32)
    grey = write_geotiff(tmp_path / "grey.tif", count=1, photometric="MINISBLACK")
    for path in (photo, grey):
        raster = read_image(path)
        assert isinstance(raster, Raster) and georeferenced(path)
        expected = np.asarray(Image.open(path).convert("RGB"))
        assert np.array_equal(raster.read_rows(0, raster.height), expected), "pixels as read_image's"
        assert np.array_equal(raster.pixels().numpy(), np.moveaxis(expected, -1, 0))
    monkeypatch.setattr(Image.Image, "load", lambda image: pytest.fail("decoded to be checked"))
    monkeypatch.setattr(Raster, "read", lambda *args, **kwargs: pytest.fail("read to be checked"))
    assert check_image_file(photo) == (HEIGHT, WIDTH)


def test_a_training_crop_of_a_geotiff_reads_only_its_window(tmp_path, monkeypatch):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for index in range(3):
        write_geotiff(
            root / "images" / f"s{index}.tif", index, 256, 320, tiled=True, blockxsize=64, blockysize=64
        )
        mask = np.zeros((256, 320), np.uint8)
        mask[64:128, 100:200] = 255
        with rasterio.open(
            root / "masks" / f"s{index}.tif", "w", driver="GTiff", height=256, width=320, count=1,
            dtype="uint8", crs=CRS, transform=TRANSFORM,
        ) as target:  # fmt: skip
            target.write(mask, 1)
    dataset = get_component("dataset", "folder").factory(
        root=root,
        split="train",
        image_size=32,
        sampling=Sampling.crops(32),
        valid_fraction=0,
        test_fraction=0,
    )
    windows = []
    read = Raster.read

    def spy(self, top=0, left=0, rows=None, columns=None):
        values = read(self, top, left, rows, columns)
        windows.append(values.shape)
        return values

    monkeypatch.setattr(Raster, "read", spy)
    decoded = imageio._decoded  # masks are decoded whole (the crop centre needs them), photos never

    def photos_never(image, path, what):
        assert what != "image", f"photo {path} decoded whole"
        return decoded(image, path, what)

    monkeypatch.setattr(imageio, "_decoded", photos_never)
    for index in range(9):
        item = dataset[index % 3]
        assert item["image"].shape == (3, 32, 32)
    assert windows == [(3, 32, 32)] * 9, "every crop reads its 32x32 window, never the 256x320 photo"


def test_without_rasterio_one_line_says_what_to_install(trained_run, tmp_path, monkeypatch):
    photo = write_geotiff(tmp_path / "scene.tif")
    bands = tmp_path / "bands.tif"
    tifffile.imwrite(bands, np.zeros((4, 8, 9), np.uint16), photometric="minisblack", planarconfig="separate")
    monkeypatch.setitem(sys.modules, "rasterio", None)  # `import rasterio` raises ImportError
    result = invoke("predict", trained_run, photo, "-o", tmp_path / "out", "--mask-format", "tiff")
    assert result.exit_code == 2
    assert error_line(result).endswith("needs rasterio, which is not installed: pip install segkit[geo]")
    assert not (tmp_path / "out").exists(), "said before anything is written"
    image = read_image(photo)  # an RGB GeoTIFF is read whole, as before
    assert isinstance(image, Image.Image) and image.size == (WIDTH, HEIGHT)
    with pytest.raises(DataError, match=r"bands\.tif is a 4-band uint16 TIFF; .*pip install segkit\[geo\]$"):
        read_image(bands)
    assert check_image_file(bands) == (8, 9), "recognised without rasterio: its check stays valid"
