"""`hubfleet-demo` timings: login -> JupyterLab loaded for one user, then for 20 users at once, and the Kubernetes
API calls one spawn makes (by verb and resource, as the devcluster saw them).

Goal (issue #2): one user <= 5 s from login to JupyterLab; 20 at once all ready."""

import concurrent.futures
import json
import statistics
import tempfile
import time
from pathlib import Path

import requests
import yaml

from bench._common import save_results
from hubfleet.authenticators.local import hash_password, load_users_file, write_users_file
from tests.e2e.demo_driver import Demo, login, spawn_and_open_lab


def _login_to_lab(url, user, password):
    t0 = time.monotonic()
    s = login(url, user, password)
    spawn_and_open_lab(s, url, user, "small", timeout=180)
    return time.monotonic() - t0


def main():
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        demo = Demo(state).start()
        try:
            logins = demo.logins()
            dc_info = json.loads((state / "devcluster" / "devcluster.json").read_text())
            dc_url = dc_info["url"]
            kubeconfig = yaml.safe_load((state / "devcluster" / "kubeconfig").read_text())
            dc_auth = {"Authorization": f"Bearer {kubeconfig['users'][0]['user']['token']}"}
            # warm-up (imports, first JupyterLab page), not measured
            _login_to_lab(demo.url, "admin", logins["admin"])

            requests.delete(f"{dc_url}/devcluster/stats", headers=dc_auth, verify=dc_info["ca"], timeout=5)
            one = [_login_to_lab(demo.url, "alice", logins["alice"])]
            calls = requests.get(f"{dc_url}/devcluster/stats", headers=dc_auth, verify=dc_info["ca"], timeout=5).json()["requests"]
            one.append(_login_to_lab(demo.url, "bob", logins["bob"]))

            doc = load_users_file(state / "users.yaml")
            pw_hash = hash_password("bench-pw", rounds=4)
            users = [f"bench{i:02d}" for i in range(20)]
            for u in users:
                doc["users"][u] = {"password_hash": pw_hash, "groups": [], "admin": False}
            write_users_file(state / "users.yaml", doc)
            t0 = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(20) as pool:
                futures = {pool.submit(_login_to_lab, demo.url, u, "bench-pw"): u for u in users}
                times, errors = [], []
                for f in concurrent.futures.as_completed(futures):
                    try:
                        times.append(f.result())
                    except Exception as e:  # report, do not hide
                        errors.append(f"{futures[f]}: {e}")
            wall = time.monotonic() - t0
        finally:
            demo.stop()
    print(f"{'measure':<44} {'value':>10}")
    print(f"{'1 user, login -> JupyterLab (2 runs)':<44} {', '.join(f'{t:.2f}s' for t in one):>10}   goal <= 5 s")
    print(f"{'20 users at once: all ready':<44} {len(times):>7}/20")
    if times:
        print(f"{'20 users at once: median / max per user':<44} {statistics.median(times):>5.1f}s / {max(times):.1f}s")
    print(f"{'20 users at once: wall time':<44} {wall:>9.1f}s")
    for e in errors:
        print("  error:", e)
    print("Kubernetes API calls of one spawn (as the devcluster saw them):")
    for k, v in sorted(calls.items()):
        print(f"  {k:<36} {v}")
    save_results("bench_demo", {"one_user_s": one, "api_calls_one_spawn": calls,
                                 "twenty": {"ready": len(times), "times": times, "wall_s": wall, "errors": errors}})


if __name__ == "__main__":
    main()
