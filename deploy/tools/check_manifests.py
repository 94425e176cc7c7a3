#!/usr/bin/env python3
"""Renders every Kubernetes overlay and checks what a cluster would: schemas, Pod Security, references.

- Rendering: a small renderer for the kustomize subset the layout uses (resources as files or
  directories, configMapGenerator with files/literals and behavior create/merge, generatorOptions
  disableNameSuffixHash). Debian's kubectl (1.20, kustomize v2.0.3) cannot read directory resources,
  so CI does not depend on it; where a modern `kubectl kustomize` exists, its output must be the
  same resources as this renderer's, and a kustomization key the renderer does not know fails.
- Schemas: kubernetes-validate --strict (unknown fields rejected) against the newest Kubernetes it
  ships; ServiceMonitor and PrometheusRule (CRDs it has no schema for) against strict schemas of the
  fields used here, and the PrometheusRule's groups must be deploy/prometheus/joincanary-rules.yaml's.
- Pod Security "restricted" (plus a read-only root filesystem) on every pod template.
- Every ConfigMap or Secret a pod references is defined in the render, or documented in
  docs/deploy.md with `kubectl create secret generic NAME` naming each key used.
- deploy/alertmanager/ (the receiver templates' ConfigMap for the Prometheus Operator's
  Alertmanager, a ServiceMonitor scraping that Alertmanager and the PrometheusRule of
  deploy/prometheus/joincanary-alertmanager-rules.yaml) renders and validates too; its
  ConfigMap holds the shipped templates, and the
  shipped alertmanager.yml's `templates:` names the path the Operator mounts it at
  (/etc/alertmanager/configmaps/<name>/), as docs/deploy.md tells users to list it.
Rendered manifests are written to target/deploy/kubernetes/<overlay>.yaml.
"""
import copy
import os
import re
import shutil
import subprocess
import sys

import jsonschema
import yaml

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
KDIR = os.path.join(ROOT, "deploy/kubernetes")
OUT = os.path.join(ROOT, "target/deploy/kubernetes")
DOC = os.path.join(ROOT, "docs/deploy.md")
RULES = os.path.join(ROOT, "deploy/prometheus/joincanary-rules.yaml")

KNOWN_KEYS = {"apiVersion", "kind", "resources", "configMapGenerator", "generatorOptions"}

errors = []


def fail(msg):
    errors.append(msg)
    print("ERROR", msg)


# ---- rendering -------------------------------------------------------------------------------

