"""The stock z2jh 4.4.0 chart rendered by Helm's own Go code (helm-python-sdk) with the documented overlay stacks,
once per stack per session, and the autohttps Traefik config taken from the rendered ConfigMap."""

from __future__ import annotations

import pytest
import yaml

from hubfleet.config.values import CheckResult, check_values, combine, load_values, manifests
from tests.unit.test_chart_values import BASE, CHART_VALUES, STACKS, Z2JH

CHART = Z2JH / "chart"

# The documented stacks (docs/chart-values.md): base + one auth overlay + none/either/both of the others, and
# "Both LDAP and OIDC" with the site file the docs give for it.
BOTH_BACKENDS = {"hub": {"config": {"HubfleetAuthenticator": {"backends": ["ldap", {"kind": "oidc", "name": "sso"}]}}}}
ALL_STACKS = [*STACKS, (BASE, "auth-ldap.yaml", "auth-oidc.yaml", "site:both-backends")]
SITE_FILES = {"site:both-backends": BOTH_BACKENDS}


def stack_id(stack) -> str:
    return "+".join(n.removesuffix(".yaml").removeprefix("hubfleet-") for n in stack)


def require_chart() -> None:
    if not (CHART / "Chart.yaml").is_file():
        pytest.fail(f"the z2jh 4.4.0 chart is not at {CHART} (see ../shared/z2jh-4.4.0/README.md)")


def render_stack(stack, extra: tuple[dict, ...] = ()) -> CheckResult:
    require_chart()
    files = [CHART_VALUES / n for n in stack if not n.startswith("site:")]
    docs = [SITE_FILES[n] for n in stack if n.startswith("site:")] + list(extra)
    return check_values(CHART, files, docs=docs)


def render_only(stack, extra: tuple[dict, ...] = ()) -> CheckResult:
    """Helm's render of the stack alone (~0.3 s: no lint, no schema or OpenAPI validation, which
    test_chart_render.py does for every documented stack): for tests that run what the chart renders."""
    import helm_python

    require_chart()
    docs = [load_values(CHART_VALUES / n) for n in stack] + list(extra)
    user, _ = combine(*docs)
    with helm_python.Chart.load(str(CHART)) as chart:
        rendered = chart.render(user, name="jhub", namespace="jhub", is_install=True)
    return CheckResult(user_values=user, objects=manifests(rendered))


@pytest.fixture(scope="session")
def rendered():
    """rendered(stack) -> CheckResult, each stack rendered once per session."""
    cache: dict[tuple, CheckResult] = {}

    def get(stack) -> CheckResult:
        if stack not in cache:
            cache[stack] = render_stack(stack)
        return cache[stack]

    return get


def find(result: CheckResult, kind: str, name: str) -> dict:
    for _, obj in result.objects:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    raise AssertionError(f"no {kind}/{name} in the rendered manifests: "
                         f"{sorted((o['kind'], o['metadata']['name']) for _, o in result.objects)}")


def traefik_files(result: CheckResult) -> tuple[dict, dict]:
    """traefik.yaml and dynamic.yaml as the chart renders them into ConfigMap `autohttps`."""
    data = find(result, "ConfigMap", "autohttps")["data"]
    return yaml.safe_load(data["traefik.yaml"]), yaml.safe_load(data["dynamic.yaml"])


def rendered_container(result: CheckResult, name: str, *, init: bool = False) -> dict:
    """A container (``init``: an init container) of the rendered autohttps Deployment."""
    spec = find(result, "Deployment", "autohttps")["spec"]["template"]["spec"]
    found = [c for c in spec.get("initContainers" if init else "containers", []) if c["name"] == name]
    assert found, f"no {'init ' if init else ''}container {name} in the rendered autohttps Deployment"
    return found[0]
