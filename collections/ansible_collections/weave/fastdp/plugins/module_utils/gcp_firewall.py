"""The mesh's ESP ingress rule in a Google Cloud VPC, through the Compute Engine v1 REST API.

Decide first (read the rule, compare it normalised, plan insert / patch / delete / nothing),
then act unless in check mode. Writes carry a requestId, so a retried write is applied once,
and each one waits until its global operation is DONE.
"""

from __future__ import annotations

import ipaddress
import json
import random
import re
import time
import uuid

try:
    import google.auth
    import google.auth.exceptions
    import google.oauth2.credentials
    import google.oauth2.service_account
    import requests
    from google.auth.transport.requests import AuthorizedSession
except ImportError as exc:  # reported by the module with missing_required_lib
    IMPORT_ERROR = exc
else:
    IMPORT_ERROR = None

SCOPES = ["https://www.googleapis.com/auth/compute"]
MARKER = "[managed by weave.fastdp]"
NAME_PATTERN = re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?")
# The API's well-known protocol names, so that "50" and "esp" compare equal.
PROTOCOL_NAMES = {"1": "icmp", "4": "ipip", "6": "tcp", "17": "udp", "50": "esp", "51": "ah",
                  "132": "sctp"}
# What the API fills in when a field was never set.
DEFAULTS = {"direction": "INGRESS", "priority": 1000, "description": "", "disabled": False,
            "logConfig": {"enable": False}, "allowed": [], "sourceRanges": [], "sourceTags": [],
            "targetTags": [], "targetServiceAccounts": []}
# The fields this collection owns, in diff and patch order.
FIELDS = ("allowed", "sourceRanges", "sourceTags", "targetTags", "targetServiceAccounts",
          "priority", "description", "logConfig", "disabled")
RETRIED = {429, 500, 502, 503, 504}


class GcpError(Exception):
    pass


def credentials(params):
    """google-auth credentials for auth_kind application, serviceaccount or accesstoken."""
    kind = params["auth_kind"]
    try:
        if kind == "application":
            creds, _project = google.auth.default(scopes=SCOPES)
            return creds
        if kind == "serviceaccount":
            sa = google.oauth2.service_account.Credentials
            if params.get("service_account_contents"):
                info = json.loads(params["service_account_contents"])
                return sa.from_service_account_info(info, scopes=SCOPES)
            return sa.from_service_account_file(params["service_account_file"], scopes=SCOPES)
        return google.oauth2.credentials.Credentials(token=params["access_token"])
    except (ValueError, OSError, google.auth.exceptions.GoogleAuthError) as exc:
        # json errors would quote the key's text: name the kind only.
        reason = "not valid JSON" if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise GcpError(f"auth_kind {kind}: cannot load credentials: {reason}") from None


class Compute:
    """Compute v1 calls for one project; 429 and 5xx retried with backoff within retry_timeout."""

    def __init__(self, session, endpoint, project, retry_timeout, where):
        self.session = session
        self.base = endpoint.rstrip("/") + f"/projects/{project}/global/"
        self.retry_timeout = retry_timeout
        self.where = where

    def call(self, method, path, body=None, params=None, missing_ok=False):
        """The JSON answer; None for a 404 when missing_ok."""
        url = self.base + path
        deadline = time.monotonic() + self.retry_timeout
        delay = 0.25
        while True:
            try:
                # globalOperations.wait may hold the answer for up to 2 minutes.
                resp = self.session.request(method, url, json=body, params=params,
                                            timeout=(10, 130))
            except google.auth.exceptions.GoogleAuthError as exc:
                raise GcpError(f"{self.where}: credentials: {exc}") from None
            except requests.RequestException as exc:
                resp, problem = None, f"{type(exc).__name__}: {exc}"
            else:
                if resp.status_code == 404 and missing_ok:
                    return None
                if resp.status_code < 400:
                    return resp.json() if resp.content else {}
                problem = f"HTTP {resp.status_code}: {_api_message(resp)}"
                if resp.status_code not in RETRIED:
                    raise GcpError(f"{self.where}: {method} {url} failed with {problem}")
            wait = min(delay, 16.0) * random.uniform(0.5, 1.0)
            if resp is not None and resp.headers.get("Retry-After", "").isdigit():
                wait = max(wait, float(resp.headers["Retry-After"]))
            if time.monotonic() + wait > deadline:
                raise GcpError(f"{self.where}: {method} {url} still failing after "
                               f"{self.retry_timeout}s of retries, last {problem}")
            time.sleep(wait)
            delay *= 2

    def wait(self, operation, timeout):
        """Wait (globalOperations.wait, which blocks server-side) until the operation is DONE;
        raise its error if it has one."""
        deadline = time.monotonic() + timeout
        pause = 0.0  # wait may return early, even at once: back off between calls
        while operation.get("status") != "DONE":
            if time.monotonic() + pause > deadline:
                raise GcpError(f"{self.where}: operation {operation['name']} still "
                               f"{operation.get('status')} after {timeout}s")
            time.sleep(pause)
            pause = min(pause * 2 or 0.1, 5.0)
            operation = self.call("POST", f"operations/{operation['name']}/wait")
        errors = (operation.get("error") or {}).get("errors") or []
        if errors:
            text = "; ".join(f"{e.get('code', 'ERROR')}: {e.get('message', '')}" for e in errors)
            raise GcpError(f"{self.where}: operation {operation['name']} "
                           f"({operation.get('operationType', '?')}) failed: {text}")
        return operation