def render(path):
    """The resources of the kustomization in directory `path`, in order."""
    kfile = os.path.join(path, "kustomization.yaml")
    k = yaml.safe_load(open(kfile))
    unknown = set(k) - KNOWN_KEYS
    if unknown:
        sys.exit(f"{kfile}: {sorted(unknown)} not handled by {__file__}; extend the renderer")
    out = []
    for r in k.get("resources") or []:
        p = os.path.normpath(os.path.join(path, r))
        if os.path.isdir(p):
            out.extend(render(p))
        else:
            out.extend(d for d in yaml.safe_load_all(open(p)) if d)
    if not (k.get("generatorOptions") or {}).get("disableNameSuffixHash"):
        sys.exit(f"{kfile}: the renderer only handles disableNameSuffixHash: true")
    for g in k.get("configMapGenerator") or []:
        data = {}
        for f in g.get("files") or []:
            key, _, src = f.partition("=") if "=" in f else (os.path.basename(f), "", f)
            data[key] = open(os.path.join(path, src)).read()
        for lit in g.get("literals") or []:
            key, _, value = lit.partition("=")
            data[key] = value
        behavior = g.get("behavior", "create")
        existing = [d for d in out if d["kind"] == "ConfigMap" and d["metadata"]["name"] == g["name"]]
        if behavior == "create":
            if existing:
                sys.exit(f"{kfile}: ConfigMap {g['name']} created twice")
            out.append({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": g["name"]}, "data": data})
        elif behavior == "merge":
            if not existing:
                sys.exit(f"{kfile}: ConfigMap {g['name']} merged but not defined")
            existing[0]["data"].update(data)
        else:
            sys.exit(f"{kfile}: behavior {behavior} not handled")
    return out


def key(doc):
    return (doc["kind"], doc["metadata"]["name"])


def compare_with_kubectl(overlay, docs):
    kubectl = shutil.which("kubectl")
    if not kubectl:
        return "kubectl not installed"
    run = subprocess.run([kubectl, "kustomize", overlay], capture_output=True, text=True)
    if run.returncode != 0:
        # Debian's kubectl 1.20 (kustomize v2.0.3) cannot read directory resources.
        return f"kubectl kustomize unusable here ({run.stderr.strip().splitlines()[-1:]})"
    theirs = sorted((d for d in yaml.safe_load_all(run.stdout) if d), key=key)
    ours = sorted(copy.deepcopy(docs), key=key)
    if theirs != ours:
        fail(f"{overlay}: kubectl kustomize renders differently from {__file__}")
        return "differs"
    return "kubectl kustomize renders the same"


# ---- schemas ---------------------------------------------------------------------------------

def strict(schema):
    """additionalProperties: false wherever properties are listed (what --strict does)."""
    if isinstance(schema, dict):
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        for v in schema.values():
            strict(v)
    elif isinstance(schema, list):
        for v in schema:
            strict(v)
    return schema


STR = {"type": "string"}
STRMAP = {"type": "object", "additionalProperties": STR}
META = {"type": "object", "required": ["name"],
        "properties": {"name": STR, "namespace": STR, "labels": STRMAP, "annotations": STRMAP}}
DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
SELECTOR = {"type": "object", "properties": {
    "matchLabels": STRMAP,
    "matchExpressions": {"type": "array", "items": {"type": "object", "required": ["key", "operator"], "properties": {
        "key": STR, "operator": STR, "values": {"type": "array", "items": STR}}}}}}
# The fields of monitoring.coreos.com/v1 used here, typed as in the Prometheus Operator's CRDs.
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): strict({
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {"apiVersion": STR, "kind": STR, "metadata": META, "spec": {
            "type": "object", "required": ["selector", "endpoints"], "properties": {
                "selector": SELECTOR, "jobLabel": STR,
                "namespaceSelector": {"type": "object", "properties": {
                    "any": {"type": "boolean"}, "matchNames": {"type": "array", "items": STR}}},
                "endpoints": {"type": "array", "minItems": 1, "items": {"type": "object", "properties": {
                    "port": STR, "path": STR, "scheme": {"enum": ["http", "https"]},
                    "interval": DURATION, "scrapeTimeout": DURATION, "honorLabels": {"type": "boolean"}}}}}}}}),
    ("monitoring.coreos.com/v1", "PrometheusRule"): strict({
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {"apiVersion": STR, "kind": STR, "metadata": META, "spec": {
            "type": "object", "properties": {"groups": {"type": "array", "items": {
                "type": "object", "required": ["name"], "properties": {
                    "name": STR, "interval": DURATION, "rules": {"type": "array", "items": {
                        "type": "object", "required": ["expr"],
                        "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
                        "properties": {"alert": STR, "record": STR, "expr": STR, "for": DURATION,
                                       "keep_firing_for": DURATION, "labels": STRMAP,
                                       "annotations": STRMAP}}}}}}}}}}),
}


def validate(doc, where):
    import kubernetes_validate.utils as kv
    crd = CRD_SCHEMAS.get((doc.get("apiVersion"), doc.get("kind")))
    if crd is not None:
        try:
            jsonschema.validate(doc, crd)
        except jsonschema.ValidationError as e:
            fail(f"{where}: {'.'.join(map(str, e.path))}: {e.message}")
        return f"{doc['kind']} (CRD, own strict schema)"
    try:
        version = kv.validate(doc, kv.latest_version(), strict=True)
        return f"{doc['kind']} (Kubernetes {version}, strict)"
    except kv.ValidationError as e:
        fail(f"{where}: {'.'.join(map(str, e.path))}: {e.message}")
    except kv.SchemaNotFoundError:
        fail(f"{where}: no schema for {doc['apiVersion']} {doc['kind']}")
    return None


# ---- Pod Security "restricted" -----------------------------------------------------------------

