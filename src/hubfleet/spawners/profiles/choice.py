"""Who may use which profile, and a user's choice checked and resolved (the same for the form, query strings and
REST ``user_options`` of either JupyterHub version)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from .model import (
    UNLISTED_SUFFIX,
    AccessDenied,
    ChoiceError,
    Profile,
    ProfileOption,
    ResolvedChoice,
)

#: The value KubeSpawner's form posts for a profile option when its free-text field is used.
UNLISTED_VALUE = "unlisted-choice"


def visible_profiles(profiles: Iterable[Profile], user: str, groups: Iterable[str], is_admin: bool) -> list[Profile]:
    """The profiles this user may use, in declaration order."""
    groups = groups if isinstance(groups, frozenset) else frozenset(groups)
    return [p for p in profiles if p.access.allows(user, groups, is_admin)]


def default_profile(profiles: Sequence[Profile]) -> Profile | None:
    """The profile marked ``default``, else the first (KubeSpawner's rule), among ``profiles``."""
    for profile in profiles:
        if profile.default:
            return profile
    return profiles[0] if profiles else None


def _slugs(items) -> str:
    return ", ".join(item.slug for item in items) or "(none)"


def _check_shape(user_options) -> Mapping:
    if user_options is None:
        return {}
    if not isinstance(user_options, Mapping):
        raise ChoiceError(f"user_options must be an object, got {type(user_options).__name__}")
    _check_strings(user_options, ("profile",))
    return user_options


def _check_strings(user_options: Mapping, keys: Iterable[str]) -> None:
    for key in keys:
        value = user_options.get(key)
        if value is not None and not isinstance(value, str):
            raise ChoiceError(f"option {key!r} must be a string, got {type(value).__name__} {value!r}")


def _resolve_option(option: ProfileOption, user_options: Mapping, profile: Profile) -> tuple[str | None, str | None]:
    """(choice slug, free-text value) for one profile option; exactly one of them is set."""
    value = (user_options.get(option.name + UNLISTED_SUFFIX) or "").strip() or None
    chosen = user_options.get(option.name) or None
    if chosen == UNLISTED_VALUE and value is None:
        raise ChoiceError(f"option {option.name!r} of profile {profile.slug!r}: you chose "
                          f"{(option.unlisted.display_name_in_choices if option.unlisted else 'Other')!r} but left "
                          "the field empty")
    if value is not None:
        unlisted = option.unlisted
        if unlisted is None:
            raise ChoiceError(f"option {option.name!r} of profile {profile.slug!r} takes no free-text value; "
                              f"choose one of: {_slugs(option.choices)}")
        if unlisted.validation_regex and not re.fullmatch(unlisted.validation_regex, value):
            rule = unlisted.validation_message or f"it must match {unlisted.validation_regex!r}"
            raise ChoiceError(f"{value!r} is not allowed for option {option.name!r} of profile {profile.slug!r}: "
                              f"{rule}")
        return None, value
    if chosen is not None and chosen != UNLISTED_VALUE:
        if not any(c.slug == chosen for c in option.choices):
            raise ChoiceError(f"{chosen!r} is not a choice of option {option.name!r} of profile {profile.slug!r}; "
                              f"choose one of: {_slugs(option.choices)}")
        return chosen, None
    default = option.default_choice
    if default is None:
        raise ChoiceError(f"option {option.name!r} of profile {profile.slug!r} needs a value"
                          + (f" ({option.unlisted.validation_message})" if option.unlisted.validation_message else ""))
    return default.slug, None


def validate_choice(
    profiles: Sequence[Profile], user_options, user: str, groups: Iterable[str], is_admin: bool
) -> ResolvedChoice:
    """Check a user's choice and resolve it, or raise :class:`ChoiceError` (400) / :class:`AccessDenied` (403).

    ``user_options`` holds ``profile`` (a slug), ``image`` (an image slug) or ``other_image`` (an allow-listed
    reference), and per KubeSpawner ``profile_options`` entry ``<name>`` (a choice) or ``<name>--unlisted-choice``
    (free text). Every key is optional (missing means the default); any key the chosen profile does not know is
    refused.
    """
    groups = groups if isinstance(groups, frozenset) else frozenset(groups)
    user_options = _check_shape(user_options)

    visible = visible_profiles(profiles, user, groups, is_admin)
    slug = user_options.get("profile") or None
    if slug is None:
        profile = default_profile(visible)
        if profile is None:
            raise AccessDenied("no profile is available to you; ask an administrator for access")
    else:
        profile = next((p for p in visible if p.slug == slug), None)
        if profile is None:
            if any(p.slug == slug for p in profiles):
                raise AccessDenied(f"profile {slug!r} is not available to you; choose one of: {_slugs(visible)}")
            raise ChoiceError(f"unknown profile {slug!r}; choose one of: {_slugs(visible)}")

    allowed = profile.option_keys()
    unknown = sorted(str(k) for k in user_options if k not in allowed)
    if unknown:
        raise ChoiceError(f"unknown option {unknown[0]!r}; allowed options: {', '.join(allowed)}")
    _check_strings(user_options, list(user_options))

    option_choices: dict[str, str] = {}
    unlisted_values: dict[str, str] = {}
    for option in profile.options:
        chosen, value = _resolve_option(option, user_options, profile)
        if value is not None:
            unlisted_values[option.name] = value
        else:
            option_choices[option.name] = chosen

    image_slug = user_options.get("image") or None
    other = user_options.get("other_image") or None
    if image_slug and other:
        raise ChoiceError("give either 'image' or 'other_image', not both")
    common = dict(user=user, groups=groups, option_choices=option_choices, unlisted_values=unlisted_values)
    if any(o.name == "image" for o in profile.options):
        return ResolvedChoice(profile, image=None, image_slug=None, **common)
    if other is not None:
        other = other.strip()
        if profile.other_image_pattern is None:
            raise AccessDenied(
                f"profile {profile.slug!r} does not allow another image; choose one of: {_slugs(profile.images)}"
            )
        if not re.fullmatch(profile.other_image_pattern, other):
            raise AccessDenied(
                f"image {other!r} is not allowed for profile {profile.slug!r}: "
                f"it must match {profile.other_image_pattern!r}"
            )
        return ResolvedChoice(profile, image=other, image_slug=None, **common)
    if image_slug is not None:
        image = next((i for i in profile.images if i.slug == image_slug), None)
        if image is None:
            raise ChoiceError(
                f"image {image_slug!r} is not offered by profile {profile.slug!r}; "
                f"choose one of: {_slugs(profile.images)}"
            )
    else:
        image = profile.default_image
    return ResolvedChoice(profile, image=image.image if image else None, image_slug=image.slug if image else None,
                          **common)


def resolve_choice(
    profiles: Sequence[Profile], user_options, user: str, groups: Iterable[str], is_admin: bool, *,
    saved: bool = False,
) -> ResolvedChoice:
    """:func:`validate_choice`, except that a *saved* choice (the last spawn's ``user_options``, reused when a
    spawn names none) that no longer validates falls back to the user's default profile, with ``fallback`` saying
    why. An explicit request is refused as :func:`validate_choice` refuses it."""
    try:
        return validate_choice(profiles, user_options, user, groups, is_admin)
    except ChoiceError as e:
        if not saved or not user_options:
            raise
        choice = validate_choice(profiles, {}, user, groups, is_admin)
        what = (user_options.get("profile") if isinstance(user_options, Mapping) else None) or "(default)"
        head = f"Your last choice (profile {what!r}) is no longer available ({e}); "
        name = choice.profile.display_name
        return ResolvedChoice(choice.profile, choice.image, choice.image_slug, choice.user, choice.groups,
                              choice.option_choices, choice.unlisted_values,
                              fallback=f"{head}starting the default profile {name!r} instead.",
                              fallback_form=f"{head}the default profile {name!r} is selected.")
