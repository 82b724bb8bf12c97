"""The OIDC backend's login and callback handlers (the authorization-code flow's two browser steps)."""

from __future__ import annotations

import secrets
from urllib.parse import urlencode

from oauthenticator.oauth2 import OAuthCallbackHandler, OAuthLoginHandler, _deserialize_state, _serialize_state
from tornado import web


class OIDCLoginHandler(OAuthLoginHandler):
    """Start the authorization-code flow: discovery, state + PKCE verifier + nonce in the signed state cookie."""

    hubfleet_backend = None  # set on per-backend subclasses inside a composite

    @property
    def backend(self):  # the HubfleetOIDCAuthenticator
        return self.hubfleet_backend or self.authenticator

    async def get(self):
        backend = self.backend
        await backend.discover_or_503()
        state = {"state_id": self._generate_state_id(), "next_url": self._get_next_url()}
        params = dict(backend.extra_authorize_params)
        if backend.enable_pkce:
            verifier, challenge = self._generate_pkce_params()
            state["code_verifier"] = verifier
            params.update(code_challenge=challenge, code_challenge_method="S256")
        nonce = secrets.token_urlsafe(24)
        state["nonce"] = nonce
        self.set_state_cookie(_serialize_state(state))
        params.update(
            response_type="code",
            client_id=backend.client_id,
            redirect_uri=backend.get_callback_url(self),
            scope=" ".join(backend.scope),
            state=_serialize_state({"state_id": state["state_id"]}),
            nonce=nonce,
        )
        sep = "&" if "?" in backend.authorize_url else "?"
        self.redirect(f"{backend.authorize_url}{sep}{urlencode(params)}")


class OIDCCallbackHandler(OAuthCallbackHandler):
    """Finish the flow; errors carry a message that says what went wrong and what to do."""

    hubfleet_backend = None

    def check_state(self):
        cookie_state = self.get_state_cookie()
        url_state = self.get_state_url()
        cookie_id = _deserialize_state(cookie_state).get("state_id") if cookie_state else None
        url_id = _deserialize_state(url_state).get("state_id") if url_state else None
        if not cookie_id or cookie_id != url_id:
            self.log.warning("OIDC callback refused: state mismatch")
            raise web.HTTPError(
                400,
                "Sign-in refused: the login state does not match (OAuth state mismatch). The sign-in was started in "
                "another browser or has expired; start again from the login page.",
            )

    def check_error(self):
        error = self.get_argument("error", False)
        if error:
            message = self.get_argument("error_description", error)
            raise web.HTTPError(403, f"The identity provider refused the sign-in: {message}")

    async def get(self):
        self.check_arguments()
        user = await self.login_user()
        if user is None:
            backend = self.hubfleet_backend or self.authenticator
            raise web.HTTPError(403, backend.custom_403_message)
        self.redirect(self.get_next_url(user))
