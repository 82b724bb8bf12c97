"""hubfleet values check: the autohttps values the chart's schema accepts (any string, any number) but Let's
Encrypt or Traefik refuse at run time, named by key (pure: no chart, no Helm)."""

from __future__ import annotations

import pytest

from hubfleet.config.values import autohttps_problems


def https(hosts=("hub.example.org",), email="hub-admins@example.org", duration=None, **more) -> dict:
    values = {"proxy": {"https": {"enabled": True, "type": "letsencrypt", "hosts": list(hosts),
                                  "letsencrypt": {"contactEmail": email}, **more}}}
    if duration is not None:
        values["proxy"]["traefik"] = {"extraStaticConfig": {"certificatesResolvers": {
            "default": {"acme": {"certificatesDuration": duration}}}}}
    return values


def test_a_good_site_has_no_problem():
    assert autohttps_problems(https(hosts=["hub.example.org", "jupyter.dept.uni.example", "x-1.example.org."],
                                    duration=144)) == []


@pytest.mark.parametrize("host", ["https://hub.example.org", "hub.example.org:443", "hub.example.org/hub",
                                  "localhost", "10.0.0.1", "-hub.example.org", "hub_1.example.org", "",
                                  "a" * 64 + ".example.org", "*.example.org", 42])
def test_a_host_that_is_not_a_dns_name_is_named_by_index(host):
    [(path, message)] = autohttps_problems(https(hosts=["hub.example.org", host]))
    assert path == ("proxy", "https", "hosts", 1)
    assert "DNS" in message or "wildcard" in message


@pytest.mark.parametrize("email", ["", None, "hub-admins", "@example.org", "a@b", "a b@example.org",
                                   "hub@example.org@x.org"])
def test_an_email_that_is_not_one(email):
    [(path, message)] = autohttps_problems(https(email=email))
    assert path == ("proxy", "https", "letsencrypt", "contactEmail")
    assert "not an e-mail address" in message


def test_the_email_is_not_checked_when_letsencrypt_is_off():
    assert autohttps_problems(https(email=None, type="secret")) == []
    assert autohttps_problems(https(email="nope", enabled=False)) == []


@pytest.mark.parametrize("duration", [0, -1, 0.5, "90d", True, None])
def test_certificates_duration_under_traefiks_one_hour_minimum(duration):
    values = https()
    values["proxy"]["traefik"] = {"extraStaticConfig": {"certificatesResolvers": {
        "le": {"acme": {"certificatesDuration": duration}}}}}
    [(path, message)] = autohttps_problems(values)
    assert path == ("proxy", "traefik", "extraStaticConfig", "certificatesResolvers", "le", "acme",
                    "certificatesDuration")
    assert "at least 1" in message


@pytest.mark.parametrize("duration", [1, 144, 2160])
def test_certificates_duration_of_an_hour_or_more(duration):
    assert autohttps_problems(https(duration=duration)) == []


def test_the_acme_retry_sidecar_runs_the_charts_own_secret_sync_image():
    """The overlay names the image (extraInitContainers takes no reference to proxy.secretSync): it must stay the
    one the chart pulls for load-acme and secret-sync, so no other image is fetched."""
    from hubfleet.config.values import load_values
    from tests.unit.test_chart_values import Z2JH, overlay

    released = Z2JH / "chart" / "values.yaml"  # as released: image tags set to 4.4.0
    if not released.is_file():
        pytest.skip(f"the z2jh 4.4.0 chart is not at {released.parent}")
    image = load_values(released)["proxy"]["secretSync"]["image"]
    [retry] = [c for c in overlay("autohttps-hardened.yaml")["proxy"]["traefik"]["extraInitContainers"]
               if c["name"] == "acme-retry"]
    assert retry["image"] == f"{image['name']}:{image['tag']}"
    assert retry["restartPolicy"] == "Always"  # a native sidecar: runs beside Traefik, not once before it


@pytest.mark.parametrize("values", [
    {"proxy": "x"}, {"proxy": {"https": True}}, {"proxy": {"https": {"hosts": "hub.example.org"}}},
    {"proxy": {"https": {"letsencrypt": "yes"}}},
    {"proxy": {"traefik": {"extraStaticConfig": {"certificatesResolvers": ["default"]}}}},
    {"proxy": {"traefik": {"extraStaticConfig": {"certificatesResolvers": {"default": "acme"}}}}},
    {"proxy": {"traefik": {"extraStaticConfig": {"certificatesResolvers": {"default": {"acme": 1}}}}}},
])
def test_a_value_of_the_wrong_type_is_left_to_the_charts_schema(values):
    """`hubfleet values check` runs these checks beside the chart's schema, which names a value of the wrong type
    (`proxy.https: true`): they must not crash on it, so that problem is reported."""
    assert autohttps_problems(values) == []
