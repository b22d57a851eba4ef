"""Model catalog of the local IndoxRouter-compatible server.

One table drives validation, pricing, pixel sizes and the /models listing, so the three can
never disagree. Prices are USD per image, modelled on the providers' public list prices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Pixel size for each aspect ratio an aspect-ratio model (Imagen) accepts.
ASPECT_PIXELS: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "3:4": (768, 1024),
    "4:3": (1024, 768),
    "9:16": (576, 1024),
    "16:9": (1024, 576),
}

RESPONSE_FORMATS = ("url", "b64_json")


@dataclass(frozen=True)
class ImageModel:
    """An image model: what it accepts and what it costs."""

    provider: str
    name: str
    description: str
    sizes: tuple[str, ...] = ()
    aspect_ratios: tuple[str, ...] = ()
    qualities: tuple[str, ...] = ()
    styles: tuple[str, ...] = ()
    max_n: int = 10
    base_price: float = 0.04
    #: (size or "*", quality or "*") -> price; the first matching entry wins.
    price_table: tuple[tuple[str, str, float], ...] = ()
    b64_only: bool = False
    #: Template for the revised prompt; None means the model returns no revised_prompt.
    revision: str | None = None
    extras: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.provider}/{self.name}"

    @property
    def default_size(self) -> str | None:
        return self.sizes[0] if self.sizes else None

    @property
    def default_aspect_ratio(self) -> str | None:
        return self.aspect_ratios[0] if self.aspect_ratios else None

    @property
    def default_quality(self) -> str | None:
        return self.qualities[0] if self.qualities else None

    @property
    def default_style(self) -> str | None:
        return self.styles[0] if self.styles else None

    def price(self, size: str | None, quality: str | None) -> float:
        """Price of one image at this size/quality (falls back to the base price)."""
        for s, q, p in self.price_table:
            if s in ("*", size) and q in ("*", quality):
                return p
        return self.base_price

    def pixels(self, size: str | None, aspect_ratio: str | None) -> tuple[int, int]:
        """Width and height in pixels for an (already validated) size or aspect ratio."""
        if self.aspect_ratios:
            return ASPECT_PIXELS[aspect_ratio or self.aspect_ratios[0]]
        size = size or self.sizes[0]
        if size == "auto":
            return (1024, 1024)
        w, h = size.lower().split("x")
        return int(w), int(h)

    def revise(self, prompt: str) -> str | None:
        """Deterministic 'revised prompt', like DALL-E 3's rewrite; plain formatting only."""
        if self.revision is None:
            return None
        core = " ".join(prompt.split()).rstrip(" .!?,;:")
        prefix, _, suffix = self.revision.partition("{prompt}")
        # Revising a revised prompt (the panel's "Use revised prompt") must not wrap it twice.
        if prefix and core.lower().startswith(prefix.lower()):
            core = core[len(prefix):]
        if suffix and core.lower().endswith(suffix.lower()):
            core = core[: -len(suffix)]
        if prefix and len(core) > 1 and core[0].isupper() and (core[1].islower() or core[1] == " "):
            core = core[0].lower() + core[1:]  # "… of a red fox", but "… of NASA"
        return self.revision.format(prompt=core)

    def to_dict(self) -> dict[str, Any]:
        """The model's entry in the /api/v1/models listing."""
        return {
            "modelName": self.name,
            "type": "image_generation",
            "sizes": list(self.sizes),
            "qualities": list(self.qualities),
            "styles": list(self.styles),
            "aspect_ratios": list(self.aspect_ratios),
            "max_n": self.max_n,
            "default_size": self.default_size,
            "default_quality": self.default_quality,
            "default_style": self.default_style,
            "response_formats": ["b64_json"] if self.b64_only else list(RESPONSE_FORMATS),
            "supported_extras": list(self.extras),
            "pricing": {
                "per_image": self.base_price,
                "currency": "USD",
                "table": [{"size": s, "quality": q, "per_image": p} for s, q, p in self.price_table],
            },
            "description": self.description,
        }


@dataclass(frozen=True)
class Provider:
    """A provider with its image models and one non-image model (so clients must filter)."""

    name: str
    display_name: str
    image_models: tuple[ImageModel, ...]
    other_models: tuple[dict[str, Any], ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "display_name": self.display_name,
            "models": [m.to_dict() for m in self.image_models] + [dict(m) for m in self.other_models],
        }


_DALLE3_REVISION = (
    "A detailed, high-resolution digital illustration of {prompt}, "
    "with soft natural lighting and a balanced composition"
)

