"""weave.fastdp.datapath documents its step sub-dicts with the step modules' own option docs:
doc_fragments/steps.py's DATAPATH is made from its NONCES, GUARDS, XFRM_STATE, VXLAN and
MESH_INFO (and the netns and state_dir fragments) by ``datapath_options`` below. ansible-test
wants a doc fragment's attributes to be plain strings, so DATAPATH is written out; this test
fails when it differs from what the step docs make, and

    .venv/bin/python -m tests.unit.test_doc_fragments

writes it again. In a sub-dict, a reference to one of the step's options, O(x), becomes
O(step.x); one to an option the sub-dict does not take names the step's module,
O(weave.fastdp.<module>#module:x)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit

FRAGMENTS = Path(__file__).resolve().parents[2] / (
    "collections/ansible_collections/weave/fastdp/plugins/doc_fragments")
STEPS = FRAGMENTS / "steps.py"
_OPTION_REF = re.compile(r"\bO\(([A-Za-z_][A-Za-z0-9_]*)([^)]*)\)")
_SA_REQUIRED = ("mesh", "peer_name", "local_address", "peers", "password")


def _fragments() -> dict[str, dict]:
    """{attribute: options} of steps.py, netns.py and state_dir.py, read as ansible-test reads
    them: plain string attributes of ModuleDocFragment."""
    found = {}
    for path in (STEPS, FRAGMENTS / "netns.py", FRAGMENTS / "state_dir.py"):
        namespace = {}
        exec(compile(path.read_text(), str(path), "exec"), namespace)  # noqa: S102 - our file
        for name, value in vars(namespace["ModuleDocFragment"]).items():
            if name.isupper():
                key = name if path == STEPS else path.stem.upper()
                found[key] = (yaml.safe_load(value) or {}).get("options")
    return found


def _references(text, step: str, module: str, names):
    if isinstance(text, list):
        return [_references(line, step, module, names) for line in text]

    def qualify(match):
        name, rest = match.groups()
        if "#" in rest:  # already names its plugin
            return match.group(0)
        if name in names:
            return f"O({step}.{name}{rest})"
        return f"O(weave.fastdp.{module}#module:{name}{rest})"

    return _OPTION_REF.sub(qualify, text)


def _qualified(value, step: str, module: str, names):
    if isinstance(value, dict):
        return {k: (_references(v, step, module, names) if k == "description"
                    else _qualified(v, step, module, names)) for k, v in value.items()}
    return value


def _sub_dict(step, module, options, description, *, drop=(), required=()) -> dict:
    options = {name: dict(spec, required=True) if name in required else spec
               for name, spec in options.items() if name not in drop}
    return {step: {"description": description, "type": "dict",
                   "suboptions": _qualified(options, step, module, set(options))}}


def datapath_options(f: dict[str, dict]) -> dict:
    """weave.fastdp.datapath's step options, from the step modules' docs ``f``."""
    netns, state_dir = f["NETNS"], f["STATE_DIR"]
    sas = {**f["XFRM_STATE"], **state_dir, **netns}

    def sa_step(step, direction):
        return _sub_dict(
            step, "xfrm_state", sas,
            f"The options of M(weave.fastdp.xfrm_state) for "
            f"O(weave.fastdp.xfrm_state#module:direction={direction}), without C(state) and "
            f"C(direction); what V(present) requires is required.",
            drop=("state", "direction"), required=_SA_REQUIRED)

    return {
        **_sub_dict("nonces", "nonces", {**f["NONCES"], **state_dir, **netns},
                    "The options of M(weave.fastdp.nonces)."),
        **_sub_dict("guards", "guards", {**f["GUARDS"], **netns},
                    "The options of M(weave.fastdp.guards); with O(nonces), each peer's "
                    "O(guards.peers[].inbound_spis) are those of the O(nonces) step (by peer "
                    "O(guards.peers[].name))."),
        **sa_step("inbound_sas", "inbound"),
        **_sub_dict("vxlan", "vxlan", {**f["VXLAN"], **netns},
                    "The options of M(weave.fastdp.vxlan)."),
        **sa_step("outbound_sas", "outbound"),
        **_sub_dict("verify", "mesh_info", {**f["MESH_INFO"], **netns},
                    "The options of M(weave.fastdp.mesh_info) but "
                    "O(weave.fastdp.mesh_info#module:verify), always on; traffic to every peer "
                    "must move the pair's ESP counters. Broken pairs are reported in "
                    "RV(verify.broken), not failed on (a peer may still be converging).",
                    drop=("verify",)),
    }


def _datapath_literal(f: dict[str, dict]) -> str:
    return yaml.safe_dump({"options": datapath_options(f)}, sort_keys=False, width=96)


def test_datapath_documents_the_step_modules_options_as_they_do():
    f = _fragments()
    assert f["DATAPATH"] == datapath_options(f), (
        "doc_fragments/steps.py DATAPATH differs from the step docs: "
        "run .venv/bin/python -m tests.unit.test_doc_fragments")


def test_every_step_option_of_datapath_is_documented_with_its_step_module():
    f = _fragments()
    for step, doc in (("nonces", "NONCES"), ("guards", "GUARDS"), ("vxlan", "VXLAN")):
        assert set(f["DATAPATH"][step]["suboptions"]) >= set(f[doc]), step


def rewrite() -> None:
    """Write steps.py's DATAPATH again from its step docs."""
    text = STEPS.read_text()
    head, marker, _ = text.partition('    DATAPATH = r"""\n')
    assert marker, "steps.py has no DATAPATH"
    body = _datapath_literal(_fragments())
    STEPS.write_text(f'{head}{marker}{body}"""\n')


if __name__ == "__main__":
    rewrite()
    sys.exit(0)
