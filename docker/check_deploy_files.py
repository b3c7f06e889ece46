"""Check that heroku.yml and devcontainer.json parse and name things that exist.

Run by docker/container-test.sh: stages are read from the Dockerfile, services
from docker-compose.yml, so a renamed stage or service fails here, not on deploy.
"""

import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    stages = set(
        re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.M | re.I)
    )
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    vscode = yaml.safe_load((ROOT / "docker-compose.vscode.yml").read_text())
    heroku = yaml.safe_load((ROOT / "heroku.yml").read_text())
    devcontainer = json.loads((ROOT / ".devcontainer" / "devcontainer.json").read_text())
    services = set(compose["services"])

    problems = []
    web = heroku["build"]["docker"]["web"]
    if (ROOT / web["dockerfile"]).name != "Dockerfile" or web["target"] not in stages:
        problems.append(
            f"heroku.yml builds {web}, but the Dockerfile's stages are {sorted(stages)}"
        )
    if "web" not in heroku.get("run", {}):
        problems.append("heroku.yml runs no web process")
    for name, service in compose["services"].items():
        target = service.get("build", {}).get("target")
        if target not in stages:
            problems.append(f"docker-compose.yml service {name} targets unknown stage {target}")
    if not set(vscode["services"]) <= services:
        problems.append("docker-compose.vscode.yml overrides services docker-compose.yml lacks")
    files = [Path(".devcontainer", f).as_posix() for f in devcontainer["dockerComposeFile"]]
    if sorted(Path(f).name for f in files) != ["docker-compose.vscode.yml", "docker-compose.yml"]:
        problems.append(f"devcontainer.json uses compose files {files}")
    if devcontainer["service"] not in services or not set(devcontainer["runServices"]) <= services:
        problems.append(f"devcontainer.json attaches to unknown service {devcontainer['service']}")
    settings = devcontainer["customizations"]["vscode"]["settings"]
    if settings.get("python.defaultInterpreterPath") != "/opt/venv/bin/python":
        problems.append("devcontainer.json does not use /opt/venv/bin/python")
    if 8000 not in devcontainer["forwardPorts"]:
        problems.append("devcontainer.json does not forward port 8000")

    for problem in problems:
        print(f"deploy files: {problem}", file=sys.stderr)
    if not problems:
        print(f"deploy files: ok (stages {sorted(stages)}, services {sorted(services)})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
