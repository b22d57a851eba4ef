"""Typed views of the API's answers that still behave like the plain JSON the seed shows."""

from __future__ import annotations

import copy
import json
import math
import pathlib
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ._download import VerifiedImage, decode_b64_image, fetch_image

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif"}


class GeneratedImage:
    """One image of a result. ``data`` is fetched once, on first use, then kept."""

    def __init__(self, item: Mapping[str, Any], index: int) -> None:
        self._item = item
        # The item is the server's JSON: take only values of the expected type.
        raw_index = item.get("index")
        self.index: int = raw_index if isinstance(raw_index, int) and not isinstance(raw_index, bool) \
            and raw_index >= 0 else index
        self.url: str | None = _text(item.get("url"))
        self.revised_prompt: str | None = _text(item.get("revised_prompt"))
        self._verified: VerifiedImage | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_bytes(cls, data: bytes, *, index: int = 0, revised_prompt: str | None = None,
                   url: str | None = None) -> GeneratedImage:
        """An image whose bytes we already hold (from the gallery, or from a test)."""
        from ._download import verify_image

        image = cls({"url": url, "revised_prompt": revised_prompt, "index": index}, index)
        image._verified = verify_image(data, source=f"image {index}")
        return image

    @classmethod
    def from_stored(cls, data: bytes, *, mime_type: str, width: int, height: int, index: int = 0,
                    revised_prompt: str | None = None) -> GeneratedImage:
        """An image from the gallery: verified when it arrived and sha256-checked on reading,
        so it is not decoded again (a cache hit must cost next to nothing)."""
        image = cls({"revised_prompt": revised_prompt, "index": index}, index)
        image._verified = VerifiedImage(data, mime_type, width, height)
        return image

    def _load(self) -> VerifiedImage:
        with self._lock:
            if self._verified is None:
                payload = self._item.get("b64_json")
                if payload:
                    self._verified = decode_b64_image(payload, index=self.index)
                elif self.url:
                    self._verified = fetch_image(self.url)
                else:
                    from .errors import ImageDownloadError

                    raise ImageDownloadError(f"image {self.index} has neither a url nor b64_json")
            return self._verified

    @property
    def loaded(self) -> bool:
        """True once the bytes are in memory (no request needed to use them)."""
        return self._verified is not None

    @property
    def data(self) -> bytes:
        return self._load().data

    @property
    def mime_type(self) -> str:
        return self._load().mime_type

    @property
    def width(self) -> int:
        return self._load().width

    @property
    def height(self) -> int:
        return self._load().height

    @property
    def extension(self) -> str:
        return EXTENSIONS.get(self.mime_type, ".img")

    def to_pil(self) -> PILImage:
        import io

        from PIL import Image

        img = Image.open(io.BytesIO(self.data))
        img.load()
        return img

    def save(self, path_or_dir: str | pathlib.Path) -> pathlib.Path:
        """Write the original bytes to a file path, or into a directory as ``image_<index><ext>``.

        A name we choose never overwrites a different image (``image_0-2.png`` instead)."""
        path = pathlib.Path(path_or_dir).expanduser()
        if path.is_dir():
            return self._save_as(path / f"image_{self.index}{self.extension}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.data)
        return path

    def _save_as(self, path: pathlib.Path) -> pathlib.Path:
        """``path``, or the first ``stem-N`` beside it that is free or already holds these bytes."""
        data = self.data
        candidate, number = path, 1
        while candidate.exists() and candidate.read_bytes() != data:
            number += 1
            candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
        candidate.parent.mkdir(parents=True, exist_ok=True)
        if not candidate.exists():
            candidate.write_bytes(data)
        return candidate

    def __repr__(self) -> str:
        parts = [f"index={self.index}"]
        if self.url:  # without the query: signed provider URLs carry their token there
            bare = self.url.split("?", 1)[0]
            shown = bare if len(bare) <= 60 else bare[:57] + "…"
            parts.append(f"url={shown!r}")
        if self.revised_prompt:
            rp = self.revised_prompt
            parts.append(f"revised_prompt={(rp if len(rp) <= 50 else rp[:47] + '…')!r}")
        if self._verified is not None:
            v = self._verified
            parts.append(f"{v.width}x{v.height} {v.mime_type}, {len(v.data):,} bytes")
        elif self._item.get("b64_json"):
            parts.append("b64_json=<not decoded>")
        return f"GeneratedImage({', '.join(parts)})"


class ImageResult(Mapping[str, Any]):
    """The response JSON, read-only, plus typed access to what a notebook user needs.

    ``result["data"][0]["url"]`` works as in the seed; ``result.images[0].data`` gives bytes.
    """

    #: True when the gallery served this result from disk: no request was sent, nothing paid.
    from_gallery: bool = False
    #: For a gallery hit, what the original generation cost.
    original_cost: float | None = None
    #: Which server answered, as the gallery's cache key scopes it (None: IndoxRouter itself).
    server: str | None = None

    def __init__(
        self,
        response: Mapping[str, Any],
        *,
        model: str | None = None,
        prompt: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        self._raw: dict[str, Any] = copy.deepcopy(dict(response))
        items = self._raw.get("data") or []
        self.images: list[GeneratedImage] = [
            GeneratedImage(item, i) for i, item in enumerate(items) if isinstance(item, Mapping)
        ]
        self.prompt: str | None = prompt
        self.params: dict[str, Any] = dict(params or {})
        self._requested_model = model

    # Mapping protocol: the JSON as received.
    def __getitem__(self, key: str) -> Any:
        return self._raw[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self._raw)

    @property
    def model(self) -> str | None:
        """``provider/name`` of the model that answered."""
        name, provider = self._raw.get("model"), self._raw.get("provider")
        if name and "/" in str(name):
            return str(name)
        if name and provider:
            return f"{provider}/{name}"
        return self._requested_model or (str(name) if name else None)

    @property
    def provider(self) -> str | None:
        if self._raw.get("provider"):
            return str(self._raw["provider"])
        model = self.model
        return model.split("/", 1)[0] if model and "/" in model else None

    @property
    def cost(self) -> float | None:
        usage = self._raw.get("usage")
        if isinstance(usage, Mapping):
            breakdown = usage.get("cost_breakdown")
            total = breakdown.get("total_cost") if isinstance(breakdown, Mapping) else None
            for value in (usage.get("cost"), total):
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    return float(value)
        return None

    @property
    def request_id(self) -> str | None:
        value = self._raw.get("request_id")
        return str(value) if value is not None else None

    @property
    def created(self) -> datetime | None:
        """When the server made the images, from ``created`` (epoch) or ``created_at`` (ISO)."""
        stamp = self._raw.get("created")
        if isinstance(stamp, (int, float)) and not isinstance(stamp, bool):
            try:
                return datetime.fromtimestamp(stamp, tz=timezone.utc)
            except (OverflowError, OSError, ValueError):
                return None
        text = self._raw.get("created_at")
        if isinstance(text, str):
            try:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                return None
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
        return None

    def save(self, directory: str | pathlib.Path, prefix: str | None = None) -> list[pathlib.Path]:
        """Write every image's original bytes into ``directory``; returns the paths."""
        folder = pathlib.Path(directory).expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        stem = _safe_stem(prefix) if prefix else f"indox_{(self.request_id or 'image')[:8]}"
        return [img._save_as(folder / f"{stem}_{img.index}{img.extension}") for img in self.images]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ImageResult):
            return self._raw == other._raw
        return Mapping.__eq__(self, other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        cost = f"${self.cost:.3f}" if self.cost is not None else "cost unknown"
        return f"<ImageResult {self.model} · {len(self.images)} image(s) · {cost}>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        from .render import result_mimebundle  # display code loads on first display only

        return result_mimebundle(self)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _safe_stem(prefix: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", prefix).strip("._")
    return stem or "image"


@dataclass(frozen=True)
class ImageModel:
    """An image-generation model as the router lists it."""

    id: str
    provider: str
    name: str
    sizes: tuple[str, ...] = ()
    qualities: tuple[str, ...] = ()
    styles: tuple[str, ...] = ()
    aspect_ratios: tuple[str, ...] = ()
    max_n: int | None = None
    price: float | None = None
    details: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __str__(self) -> str:
        return self.id


def dumps_compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)
