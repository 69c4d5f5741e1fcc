#!/usr/bin/env bash
# Checks the deployment files offline: deploy/*.yaml (YAML lint, the Kubernetes schemas
# bundled by kubernetes-validate, and the cross-references no schema sees) and the systemd
# unit (systemd-analyze verify and security, where systemd-analyze exists).
# Needs: pip install -r tools/requirements-deploy.txt
set -euo pipefail
cd "$(dirname "$0")/.."

# The oldest Kubernetes the manifests claim (preStop `sleep` is 1.30+) and the newest schema.
K8S_MIN=1.30.0
# Fail if the unit's exposure (0 best, 10 worst) rises above this.
MAX_EXPOSURE=2.0

fail() { echo "check-deploy: $*" >&2; exit 1; }
# As modules of the python3 on PATH (a pyenv shim has no console script until a rehash).
PY=${PYTHON:-python3}
for module in yaml yamllint kubernetes_validate; do
  "$PY" -c "import $module" 2>/dev/null \
    || fail "python module $module not found; $PY -m pip install -r tools/requirements-deploy.txt"
done

"$PY" -m yamllint --strict -d '{extends: default, rules: {line-length: {max: 110}, document-start: disable, comments: {min-spaces-from-content: 1}, truthy: {check-keys: false}, braces: {max-spaces-inside: 1}}}' deploy/
echo "check-deploy: yamllint ok"

# --strict: an unknown field (a typo) is an error, not silently dropped.
"$PY" -m kubernetes_validate --strict --quiet -k "$K8S_MIN" deploy/kubernetes.yaml
"$PY" -m kubernetes_validate --strict --quiet deploy/kubernetes.yaml
echo "check-deploy: kubernetes schemas ok (${K8S_MIN} and the newest bundled)"

# What a schema cannot see: the references between the objects and the security rules.
"$PY" - <<'PY'
import re
import sys

import yaml

errors = []


def check(cond, msg):
    if not cond:
        errors.append(msg)


def seconds(value):
    m = re.fullmatch(r"(\d+)s", str(value))
    check(m is not None, f"drain_timeout {value!r}: expected whole seconds such as 20s")
    return int(m.group(1)) if m else 0


text = open("deploy/kubernetes.yaml").read()
docs = [d for d in yaml.safe_load_all(text) if d]
by_kind = {}
for d in docs:
    by_kind.setdefault(d["kind"], []).append(d)


def one(kind, name):
    found = [d for d in by_kind.get(kind, []) if d["metadata"]["name"] == name]
    check(len(found) == 1, f"expected one {kind} {name}")
    return found[0] if found else {}


# The secret the instructions create (`kubectl create secret generic NAME --from-literal=K=...`)
# is the one, and its keys the ones, the pods reference.
created = re.search(r"kubectl create secret generic (\S+)((?:.|\n)*?)\n#\s*\n", text)
check(created is not None, "no `kubectl create secret generic` instruction")
secret_name = created.group(1) if created else None
secret_keys = set(re.findall(r"--from-literal=([\w.-]+)=", created.group(2))) if created else set()

config = yaml.safe_load(one("ConfigMap", "portcullis")["data"]["config.yaml"])
check(not re.search(r"\$\{[A-Z_]+:-", yaml.safe_dump(config)),
      "the container's config must not rely on a ${VAR:-default} fallback")
drain = seconds(config.get("limits", {}).get("drain_timeout", "30s"))

secret_files = []
for route in config["routes"]:
    for f in route.get("secret_files", []):
        secret_files.append(f if isinstance(f, dict) else {"path": f})

