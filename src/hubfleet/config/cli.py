"""``hubfleet values check --chart DIR -f base.yaml -f site.yaml``: check a stack of Helm values files against the
chart they are for, as ``helm upgrade --install -f ... -f ...`` would see it.

It merges the files in ``-f`` order the way Helm does, validates the result against the chart's schema, lints the
chart, renders every template and validates each rendered manifest with kubernetes-validate (strict). Each problem
is printed on its own line naming the values file and key path at fault (``site.yaml: proxy.htps: unknown key ...``)
or the rendered template and field. Exit status: 0 all fine, 1 problems found, 2 the chart or a library is missing.

``values migrate`` is registered by :mod:`hubfleet.config.migrate` when that module is installed.
"""

from __future__ import annotations

import sys

from ..errors import HubfleetError, explain


def _check(args) -> int:
    from .values import check_values

    try:
        result = check_values(args.chart, args.files, release=args.release, namespace=args.namespace,
                              kube_version=args.kube_version)
    except HubfleetError as e:
        print(f"error: {explain(e)}", file=sys.stderr)
        return 2
    stack = " + ".join(args.files) or "(chart defaults)"
    if result.problems:
        for problem in result.problems:
            print(problem)
        print(f"{len(result.problems)} problem(s) in {stack}", file=sys.stderr)
        return 1
    print(f"OK: {stack} on {args.chart}: schema, lint and {len(result.objects)} rendered manifests valid "
          f"(Kubernetes {args.kube_version})")
    return 0


def add_parser(subparsers) -> None:
    from .values import KUBE_VERSION, NAMESPACE, RELEASE

    p = subparsers.add_parser("values", help="check (or migrate) z2jh Helm values",
                              description="Tools for the Helm values of the z2jh chart.")
    sub = p.add_subparsers(dest="values_command", metavar="SUBCOMMAND")
    check = sub.add_parser(
        "check", help="merge, validate and render values files against a chart",
        description="Merge the -f files as Helm does, validate them against the chart's values.schema.json, lint, "
        "render every template and validate each manifest (kubernetes-validate, strict). Prints one line per "
        "problem naming the file and key path; exits 1 if there are any.")
    check.add_argument("--chart", required=True, metavar="DIR",
                       help="the chart directory (`helm pull jupyterhub/jupyterhub --version 4.4.0 --untar`)")
    check.add_argument("-f", "--values", dest="files", action="append", default=[], metavar="FILE",
                       help="a values file; repeat in `helm -f` order (later files win)")
    check.add_argument("--release", default=RELEASE, help=f"release name to render with (default {RELEASE})")
    check.add_argument("--namespace", default=NAMESPACE, help=f"namespace to render into (default {NAMESPACE})")
    check.add_argument("--kube-version", default=KUBE_VERSION,
                       help=f"Kubernetes version the manifests are validated for (default {KUBE_VERSION})")
    check.set_defaults(func=_check)
    try:
        from . import migrate
    except ImportError:
        pass
    else:
        migrate.add_parser(sub)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
