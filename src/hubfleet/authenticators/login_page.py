"""The login page's body (JupyterHub renders it as ``custom_html``): the password form with the fields and links
backends add (:meth:`~.base.HubfleetBaseAuthenticator.login_page_parts`), and a "Sign in with ..." button per OIDC
backend."""

from __future__ import annotations

import html
import importlib.resources

from jupyterhub.utils import url_path_join

# keeps ?next= on the OIDC buttons (``next`` is in the login page's template context, already URL-escaped)
NEXT_PARAM = "{% if next %}?next={{ next|e }}{% endif %}"


def template(name: str) -> str:
    return importlib.resources.files("hubfleet.authenticators").joinpath("templates", name).read_text()


def esc(text: str) -> str:
    """HTML-escaped, and braces neutralised: the page body is itself a Jinja template."""
    return html.escape(text).replace("{", "&#123;").replace("}", "&#125;")


def render(authenticator, base_url: str) -> str:
    buttons = "".join(
        f'<a role="button" class="btn btn-jupyter btn-lg hubfleet-oidc" '
        f'href="{esc(url_path_join(base_url, path))}' + NEXT_PARAM + f'">Sign in with {esc(label)}</a>'
        for label, path in authenticator.oidc_buttons()
    )
    parts = authenticator.login_page_parts(base_url)  # e.g. the TOTP code field, the sign-up link
    form = template("password_form.html").replace("<!--FIELDS-->", parts.get("fields", ""))
    form = form if authenticator.password_backend else ""
    return template("login.html").replace("<!--PASSWORD_FORM-->", form).replace(
        "<!--OIDC_BUTTONS-->", buttons).replace("<!--LINKS-->", parts.get("links", ""))
