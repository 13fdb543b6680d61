"""Version comparison for the ``semver_*`` audience matches, as optimizely-sdk 5.7.0 does it.

Not full SemVer: the official SDK splits on dots, treats the suffix after the first
``-`` (pre-release) or ``+`` (build) as one extra part, compares numeric parts as
numbers and textual parts as strings, and walks only the target's parts. Parity with it
matters more than the standard, so every quirk is kept (see :func:`compare_versions`).
"""

from __future__ import annotations

from functools import lru_cache

__all__ = ["compare_versions", "parse_version"]


def _comes_first(version: str, mark: str, other: str) -> bool:
    """Whether ``mark`` is in ``version`` and before any ``other``."""
    at = version.find(mark)
    if at < 0:
        return False
    other_at = version.find(other)
    return other_at < 0 or at < other_at


@lru_cache(maxsize=4096)
def parse_version(version: str) -> tuple[tuple[str, ...], bool, bool] | None:
    """Split a version the way the official SDK does.

    Returns ``(parts, is_pre_release, is_build)`` or ``None`` when the version is
    invalid: it contains a space, has more than three dot-separated numeric parts
    before the ``-``/``+`` suffix, or one of them is not all digits. The suffix after
    the first ``-`` (pre-release) or ``+`` (build), whichever comes first, becomes one
    extra part.
    """
    if " " in version:
        return None
    pre = _comes_first(version, "-", "+")
    build = _comes_first(version, "+", "-")
    prefix = version
    suffix: list[str] = []
    if pre or build:
        head, _, tail = version.partition("-" if pre else "+")
        prefix = head
        suffix = [tail]
    if prefix.count(".") > 2:
        return None
    parts = prefix.split(".")
    for part in parts:
        if not part.isdigit():
            return None
    return (*parts, *suffix), pre, build


def compare_versions(target: str, user: str) -> int | None:
    """Compare a user version with a condition's target version.

    Returns 0 (equal), 1 (user is greater), -1 (user is smaller) or ``None`` when
    either version is invalid or the parts cannot be compared. Only the target's
    parts are walked: ``"1.2"`` equals ``"1.2.9"``. A pre-release user version is
    smaller than the same release target.
    """
    parsed_target = parse_version(target)
    if parsed_target is None:
        return None
    parsed_user = parse_version(user)
    if parsed_user is None:
        return None
    target_parts, target_pre, target_build = parsed_target
    user_parts, user_pre, _ = parsed_user
    n_user = len(user_parts)
    for idx, target_part in enumerate(target_parts):
        if idx >= n_user:
            return 1 if (target_pre or target_build) else -1
        order = _compare_part(target_part, user_parts[idx], target_pre, user_pre)
        if order != 0:  # a difference, or None: the parts cannot be compared
            return order
    if user_pre and not target_pre:
        return -1
    return 0


def _compare_part(target_part: str, user_part: str, target_pre: bool, user_pre: bool) -> int | None:
    """Compare one part of each version: 1 or -1 where they differ, 0 where equal.

    ``None`` when the user part is numeric and the target part is not a number.
    """
    if not user_part.isdigit():
        if user_part < target_part:
            return 1 if (target_pre and not user_pre) else -1
        if user_part > target_part:
            return -1 if (not target_pre and user_pre) else 1
        return 0
    try:
        user_number = int(user_part)
        target_number = int(target_part)
    except ValueError:
        # The official SDK raises here (a numeric user part against a textual
        # target part); we answer "unknown" instead of failing the decision.
        return None
    if user_number > target_number:
        return 1
    if user_number < target_number:
        return -1
    return 0
