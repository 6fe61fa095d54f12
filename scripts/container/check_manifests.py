"""Checks the Kubernetes examples offline.

Every document of every manifest under examples/kubernetes validates against the
Kubernetes OpenAPI schemas (kubernetes-validate, strict: unknown fields are errors); every
kustomization names files that exist; and the hookrelay.yaml of every ConfigMap passes
`hookrelay validate`, with the Secrets' values as the environment and as the files the
pod mounts beside the configuration (../secrets/<key>).

    python3 check_manifests.py HOOKRELAY_BINARY EXAMPLES_DIR [KUBERNETES_VERSION]
"""

import os
import pathlib
import subprocess
import sys
import tempfile

import kubernetes_validate
import yaml


def main() -> int:
    binary, root = sys.argv[1], pathlib.Path(sys.argv[2])
    version = sys.argv[3] if len(sys.argv) > 3 else kubernetes_validate.latest_version()
    failures, documents, secrets, configs = [], 0, {}, []
    for path in sorted(root.rglob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        if path.name == "kustomization.yaml":
            for d in docs:
                for entry in d.get("resources", []) + [p["path"] for p in d.get("patches", [])]:
                    if not (path.parent / entry).exists():
                        failures.append(f"{path}: {entry} does not exist")
            continue
        for doc in docs:
            documents += 1
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                failures.append(f"{path}: {doc.get('kind')} {doc['metadata']['name']}: {e.message} at {list(e.path)}")
            if doc.get("kind") == "Secret":
                secrets.update(doc.get("stringData", {}))
            if doc.get("kind") == "ConfigMap" and "hookrelay.yaml" in doc.get("data", {}):
                configs.append((path, doc["data"]["hookrelay.yaml"]))
    for path, text in configs:
        with tempfile.TemporaryDirectory() as tmp:
            (pathlib.Path(tmp) / "config").mkdir()
            (pathlib.Path(tmp) / "secrets").mkdir()
            for key, value in secrets.items():
                (pathlib.Path(tmp) / "secrets" / key).write_text(value)
            config = pathlib.Path(tmp) / "config" / "hookrelay.yaml"
            config.write_text(text)
            env = {**os.environ, **{k: v for k, v in secrets.items() if k.isupper()}}
            run = subprocess.run([binary, "validate", "-c", str(config)], env=env,
                                 capture_output=True, text=True)
            if run.returncode != 0:
                failures.append(f"{path}: hookrelay validate: {run.stderr.strip()}")
            else:
                print(f"{path}: hookrelay.yaml ok")
    print(f"{documents} Kubernetes documents checked against the schemas of {version}")
    for f in failures:
        print(f"FAIL {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
