"""The pod test: the classic example's pod, run by `podman kube play`.

The pod is the one of examples/kubernetes/classic (hookrelay beside the notification
service), with the test's images (the stand-in app is examples/bare-pingora on port 3000,
which counts what it is sent), the ConfigMap and the Secret as directories laid out the
way the kubelet lays out a ConfigMap volume (`..data` pointing at a timestamped
directory), the store in a directory of its own, and the public and admin ports published
on free ports. It checks, in order:

1. a path that is no callback route is proxied to the app;
2. a provider's callback (Postmark, with the Secret's credentials) is answered 200 and
   delivered to the app; one with other credentials is refused with 401;
3. a reroute as the kubelet makes it: the ConfigMap's directory swapped (`..data` renamed
   onto a new version that renames the endpoint) while callbacks flow: none is refused,
   and the next deliveries are recorded under the new endpoint;
4. `podman kube down`: hookrelay gets SIGTERM with its queue empty and exits 0.

    python3 pod_test.py HOOKRELAY_IMAGE APP_IMAGE EXAMPLES_DIR
"""

import base64
import concurrent.futures
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import yaml

POD = "hookrelay-pod-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def podman(*args: str, check: bool = True) -> str:
    run = subprocess.run(["podman", *args], capture_output=True, text=True)
    if check and run.returncode != 0:
        raise SystemExit(f"podman {' '.join(args)}: {run.stderr.strip()}")
    return run.stdout