PROVIDERS: dict[str, Provider] = {
    p.name: p
    for p in (
        Provider(
            "openai",
            "OpenAI",
            (
                ImageModel(
                    "openai", "dall-e-2", "DALL-E 2: fast, square images at three sizes.",
                    sizes=("1024x1024", "512x512", "256x256"),
                    max_n=10, base_price=0.02,
                    price_table=(("256x256", "*", 0.016), ("512x512", "*", 0.018), ("1024x1024", "*", 0.02)),
                ),
                ImageModel(
                    "openai", "dall-e-3", "DALL-E 3: rewrites the prompt; one image per request.",
                    sizes=("1024x1024", "1792x1024", "1024x1792"),
                    qualities=("standard", "hd"), styles=("vivid", "natural"),
                    max_n=1, base_price=0.04,
                    price_table=(
                        ("1024x1024", "standard", 0.04),
                        ("*", "standard", 0.08),
                        ("1024x1024", "hd", 0.08),
                        ("*", "hd", 0.12),
                    ),
                    revision=_DALLE3_REVISION,
                ),
                ImageModel(
                    "openai", "gpt-image-1", "GPT Image 1: answers with base64 only, never a URL.",
                    sizes=("1024x1024", "1536x1024", "1024x1536", "auto"),
                    qualities=("auto", "low", "medium", "high"),
                    max_n=10, base_price=0.042,
                    price_table=(("*", "low", 0.011), ("*", "medium", 0.042), ("*", "high", 0.167),
                                 ("*", "auto", 0.042)),
                    b64_only=True,
                    extras=("background", "moderation", "output_compression", "output_format"),
                ),
            ),
            ({"modelName": "gpt-4o-mini", "type": "text_completions",
              "pricing": {"input_per_1k": 0.00015, "output_per_1k": 0.0006},
              "description": "Small chat model (not an image model)."},),
        ),
        Provider(
            "google",
            "Google",
            (
                ImageModel(
                    "google", "imagen-3.0-generate-002", "Imagen 3: takes aspect_ratio, ignores size.",
                    aspect_ratios=tuple(ASPECT_PIXELS), max_n=10, base_price=0.03,
                    revision="A vivid, photorealistic rendering of {prompt}, captured with crisp detail and rich color",
                    extras=("negative_prompt", "seed", "guidance_scale", "safety_filter_level",
                            "person_generation", "enhance_prompt", "add_watermark"),
                ),
            ),
            ({"modelName": "gemini-1.5-flash", "type": "text_completions",
              "pricing": {"input_per_1k": 0.000075, "output_per_1k": 0.0003},
              "description": "Fast multimodal chat model (not an image model)."},),
        ),
        Provider(
            "xai",
            "xAI",
            tuple(
                ImageModel(
                    "xai", name, "Grok 2 Image: fixed 1024x768 output.",
                    sizes=("1024x768",), max_n=10, base_price=0.07,
                    revision="{prompt}. Rendered in striking detail with dramatic, cinematic lighting",
                )
                for name in ("grok-2-image", "grok-2-image-1212")
            ),
            ({"modelName": "grok-2", "type": "text_completions",
              "pricing": {"input_per_1k": 0.002, "output_per_1k": 0.01},
              "description": "Chat model (not an image model)."},),
        ),
        Provider(
            "stability",
            "Stability AI",
            (
                ImageModel(
                    "stability", "stable-diffusion-xl", "Stable Diffusion XL: negative prompts, seeds, guidance.",
                    sizes=("1024x1024", "1152x896", "896x1152", "1216x832", "832x1216", "512x512"),
                    max_n=10, base_price=0.04,
                    revision="{prompt}, highly detailed, sharp focus, professional artwork",
                    extras=("negative_prompt", "seed", "guidance_scale"),
                ),
            ),
            ({"modelName": "stable-video-diffusion", "type": "video_generation",
              "pricing": {"per_video": 0.2},
              "description": "Image-to-video model (not an image generation model)."},),
        ),
    )
}


def find_model(provider: str, name: str) -> ImageModel | None:
    """The image model `provider/name`, or None (providers are matched case-insensitively)."""
    p = PROVIDERS.get(provider.lower())
    if p is None:
        return None
    for m in p.image_models:
        if m.name == name:
            return m
    return None


def find_any_model(provider: str, name: str) -> dict[str, Any] | None:
    """The listing entry of any model (image or not) of a provider, or None."""
    p = PROVIDERS.get(provider.lower())
    if p is None:
        return None
    for entry in p.to_dict()["models"]:
        if entry["modelName"] == name:
            return entry
    return None


def listing() -> list[dict[str, Any]]:
    """The body of GET /api/v1/models/."""
    return [p.to_dict() for p in PROVIDERS.values()]
