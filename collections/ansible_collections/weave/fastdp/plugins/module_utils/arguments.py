"""What the modules share: argument-spec entries (their documentation is the doc fragment of the
same name, netns and state_dir, or each module's own words, as what retain keeps differs) and
the run of one converge step.

A step is a function ``(module, params) -> result`` that decides, then acts unless
``module.check_mode``, and raises Failed. A module runs one step on its own parameters;
weave.fastdp.datapath runs several in one Python process, each on its own sub-dict."""

from __future__ import annotations

NETNS = {"netns": {"type": "str"}}
STATE_DIR = {"state_dir": {"type": "path", "default": "/var/lib/weave-fastdp"}}
RETAIN_AND_PURGE = {
    "retain": {"type": "list", "elements": "str", "default": []},
    "purge": {"type": "bool", "default": True},
}


class Failed(Exception):
    """A step that cannot go on: the message, and result keys that help to see why."""

    def __init__(self, msg: str, **result):
        super().__init__(msg)
        self.result = result


def require(module, missing: dict | None) -> None:
    """Fail with Ansible's missing-library message, before anything changes, for the library
    ``missing`` names: {library, exception (the failed import's traceback), reason (optional)}."""
    if missing:
        from ansible.module_utils.basic import missing_required_lib

        module.fail_json(msg=missing_required_lib(missing["library"], reason=missing.get("reason")),
                         exception=missing["exception"])


def run(module, step) -> None:
    """Exit the module with the result of ``step`` on its parameters, or fail with its message."""
    try:
        result = step(module, module.params)
    except Failed as exc:
        module.fail_json(msg=str(exc), **exc.result)
    module.exit_json(**result)
