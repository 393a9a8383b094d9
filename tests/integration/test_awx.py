"""AWX artefacts: the execution-environment build context and the configuration-as-code play.

Building the EE image needs a registry (not reachable here); `ansible-builder
create` producing a complete context is the part CI can prove.
"""

import re
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
AWX = ROOT / "examples" / "awx"


def test_make_ee_context_builds_a_context_with_the_collection_pinned_base_and_core():
    """`make ee-context` is the command the EE file's comment gives; run it as written."""
    res = subprocess.run(["make", "-s", "ee-context"], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    ctx = ROOT / ".cache" / "ee" / "context"
    dockerfile = next(p for p in (ctx / "Dockerfile", ctx / "Containerfile") if p.is_file()).read_text()
    assert "ansible-core>=2.19.4,<2.20" in dockerfile
    base = yaml.safe_load((AWX / "execution-environment.yml").read_text())["images"]["base_image"]["name"]
    assert re.fullmatch(r"[\w./-]+@sha256:[0-9a-f]{64}", base), f"base image not pinned by digest: {base}"
    assert base in dockerfile
    assert (ctx / "_build" / "collections" / "tradeops-stack.tar.gz").is_file()
    assert "/build/collections/tradeops-stack.tar.gz" in (ctx / "_build" / "requirements.yml").read_text()
    # the collection's Python needs come from the tarball (introspect), not a second list here
    assert not (ctx / "_build" / "requirements.txt").exists()


def test_introspect_derives_the_ee_python_needs_from_the_collections_requirements(tmp_path):
    """What `ansible-builder introspect` reads from the installed collection is requirements.txt, line for line."""
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "ANSIBLE_CONFIG": str(tmp_path / "ansible.cfg")}
    (tmp_path / "ansible.cfg").write_text("[defaults]\n")
    subprocess.run(
        [BIN / "ansible-galaxy", "collection", "build", str(ROOT), "--output-path", str(tmp_path)],
        check=True,
        capture_output=True,
        env=env,
    )
    (tarball,) = tmp_path.glob("tradeops-stack-*.tar.gz")
    inst = tmp_path / "collections"
    subprocess.run(
        [BIN / "ansible-galaxy", "collection", "install", "--no-deps", "-p", str(inst), str(tarball)],
        check=True,
        capture_output=True,
        env=env,
    )
    res = subprocess.run(
        [BIN / "ansible-builder", "introspect", "--sanitize", str(inst)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    derived = yaml.safe_load(res.stdout)
    wanted = [
        line.split("#")[0].strip()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    python = " ".join(derived["python"])
    for requirement in wanted:
        assert requirement.replace(" ", "") in python.replace(" ", ""), (requirement, derived["python"])
    assert "jmespath" not in python
    assert any("python3-devel" in line for line in derived["system"])


def test_awx_configuration_play_and_wrappers_pass_syntax_check():
    plays = [AWX / "configure.yml", *sorted((AWX / "project").glob("*.yml"))]
    for play in plays:
        res = subprocess.run(
            [BIN / "ansible-playbook", "--syntax-check", "-i", "localhost,", str(play)],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert res.returncode == 0, f"{play.name}: {res.stdout[-1500:]}{res.stderr[-1500:]}"


def test_survey_and_schedule_variables_are_read_by_the_playbooks():
    """Every survey variable and schedule extra_data key of configure.yml is a name the job's playbook
    (through its wrapper) or the stack role's defaults really read; a renamed variable fails here."""

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))
    config = yaml.load((AWX / "configure.yml").read_text(), Loader=Loader)[0]  # noqa: S506 - SafeLoader subclass
    defaults = (ROOT / "roles" / "stack" / "defaults" / "main.yml").read_text()
    # the job templates' inventory (the project's inventories/paper) reads some, such as tradeops_bot_image
    inventory = "\n".join(p.read_text() for p in sorted((ROOT / "inventories" / "paper").rglob("*.yml")))
    specs = yaml.safe_load((ROOT / "roles" / "stack" / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    role_options = set(specs["main"]["options"])
    templates = {t["name"]: t for t in config["vars"]["awx_job_templates"]}
    read_by: dict[str, str] = {}
    problems = []

    def reads(playbook_text: str, name: str) -> bool:
        used = re.search(rf"\b{re.escape(name)}\b\s*(\||\}}|\)|$|\s*(==|!=|if|else|and|or))", playbook_text, re.M)
        if re.search(r"\{\{\s*%s\b" % re.escape(name), inventory):
            return True
        if name.startswith(("tradeops_", "stack_")):
            # read by the role: a default of the role that uses it, or a role option set directly
            return bool(used) or name in role_options or bool(re.search(rf"\b{name}\b", defaults))
        return bool(used)

    checked = 0
    for name, template in templates.items():
        wrapper = yaml.safe_load((AWX / "project" / template["playbook"]).read_text())
        target = wrapper[0]["ansible.builtin.import_playbook"]
        assert target.startswith("tradeops.stack."), (name, target)
        text = (ROOT / "playbooks" / (target.split(".")[-1] + ".yml")).read_text()
        keys = [q["variable"] for q in template["survey"]] + list(template.get("extra_vars", {}))
        for task in config["tasks"]:
            sched = task.get("awx.awx.schedule")
            if sched and sched["unified_job_template"] == name:
                keys += list(sched.get("extra_data", {}))
                survey_vars = {q["variable"] for q in template["survey"]}
                problems += [f"{name}: schedule sets {k} but the survey does not ask for it (AWX rejects it)"
                             for k in sched.get("extra_data", {}) if k not in survey_vars]  # fmt: skip
        for key in keys:
            checked += 1
            if not reads(text, key):
                problems.append(f"{name}: {key} is not read by {target} or the stack role")
            read_by[key] = target
    print(f"{checked} survey/schedule/extra variables checked over {len(templates)} job templates")
    assert not problems, problems
    # the playbooks' inputs map onto role variables
    assert read_by.get("tradeops_rollback_to_release") == "tradeops.stack.rollback"
    assert read_by.get("tradeops_block_fail_on_zai") == "tradeops.stack.paper_block"
    assert read_by.get("tradeops_diagnose_since") == "tradeops.stack.diagnose"


def test_survey_variables_are_declared_inputs_of_the_playbook():
    """A survey asks only for inputs the playbook's entry point of tradeops.stack.inputs declares,
    with choices the spec allows: the play validates them again, so a survey that drifts fails here."""
    config = yaml.safe_load((AWX / "configure.yml").read_text().replace("!unsafe", ""))[0]
    inputs = yaml.safe_load((ROOT / "roles" / "inputs" / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    problems, checked = [], 0
    for template in config["vars"]["awx_job_templates"]:
        playbook = template["playbook"].removesuffix(".yml")
        spec = inputs[playbook]["options"]
        for question in template["survey"]:
            checked += 1
            option = spec.get(question["variable"])
            if option is None:
                problems.append(
                    f"{template['name']}: survey asks for {question['variable']}, not an input of {playbook}"
                )
                continue
            choices = [str(c).lower() for c in question.get("choices", [])]
            allowed = ["true", "false"] if option["type"] == "bool" else [str(c) for c in option.get("choices", [])]
            if choices and allowed and not set(choices) <= set(allowed):
                problems.append(
                    f"{template['name']}: {question['variable']} offers {choices}, the spec allows {allowed}"
                )
        for key in template.get("extra_vars", {}):
            checked += 1
            if key not in spec:
                problems.append(f"{template['name']}: extra var {key} is not an input of {playbook}")
    assert checked > 10 and not problems, problems