def request(method: str, url: str, body: bytes = b"", headers: dict | None = None):
    req = urllib.request.Request(url, data=body or None, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_for(what: str, check, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except (OSError, urllib.error.URLError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)


def rss_mib(container: str, field: str = "VmRSS") -> float:
    """The resident memory (`VmRSS`, or its peak `VmHWM`) of the container's main process,
    MiB."""
    pid = podman("inspect", container, "--format", "{{.State.Pid}}").strip()
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"no VmRSS for {container}")


def kubelet_write(volume: pathlib.Path, files: dict, generation: int) -> None:
    """Writes `files` into `volume` as the kubelet's atomic writer does: a new timestamped
    directory, a `..data_tmp` symlink to it renamed onto `..data`, and each file a symlink
    through `..data`."""
    version = volume / f"..2026_12_06_00_00_0{generation}.000000000"
    version.mkdir()
    for name, text in files.items():
        (version / name).write_text(text)
        os.chmod(version / name, 0o644)
    tmp = volume / "..data_tmp"
    tmp.symlink_to(version.name)
    os.rename(tmp, volume / "..data")
    for name in files:
        link = volume / name
        if not link.is_symlink():
            link.symlink_to(f"..data/{name}")


def main() -> int:
    hookrelay_image, app_image, examples = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
    docs = {}
    for path in (examples / "base").glob("*.yaml"):
        for d in yaml.safe_load_all(path.read_text()):
            if d and d.get("kind") in ("ConfigMap", "Secret"):
                docs[d["kind"]] = d
    config_text = docs["ConfigMap"]["data"]["hookrelay.yaml"]
    secret = docs["Secret"]["stringData"]
    statefulset = yaml.safe_load((examples / "classic" / "statefulset.yaml").read_text())
    spec = statefulset["spec"]["template"]["spec"]

    work = pathlib.Path(tempfile.mkdtemp(prefix="hookrelay-pod."))
    config_dir, secrets_dir, store_dir = work / "config", work / "secrets", work / "store"
    for d in (config_dir, secrets_dir, store_dir):
        d.mkdir()
    os.chmod(work, 0o755)
    os.chmod(config_dir, 0o755)
    os.chmod(secrets_dir, 0o755)
    os.chown(store_dir, 65532, 65532)
    kubelet_write(config_dir, {"hookrelay.yaml": config_text}, 1)
    for key, value in secret.items():
        (secrets_dir / key).write_text(value)
        os.chmod(secrets_dir / key, 0o644)

    public, admin = free_port(), free_port()
    for c in spec["containers"]:
        if c["name"] == "hookrelay":
            c["image"] = hookrelay_image
            # Environment from the Secret, inlined (podman's kube play reads no Secret).
            c["env"] = [{"name": e["name"], "value": secret[e["valueFrom"]["secretKeyRef"]["key"]]}
                        for e in c["env"]]
            c["ports"] = [{"name": "public", "containerPort": 8080, "hostPort": public},
                          {"name": "admin", "containerPort": 9090, "hostPort": admin}]
            for p in ("startupProbe", "readinessProbe", "livenessProbe"):
                c.pop(p, None)
        else:
            c["image"] = app_image
            c["args"] = ["3000", "1"]
            c.pop("ports", None)
    spec["volumes"] = [
        {"name": "config", "hostPath": {"path": str(config_dir), "type": "Directory"}},
        {"name": "secrets", "hostPath": {"path": str(secrets_dir), "type": "Directory"}},
        {"name": "store", "hostPath": {"path": str(store_dir), "type": "Directory"}},
    ]
    spec.pop("terminationGracePeriodSeconds", None)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": POD}, "spec": spec}
    manifest = work / "pod.yaml"
    manifest.write_text(yaml.safe_dump(pod))

    base = f"http://127.0.0.1:{public}"
    admin_url = f"http://127.0.0.1:{admin}"
    token = {"authorization": f"Bearer {secret['admin-token']}"}
    podman("kube", "down", str(manifest), check=False)
    podman("kube", "play", str(manifest))
    passed = False
    try:
        wait_for("hookrelay ready", lambda: request("GET", f"{admin_url}/readyz")[0] == 200)

        # 1. Not a callback route: proxied to the app.
        def count() -> int:
            status, body = request("GET", f"{base}/count")
            assert status == 200, (status, body)
            return int(body)
        before = wait_for("the app behind the proxy", lambda: count() + 1) - 1
        print(f"proxied GET /count: {before}")

        # 2. A Postmark callback, with the Secret's credentials and with others.
        def postmark(message_id: str, auth: str):
            body = json.dumps({"RecordType": "Delivery", "MessageID": message_id,
                               "Recipient": "user@example.com",
                               "DeliveredAt": "2026-12-06T10:00:00Z"}).encode()
            basic = base64.b64encode(auth.encode()).decode()
            return request("POST", f"{base}/callbacks/postmark", body,
                           {"content-type": "application/json", "authorization": f"Basic {basic}"})
        status, body = postmark("m-1", "postmark:wrong")
        assert status == 401, (status, body)
        status, body = postmark("m-1", secret["postmark-basic-auth"])
        assert status == 200, (status, body)
        wait_for("the delivery to the app", lambda: count() >= before + 1)
        print("a signed callback was delivered to the app; a wrong one refused with 401")

        # 3. A reroute by the kubelet's swap, while callbacks flow.
        renamed = config_text.replace("- name: notification-service\n", "- name: notification-service-v2\n")
        assert renamed != config_text
        statuses = []
        for i in range(40):
            if i == 10:
                kubelet_write(config_dir, {"hookrelay.yaml": renamed}, 2)
            statuses.append(postmark(f"m-swap-{i}", secret["postmark-basic-auth"])[0])
            time.sleep(0.05)
        assert statuses == [200] * 40, statuses

        def rerouted():
            postmark(f"m-after-{time.monotonic_ns()}", secret["postmark-basic-auth"])
            status, body = request("GET", f"{admin_url}/deliveries?endpoint=notification-service-v2&limit=5",
                                   headers=token)
            return status == 200 and json.loads(body).get("deliveries")
        wait_for("deliveries to the renamed endpoint", rerouted, timeout=30)
        print("rerouted by the kubelet's ..data swap; no callback refused")

        # Memory, idle and under a burst of callbacks (16 at a time).
        idle = rss_mib(f"{POD}-hookrelay")
        burst = 5000
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            codes = list(pool.map(lambda i: postmark(f"m-load-{i}", secret["postmark-basic-auth"])[0],
                                  range(burst)))
        assert codes == [200] * burst, {c: codes.count(c) for c in set(codes)}
        loaded = rss_mib(f"{POD}-hookrelay", "VmHWM")
        print(f"hookrelay RSS: {idle:.1f} MiB idle, peak {loaded:.1f} MiB over {burst} callbacks")

        # Everything delivered before stopping.
        def drained():
            status, body = request("GET", f"{admin_url}/metrics")
            depth = [line for line in body.decode().splitlines()
                     if line.startswith("hookrelay_queue_depth{")]
            return status == 200 and depth and all(line.endswith(" 0") for line in depth)
        wait_for("the queue to drain", drained)
        passed = True
    finally:
        logs = podman("logs", f"{POD}-hookrelay", check=False)
        if not passed:
            print(podman("ps", "-a", check=False), logs,
                  podman("logs", f"{POD}-app", check=False), file=sys.stderr)
        # 4. SIGTERM: `kube down` stops the pod; hookrelay must exit 0.
        podman("pod", "stop", "-t", "30", POD, check=False)
        code = podman("inspect", f"{POD}-hookrelay", "--format", "{{.State.ExitCode}}", check=False).strip()
        podman("kube", "down", str(manifest), check=False)
        shutil.rmtree(work, ignore_errors=True)
    if code != "0":
        print(logs, file=sys.stderr)
        raise SystemExit(f"hookrelay exited with {code!r} on SIGTERM")
    print("podman kube down: hookrelay exited 0 on SIGTERM")
    return 0


if __name__ == "__main__":
    sys.exit(main())