def _api_message(resp):
    try:
        return resp.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return resp.text[:500] or resp.reason


def _network_path(project, network):
    """projects/P/global/networks/N from a name, a partial or a full URL."""
    if "/" not in network:
        return f"projects/{project}/global/networks/{network}"
    if network.startswith("global/"):
        return f"projects/{project}/{network}"
    return network[network.find("projects/"):] if "projects/" in network else network


def _protocol(name):
    name = str(name).lower()
    return PROTOCOL_NAMES.get(name, name)


def _allowed(entries):
    """Order-insensitive; no ``ports`` key when there are none (ESP never has any)."""
    out = []
    for entry in entries:
        item = {"IPProtocol": _protocol(entry["IPProtocol"])}
        if entry.get("ports"):
            item["ports"] = sorted(set(map(str, entry["ports"])))
        if item not in out:
            out.append(item)
    return sorted(out, key=lambda e: (e["IPProtocol"], e.get("ports", [])))


def _range(text, strict=False):
    """Canonical network text; a bare address is its own host prefix (/32, /128)."""
    try:
        return str(ipaddress.ip_network(text, strict=strict))
    except ValueError:
        if strict:
            raise
        return str(text)


def normalise(rule):
    """The owned fields of a rule as the API returns it, with the API's defaults filled in."""
    view = {field: rule.get(field, DEFAULTS[field]) for field in FIELDS}
    view["allowed"] = _allowed(view["allowed"])
    view["sourceRanges"] = sorted({_range(r) for r in view["sourceRanges"]})
    for field in ("sourceTags", "targetTags", "targetServiceAccounts"):
        view[field] = sorted(set(view[field]))
    view["logConfig"] = {"enable": bool((rule.get("logConfig") or {}).get("enable", False))}
    return view


