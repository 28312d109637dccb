"""Photos for the tests, made here: a camera-like JPEG with EXIF and GPS, hostile files."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

from PIL import ExifTags, Image

GPS_LAT = ((48, 1), (7, 1), (1234, 100))


def camera_jpeg(size: tuple[int, int] = (800, 600), orientation: int | None = None,
                color: tuple[int, int, int] = (30, 140, 60)) -> bytes:
    """A JPEG as a phone writes it: maker, model, serial, date and a GPS position in EXIF."""
    image = Image.new("RGB", size, color)
    image.paste((200, 30, 30), (0, 0, size[0] // 4, size[1] // 4))  # a corner, to see orientation
    exif = image.getexif()
    exif[ExifTags.Base.Make] = "Fairphone"
    exif[ExifTags.Base.Model] = "FP5"
    exif[ExifTags.Base.BodySerialNumber] = "SN-0042-SECRET"
    exif[ExifTags.Base.DateTime] = "2026:12:06 08:15:00"
    if orientation:
        exif[ExifTags.Base.Orientation] = orientation
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (48.0, 7.0, 12.34)
    gps[ExifTags.GPS.GPSLongitudeRef] = "W"
    gps[ExifTags.GPS.GPSLongitude] = (1.0, 40.0, 56.0)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, exif=exif, comment=b"taken at 12 rue des Lavoirs")
    return out.getvalue()


def png(size: tuple[int, int] = (64, 48), mode: str = "RGB", text: dict[str, str] | None = None) -> bytes:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for k, v in (text or {}).items():
        info.add_text(k, v)
    out = io.BytesIO()
    Image.new(mode, size, (0, 0, 255, 128) if mode == "RGBA" else (0, 0, 255)).save(out, "PNG", pnginfo=info)
    return out.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int, height: int) -> bytes:
    """A few hundred bytes whose header promises width x height pixels (grey, 8 bits)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (width + 1) * 4, 9)  # a few rows: enough to start decoding
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", rows) + _chunk(b"IEND", b"")


def jpeg_with_zip() -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("payload.html", "<script>alert(document.cookie)</script>")
    return camera_jpeg() + archive.getvalue()


def jpeg_with_html() -> bytes:
    return camera_jpeg() + b"<html><body><script>fetch('/relais/')</script></body></html>"


def jpeg_with_comment_script() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(out, "JPEG", comment=b"<script>alert(1)</script>")
    return out.getvalue()


def gif_html_polyglot() -> bytes:
    """A GIF that browsers also run as HTML: the markup hides in a comment extension."""
    out = io.BytesIO()
    Image.new("P", (32, 32), 1).save(out, "GIF", comment=b"<html><script>alert(1)</script></html>")
    return out.getvalue()


SVG = (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="100" height="100">'
       b'<script>alert(1)</script><rect width="100" height="100"/></svg>')
PDF_NAMED_JPG = b"%PDF-1.7\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
