"""Roles from claims: dotted paths, list or string values, highest mapped role wins."""

from __future__ import annotations

import pytest

from auth.roles import ROLES, User, claim_at_path, groups_in, rank, resolve_role, user_from_claims
from auth.settings import AuthSettings

ROLE_MAP = (("mc-viewers", "viewer"), ("mc-operators", "operator"), ("mc-admins", "admin"))


@pytest.mark.parametrize(
    ("claims", "path", "expected"),
    [
        ({"groups": ["a"]}, "groups", ["a"]),
        ({"realm_access": {"roles": ["r"]}}, "realm_access.roles", ["r"]),
        ({"cognito:groups": ["c"]}, "cognito:groups", ["c"]),
        ({"https://example.test/groups": ["u"]}, "https://example.test/groups", ["u"]),
        ({"realm_access": ["not", "a", "mapping"]}, "realm_access.roles", None),
        ({}, "groups", None),
    ],
)
def test_claim_at_path(claims, path, expected):
    assert claim_at_path(claims, path) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (["a", "b", 3], ["a", "b"]),
        ("a b,c", ["a", "b", "c"]),
        (None, []),
        ({"a": 1}, []),
    ],
)
def test_groups_in(value, expected):
    assert groups_in(value) == expected


def test_highest_mapped_role_wins_whatever_the_order():
    claims = {"groups": ["mc-admins", "mc-viewers", "other"]}

    assert resolve_role(claims, "groups", ROLE_MAP) == "admin"
    assert resolve_role(claims, "groups", tuple(reversed(ROLE_MAP))) == "admin"


def test_unmapped_or_missing_groups_resolve_to_no_role():
    assert resolve_role({"groups": ["contractors"]}, "groups", ROLE_MAP) is None
    assert resolve_role({"email": "x@example.test"}, "groups", ROLE_MAP) is None


def test_string_claims_such_as_google_hd_can_map_a_role():
    claims = {"hd": "example.test", "email": "a@example.test"}

    assert resolve_role(claims, "hd", (("example.test", "viewer"),)) == "viewer"


def test_roles_include_the_lower_ones():
    for held in ROLES:
        user = User(subject="s", email="e", name="n", role=held)
        for needed in ROLES:
            assert user.can(needed) is (rank(held) >= rank(needed))
    assert not User(subject="s", email="e", name="n", role="").can(ROLES[0])


def test_user_from_claims_names_the_person_and_their_highest_role():
    settings = AuthSettings(oidc_roles_claim="realm_access.roles", role_map=ROLE_MAP)
    claims = {
        "sub": "u-1",
        "email": "ops@example.test",
        "name": "Ops Person",
        "realm_access": {"roles": ["mc-viewers", "mc-operators"]},
    }

    user = user_from_claims(claims, settings)

    assert (user.subject, user.email, user.name, user.role) == (
        "u-1",
        "ops@example.test",
        "Ops Person",
        "operator",
    )
    assert user.claims == claims


def test_user_from_claims_gives_an_unmapped_person_no_role():
    settings = AuthSettings(role_map=ROLE_MAP)

    user = user_from_claims({"sub": "u-2", "groups": ["contractors"]}, settings)

    assert user.role == ""
    assert not user.can(ROLES[0])