for dep in by_kind["Deployment"]:
    name = dep["metadata"]["name"]
    pod = dep["spec"]["template"]["spec"]
    check(dep["spec"]["selector"]["matchLabels"].items()
          <= dep["spec"]["template"]["metadata"]["labels"].items(),
          f"{name}: selector does not match the pod's labels")
    psc = pod.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True, f"{name}: runAsNonRoot")
    check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{name}: seccompProfile")
    check(pod.get("automountServiceAccountToken") is False, f"{name}: automountServiceAccountToken")
    for c in pod["containers"]:
        where = f"{name}/{c['name']}"
        sc = c.get("securityContext", {})
        check(sc.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation")
        check(sc.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem")
        check(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{where}: capabilities drop ALL")
        check("readinessProbe" in c and "livenessProbe" in c, f"{where}: probes")
        check("requests" in c.get("resources", {}), f"{where}: resource requests")
        check("memory" in c.get("resources", {}).get("limits", {}), f"{where}: memory limit")
        for env in c.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                check(ref["name"] == secret_name,
                      f"{where}: env {env['name']} uses secret {ref['name']}, not {secret_name}")
                check(ref["key"] in secret_keys,
                      f"{where}: env {env['name']} uses key {ref['key']}, not created")
    for v in pod.get("volumes", []):
        if "secret" in v:
            check(v["secret"]["secretName"] == secret_name, f"{name}: volume {v['name']} secret")
        if "persistentVolumeClaim" in v:
            one("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"])
        if "configMap" in v:
            one("ConfigMap", v["configMap"]["name"])
    if name == "portcullis":
        c = pod["containers"][0]
        stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        grace = pod["terminationGracePeriodSeconds"]
        check(grace > stop + drain,
              f"terminationGracePeriodSeconds {grace} <= preStop {stop} + drain_timeout {drain}")
        mounts = {m["mountPath"] for m in c["volumeMounts"]}
        for f in secret_files:
            check(any(f["path"].startswith(m + "/") for m in mounts),
                  f"secret file {f['path']} is not under a mounted volume")
            key = f["path"].rsplit("/", 1)[1]
            check(key in secret_keys, f"secret file {f['path']}: key {key} not created")
        check(any(f.get("optional") for f in secret_files),
              "the previous secret file should be optional")

for pdb in by_kind.get("PodDisruptionBudget", []):
    one("Deployment", pdb["metadata"]["name"])
check(by_kind.get("PodDisruptionBudget"), "no PodDisruptionBudget")

for svc in by_kind["Service"]:
    sel = svc["spec"]["selector"]
    pods = [d for d in by_kind["Deployment"]
            if sel.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
    check(pods, f"Service {svc['metadata']['name']} selects no pod")
    for p in svc["spec"]["ports"]:
        target = p.get("targetPort", p["port"])
        names = {cp.get("name") for d in pods for c in d["spec"]["template"]["spec"]["containers"]
                 for cp in c.get("ports", [])}
        nums = {cp["containerPort"] for d in pods for c in d["spec"]["template"]["spec"]["containers"]
                for cp in c.get("ports", [])}
        check(target in names or target in nums,
              f"Service {svc['metadata']['name']}: targetPort {target} not a container port")

# The ServiceMonitor (no bundled schema: a CRD) selects a Service and one of its port names.
sm = yaml.safe_load(open("deploy/servicemonitor.yaml"))
check(sm["apiVersion"] == "monitoring.coreos.com/v1" and sm["kind"] == "ServiceMonitor",
      "servicemonitor.yaml: not a monitoring.coreos.com/v1 ServiceMonitor")
sel = sm["spec"]["selector"]["matchLabels"]
svcs = [s for s in by_kind["Service"] if sel.items() <= s["metadata"].get("labels", {}).items()]
check(len(svcs) == 1, f"ServiceMonitor selects {len(svcs)} Services, expected one")
for ep in sm["spec"]["endpoints"]:
    check(any(ep["port"] == p.get("name") for s in svcs for p in s["spec"]["ports"]),
          f"ServiceMonitor endpoint port {ep['port']} is no port of the selected Service")

if errors:
    for e in errors:
        print(f"check-deploy: {e}", file=sys.stderr)
    sys.exit(1)
print("check-deploy: cross-references and pod security ok")
PY

UNIT=deploy/systemd/portcullis.service
if command -v systemd-analyze >/dev/null 2>&1; then
  # verify needs ExecStart's binary to exist: check a copy pointing at a stand-in executable.
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  cp "$(type -P true)" "$tmp/portcullis"
  sed "s|/usr/local/bin/portcullis|$tmp/portcullis|g" "$UNIT" >"$tmp/portcullis.service"
  out=$(systemd-analyze verify "$tmp/portcullis.service" 2>&1) || fail "systemd-analyze verify: $out"
  [ -z "$out" ] || fail "systemd-analyze verify warns: $out"
  score=$(systemd-analyze security --offline=true --no-pager "$UNIT" 2>&1 \
    | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
  [ -n "$score" ] || fail "systemd-analyze security printed no score"
  awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s <= m) }' \
    || fail "systemd unit exposure $score > $MAX_EXPOSURE"
  echo "check-deploy: systemd unit verified, exposure $score (at most $MAX_EXPOSURE)"
else
  echo "check-deploy: systemd-analyze not found; the systemd unit was not checked"
fi
echo "check-deploy: ok"
