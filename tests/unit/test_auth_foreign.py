"""A class that is not an OAuthenticator as a ``backends[]`` entry: JupyterHub's own SharedPasswordAuthenticator
(entry point ``shared-password``) becomes a password backend of the composite, under the composite's policy and
identity bindings (a SQLite file of the test's own)."""

from __future__ import annotations

from traitlets.config import Config

from hubfleet.authenticators.composite import HubfleetAuthenticator


def _composite(tmp_path, **entry):
    c = Config()
    c.HubfleetAuthenticator.db_url = f"sqlite:///{tmp_path}/hubfleet.sqlite"
    c.HubfleetAuthenticator.subject_store_file = ""
    c.HubfleetAuthenticator.allowed_users = {"ann"}
    c.HubfleetAuthenticator.backends = [{"kind": "shared-password", "name": "shared",
                                         "user_password": "a-long-shared-password", **entry}]
    return HubfleetAuthenticator(config=c)


async def test_a_password_class_signs_in_through_the_policy_and_is_bound(tmp_path):
    a = _composite(tmp_path, username_prefix="sp-")
    assert a.password_backend and a.oidc_buttons() == []
    assert await a.get_authenticated_user(None, {"username": "Ann", "password": "wrong-password-123"}) is None
    model = await a.get_authenticated_user(None, {"username": "ann", "password": "a-long-shared-password"})
    assert model is None  # "sp-ann" is not in allowed_users: the composite's policy decides, not the class
    a.allowed_users = {"sp-ann"}
    model = await a.get_authenticated_user(None, {"username": "Ann", "password": "a-long-shared-password"})
    assert model["name"] == "sp-ann" and not model["admin"]
    assert model["auth_state"]["hubfleet_backend"] == "shared"
    assert (await a.bindings.lookup("sp-ann")).backend == "shared"


class _User:
    name = "gina"

    async def get_auth_state(self):
        return None


async def test_a_wrapped_oauth_class_without_auth_state_ends_the_session_at_refresh(tmp_path):
    """GitHubOAuthenticator's own refresh answers True when it keeps no tokens: the composite must not keep such a
    session unchecked (as hubfleet's OIDC backend, the user logs in again), unless refresh_groups is off."""
    c = Config()
    c.HubfleetAuthenticator.db_url = f"sqlite:///{tmp_path}/hubfleet.sqlite"
    c.HubfleetAuthenticator.subject_store_file = ""
    c.HubfleetAuthenticator.enable_auth_state = False
    c.HubfleetAuthenticator.backends = [{"kind": "github", "client_id": "a", "client_secret": "b",
                                         "oauth_callback_url": "https://hub.example/hub/oauth_callback/github"}]
    a = HubfleetAuthenticator(config=c)
    (gh,) = a._children
    assert gh.is_oauth and not gh.enable_auth_state
    assert await gh.inner.refresh_user(_User()) is True  # the class alone would keep the session
    assert await gh.refresh_user(_User()) is False
    gh.refresh_groups = False
    assert await gh.refresh_user(_User()) is True