class EspRule:
    """One mesh's ESP rule: plan() decides, apply() acts."""

    def __init__(self, params, session):
        self.p = params
        self.where = (f"firewall rule {params['name']} (project {params['project']}, "
                      f"network {params['network']})")
        if not NAME_PATTERN.fullmatch(params["name"]):
            raise GcpError(f"{self.where}: name must be 1-63 characters of [a-z0-9-], "
                           "starting with a letter and not ending with '-'")
        self.network = _network_path(params["project"], params["network"])
        self.compute = Compute(session, params["endpoint"], params["project"],
                               params["retry_timeout"], self.where)
        self.before = None      # the rule as read, None when there is none
        self.action = None      # insert / patch / delete / None
        self.body = None
        self.want = None

    def wanted(self):
        p = self.p
        if p["target_service_accounts"] and (p["target_tags"] or p["source_tags"]):
            raise GcpError(f"{self.where}: target_service_accounts cannot be combined with "
                           "target_tags or source_tags (a rule of the API)")
        if not 0 <= p["priority"] <= 65535:
            raise GcpError(f"{self.where}: priority {p['priority']} is not in 0..65535")
        try:
            ranges = [_range(r, strict=True) for r in p["source_ranges"]]
        except ValueError as exc:
            raise GcpError(f"{self.where}: source_ranges: {exc}") from None
        members = {"sourceRanges": ranges, "sourceTags": p["source_tags"], "targetTags": p["target_tags"],
                   "targetServiceAccounts": p["target_service_accounts"]}
        if not p["purge"] and self.before:
            have = normalise(self.before)
            members = {k: sorted(set(v) | set(have[k])) for k, v in members.items()}
        if not members["sourceRanges"] and not members["sourceTags"]:
            # An ingress rule without sources is open to 0.0.0.0/0: never make one.
            raise GcpError(f"{self.where}: no source_ranges and no source_tags; refusing a rule "
                           "that would allow ESP from anywhere")
        allowed = [{"IPProtocol": "esp"}] + [
            {"IPProtocol": a["protocol"], "ports": a.get("ports") or []}
            for a in p["extra_allowed"]]
        description = f"{p['description']} {MARKER}".strip()
        return normalise({
            "allowed": allowed, **members, "priority": p["priority"], "description": description,
            "logConfig": {"enable": p["log"]}, "disabled": p["disabled"]})

    def plan(self):
        """Read the rule and decide; returns the action (None when nothing differs)."""
        self.before = self.compute.call("GET", f"firewalls/{self.p['name']}", missing_ok=True)
        foreign = self.before is not None and MARKER not in self.before.get("description", "")
        if foreign and not self.p["take_over"]:
            raise GcpError(f"{self.where}: a rule of this name exists and was not made by "
                           "weave.fastdp (no ownership marker in its description); set "
                           "take_over: true to manage it")
        if self.p["state"] == "absent":
            self.action = "delete" if self.before is not None else None
            return self.action
        self.want = want = self.wanted()
        if self.before is None:
            self.action = "insert"
            self.body = {"name": self.p["name"], "network": self.network, "direction": "INGRESS",
                         **{k: v for k, v in want.items() if v != []}}
            return self.action
        self._immutable()
        have = normalise(self.before)
        changed = {f: want[f] for f in FIELDS if want[f] != have[f]}
        if changed:
            self.action = "patch"
            self.body = {"name": self.p["name"], **changed}
        return self.action

    def _immutable(self):
        """What a patch cannot change: the rule must be deleted first, so say so."""
        rule = self.before
        found = {"network": _network_path(self.p["project"], rule.get("network", "")),
                 "direction": rule.get("direction", "INGRESS"),
                 "denied": "present" if rule.get("denied") else "none"}
        want = {"network": self.network, "direction": "INGRESS", "denied": "none"}
        wrong = [f"{k} is {found[k]}, not {want[k]}" for k in want if found[k] != want[k]]
        if wrong:
            raise GcpError(f"{self.where}: the existing rule cannot be patched into the ESP rule "
                           f"({'; '.join(wrong)}); delete it or choose another name")

    def apply(self, operation_timeout):
        """Send the planned write and wait for its operation; returns the operation's name."""
        name = self.p["name"]
        query = {"requestId": str(uuid.uuid4())}
        if self.action == "insert":
            op = self.compute.call("POST", "firewalls", body=self.body, params=query)
        elif self.action == "patch":
            op = self.compute.call("PATCH", f"firewalls/{name}", body=self.body, params=query)
        else:
            op = self.compute.call("DELETE", f"firewalls/{name}", params=query)
        return self.compute.wait(op, operation_timeout)["name"]

    def diff(self):
        """Before/after of the owned fields (plus name and network); {} for no rule."""
        before = {}
        if self.before is not None:
            before = {"name": self.p["name"],
                      "network": _network_path(self.p["project"], self.before.get("network", "")),
                      **normalise(self.before)}
        if self.p["state"] == "absent":
            after = {}
        elif self.action == "insert":
            after = {"name": self.p["name"], "network": self.network, **self.want}
        else:
            after = {**before, **{k: v for k, v in (self.body or {}).items() if k in FIELDS}}
        return {"before": before, "after": after}


def converge(params, check_mode):
    """Plan and (unless check mode) apply: the module's result, diff included."""
    rule = EspRule(params, AuthorizedSession(credentials(params)))
    action = rule.plan()
    operation = None
    if action and not check_mode:
        operation = rule.apply(params["operation_timeout"])
    diff = rule.diff()
    return {"changed": action is not None, "action": action or "none", "operation": operation,
            "rule": diff["after"] or None, "diff": diff}
