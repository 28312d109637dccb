"""What an uploaded photo may be, and what is kept of it: checked by content, re-encoded clean.

Nothing the uploader says is believed: not the file name, not the declared type. In order:

1. size: at most ``max_bytes`` (``too_large``);
2. type, by the first bytes: JPEG, PNG, WebP or GIF; anything else, SVG and HTML included,
   is ``unsupported_type`` (an SVG is a document that runs script, not a photo);
3. structure, walked without decoding: JPEG segments to the end-of-image marker, PNG chunks
   to IEND, the RIFF length of WebP. Markup or script in a metadata segment, a GIF, or after
   the image's end, and a ZIP or PDF appended after it, make a *polyglot*, refused
   (``polyglot``); other bytes after the end (a phone's "motion photo" video) are dropped by
   the re-encode; a walk that does not reach the end is ``malformed``;
4. pixels, from the header, before decoding: Pillow's decompression-bomb guard
   (``Image.MAX_IMAGE_PIXELS`` = ``max_pixels``, its warning raised as an error) and our bounds
   on the sides (``too_many_pixels``, ``too_small``);
5. decoding (first frame only); any failure, a truncated file included, is ``malformed``;
6. re-encoding: orientation applied to the pixels, transparency flattened on white, at most
   ``stored_side`` pixels on the longest side, written as a new baseline JPEG from the bare
   pixels: no EXIF (so no GPS position, no camera serial), no XMP, no ICC profile, no
   comment, nothing appended survives.

The kept photo is identified by the SHA-256 of the re-encoded bytes (:class:`CleanPhoto`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from veille.photos.settings import PhotoSettings

MEDIA_TYPE = "image/jpeg"  # what is kept, whatever was sent
MESSAGES = {
    "empty": "La photo est vide.",
    "too_large": "La photo est trop lourde ({size} Mo ; au plus {limit} Mo).",
    "unsupported_type": "Ce fichier n'est pas une photo acceptée (JPEG, PNG, WebP ou GIF), "
                        "quel que soit son nom.",
    "markup": "Ce fichier est un document (SVG, HTML ou XML), pas une photo : il est refusé.",
    "polyglot": "Ce fichier contient autre chose qu'une image ({what}) : il est refusé.",
    "malformed": "Cette photo est illisible ou incomplète ({detail}).",
    "too_many_pixels": "Cette image est trop grande ({width} x {height} pixels ; au plus {limit} "
                       "mégapixels et {side} pixels de côté).",
    "too_small": "Cette image est trop petite ({width} x {height} pixels ; au moins {side} de côté).",
}
_MARKUP = re.compile(rb"<(?:script|html|!doctype|iframe|svg|body|object|embed)[\s>/]|javascript:",
                     re.IGNORECASE)
_APPENDED = ((b"PK\x03\x04", "une archive ZIP"), (b"%PDF-", "un document PDF"))
_TEXT_START = re.compile(rb"^(?:\xef\xbb\xbf)?\s*<", re.DOTALL)


class PhotoRefused(ValueError):
    """A photo that is not kept; ``code`` is stable, the message is French, for the person."""

    def __init__(self, code: str, **values: object) -> None:
        super().__init__(MESSAGES[code].format(**values) if values else MESSAGES[code])
        self.code = code


@dataclass(frozen=True)
class CleanPhoto:
    data: bytes  # the re-encoded JPEG
    width: int
    height: int
    dropped_bytes: int = 0  # bytes after the image's end that the re-encode left out

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def media_type(self) -> str:
        return MEDIA_TYPE


def sniff(data: bytes) -> str | None:
    """The Pillow format of ``data`` by its magic bytes, or None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    return None


def _malformed(detail: str) -> PhotoRefused:
    return PhotoRefused("malformed", detail=detail)