ALLOWED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                   "persistentVolumeClaim", "projected", "secret"}


def pod_security(pod, where):
    psc = pod.get("securityContext") or {}
    if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
        fail(f"{where}: host namespaces")
    for v in pod.get("volumes") or []:
        kinds = set(v) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            fail(f"{where}: volume {v['name']} of type {kinds - ALLOWED_VOLUMES}")
    for c in (pod.get("initContainers") or []) + pod["containers"]:
        csc = c.get("securityContext") or {}
        w = f"{where}: container {c['name']}"
        if not csc.get("runAsNonRoot", psc.get("runAsNonRoot")):
            fail(f"{w}: runAsNonRoot must be true")
        # The kubelet can only verify runAsNonRoot against a numeric user: the image's USER
        # may be a name, so the pod says the number.
        user = csc.get("runAsUser", psc.get("runAsUser"))
        if not isinstance(user, int) or isinstance(user, bool) or user <= 0:
            fail(f"{w}: runAsUser must be a numeric non-root user, not {user!r}")
        if csc.get("allowPrivilegeEscalation") is not False:
            fail(f"{w}: allowPrivilegeEscalation must be false")
        if csc.get("privileged"):
            fail(f"{w}: privileged")
        caps = csc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            fail(f"{w}: capabilities must drop ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            fail(f"{w}: capabilities added")
        seccomp = (csc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            fail(f"{w}: seccompProfile must be RuntimeDefault or Localhost")
        if csc.get("readOnlyRootFilesystem") is not True:
            fail(f"{w}: readOnlyRootFilesystem must be true")
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                fail(f"{w}: hostPort")
        res = c.get("resources") or {}
        if not res.get("requests") or not (res.get("limits") or {}).get("memory"):
            fail(f"{w}: resources: requests and a memory limit expected")
        # The Prometheus spelling of the endpoints (as Prometheus' and Alertmanager's own pods
        # are probed), on a port the container declares.
        ports = {p.get("name") for p in c.get("ports") or []} | {p.get("containerPort") for p in c.get("ports") or []}
        for probe, path in (("livenessProbe", "/-/healthy"), ("readinessProbe", "/-/ready")):
            if probe not in c:
                fail(f"{w}: no {probe}")
                continue
            get = c[probe].get("httpGet") or {}
            if get.get("path") != path:
                fail(f"{w}: {probe} asks {get.get('path')!r}, expected {path!r}")
            if get.get("port") not in ports:
                fail(f"{w}: {probe} port {get.get('port')!r} is not a port of the container")


# ---- references ----------------------------------------------------------------------------------

def references(pod):
    """(kind, name, key or None) for every ConfigMap and Secret the pod uses."""
    refs = []
    for v in pod.get("volumes") or []:
        if "configMap" in v:
            refs.append(("ConfigMap", v["configMap"]["name"], None))
        if "secret" in v:
            refs.append(("Secret", v["secret"]["secretName"], None))
    for c in (pod.get("initContainers") or []) + pod["containers"]:
        for e in c.get("env") or []:
            vf = e.get("valueFrom") or {}
            if "configMapKeyRef" in vf:
                refs.append(("ConfigMap", vf["configMapKeyRef"]["name"], vf["configMapKeyRef"]["key"]))
            if "secretKeyRef" in vf:
                refs.append(("Secret", vf["secretKeyRef"]["name"], vf["secretKeyRef"]["key"]))
        for e in c.get("envFrom") or []:
            if "configMapRef" in e:
                refs.append(("ConfigMap", e["configMapRef"]["name"], None))
            if "secretRef" in e:
                refs.append(("Secret", e["secretRef"]["name"], None))
    return refs


def check_references(docs, where, doc_text):
    defined = {key(d): d for d in docs}
    for d in docs:
        pod = pod_template(d)
        if pod is None:
            continue
        for kind, name, k in references(pod):
            if (kind, name) in defined:
                data = defined[(kind, name)].get("data") or {}
                if k is not None and k not in data:
                    fail(f"{where}: {kind} {name} has no key {k}")
                continue
            if kind == "Secret":
                m = re.search(r"kubectl create secret generic " + re.escape(name) + r"\b([^`]*?)(?:\n\n|```)",
                              doc_text, re.S)
                if not m:
                    fail(f"{where}: Secret {name} is neither defined nor documented "
                         f"(`kubectl create secret generic {name}` in docs/deploy.md)")
                elif k is not None and f"--from-literal={k}=" not in m.group(1) and f"--from-file={k}=" not in m.group(1):
                    fail(f"{where}: docs/deploy.md creates Secret {name} without key {k}")
                continue
            fail(f"{where}: {kind} {name} is referenced but not defined")
    # Nothing in the manifests may carry a Secret: applying them would overwrite the real one.
    for d in docs:
        if d["kind"] == "Secret":
            fail(f"{where}: defines Secret {d['metadata']['name']}; create secrets by hand instead")


def pod_template(d):
    if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return d["spec"]["template"]["spec"]
    if d["kind"] == "Pod":
        return d["spec"]
    return None


# ---- main ------------------------------------------------------------------------------------

AM_DIR = os.path.join(ROOT, "deploy/alertmanager")
AM_RULES = os.path.join(ROOT, "deploy/prometheus/joincanary-alertmanager-rules.yaml")


def check_alertmanager_templates(doc_text):
    """The templates' ConfigMap: rendered, valid, holding the shipped templates, mounted where the
    shipped config looks for it, and listed in docs/deploy.md's Alertmanager resource."""
    docs = render(AM_DIR)
    with open(os.path.join(OUT, "alertmanager.yaml"), "w") as f:
        yaml.safe_dump_all(docs, f, sort_keys=False)
    note = compare_with_kubectl(AM_DIR, docs)
    kinds = sorted(d["kind"] for d in docs)
    if kinds != ["ConfigMap", "PrometheusRule", "ServiceMonitor"]:
        return fail(f"deploy/alertmanager: expected a ConfigMap, a ServiceMonitor and a PrometheusRule, "
                    f"rendered {[key(d) for d in docs]}")
    for d in docs:
        validate(d, f"deploy/alertmanager: {d['kind']}/{d['metadata']['name']}")
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    rule = next(d for d in docs if d["kind"] == "PrometheusRule")
    if rule["spec"]["groups"] != yaml.safe_load(open(AM_RULES))["groups"]:
        fail(f"deploy/alertmanager: PrometheusRule differs from {AM_RULES}")
    sm = next(d for d in docs if d["kind"] == "ServiceMonitor")
    # The Service the Operator creates for every Alertmanager: alertmanager-operated, port `web`.
    if (sm["spec"]["selector"].get("matchLabels") != {"operated-alertmanager": "true"}
            or [e.get("port") for e in sm["spec"]["endpoints"]] != ["web"]):
        fail("deploy/alertmanager: the ServiceMonitor does not select the Operator's alertmanager-operated Service, port web")
    name = cm["metadata"]["name"]
    shipped = open(os.path.join(AM_DIR, "templates/joincanary.tmpl")).read()
    if cm["data"].get("joincanary.tmpl") != shipped:
        fail(f"deploy/alertmanager: ConfigMap {name} does not hold templates/joincanary.tmpl as key joincanary.tmpl")
    mounted = f"/etc/alertmanager/configmaps/{name}/*.tmpl"
    config = yaml.safe_load(open(os.path.join(AM_DIR, "alertmanager.yml")))
    if mounted not in (config.get("templates") or []):
        fail(f"deploy/alertmanager/alertmanager.yml: `templates:` lacks {mounted}, where the Operator mounts {name}")
    if f"configMaps: [{name}]" not in doc_text:
        fail(f"docs/deploy.md: does not tell to list `configMaps: [{name}]` in the Alertmanager resource")
    print(f"deploy/alertmanager: ConfigMap/{name} checked, mounted at {mounted}; ServiceMonitor and "
          f"PrometheusRule checked; {note}")


def check_job(docs, where):
    """Each ServiceMonitor's scrape job, as the Prometheus Operator names it (the value of the
    Service's label named by `jobLabel`, else the Service's name), is the job the PrometheusRule
    selects: a job named otherwise leaves every rule blind to the probers."""
    def strings(x):
        if isinstance(x, str):
            yield x
        for v in (x.values() if isinstance(x, dict) else x if isinstance(x, list) else []):
            yield from strings(v)
    # `job="joincanary"` in expressions, `job=\"joincanary\"` inside a summary's query.
    selected = {m for d in docs if d["kind"] == "PrometheusRule" for text in strings(d["spec"]["groups"])
                for m in re.findall(r'job=\\?"([^"\\]*)', text)}
    services = [d for d in docs if d["kind"] == "Service"]
    for sm in (d for d in docs if d["kind"] == "ServiceMonitor"):
        wanted = sm["spec"]["selector"].get("matchLabels") or {}
        for svc in services:
            labels = svc["metadata"].get("labels") or {}
            if any(labels.get(k) != v for k, v in wanted.items()):
                continue
            label = sm["spec"].get("jobLabel")
            job = labels.get(label) if label else svc["metadata"]["name"]
            if {job} != selected:
                fail(f"{where}: ServiceMonitor/{sm['metadata']['name']} scrapes Service/{svc['metadata']['name']} "
                     f"as job {job!r}, the PrometheusRule selects {sorted(selected)}")


def main():
    doc_text = open(DOC).read()
    rules = yaml.safe_load(open(RULES))
    overlays = sorted(os.listdir(os.path.join(KDIR, "overlays")))
    if len(overlays) < 3:
        fail(f"expected three example regions, found {overlays}")
    os.makedirs(OUT, exist_ok=True)
    regions = set()
    for name in overlays:
        overlay = os.path.join(KDIR, "overlays", name)
        where = f"overlays/{name}"
        docs = render(overlay)
        with open(os.path.join(OUT, f"{name}.yaml"), "w") as f:
            yaml.safe_dump_all(docs, f, sort_keys=False)
        note = compare_with_kubectl(overlay, docs)
        kinds = []
        for d in docs:
            kinds.append(validate(d, f"{where}: {d['kind']}/{d['metadata']['name']}"))
            pod = pod_template(d)
            if pod is not None:
                pod_security(pod, f"{where}: {d['kind']}/{d['metadata']['name']}")
            if d["kind"] == "StatefulSet":
                if d["spec"].get("replicas") != 1:
                    fail(f"{where}: one replica per region (two would page twice)")
                claims = {c["metadata"]["name"] for c in d["spec"].get("volumeClaimTemplates") or []}
                mounts = {m["name"] for m in pod["containers"][0].get("volumeMounts") or []
                          if m["mountPath"] == "/var/lib/joincanary"}
                if not mounts or not mounts <= claims:
                    fail(f"{where}: state (/var/lib/joincanary) must be on a volumeClaimTemplate")
            if d["kind"] == "PrometheusRule" and d["spec"]["groups"] != rules["groups"]:
                fail(f"{where}: PrometheusRule differs from {RULES}")
            if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "joincanary-env":
                region = d["data"].get("REGION")
                if region != name:
                    fail(f"{where}: REGION is {region!r}, expected the overlay's name")
                regions.add(region)
                peers = {d["data"].get("PEER_1"), d["data"].get("PEER_2")}
                if any(p is None or region in p for p in peers) or len(peers) != len(overlays) - 1:
                    fail(f"{where}: PEER_1/PEER_2 {sorted(map(str, peers))} must be the other regions' probers")
                if region not in (d["data"].get("STATUS_URL") or ""):
                    fail(f"{where}: STATUS_URL does not name the region")
        check_references(docs, where, doc_text)
        check_job(docs, where)
        wanted = {"StatefulSet", "Service", "ServiceMonitor", "PrometheusRule", "ConfigMap"}
        missing = wanted - {d["kind"] for d in docs}
        if missing:
            fail(f"{where}: missing {sorted(missing)}")
        print(f"{where}: {len(docs)} resources checked: {', '.join(k for k in kinds if k)}; {note}")
    if len(regions) != len(overlays):
        fail(f"overlays share a region: {regions}")
    check_alertmanager_templates(doc_text)
    print(f"kubernetes manifests: {len(overlays)} overlays, {len(errors)} errors")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
