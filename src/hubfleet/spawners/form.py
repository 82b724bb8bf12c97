"""The spawn form: profile cards (resources, GPU badge, image picker) and the form-data parser.

Both halves are free of tornado and kubernetes code: :func:`build_cards` turns profiles and quota counts into plain
view data, :func:`render_form` renders them with the bundled Jinja template and CSS, and
:func:`form_to_user_options` turns posted form fields back into ``user_options`` (which the spawner then validates
exactly like a REST API request).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from .profiles import (
    USER_OPTION_KEYS,
    ChoiceError,
    Profile,
    Quota,
    QuotaCounts,
    format_bytes,
    format_cpu,
    quota_violation,
)

__all__ = ["Card", "OTHER_IMAGE", "build_cards", "form_to_user_options", "query_to_user_options", "render_form"]

#: Value of the image radio button that selects the free-text "other image" field.
OTHER_IMAGE = "__other__"


@dataclass(frozen=True)
class Card:
    """What one profile card shows."""

    slug: str
    display_name: str
    description: str
    resources: tuple[str, ...]
    gpu: str | None
    images: tuple[tuple[str, str, str], ...]  # (slug, display name, image reference)
    other_image_pattern: str | None
    disabled_reason: str | None
    checked: bool
    checked_image: str | None
    other_image_value: str


def _range(low: str, high: str, unit: str) -> str:
    if low and high and low != high:
        return f"{low}–{high} {unit}"
    return f"{high or low} {unit}" if (high or low) else ""


def _resources(profile: Profile) -> tuple[str, ...]:
    parts = [
        _range(format_cpu(profile.cpu_guarantee), format_cpu(profile.cpu_limit), "CPU"),
        _range(format_bytes(profile.mem_guarantee), format_bytes(profile.mem_limit), "RAM"),
    ]
    return tuple(p for p in parts if p)


def build_cards(
    profiles: Sequence[Profile],
    *,
    quotas: Iterable[Quota] = (),
    counts: QuotaCounts | None = None,
    groups: Iterable[str] = (),
    user_options: Mapping | None = None,
) -> list[Card]:
    """One card per (already access-filtered) profile; a profile whose quota is full is disabled with the reason.

    ``user_options`` (the last choice) pre-selects a profile and image when they are still offered and enabled.
    """
    counts = counts or QuotaCounts()
    quotas = tuple(quotas)
    groups = frozenset(groups)
    user_options = user_options if isinstance(user_options, Mapping) else {}
    disabled = {p.slug: quota_violation(quotas, counts, profile=p.slug, groups=groups) for p in profiles}
    enabled = [p for p in profiles if not disabled[p.slug]]
    wanted = user_options.get("profile")
    checked = next((p for p in enabled if p.slug == wanted), None)
    checked = checked or next((p for p in enabled if p.default), None) or (enabled[0] if enabled else None)

    cards = []
    for profile in profiles:
        is_checked = checked is not None and profile.slug == checked.slug
        image_slugs = [i.slug for i in profile.images]
        other_value = ""
        checked_image = profile.default_image.slug if profile.default_image else None
        if is_checked:
            if user_options.get("image") in image_slugs:
                checked_image = user_options["image"]
            elif user_options.get("other_image") and profile.other_image_pattern:
                checked_image, other_value = OTHER_IMAGE, str(user_options["other_image"])
        if checked_image is None and profile.other_image_pattern:
            checked_image = OTHER_IMAGE
        gpu = f"{profile.gpu.count} × GPU" if profile.gpu else None
        cards.append(
            Card(
                slug=profile.slug,
                display_name=profile.display_name,
                description=profile.description,
                resources=_resources(profile),
                gpu=gpu,
                images=tuple((i.slug, i.display_name, i.image) for i in profile.images),
                other_image_pattern=profile.other_image_pattern,
                disabled_reason=disabled[profile.slug],
                checked=is_checked,
                checked_image=checked_image,
                other_image_value=other_value,
            )
        )
    return cards


@lru_cache(maxsize=1)
def _environment():
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(
        loader=PackageLoader("hubfleet.spawners", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


@lru_cache(maxsize=1)
def _css() -> str:
    return resources.files("hubfleet.spawners").joinpath("templates/profiles_form.css").read_text()


def render_form(cards: Sequence[Card], *, message: str = "") -> str:
    """The options-form HTML (inserted by JupyterHub's spawn.html inside its ``<form>``)."""
    template = _environment().get_template("profiles_form.html")
    return template.render(cards=cards, css=_css(), other_image=OTHER_IMAGE, message=message)


_IGNORED_FIELDS = frozenset({"_xsrf"})


def _single(formdata: Mapping, key: str) -> str | None:
    values = formdata.get(key)
    if values is None:
        return None
    if isinstance(values, str):
        return values
    values = list(values)
    if len(values) != 1 or not isinstance(values[0], str):
        raise ChoiceError(f"form field {key!r} must have exactly one value, got {len(values)}")
    return values[0]


def form_to_user_options(formdata: Mapping[str, Sequence[str]]) -> dict:
    """``user_options`` from posted form data (a dict of lists of strings).

    Recognised fields: ``profile``, ``image--<profile>`` and ``other_image--<profile>``; fields of profiles other
    than the chosen one are ignored, any other field is refused (a tampered form). The result still has to pass
    :func:`~hubfleet.spawners.profiles.validate_choice`.
    """
    for key in formdata:
        if key in _IGNORED_FIELDS or key == "profile":
            continue
        if not (key.startswith("image--") or key.startswith("other_image--")):
            raise ChoiceError(f"unknown form field {key!r}")
    profile = _single(formdata, "profile")
    options: dict = {}
    if not profile:
        return options
    options["profile"] = profile
    image = _single(formdata, f"image--{profile}")
    other = (_single(formdata, f"other_image--{profile}") or "").strip()
    if image == OTHER_IMAGE:
        if not other:
            raise ChoiceError("you chose 'Other image' but left the image field empty")
        options["other_image"] = other
    elif image:
        options["image"] = image
    return options


def query_to_user_options(query: Mapping[str, Sequence[str]]) -> dict:
    """``user_options`` from ``/hub/spawn?...`` query arguments: the form's field names, or the flat
    ``user_options`` keys (``?profile=medium&image=scipy``); every value must be given once."""
    if any(key.startswith(("image--", "other_image--")) for key in query):
        return form_to_user_options(query)
    options = {}
    for key in query:
        if key in _IGNORED_FIELDS:
            continue
        if key not in USER_OPTION_KEYS:
            raise ChoiceError(f"unknown option {key!r}; allowed options: {', '.join(USER_OPTION_KEYS)}")
        options[key] = _single(query, key)
    return options
