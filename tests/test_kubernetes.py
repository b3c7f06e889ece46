"""The Kubernetes manifests (deploy/kubernetes) and the KServe example (deploy/kserve),
held to the app. No cluster runs here: the kustomizations are rendered with `kubectl
kustomize`, every object is validated offline against a current Kubernetes release's
schemas (kubernetes-validate, strict), and the tests check what the app needs of them."""

import re
import shutil
import subprocess

import kubernetes_validate
import pytest
import yaml
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from app.main import routes
from tests.helpers import ROOT, settings_read

KUBERNETES = "1.37.0"
KUSTOMIZATIONS = ["deploy/kubernetes/base", "deploy/kubernetes/overlays/production"]
KSERVE = ROOT / "deploy" / "kserve" / "inferenceservice.yaml"


def paths(table: list, prefix: str = "") -> set[str]:
    """Every path the route table answers, the mounted apps' routes included."""
    found = set()
    for route in table:
        found.add(prefix + route.path)
        inner = getattr(getattr(route, "app", None), "routes", None)
        if isinstance(route, Mount) and inner and not isinstance(route.app, StaticFiles):
            found |= paths(inner, prefix + route.path)
    return found


ROUTES = paths(routes)


def rendered(kustomization: str) -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (Debian's kubernetes-client; .ci/run installs it)")
    done = subprocess.run(
        [kubectl, "kustomize", str(ROOT / kustomization)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def by_kind(objects: list[dict]) -> dict[str, dict]:
    return {obj["kind"]: obj for obj in objects}


def measured_rss_mb() -> float:
    """One Pounce process's RSS after its requests, as docs/benchmarks.md's last run says."""
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    row = re.search(r"^\| pounce \| [^|]+ \| [\d.]+ \| \d+ \| (\d+) \|", page, re.M)
    return float(row.group(1))


def mebibytes(quantity: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", quantity).groups()
    return int(number) * (1024 if unit == "Gi" else 1) * 2**20 / 1e6


@pytest.mark.slow
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_manifests_render_and_validate(kustomization: str) -> None:
    objects = rendered(kustomization)
    kinds = by_kind(objects)
    assert set(kinds) == {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)  # raises when invalid


@pytest.mark.slow
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_manifests_fit_the_app(kustomization: str) -> None:
    kinds = by_kind(rendered(kustomization))
    deployment = kinds["Deployment"]["spec"]
    pod = deployment["template"]["spec"]
    (container,) = pod["containers"]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert set(env) <= settings_read()
    port = container["ports"][0]
    assert port["name"] == "http" and str(port["containerPort"]) == env["PORT"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert (
            container[probe]["httpGet"]["path"] in ROUTES
            and container[probe]["httpGet"]["port"] == "http"
        )
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # Terminating: the preStop pause, then GRACEFUL_TIMEOUT to drain, inside the grace period.
    pause = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] > pause + float(env["GRACEFUL_TIMEOUT"])
    limit = mebibytes(container["resources"]["limits"]["memory"])
    assert limit >= 1.5 * measured_rss_mb()
    # Locked down, with somewhere to write.
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert security["capabilities"]["drop"] == ["ALL"] and pod["securityContext"]["runAsNonRoot"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    empty = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    assert mounts["/tmp"] in empty and mounts[env["MODEL_CACHE_DIR"]] in empty
    annotations = deployment["template"]["metadata"]["annotations"]
    assert (
        annotations["prometheus.io/path"] in ROUTES
        and annotations["prometheus.io/port"] == env["PORT"]
    )
    labels = deployment["template"]["metadata"]["labels"]
    assert kinds["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert kinds["Service"]["spec"]["selector"].items() <= labels.items()
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
    assert kinds["HorizontalPodAutoscaler"]["spec"]["metrics"][0]["resource"]["name"] == "cpu"


@pytest.mark.unit
def test_kserve_example_speaks_v2_with_the_same_image() -> None:
    service = yaml.safe_load(KSERVE.read_text())
    assert service["apiVersion"] == "serving.kserve.io/v1beta1"
    (container,) = service["spec"]["predictor"]["containers"]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert set(env) <= settings_read()
    port = container["ports"][0]["containerPort"]
    assert str(port) == env["PORT"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": port}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": port}
    assert {"/v2/health/ready", "/v2/health/live"} <= ROUTES
    deployment = yaml.safe_load((ROOT / "deploy/kubernetes/base/deployment.yaml").read_text())
    (base,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["resources"] == base["resources"]
    production = (ROOT / "deploy/kubernetes/overlays/production/kustomization.yaml").read_text()
    assert container["image"].split(":")[0] in production