def _jpeg_walk(data: bytes) -> tuple[int, list[bytes]]:
    """(offset after the end-of-image marker, metadata segments: APPn and comments)."""
    i, n = 2, len(data)
    meta: list[bytes] = []
    while i < n:
        if data[i] != 0xFF:
            raise _malformed("segment JPEG attendu")
        while i < n and data[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            break
        marker = data[i]
        i += 1
        if marker == 0xD9:  # EOI
            return i, meta
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # no length
            continue
        if i + 2 > n:
            break
        length = int.from_bytes(data[i:i + 2], "big")
        if length < 2 or i + length > n:
            raise _malformed("segment JPEG tronqué")
        if 0xE0 <= marker <= 0xEF or marker == 0xFE:
            meta.append(data[i + 2:i + length])
        i += length
        if marker == 0xDA:  # entropy-coded data up to the next real marker
            while True:
                j = data.find(b"\xff", i)
                if j < 0 or j + 1 >= n:
                    raise _malformed("fin d'image JPEG absente")
                following = data[j + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7:
                    i = j + 2
                elif following == 0xFF:
                    i = j + 1
                else:
                    i = j
                    break
    raise _malformed("fin d'image JPEG absente")


def _png_walk(data: bytes) -> tuple[int, list[bytes]]:
    i, n = 8, len(data)
    meta: list[bytes] = []
    while i + 12 <= n:
        length = int.from_bytes(data[i:i + 4], "big")
        kind = data[i + 4:i + 8]
        end = i + 12 + length
        if end > n:
            raise _malformed("bloc PNG tronqué")
        if kind in (b"tEXt", b"iTXt", b"zTXt", b"eXIf"):
            meta.append(data[i + 8:i + 8 + length])
        i = end
        if kind == b"IEND":
            return i, meta
    raise _malformed("fin d'image PNG absente")


def _webp_walk(data: bytes) -> tuple[int, list[bytes]]:
    size = int.from_bytes(data[4:8], "little")
    end = 8 + size + (size & 1)
    if end > len(data) + (size & 1):
        raise _malformed("image WebP tronquée")
    return min(end, len(data)), []


def _structure(data: bytes, fmt: str) -> int:
    """Refuses polyglots; returns how many bytes after the image's end the re-encode drops."""
    if fmt == "GIF":  # no end to find cheaply: the whole (small) file must hold no markup
        if _MARKUP.search(data):
            raise PhotoRefused("polyglot", what="du HTML ou du script")
        return 0
    end, meta = {"JPEG": _jpeg_walk, "PNG": _png_walk, "WEBP": _webp_walk}[fmt](data)
    if any(_MARKUP.search(segment) for segment in meta):
        raise PhotoRefused("polyglot", what="du HTML ou du script dans ses métadonnées")
    trailing = data[end:]
    if trailing.strip(b"\x00 \r\n\t"):
        for magic, what in _APPENDED:
            if magic in trailing:
                raise PhotoRefused("polyglot", what=what)
        if _MARKUP.search(trailing):
            raise PhotoRefused("polyglot", what="du HTML ou du script après l'image")
    return len(trailing)


def _decode(data: bytes, fmt: str, settings: PhotoSettings) -> Image.Image:
    Image.MAX_IMAGE_PIXELS = settings.max_pixels  # Pillow's own guard, on our bound
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=[fmt])
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise PhotoRefused("too_many_pixels", width="?", height="?", limit=settings.max_pixels // 10**6,
                               side=settings.max_side) from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
            raise _malformed(type(exc).__name__) from None
        width, height = image.size
        if width * height > settings.max_pixels or max(width, height) > settings.max_side:
            raise PhotoRefused("too_many_pixels", width=width, height=height,
                               limit=settings.max_pixels // 10**6, side=settings.max_side)
        if min(width, height) < settings.min_side:
            raise PhotoRefused("too_small", width=width, height=height, side=settings.min_side)
        try:
            image.load()  # the first frame; a truncated file raises (LOAD_TRUNCATED_IMAGES is off)
        except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombWarning) as exc:
            raise _malformed(type(exc).__name__) from None
    return image


def _reencode(image: Image.Image, settings: PhotoSettings) -> tuple[bytes, int, int]:
    # The pixels as the camera meant them (then no EXIF); an unreadable orientation tag: as stored.
    with contextlib.suppress(ValueError, OSError, SyntaxError):
        image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        image = flat
    image = image.convert("RGB")
    image.thumbnail((settings.stored_side, settings.stored_side), Image.Resampling.LANCZOS)
    # A new image from the bare pixels: nothing of the original's info (exif, icc_profile,
    # comment, xmp) can reach the encoder.
    bare = Image.frombytes("RGB", image.size, image.tobytes())
    out = io.BytesIO()
    bare.save(out, "JPEG", quality=settings.jpeg_quality, optimize=True)
    return out.getvalue(), bare.width, bare.height


def sanitise(data: bytes, settings: PhotoSettings) -> CleanPhoto:
    """The clean photo of an upload, or :class:`PhotoRefused` saying why not."""
    if not data:
        raise PhotoRefused("empty")
    if len(data) > settings.max_bytes:
        raise PhotoRefused("too_large", size=f"{len(data) / 2**20:.1f}",
                           limit=f"{settings.max_bytes / 2**20:g}")
    fmt = sniff(data)
    if fmt is None:
        raise PhotoRefused("markup" if _TEXT_START.match(data[:1024]) else "unsupported_type")
    dropped = _structure(data, fmt)
    image = _decode(data, fmt, settings)
    try:
        encoded, width, height = _reencode(image, settings)
    except (OSError, ValueError) as exc:
        raise _malformed(type(exc).__name__) from None
    return CleanPhoto(encoded, width, height, dropped)
