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
    UNLISTED_SUFFIX,
    ChoiceError,
    Profile,
    Quota,
    QuotaCounts,
    format_bytes,
    format_cpu,
    quota_violation,
)
from .profiles.choice import UNLISTED_VALUE

__all__ = ["Card", "OTHER_IMAGE", "build_cards", "form_to_user_options", "query_to_user_options", "render_form"]

#: Value of the image radio button that selects the free-text "other image" field.
OTHER_IMAGE = "__other__"
#: KubeSpawner's form field prefix for profile options: ``profile-option-<profile>--<option>``.
OPTION_PREFIX = "profile-option-"


@dataclass(frozen=True)
class OptionView:
    """One KubeSpawner profile option as the form shows it (a drop-down, maybe with a free-text field)."""

    name: str
    display_name: str
    choices: tuple[tuple[str, str, bool], ...]  # (slug, display name, selected)
    unlisted_label: str | None  # None: no free-text choice
    unlisted_in_choices: str
    unlisted_regex: str | None
    unlisted_message: str
    unlisted_value: str


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
    options: tuple[OptionView, ...] = ()


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


def _option_views(profile: Profile, user_options: Mapping) -> tuple[OptionView, ...]:
    views = []
    for option in profile.options:
        value = str(user_options.get(option.name + UNLISTED_SUFFIX) or "")
        wanted = user_options.get(option.name)
        if not any(c.slug == wanted for c in option.choices):
            wanted = option.default_choice.slug if option.default_choice and not value else None
        u = option.unlisted
        views.append(OptionView(
            name=option.name, display_name=option.display_name,
            choices=tuple((c.slug, c.display_name, c.slug == wanted and not value) for c in option.choices),
            unlisted_label=(u.display_name or option.display_name) if u else None,
            unlisted_in_choices=u.display_name_in_choices if u else "",
            unlisted_regex=u.validation_regex if u else None,
            unlisted_message=u.validation_message if u else "",
            unlisted_value=value if u else "",
        ))
    return tuple(views)


def build_cards(
    profiles: Sequence[Profile],
    *,
    quotas: Iterable[Quota] = (),
    counts: QuotaCounts | None = None,
    groups: Iterable[str] = (),
    user: str = "",
    user_options: Mapping | None = None,
) -> list[Card]:
    """One card per (already access-filtered) profile; a profile whose quota is full is disabled with the reason,
    unless it queues (``queue: true``: choosing it joins the queue).

    ``user_options`` (the last choice) pre-selects a profile and image when they are still offered and enabled.
    """
    counts = counts or QuotaCounts()
    quotas = tuple(quotas)
    groups = frozenset(groups)
    user_options = user_options if isinstance(user_options, Mapping) else {}
    disabled = {p.slug: None if p.queue else quota_violation(quotas, counts, profile=p.slug, groups=groups, user=user)
                for p in profiles}
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
                options=_option_views(profile, user_options if is_checked else {}),
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
    return template.render(cards=cards, css=_css(), other_image=OTHER_IMAGE, message=message,
                           option_prefix=OPTION_PREFIX, unlisted_value=UNLISTED_VALUE, unlisted_suffix=UNLISTED_SUFFIX)


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

    Recognised fields: ``profile``, ``image--<profile>``, ``other_image--<profile>`` and KubeSpawner's
    ``profile-option-<profile>--<option>`` (with ``--unlisted-choice`` for the free-text value); fields of profiles
    other than the chosen one are ignored, any other field is refused (a tampered form). The result still has to
    pass :func:`~hubfleet.spawners.profiles.validate_choice`.
    """
    for key in formdata:
        if key in _IGNORED_FIELDS or key == "profile":
            continue
        if not key.startswith(("image--", "other_image--", OPTION_PREFIX)):
            raise ChoiceError(f"unknown form field {key!r}")
    profile = _single(formdata, "profile")
    options: dict = {}
    if not profile:
        return options
    options["profile"] = profile
    prefix = f"{OPTION_PREFIX}{profile}--"
    for key in formdata:
        if key.startswith(prefix) and not key.endswith(UNLISTED_SUFFIX):
            name = key[len(prefix):]
            chosen = _single(formdata, key)
            if chosen == UNLISTED_VALUE:
                options[name + UNLISTED_SUFFIX] = (_single(formdata, key + UNLISTED_SUFFIX) or "").strip()
                if not options[name + UNLISTED_SUFFIX]:
                    raise ChoiceError(f"you chose another value for {name!r} but left its field empty")
            else:
                options[name] = chosen
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
    ``user_options`` keys (``?profile=medium&image=scipy``, ``?profile=x&image--unlisted-choice=...``); every
    value must be given once. Which keys the chosen profile knows is checked by ``validate_choice``."""
    if any(key.startswith(("image--", "other_image--", OPTION_PREFIX)) for key in query):
        return form_to_user_options(query)
    return {key: _single(query, key) for key in query if key not in _IGNORED_FIELDS}
