"""A photo is kept stripped and re-encoded, or refused with a clear error (one test per hostile case)."""

from __future__ import annotations

import io

import exifread
import pytest
from photo_helpers import (
    PDF_NAMED_JPG,
    SVG,
    camera_jpeg,
    gif_html_polyglot,
    jpeg_with_comment_script,
    jpeg_with_html,
    jpeg_with_zip,
    png,
    png_bomb,
)
from PIL import ExifTags, Image

from veille.photos.sanitise import PhotoRefused, sanitise
from veille.photos.settings import PhotoSettings

SETTINGS = PhotoSettings()


def refusal(data: bytes, settings: PhotoSettings = SETTINGS) -> PhotoRefused:
    with pytest.raises(PhotoRefused) as err:
        sanitise(data, settings)
    return err.value


def test_exif_and_gps_are_stripped_and_the_photo_re_encoded() -> None:
    original = camera_jpeg()
    exif = Image.open(io.BytesIO(original)).getexif()
    # the input has them
    assert exif[ExifTags.Base.Make] == "Fairphone" and exif.get_ifd(ExifTags.IFD.GPSInfo)

    clean = sanitise(original, SETTINGS)

    image = Image.open(io.BytesIO(clean.data))
    assert image.format == "JPEG" and (clean.width, clean.height) == (800, 600) == image.size
    assert len(image.getexif()) == 0 and not image.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    assert "exif" not in image.info and "icc_profile" not in image.info and "comment" not in image.info
    # A second reader, on the bytes themselves: no EXIF tag at all, no GPS, no serial.
    assert exifread.process_file(io.BytesIO(clean.data), details=False) == {}
    assert b"Exif\x00\x00" not in clean.data and b"SN-0042-SECRET" not in clean.data
    assert b"Lavoirs" not in clean.data and b"Fairphone" not in clean.data
    assert clean.data != original and clean.sha256 == __import__("hashlib").sha256(clean.data).hexdigest()


def test_orientation_is_applied_to_the_pixels_before_exif_goes() -> None:
    clean = sanitise(camera_jpeg(orientation=6), SETTINGS)  # rotated 90° by the camera
    assert (clean.width, clean.height) == (600, 800)


def test_png_text_chunks_are_dropped_and_transparency_flattened() -> None:
    clean = sanitise(png(mode="RGBA", text={"Author": "Jeanne Martin", "GPS": "48.1,-1.7"}), SETTINGS)
    image = Image.open(io.BytesIO(clean.data))
    assert image.format == "JPEG" and image.mode == "RGB" and b"Jeanne" not in clean.data


def test_large_photos_are_kept_at_the_stored_side() -> None:
    clean = sanitise(camera_jpeg(size=(3000, 2000)), SETTINGS.model_copy(update={"stored_side": 1500}))
    assert (clean.width, clean.height) == (1500, 1000)


def test_same_photo_gives_the_same_digest() -> None:
    data = camera_jpeg()
    assert sanitise(data, SETTINGS).sha256 == sanitise(data, SETTINGS).sha256


def test_malformed_truncated_jpeg_is_refused() -> None:
    data = camera_jpeg()
    err = refusal(data[: len(data) // 2])
    assert err.code == "malformed" and "illisible ou incomplète" in str(err)


def test_malformed_header_is_refused() -> None:
    err = refusal(b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + b"\xff" * 30)
    assert err.code == "malformed"


def test_oversized_file_is_refused() -> None:
    err = refusal(camera_jpeg(), SETTINGS.model_copy(update={"max_bytes": 5_000}))
    assert err.code == "too_large" and "trop lourde" in str(err)


def test_decompression_bomb_is_refused_from_its_header_before_decoding() -> None:
    bomb = png_bomb(100_000, 100_000)  # 10 gigapixels in a few hundred bytes
    assert len(bomb) < 2_000
    err = refusal(bomb)
    assert err.code == "too_many_pixels" and "trop grande" in str(err)


def test_decompression_bomb_is_refused_by_pillows_guard_too() -> None:
    # Our side bound out of the way: Pillow's MAX_IMAGE_PIXELS (= max_pixels) refuses it at open.
    settings = SETTINGS.model_copy(update={"max_side": 10**6, "max_pixels": 10_000_000})
    err = refusal(png_bomb(20_000, 20_000), settings)
    assert err.code == "too_many_pixels"
    assert Image.MAX_IMAGE_PIXELS == 10_000_000


def test_too_many_pixels_on_one_side_is_refused() -> None:
    err = refusal(png(size=(13_000, 20)))
    assert err.code == "too_many_pixels" and "13000 x 20" in str(err)


def test_tiny_image_is_refused() -> None:
    assert refusal(png(size=(4, 4))).code == "too_small"


def test_jpeg_with_a_zip_appended_is_refused_as_polyglot() -> None:
    err = refusal(jpeg_with_zip())
    assert err.code == "polyglot" and "archive ZIP" in str(err)


def test_jpeg_with_html_appended_is_refused_as_polyglot() -> None:
    err = refusal(jpeg_with_html())
    assert err.code == "polyglot" and "HTML ou du script" in str(err)


def test_jpeg_with_script_in_its_comment_is_refused_as_polyglot() -> None:
    err = refusal(jpeg_with_comment_script())
    assert err.code == "polyglot" and "métadonnées" in str(err)


def test_gif_html_polyglot_is_refused() -> None:
    data = gif_html_polyglot()
    assert Image.open(io.BytesIO(data)).format == "GIF"  # a real GIF...
    err = refusal(data)  # ...that is also a page
    assert err.code == "polyglot"


def test_svg_is_refused_as_a_document() -> None:
    err = refusal(SVG)
    assert err.code == "markup" and "SVG, HTML ou XML" in str(err)


def test_wrong_type_by_content_is_refused_whatever_its_name() -> None:
    err = refusal(PDF_NAMED_JPG)  # uploaded as "photo.jpg", image/jpeg: the bytes decide
    assert err.code == "unsupported_type" and "quel que soit son nom" in str(err)


def test_bytes_after_the_image_that_are_not_hostile_are_dropped_by_the_re_encode() -> None:
    motion = camera_jpeg() + b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40  # a "motion photo"
    clean = sanitise(motion, SETTINGS)
    assert clean.dropped_bytes > 10_000 and b"ftypmp42" not in clean.data


def test_empty_upload_is_refused() -> None:
    assert refusal(b"").code == "empty"
